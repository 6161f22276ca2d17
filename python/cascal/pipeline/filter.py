"""Generator-quality statistics and filters for generated data.

Two qualities of a generator are measurable once the pool has answered its questions:

* **self-answer**: the generator's key agrees with the pool's consensus plurality. Per question,
  the plurality options are those chosen by the largest number of pool models (every tied option
  counts); ``self_answer[q]`` is True when the key is one of them. A question
  that no model answered, or without a key, is not self-answered.
* **spread**: the pool does not agree unanimously *and* has a unique plurality option. Models
  without an extractable answer (-1) or not asked (-2) are ignored; a question with fewer than two
  valid answers is unanimous.

Counting uses :func:`cascal.kernels.consensus_scores` (its count-based plurality mask) when that
kernel is available, else the same counting in numpy.

Filter rule of :func:`filter_dataset` (each part can be switched off):

1. subjects whose self-answer share is below ``min_self_answer`` are dropped whole (the generator
   is not trusted there; default 0 = keep every subject);
2. within the remaining subjects a question is kept when ``self_answer[q]`` holds (unless
   ``require_self_answer=False``) and, with ``require_spread=True``, ``spread[q]`` holds.

Shares are over all questions of a subject (the denominators include unanswered questions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np

from cascal.data import MAX_OPTIONS, ResponseMatrix
from cascal.errors import DataError, InvalidParameterError

PathLike = Union[str, Path]
REPORT_FILE = "filter_report.json"

__all__ = ["QualityFlags", "SubjectQuality", "FilterReport", "quality_flags", "filter_responses", "filter_dataset"]


@dataclass(frozen=True)
class QualityFlags:
    """Per-question generator-quality flags.

    Attributes:
        self_answer: ``(n_q,)`` bool, the key is a plurality option of the pool.
        spread: ``(n_q,)`` bool, not unanimous and a unique plurality option.
        answered: ``(n_q,)`` int, pool models that gave a valid option.
    """

    self_answer: np.ndarray
    spread: np.ndarray
    answered: np.ndarray


def _option_counts(answers: np.ndarray) -> np.ndarray:
    """``(n_q, MAX_OPTIONS)`` number of models choosing each option (codes < 0 ignored)."""
    n_q = answers.shape[0]
    counts = np.zeros((n_q, MAX_OPTIONS), dtype=np.int64)
    rows, cols = np.nonzero(answers >= 0)
    np.add.at(counts, (rows, answers[rows, cols].astype(np.int64)), 1)
    return counts


def _plurality_mask_numpy(answers: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(n_q, n_m)`` True where a model chose a plurality option (numpy)."""
    top = counts.max(axis=1)
    safe = np.where(answers >= 0, answers, 0).astype(np.int64)
    chosen_count = np.take_along_axis(counts, safe, axis=1)
    return (answers >= 0) & (chosen_count == top[:, None]) & (top[:, None] > 0)


def _consensus_kernel():
    """``cascal.kernels.consensus_scores`` if it exists and its Rust binding is compiled in, else None."""
    from cascal import _core, kernels

    if not hasattr(_core, "consensus_scores"):
        return None
    return getattr(kernels, "consensus_scores", None)


def _plurality_mask(responses: ResponseMatrix) -> np.ndarray:
    """The plurality mask from the consensus kernel when it exists, else from numpy counts."""
    consensus_scores = _consensus_kernel()
    if consensus_scores is None or responses.n_models == 0:
        return _plurality_mask_numpy(responses.answers, _option_counts(responses.answers))
    return np.asarray(consensus_scores(responses.answers, responses.n_options).plurality, dtype=bool)


def quality_flags(responses: ResponseMatrix) -> QualityFlags:
    """Self-answer and spread of every question of ``responses`` (module docstring)."""
    answers = responses.answers
    counts = _option_counts(answers)
    plurality = _plurality_mask(responses)
    # option classes in the plurality: those chosen by at least one plurality model
    in_plurality = np.zeros((responses.n_questions, MAX_OPTIONS), dtype=bool)
    rows, cols = np.nonzero(plurality)
    in_plurality[rows, answers[rows, cols].astype(np.int64)] = True
    gold = np.asarray(responses.gold, dtype=np.int64)
    has_key = gold >= 0
    self_answer = np.zeros(responses.n_questions, dtype=bool)
    self_answer[has_key] = in_plurality[np.flatnonzero(has_key), gold[has_key]]
    distinct = (counts > 0).sum(axis=1)
    unique_plurality = in_plurality.sum(axis=1) == 1
    spread = (distinct >= 2) & unique_plurality
    return QualityFlags(self_answer=self_answer, spread=spread, answered=counts.sum(axis=1))


@dataclass(frozen=True)
class SubjectQuality:
    """Statistics of one subject (or of all questions, ``subject="overall"``)."""

    subject: str
    n_questions: int
    self_answer: float
    spread: float
    kept: int

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "subject": self.subject,
            "n_questions": self.n_questions,
            "self_answer": self.self_answer,
            "spread": self.spread,
            "kept": self.kept,
        }


