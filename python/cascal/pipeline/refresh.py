"""Refresh a router for drifted traffic, label-free (``cascal refresh``).

Given the dataset folder a router was trained on, the router file and a tasks file describing the
subjects the traffic drifted to, :func:`refresh_router` runs the Routing-with-Generated-Data loop
for the new subjects only and refits:

1. **generate** questions for the tasks' subjects the dataset does not have yet (a subject it has is
   skipped, and a tasks file naming only those is refused);
2. **answer** them with the dataset's pool models (only the new questions are asked: the old ones
   keep their answers);
3. **embed** them with the router's embedder;
4. **filter** them (:func:`cascal.pipeline.filter.filter_dataset`, the ``cascal filter`` defaults);
5. **merge** them with the dataset into a new folder (:mod:`cascal.pipeline.merge`);
6. **train** a router with the old router's parameters on the merged folder;
7. **shadow check** the new router against the old one (:mod:`cascal.pipeline.shadow`);
8. **write** the new router atomically over ``out`` (by default the old router's file, which is
   kept as ``previous.cascal`` in the work folder).

Reloading a running gateway is :func:`cascal.pipeline.reload.reload_gateway` (``cascal refresh
--reload-url``).

Everything lands in a work folder (default: ``<dataset>-refresh`` beside the dataset folder)::

    generation_cache.sqlite   every generator reply      answer_cache.sqlite   every pool reply
    generated/                the new questions, answered and embedded
    filtered/                 those the filter kept      dataset/              the merged dataset
    router.cascal             the new router             previous.cascal       the router it replaced
    shadow_report.json        the shadow check           refresh.json          state and summary

Each step is resumable as the pipeline is: generator and pool replies are committed to their
response caches before they are used, so a run killed at any point and started again replays them
without a request (nothing is paid twice); the generated folder is not regenerated while the tasks,
generator and counts are unchanged; embeddings are reused when the texts match; filter, merge,
train and the shadow check are recomputed (no request). The merged folder is the dataset of the
next refresh.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from cascal.errors import ConfigError, DataError
from cascal.io.decision_log import file_sha256
from cascal.llm.config import ModelConfig, PoolConfig, RetryPolicy, TasksConfig
from cascal.pipeline.shadow import ShadowReport

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["RefreshResult", "default_work_dir", "new_subjects", "refresh_router", "router_in_use"]

#: Names inside the work folder.
GENERATED, FILTERED, MERGED = "generated", "filtered", "dataset"
NEW_ROUTER, PREVIOUS_ROUTER = "router.cascal", "previous.cascal"
STATE_FILE, SHADOW_FILE = "refresh.json", "shadow_report.json"
GENERATION_CACHE, ANSWER_CACHE = "generation_cache.sqlite", "answer_cache.sqlite"


@dataclass
class RefreshResult:
    """What :func:`refresh_router` did.

    Attributes:
        router_path: the new router file written.
        work_dir: the work folder (module docstring).
        subjects: the new subjects generated for; ``skipped_subjects`` those the dataset already had.
        generated: new questions generated; ``kept``: those the filter kept (all without the filter).
        questions: questions of the merged dataset.
        answering: per pool model, what answering the new questions did (requests sent, cached replies ...).
        shadow: the shadow check.
        previous_router: where the replaced router file was kept (``None`` when ``out`` was a new file).
        router, previous: the new and the old fitted routers.
    """

    router_path: Path
    work_dir: Path
    subjects: list[str]
    skipped_subjects: list[str]
    generated: int
    kept: int
    questions: int
    answering: dict
    shadow: ShadowReport
    previous_router: Optional[Path] = None
    router: Any = field(default=None, repr=False)
    previous: Any = field(default=None, repr=False)

    @property
    def dataset_dir(self) -> Path:
        """The merged dataset folder (the dataset of the next refresh)."""
        return self.work_dir / MERGED

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {
            "router": str(self.router_path),
            "work_dir": str(self.work_dir),
            "dataset": str(self.dataset_dir),
            "previous_router": None if self.previous_router is None else str(self.previous_router),
            "subjects": list(self.subjects),
            "skipped_subjects": list(self.skipped_subjects),
            "generated": self.generated,
            "kept": self.kept,
            "questions": self.questions,
            "answering": self.answering,
            "shadow": self.shadow.to_dict(),
        }


def default_work_dir(dataset_dir: PathLike) -> Path:
    """``<dataset>-refresh`` beside the dataset folder."""
    folder = Path(dataset_dir).resolve()
    return folder.parent / f"{folder.name}-refresh"


def new_subjects(tasks: TasksConfig, existing: Sequence[str], dataset_dir: PathLike) -> TasksConfig:
    """The tasks whose subjects are not in ``existing`` (the dataset's subjects), same counts and generator.

    Raises:
        cascal.errors.ConfigError: every subject of ``tasks`` is already in the dataset.
    """
    known = set(existing)
    fresh = [name for name in tasks.names if name not in known]
    if not fresh:
        raise ConfigError(
            f"{tasks.source or 'tasks'}: every subject it names ({', '.join(tasks.names)}) is already in "
            f"{dataset_dir}; nothing to refresh: name the subjects the traffic drifted to "
            "(e.g. the tasks.yaml draft of `cascal coverage`)"
        )
    return TasksConfig(
        subjects={name: tasks.subjects[name] for name in fresh},
        questions={name: tasks.questions[name] for name in fresh},
        generator=tasks.generator,
        source=tasks.source,
    )


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[refresh] {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> Optional[str]:
    return file_sha256(path) if path.is_file() else None


def _read_state(work: Path) -> dict:
    try:
        state = json.loads((work / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # absent or damaged: start from the caches
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(work: Path, state: dict) -> None:
    from cascal.io import atomic_write_text

    atomic_write_text(work / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")


def router_in_use(router_path: PathLike, dataset_dir: PathLike, work_dir: Optional[PathLike] = None) -> Path:
    """The router file the refresh compares against: ``router_path``, or, on a rerun after this
    refresh already replaced it, the router it replaced (``previous.cascal`` in the work folder).
    The logged traffic of the shadow check must have been routed by this one."""
    router_file = Path(router_path)
    work = Path(work_dir) if work_dir is not None else default_work_dir(dataset_dir)
    written = _read_state(work).get("written_sha256")
    previous_file = work / PREVIOUS_ROUTER
    if written is not None and written == _sha256(router_file) and previous_file.is_file():
        return previous_file
    return router_file


def refresh_router(
    dataset_dir: PathLike,
    router_path: PathLike,
    tasks: TasksConfig,
    generator: ModelConfig,
    pool: PoolConfig,
    *,
    out: Optional[PathLike] = None,
    work_dir: Optional[PathLike] = None,
    queries: Optional[Sequence[str]] = None,
    queries_source: Optional[str] = None,
    n_per_subject: Optional[int] = None,
    generation_retry: Optional[RetryPolicy] = None,
    filter_questions: bool = True,
    concurrency: Optional[int] = None,
    prices: Any = None,
    progress: bool = True,
) -> RefreshResult:
    """Generate, answer, embed, filter and merge questions for the new subjects of ``tasks``, refit,
    shadow-check and write the new router (module docstring).

    Args:
        dataset_dir: the dataset folder the router was trained on (answers and embeddings of its embedder).
        router_path: the router file in use.
        tasks: the subjects to cover (those the dataset already has are skipped).
        generator: the generator endpoint.
        pool: the pool; every model of the dataset must be in it (the others are not asked).
        out: the router file to write (default ``router_path``: replaced atomically).
        work_dir: the work folder (default :func:`default_work_dir`).
        queries: logged query texts for the shadow check (none: only the new questions are compared).
        queries_source: where ``queries`` came from, for the report.
        n_per_subject: overrides every new subject's question count.
        generation_retry: the generator client's retry policy.
        filter_questions: keep only the new questions whose key is a plurality answer of the pool.
        concurrency: overrides every pool model's ``max_concurrency``.
        prices: list prices for a cost-aware router (as :func:`cascal.pipeline.train.train_router`).
        progress: print the steps and show progress bars (stderr).

    Raises:
        cascal.errors.ConfigError: every subject of ``tasks`` is already in the dataset; the pool
            lacks a model of the dataset.
        cascal.errors.DataError: an unusable dataset folder (no answers, no embeddings of the
            router's embedder); the filter kept no new question; a new question id the dataset uses.
        cascal.errors.RouterFileError: an unreadable router file.
        cascal.errors.EndpointError: the generator or a pool endpoint failed; what was received is
            cached, so running again resumes.
    """
    from cascal.io import atomic_write_bytes, atomic_write_text, embeddings_path, load_dataset
    from cascal.pipeline.answer import answer_dataset
    from cascal.pipeline.embed import embed_dataset
    from cascal.pipeline.filter import filter_dataset
    from cascal.pipeline.generate import generate_dataset
    from cascal.pipeline.merge import merge_folders
    from cascal.pipeline.shadow import compare_on_questions, compare_on_traffic, embed_queries
    from cascal.pipeline.train import train_router
    from cascal.router import CascalRouter

    source, router_file = Path(dataset_dir), Path(router_path)
    target = Path(out) if out is not None else router_file
    work = Path(work_dir) if work_dir is not None else default_work_dir(source)
    if not source.is_dir():
        raise DataError(f"{source}: no such dataset folder")
    state = _read_state(work)
    previous_file = work / PREVIOUS_ROUTER
    old_file = router_in_use(router_file, source, work)
    replaced_before = old_file != router_file
    old = CascalRouter.load(old_file)
    embedder_name = old.embedding_model_
    if not embedder_name:
        raise DataError(f"{old_file}: the router records no embedder; it cannot embed the new questions")
    if not embeddings_path(source, embedder_name).is_file():
        raise DataError(
            f"{source}: no {embeddings_path(source, embedder_name).name} (the router's embedder {embedder_name!r}); "
            "the merged dataset needs the old questions' embeddings: run `cascal embed` on it with that embedder"
        )
    dataset = load_dataset(source, embeddings=None)
    models = list(dataset.model_names)
    if not models:
        raise DataError(f"{source}: predictions.csv has no model columns; it is not the dataset of a trained router")
    missing = [m for m in models if m not in pool.names]
    if missing:
        raise ConfigError(
            f"{pool.source or 'pool'}: lacks {missing}, model(s) of {source}; the new questions need every "
            "model's answer"
        )
    fresh = new_subjects(tasks, dataset.subjects.tolist(), source)
    skipped = [name for name in tasks.names if name not in fresh.subjects]
    if skipped:
        _say(progress, f"skipping subject(s) the dataset already has: {', '.join(skipped)}")
    del dataset

    work.mkdir(parents=True, exist_ok=True)
    generated_dir = work / GENERATED
    fingerprint = {
        "subjects": fresh.subjects,
        "questions": fresh.questions,
        "generator": [generator.name, generator.model, generator.base_url],
        "n_per_subject": n_per_subject,
    }
    if state.get("generate") != fingerprint or not (generated_dir / "questions.jsonl").is_file():
        _say(progress, f"generate: {', '.join(fresh.names)} with {generator.name}")
        generate_dataset(
            fresh,
            generator,
            generated_dir,
            n_per_subject=n_per_subject,
            cache_path=work / GENERATION_CACHE,
            retry=generation_retry,
            progress=progress,
        )
        state["generate"] = fingerprint
        _write_state(work, state)
    else:
        _say(progress, "generate: done before, kept")

    _say(progress, f"answer: the new questions with {len(models)} pool models (cached replies are free)")
    answered = answer_dataset(
        generated_dir,
        pool,
        models=models,
        cache_path=work / ANSWER_CACHE,
        progress=progress,
        concurrency=concurrency,
    )
    answering = answered.extra.get("answering", {})
    generated = answered.n_questions
    del answered

    from cascal.embedding import load_embedder

    _say(progress, f"embed: with {embedder_name}")
    embed_dataset(generated_dir, load_embedder(embedder_name), progress=progress)

    new_dir = generated_dir
    if filter_questions:
        new_dir = work / FILTERED
        report = filter_dataset(generated_dir, new_dir)
        _say(progress, f"filter: kept {report.overall.kept} of {generated} new questions")
        if report.overall.kept == 0:
            raise DataError(
                f"{new_dir}: the filter kept none of the {generated} new questions (see its filter_report.json); "
                "refresh without the filter to keep them all"
            )
    _say(progress, "merge: the dataset and the new questions")
    merged = merge_folders(source, new_dir, work / MERGED, embeddings=embedder_name)

    _say(progress, f"train: {merged.n_questions} questions, the old router's parameters")
    params = old.get_params(deep=False)
    params.pop("embedding_model", None)
    params.pop("embedding_sha256", None)  # train records the merged embeddings' own
    new = train_router(work / MERGED, work / NEW_ROUTER, embeddings=embedder_name, prices=prices, **params)

    _say(progress, "shadow check")
    fresh_data = load_dataset(new_dir, embeddings=embedder_name)
    assert fresh_data.embeddings is not None  # written by the embed step, row-subset by the filter
    top_k = int(new.top_k)
    shadow = ShadowReport(queries_source=queries_source, top_k=min(top_k, len(new.model_names_)))
    shadow.consensus = compare_on_questions(old, new, fresh_data.embeddings, fresh_data, top_k=top_k)
    if queries:
        X = embed_queries(new, queries, progress=progress)
        shadow.subjects = compare_on_traffic(old, new, X, top_k=top_k)
    atomic_write_text(work / SHADOW_FILE, json.dumps(shadow.to_dict(), indent=2) + "\n")

    kept_previous: Optional[Path] = None
    if target.is_file() and target.resolve() == old_file.resolve():
        atomic_write_bytes(previous_file, old_file.read_bytes())
        kept_previous = previous_file
    elif replaced_before and previous_file.is_file():
        kept_previous = previous_file
    target.parent.mkdir(parents=True, exist_ok=True)
    # recorded first: a run killed right after the write still knows the router file is its own
    state["written_sha256"] = _sha256(work / NEW_ROUTER)
    _write_state(work, state)
    atomic_write_bytes(target, (work / NEW_ROUTER).read_bytes())
    _say(progress, f"wrote the new router to {target}")
    result = RefreshResult(
        router_path=target,
        work_dir=work,
        subjects=fresh.names,
        skipped_subjects=skipped,
        generated=generated,
        kept=fresh_data.n_questions,
        questions=merged.n_questions,
        answering=answering,
        shadow=shadow,
        previous_router=kept_previous,
        router=new,
        previous=old,
    )
    state["summary"] = result.to_dict()
    _write_state(work, state)
    return result
