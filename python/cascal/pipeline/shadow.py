"""The shadow check of a refreshed router: what it would change, measured before it serves.

Two label-free comparisons of an old and a new router:

- **on logged traffic** (query texts, e.g. a decision log written with ``--log-text``): both
  routers route every query; per subject (the new router's subject assignment, which knows the
  new subjects) the report gives the queries, the share whose top-1 model changed, the share whose
  top-k set changed, and each router's mean fallback weight (how much the global ranking decided:
  high for traffic no niche covers);
- **on the new questions** (the refresh's generated, answered questions): each router's mean
  consensus score of its top-1 model, and of its top-k models, computed from the pool's answers
  alone (:func:`cascal.router.fitting.score_consensus`, the scores the router is fitted on). The
  new router was fitted on these questions, so its score there is in-sample.

:class:`ShadowReport` holds both and prints them as a table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from cascal.data import ResponseMatrix

__all__ = ["ConsensusComparison", "ShadowReport", "SubjectShift", "compare_on_questions", "compare_on_traffic"]


@dataclass(frozen=True)
class SubjectShift:
    """How the routing of one subject's traffic changed (``subject="all"``: every query)."""

    subject: str
    queries: int
    top1_changed: float
    topk_changed: float
    fallback_before: float
    fallback_after: float


@dataclass(frozen=True)
class ConsensusComparison:
    """Both routers' mean consensus scores on the new questions (top-1 model, and top-k models)."""

    questions: int
    top_k: int
    top1_before: float
    top1_after: float
    topk_before: float
    topk_after: float


@dataclass
class ShadowReport:
    """The shadow check's results (module docstring); ``subjects`` ends with the ``all`` row."""

    subjects: list[SubjectShift] = field(default_factory=list)
    consensus: Optional[ConsensusComparison] = None
    queries_source: Optional[str] = None
    top_k: int = 3

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "queries_source": self.queries_source,
            "top_k": self.top_k,
            "traffic": [asdict(s) for s in self.subjects],
            "new_questions": None if self.consensus is None else asdict(self.consensus),
        }

    def table(self) -> str:
        """The report as aligned text tables."""
        lines: list[str] = []
        if self.subjects:
            width = max(len("subject (new router)"), *(len(s.subject) for s in self.subjects))
            lines.append(f"shadow check on {self.subjects[-1].queries} logged queries ({self.queries_source})")
            lines.append(
                f"{'subject (new router)':<{width}}  {'queries':>7}  {'top-1 changed':>13}  "
                f"{f'top-{self.top_k} changed':>13}  {'fallback before':>15}  {'after':>6}"
            )
            for i, s in enumerate(self.subjects):
                if i == len(self.subjects) - 1:
                    lines.append("-" * len(lines[1]))
                lines.append(
                    f"{s.subject:<{width}}  {s.queries:>7d}  {s.top1_changed:>13.1%}  {s.topk_changed:>13.1%}  "
                    f"{s.fallback_before:>15.2f}  {s.fallback_after:>6.2f}"
                )
        if self.consensus is not None:
            c = self.consensus
            if lines:
                lines.append("")
            lines.append(
                f"mean consensus score on the {c.questions} new questions (label-free; the new router is fitted on them)"
            )
            lines.append(f"{'router':<8}  {'top-1':>6}  {f'top-{c.top_k}':>6}")
            lines.append(f"{'old':<8}  {c.top1_before:>6.3f}  {c.topk_before:>6.3f}")
            lines.append(f"{'new':<8}  {c.top1_after:>6.3f}  {c.topk_after:>6.3f}")
        return "\n".join(lines)


def _route(router: Any, X: np.ndarray, top_k: int) -> Any:
    return router.route_details(X, top_k=min(top_k, len(router.model_names_)))


def _model_names(router: Any, ranked: np.ndarray) -> np.ndarray:
    return np.asarray(router.model_names_, dtype=object)[ranked]


def compare_on_traffic(old: Any, new: Any, X: np.ndarray, *, top_k: int = 3) -> list[SubjectShift]:
    """Route the query embeddings ``X`` with both routers; one :class:`SubjectShift` per subject of
    the new router that received traffic (busiest first), then the ``all`` row."""
    before, after = _route(old, X, top_k), _route(new, X, top_k)
    names_before, names_after = _model_names(old, before.ranked), _model_names(new, after.ranked)
    top1 = names_before[:, 0] != names_after[:, 0]
    topk = np.array([set(a) != set(b) for a, b in zip(names_before, names_after)], dtype=bool)
    alpha_before, alpha_after = np.asarray(before.alpha, dtype=np.float64), np.asarray(after.alpha, dtype=np.float64)
    subjects = np.asarray(new.subject_names_, dtype=object)[np.asarray(after.subject)]

    def row(name: str, mask: np.ndarray) -> SubjectShift:
        return SubjectShift(
            name,
            int(mask.sum()),
            float(top1[mask].mean()),
            float(topk[mask].mean()),
            float(alpha_before[mask].mean()),
            float(alpha_after[mask].mean()),
        )

    names, counts = np.unique(subjects.astype(str), return_counts=True)
    rows = [row(str(name), subjects == name) for name in names[np.argsort(-counts, kind="stable")]]
    return rows + [row("all", np.ones(len(X), dtype=bool))]


def compare_on_questions(
    old: Any, new: Any, X: np.ndarray, responses: ResponseMatrix, *, top_k: int = 3
) -> ConsensusComparison:
    """Both routers' mean consensus score on the answered questions ``responses`` (embeddings ``X``):
    the score of the routed top-1 model, and the mean over the routed top-k models. The consensus is
    computed with the new router's consensus parameters; models a router does not know score NaN
    and are left out of its mean."""
    from cascal.router import fitting

    consensus = fitting.score_consensus(responses, fitting.consensus_params(new.get_params(deep=False)))
    columns = {name: i for i, name in enumerate(responses.model_names)}

    def score(router: Any) -> tuple[float, float]:
        ranked = _route(router, X, top_k).ranked
        cols = np.array([[columns.get(m, -1) for m in row] for row in _model_names(router, ranked)], dtype=np.int64)
        scores = np.where(cols >= 0, np.take_along_axis(consensus.scores, np.maximum(cols, 0), axis=1), np.nan)
        return float(np.nanmean(scores[:, 0])), float(np.nanmean(scores))

    top1_before, topk_before = score(old)
    top1_after, topk_after = score(new)
    return ConsensusComparison(
        responses.n_questions, min(top_k, len(new.model_names_)), top1_before, top1_after, topk_before, topk_after
    )


def embed_queries(router: Any, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
    """The embeddings of ``texts`` with ``router``'s embedder (:func:`cascal.embedding.load_embedder`)."""
    from cascal.embedding import embed_texts, load_embedder

    return embed_texts(load_embedder(router.embedding_model_), list(texts), progress=progress)