@dataclass
class FilterReport:
    """What :func:`filter_responses` measured and kept.

    Attributes:
        subjects: per-subject statistics, in order of first appearance.
        overall: the same over all questions.
        rule: the filter parameters used.
        keep: ``(n_q,)`` bool mask of kept questions.
        dropped_subjects: subjects dropped whole by ``min_self_answer``.
    """

    subjects: list[SubjectQuality]
    overall: SubjectQuality
    rule: dict
    keep: np.ndarray = field(repr=False)
    dropped_subjects: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready summary (without the per-question mask)."""
        return {
            "rule": dict(self.rule),
            "overall": self.overall.to_dict(),
            "subjects": [s.to_dict() for s in self.subjects],
            "dropped_subjects": list(self.dropped_subjects),
        }

    def table(self) -> str:
        """The statistics as an aligned text table."""
        rows = [*self.subjects, self.overall]
        width = max([len("subject"), *(len(r.subject) for r in rows)])
        lines = [f"{'subject':<{width}}  {'questions':>9}  {'self-answer':>11}  {'spread':>7}  {'kept':>6}"]
        for i, r in enumerate(rows):
            if i == len(rows) - 1:
                lines.append("-" * len(lines[0]))
            lines.append(
                f"{r.subject:<{width}}  {r.n_questions:>9d}  {r.self_answer:>11.1%}  {r.spread:>7.1%}  {r.kept:>6d}"
            )
        return "\n".join(lines)


def _share(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def filter_responses(
    responses: ResponseMatrix,
    *,
    require_self_answer: bool = True,
    require_spread: bool = False,
    min_self_answer: float = 0.0,
) -> FilterReport:
    """Measure self-answer and spread per subject and decide which questions to keep (module rule).

    Args:
        responses: a generated dataset answered by the pool (``gold`` = the generator's key).
        require_self_answer: keep only questions whose key is a plurality option.
        require_spread: keep only questions with spread.
        min_self_answer: drop subjects whose self-answer share is below this, in [0, 1].

    Raises:
        ValueError: ``min_self_answer`` outside [0, 1], or a response matrix without pool models.
    """
    if (
        isinstance(min_self_answer, bool)
        or not isinstance(min_self_answer, (int, float))
        or not 0.0 <= min_self_answer <= 1.0
    ):
        raise InvalidParameterError(f"min_self_answer: expected a share in [0, 1], got {min_self_answer!r}")
    if responses.n_models == 0:
        raise DataError("responses: no pool model has answered these questions yet (run `cascal answer` first)")
    flags = quality_flags(responses)
    keep = np.ones(responses.n_questions, dtype=bool)
    if require_self_answer:
        keep &= flags.self_answer
    if require_spread:
        keep &= flags.spread

    subjects: list[SubjectQuality] = []
    dropped: list[str] = []
    names = list(dict.fromkeys(responses.subjects.tolist()))
    for name in names:
        rows = responses.subjects == name
        self_share = _share(flags.self_answer[rows])
        if self_share < min_self_answer:
            keep[rows] = False
            dropped.append(name)
        subjects.append(
            SubjectQuality(name, int(rows.sum()), self_share, _share(flags.spread[rows]), int(keep[rows].sum()))
        )
    overall = SubjectQuality(
        "overall", responses.n_questions, _share(flags.self_answer), _share(flags.spread), int(keep.sum())
    )
    rule = {
        "require_self_answer": bool(require_self_answer),
        "require_spread": bool(require_spread),
        "min_self_answer": float(min_self_answer),
    }
    return FilterReport(subjects=subjects, overall=overall, rule=rule, keep=keep, dropped_subjects=dropped)


def _copy_embeddings(source: Path, target: Path, keep: np.ndarray, kept_texts: list[str]) -> None:
    """Row-subset every embeddings file of ``source`` into ``target`` (and refresh embed's cache record)."""
    from cascal.embedding import texts_digest  # the same digest `cascal embed` checks
    from cascal.io import atomic_open, atomic_write_text, embedding_files, load_embeddings_file

    for name, file in embedding_files(source).items():
        emb = load_embeddings_file(file, keep.shape[0])  # checked as load_dataset checks it
        out = target / file.name
        with atomic_open(out, "wb") as fh:
            np.save(fh, emb[keep])
        meta = file.with_suffix(".json")
        record = _embed_record(meta) if name else None
        if record is not None:  # an unreadable record is not copied: `cascal embed` then recomputes
            record.update(n=int(keep.sum()), texts_sha256=texts_digest(kept_texts))
            atomic_write_text(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")


def _embed_record(file: Path) -> Optional[dict]:
    """The JSON object `cascal embed` wrote next to an embeddings file, or None (absent or unreadable)."""
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, not UTF-8, not JSON
        return None
    return record if isinstance(record, dict) else None


def filter_dataset(
    dataset_dir: PathLike,
    out_dir: PathLike,
    *,
    require_self_answer: bool = True,
    require_spread: bool = False,
    min_self_answer: float = 0.0,
    out_of_range: Literal["error", "unparsable"] = "error",
) -> FilterReport:
    """Filter an answered generated dataset folder into ``out_dir`` and save the report there.

    Writes the kept questions as a dataset folder (questions, predictions, logprobs, cost and every
    embeddings file, row-subset) plus ``filter_report.json``. Arguments as in :func:`filter_responses`;
    ``out_of_range`` is :func:`cascal.io.load_dataset`'s (with ``"unparsable"`` a letter beyond its
    question's options is written to the output folder as ``?``).

    Raises:
        ValueError: ``out_dir`` is the input folder, or any error of :func:`filter_responses`.
    """
    from cascal.io import load_dataset, save_dataset

    source, target = Path(dataset_dir), Path(out_dir)
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise InvalidParameterError(f"out_dir: must differ from the input dataset folder {source}")
    responses = load_dataset(source, embeddings=None, out_of_range=out_of_range)
    report = filter_responses(
        responses,
        require_self_answer=require_self_answer,
        require_spread=require_spread,
        min_self_answer=min_self_answer,
    )
    kept = responses.subset(report.keep)
    save_dataset(kept, target)
    _copy_embeddings(source, target, report.keep, list(kept.questions or []))
    (target / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report
