"""Generate a multiple-choice dataset with a generator LLM (``cascal generate``).

For every subject of a :class:`~cascal.llm.config.TasksConfig`, the generator is asked in batches
(prompt: :mod:`cascal.generation.prompt`; reply parsing: :mod:`cascal.generation.parser`) until the
subject has ``N`` valid, unique questions or ``max_attempts`` requests were made. Each attempt's
prompt names the batch number and quotes recently accepted stems, so attempts are distinct
requests; every reply goes through F1's :class:`~cascal.llm.client.ChatClient` and is committed to a
SQLite response cache before it is parsed, so an interrupted or repeated run replays the same
prompts from the cache for free and produces the same dataset.

Subjects run concurrently (the client bounds requests in flight by the generator's
``max_concurrency``); within a subject attempts are sequential. Duplicates are removed within each
subject as questions arrive (:class:`~cascal.generation.dedupe.Deduplicator`), then once more
across subjects in subject order (first subject wins; such cross-subject drops are not replaced).

The result is a dataset folder (see :mod:`cascal.io`) written by :func:`cascal.io.save_dataset`: questions.jsonl
with the generator's key as ``answer`` (and a ``generator`` field), a predictions.csv with only
the ``question_id`` column (no pool model has answered yet), and ``generation_report.json`` with the
per-subject counts (attempts, parse skips by reason, duplicates, failed requests, shortfall).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from cascal.data import MAX_OPTIONS, ResponseMatrix
from cascal.errors import ArgumentTypeError, ConfigError, GenerationError, InvalidParameterError
from cascal.generation.dedupe import DEFAULT_NEAR_THRESHOLD, DedupeReport, Deduplicator
from cascal.generation.parser import ParsedQuestion, ParseReport, parse_questions
from cascal.generation.prompt import build_messages
from cascal.llm.config import ModelConfig, RetryPolicy, TasksConfig

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_BATCH_SIZE = 10
REPORT_FILE = "generation_report.json"
CACHE_FILE = "generation_cache.sqlite"

__all__ = [
    "GenerationError",
    "SubjectReport",
    "GenerationReport",
    "generate_dataset",
    "agenerate_dataset",
    "resolve_generator",
    "default_max_attempts",
    "format_report_table",
]


def default_max_attempts(n_questions: int, batch_size: int) -> int:
    """Requests allowed per subject when not given: ``2 * ceil(N / batch_size) + 2``."""
    return 2 * math.ceil(n_questions / batch_size) + 2


@dataclass
class SubjectReport:
    """What happened for one subject.

    Attributes:
        subject: the subject name.
        requested: questions wanted (N).
        generated: valid unique questions kept.
        attempts: requests made (cached replies included).
        failed_requests: requests that got no usable reply after the client's retries.
        cached_replies: replies served from the cache.
        parse: parse counts over all replies.
        dedupe: duplicate counts within the subject.
        cross_subject_duplicates: questions dropped because an earlier subject had them.
    """

    subject: str
    requested: int
    generated: int = 0
    attempts: int = 0
    failed_requests: int = 0
    cached_replies: int = 0
    parse: ParseReport = field(default_factory=ParseReport)
    dedupe: DedupeReport = field(default_factory=DedupeReport)
    cross_subject_duplicates: int = 0

    @property
    def shortfall(self) -> int:
        """Questions still missing (0 when the subject is complete)."""
        return max(0, self.requested - self.generated)

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {
            "subject": self.subject,
            "requested": self.requested,
            "generated": self.generated,
            "shortfall": self.shortfall,
            "attempts": self.attempts,
            "failed_requests": self.failed_requests,
            "cached_replies": self.cached_replies,
            "parse": self.parse.to_dict(),
            "duplicates": self.dedupe.to_dict(),
            "cross_subject_duplicates": self.cross_subject_duplicates,
        }


@dataclass
class GenerationReport:
    """Per-subject reports of one :func:`generate_dataset` run, plus its settings."""

    generator: str
    subjects: list[SubjectReport]
    settings: dict

    @property
    def generated(self) -> int:
        """Questions written in total."""
        return sum(s.generated for s in self.subjects)

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {
            "generator": self.generator,
            "settings": dict(self.settings),
            "generated": self.generated,
            "subjects": [s.to_dict() for s in self.subjects],
        }

    def table(self) -> str:
        """An aligned text table: one row per subject."""
        return format_report_table(self.to_dict())


def format_report_table(report: dict) -> str:
    """The per-subject table of a report dict (:meth:`GenerationReport.to_dict` or the JSON file)."""
    subjects = report["subjects"]
    width = max([len("subject"), *(len(s["subject"]) for s in subjects)])
    lines = [
        f"{'subject':<{width}}  {'wanted':>6}  {'kept':>6}  {'attempts':>8}  {'skipped':>7}  {'dupes':>5}  {'failed':>6}"
    ]
    for s in subjects:
        skipped = sum(s["parse"]["skipped"].values())
        dupes = sum(s["duplicates"]["dropped"].values()) + s["cross_subject_duplicates"]
        lines.append(
            f"{s['subject']:<{width}}  {s['requested']:>6d}  {s['generated']:>6d}  {s['attempts']:>8d}  "
            f"{skipped:>7d}  {dupes:>5d}  {s['failed_requests']:>6d}"
        )
    return "\n".join(lines)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError(f"{name}: must be an integer >= 1, got {value!r}")
    return value


async def _generate_subject(
    client: Any,
    subject: str,
    description: str,
    report: SubjectReport,
    *,
    batch_size: int,
    max_attempts: int,
    n_options: int,
    near_threshold: float,
    on_accept: Any,
) -> list[ParsedQuestion]:
    """The attempt loop of one subject; returns its unique questions (at most ``report.requested``)."""
    from cascal.llm.client import RequestFailed

    dedupe = Deduplicator(near_threshold)
    dedupe.report = report.dedupe
    accepted: list[ParsedQuestion] = []
    for attempt in range(max_attempts):
        remaining = report.requested - len(accepted)
        if remaining <= 0:
            break
        messages = build_messages(
            subject,
            description,
            min(batch_size, remaining),
            attempt=attempt,
            n_options=n_options,
            avoid=[q.question for q in accepted],
        )
        report.attempts += 1
        try:
            completion = await client.complete(messages)
        except RequestFailed:
            report.failed_requests += 1
            continue
        report.cached_replies += int(completion.cached)
        parsed, parse_report = parse_questions(completion.text)
        report.parse.merge(parse_report)
        fresh = dedupe.filter(parsed)[:remaining]
        accepted.extend(fresh)
        on_accept(len(fresh))
    report.generated = len(accepted)
    return accepted


async def agenerate_dataset(
    tasks: TasksConfig,
    generator: ModelConfig,
    out_dir: PathLike,
    *,
    n_per_subject: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_attempts: Optional[int] = None,
    n_options: int = 4,
    near_threshold: float = DEFAULT_NEAR_THRESHOLD,
    cache_path: Optional[PathLike] = None,
    retry: Optional[RetryPolicy] = None,
    progress: bool = True,
) -> Path:
    """Async form of :func:`generate_dataset` (same arguments), for callers inside an event loop."""
    from cascal.io import save_dataset
    from cascal.llm.cache import ResponseCache
    from cascal.llm.client import ChatClient

    if not isinstance(tasks, TasksConfig):
        raise ArgumentTypeError(
            f"tasks: expected a TasksConfig (cascal.llm.config.load_tasks), got {type(tasks).__name__}"
        )
    if not isinstance(generator, ModelConfig):
        raise ArgumentTypeError(f"generator: expected a ModelConfig, got {type(generator).__name__}")
    if n_per_subject is not None:
        _positive_int(n_per_subject, "n_per_subject")
    _positive_int(batch_size, "batch_size")
    if max_attempts is not None:
        _positive_int(max_attempts, "max_attempts")
    if isinstance(n_options, bool) or not isinstance(n_options, int) or not 2 <= n_options <= MAX_OPTIONS:
        raise InvalidParameterError(f"n_options: must be an integer in [2, {MAX_OPTIONS}], got {n_options!r}")
    if not 0.0 < float(near_threshold) <= 1.0:
        raise InvalidParameterError(f"near_threshold: must lie in (0, 1], got {near_threshold!r}")

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cache_file = Path(cache_path) if cache_path is not None else folder / CACHE_FILE
    reports = [SubjectReport(name, n_per_subject or tasks.n_questions(name)) for name in tasks.names]
    total = sum(r.requested for r in reports)

    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"generate ({generator.name})", unit="q")

    def on_accept(n: int) -> None:
        if bar is not None:
            bar.update(n)

    with ResponseCache(cache_file) as cache:
        client = ChatClient(generator, retry, cache=cache)
        try:
            per_subject = await asyncio.gather(
                *(
                    _generate_subject(
                        client,
                        report.subject,
                        tasks.subjects[report.subject],
                        report,
                        batch_size=batch_size,
                        max_attempts=max_attempts or default_max_attempts(report.requested, batch_size),
                        n_options=n_options,
                        near_threshold=near_threshold,
                        on_accept=on_accept,
                    )
                    for report in reports
                )
            )
        finally:
            await client.aclose()
            if bar is not None:
                bar.close()

    # cross-subject duplicates, deterministic in subject order
    across = Deduplicator(near_threshold)
    rows: list[tuple[str, int, ParsedQuestion]] = []
    for report, questions in zip(reports, per_subject):
        kept = across.filter(questions)
        report.cross_subject_duplicates = len(questions) - len(kept)
        report.generated = len(kept)
        rows.extend((report.subject, i, q) for i, q in enumerate(kept))

    settings = {
        "n_per_subject": n_per_subject,
        "batch_size": batch_size,
        "max_attempts": max_attempts,
        "n_options": n_options,
        "near_threshold": float(near_threshold),
        "cache": str(cache_file),
    }
    summary = GenerationReport(generator.name, reports, settings)
    (folder / REPORT_FILE).write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not rows:
        raise GenerationError(
            f"generator {generator.name!r} produced no valid question for any subject; see {folder / REPORT_FILE}"
        )
    dataset = ResponseMatrix(
        answers=np.zeros((len(rows), 0), dtype=np.int8),
        n_options=np.array([len(q.options) for _, _, q in rows], dtype=np.int8),
        subjects=np.array([s for s, _, _ in rows]),
        model_names=[],
        gold=np.array([q.answer for _, _, q in rows], dtype=np.int8),
        question_ids=np.array([f"{s}-{i:04d}" for s, i, _ in rows]),
        questions=[q.question for _, _, q in rows],
        options=[list(q.options) for _, _, q in rows],
        extra={"question_fields": [{"generator": generator.name} for _ in rows]},
    )
    save_dataset(dataset, folder)
    return folder


def generate_dataset(
    tasks: TasksConfig,
    generator: ModelConfig,
    out_dir: PathLike,
    *,
    n_per_subject: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_attempts: Optional[int] = None,
    n_options: int = 4,
    near_threshold: float = DEFAULT_NEAR_THRESHOLD,
    cache_path: Optional[PathLike] = None,
    retry: Optional[RetryPolicy] = None,
    progress: bool = True,
) -> Path:
    """Generate questions for every subject of ``tasks`` with ``generator`` and write a dataset folder.

    Args:
        tasks: subjects, their descriptions and question counts (``cascal.llm.config.load_tasks``).
        generator: the generator endpoint (a pool entry or the tasks file's ``generator``).
        out_dir: the dataset folder to write (created if needed).
        n_per_subject: overrides every subject's question count.
        batch_size: questions asked for per request.
        max_attempts: requests per subject; default :func:`default_max_attempts`.
        n_options: options per question asked for (the parser accepts 2..20 whatever is asked).
        near_threshold: near-duplicate Jaccard threshold (:mod:`cascal.generation.dedupe`).
        cache_path: response cache file; default ``<out_dir>/generation_cache.sqlite``.
        retry: the client's retry policy (default :class:`~cascal.llm.config.RetryPolicy`).
        progress: show a progress bar.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`; ``generation_report.json`` there has the counts.

    Raises:
        cascal.errors.InvalidParameterError: an argument out of range.
        cascal.errors.ArgumentTypeError: ``tasks`` or ``generator`` of the wrong type (a ``TypeError``).
        cascal.errors.EndpointError: the generator endpoint is unreachable or rejects requests.
        cascal.errors.GenerationError: no valid question at all was produced.
    """
    return asyncio.run(
        agenerate_dataset(
            tasks,
            generator,
            out_dir,
            n_per_subject=n_per_subject,
            batch_size=batch_size,
            max_attempts=max_attempts,
            n_options=n_options,
            near_threshold=near_threshold,
            cache_path=cache_path,
            retry=retry,
            progress=progress,
        )
    )


def resolve_generator(
    tasks_path: PathLike, *, generator: Optional[str] = None, pool_path: Optional[PathLike] = None
) -> tuple[TasksConfig, ModelConfig, Optional[RetryPolicy]]:
    """Read the tasks file and pick the generator: ``(tasks, generator model, retry policy or None)``.

    With ``pool_path`` the generator is the pool entry named ``generator``, used with that pool
    file's retry policy; without it, the tasks file's own ``generator`` entry (``generator``, when
    given, must be its name) with the default policy (``None``).

    Raises:
        cascal.errors.ConfigError: an invalid tasks or pool file, no generator named, or a name that
            is neither a model of the pool nor the tasks file's generator.
    """
    from cascal.llm.config import load_pool, load_tasks

    tasks = load_tasks(tasks_path)
    if pool_path is not None:
        pool = load_pool(pool_path)
        if generator is None:
            raise ConfigError(f"generator: name the generator among {pool.names} of {pool_path}")
        return tasks, pool.get(generator), pool.retry
    if tasks.generator is None:
        raise ConfigError(
            f"{tasks_path}: generator: not set; add it there or name a model of a pool file "
            "(--generator NAME --pool pool.yaml)"
        )
    if generator is not None and generator != tasks.generator.name:
        raise ConfigError(
            f"generator: {generator!r} is not the generator of {tasks_path} ({tasks.generator.name!r}); "
            "name a pool file to pick one of its models"
        )
    return tasks, tasks.generator, None
