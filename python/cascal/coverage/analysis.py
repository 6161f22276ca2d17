"""The coverage of live traffic by a router: what ``cascal coverage`` computes (docs/coverage.md).

One pass over the decision log (:class:`cascal.io.decision_log.DecisionLogReader`) counts the routed
queries per subject and per niche, those routed *mostly by the global fallback* (fallback weight at
least :data:`MOSTLY`) and the *uncovered* ones: fallback weight above ``uncovered_above`` (default 0:
the global ranking was blended in at all, i.e. the query lies farther from every niche of its subject
than the router's fallback distance, which ``cascal train`` calibrates as the 99th percentile of the
training questions' own distances). The uncovered queries are kept in a uniform reservoir sample of
at most ``max_points`` (seeded), so memory does not grow with the log. Their embeddings come from the log's sidecar (``--log-embeddings``), or else from their logged
text embedded again with the router's embedder.

The sample is clustered with the repository's average-linkage HAC kernel (cosine distance,
:func:`cascal.kernels.linkage`) and the tree cut at ``cut``: by default ``1 - (1 - f)^2`` for the
router's fallback distance ``f``, the mean pairwise distance of two queries that each lie at the
fallback distance from a common centre, i.e. clusters as tight as the router's own niches. Each
cluster's size is estimated for the whole log (its sample count times uncovered / sampled);
clusters estimated below ``min_size`` are not reported. A cluster reports examples (the logged
texts nearest its centre, when text was logged) and the cosine distance of its centre to the
nearest subject representative and to the nearest niche centroid of the router.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from cascal import kernels
from cascal.errors import DataError, InvalidParameterError
from cascal.io.decision_embeddings import default_sidecar, read_sidecar
from cascal.io.decision_log import DecisionLogReader, file_sha256
from cascal.io.files import PathLike
from cascal.vectors import unit_rows

__all__ = ["AUTO_CUT", "Cluster", "CoverageReport", "CoverageSettings", "analyse_coverage"]

#: ``cut="auto"``: the cut derived from the router's fallback distance (module docstring)
AUTO_CUT = "auto"
#: a query is routed *mostly* by the global fallback from this fallback weight on
MOSTLY = 0.5
#: version tag of the JSON report
REPORT_FORMAT = "cascal-coverage/1"


@dataclass(frozen=True)
class CoverageSettings:
    """How the coverage is measured (module docstring).

    Attributes:
        uncovered_above: a query whose fallback weight exceeds this is uncovered (0: any blend of
            the global ranking).
        min_size: smallest estimated cluster size reported.
        cut: cosine distance at which the average-linkage tree is cut, or ``"auto"``.
        max_points: most uncovered queries sampled for clustering.
        examples: example texts per cluster (when text was logged).
        seed: seed of the reservoir sample.
    """

    uncovered_above: float = 0.0
    min_size: int = 20
    cut: Union[float, str] = AUTO_CUT
    max_points: int = 2000
    examples: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.uncovered_above) < 1.0:
            raise InvalidParameterError(f"uncovered_above: must lie in [0, 1), got {self.uncovered_above!r}")
        for name in ("min_size", "max_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.examples, bool) or not isinstance(self.examples, int) or self.examples < 0:
            raise InvalidParameterError(f"examples: must be an integer >= 0, got {self.examples!r}")
        if self.cut != AUTO_CUT and not (
            isinstance(self.cut, (int, float)) and not isinstance(self.cut, bool) and 0.0 < self.cut <= 2.0
        ):
            raise InvalidParameterError(f"cut: must be 'auto' or a cosine distance in (0, 2], got {self.cut!r}")


@dataclass
class Cluster:
    """One cluster of uncovered traffic.

    Attributes:
        name: its subject name in the tasks draft (``uncovered_01``, ... by decreasing size; a
            generator's name with ``--describe``).
        size: estimated number of queries of the log in it.
        sampled: its queries in the clustered sample.
        share: ``size`` over all routed queries.
        nearest_subject: the router's subject whose representative is nearest the cluster's centre.
        subject_distance: cosine distance of the centre to that representative.
        niche_distance: cosine distance of the centre to the nearest niche centroid (any subject).
        mean_fallback_weight: mean fallback weight of its sampled queries.
        routed_subjects: how its sampled queries were assigned (subject -> count).
        examples: logged texts nearest its centre (empty when no text was logged).
        ids: decision ids of its sampled queries.
        description: the task description of the draft (examples quoted, or a generator's).
    """

    name: str
    size: int
    sampled: int
    share: float
    nearest_subject: str
    subject_distance: float
    niche_distance: float
    mean_fallback_weight: float
    routed_subjects: dict[str, int]
    examples: list[str]
    ids: list[str]
    description: str = ""
    centroid: Optional[np.ndarray] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """A JSON-ready form (no centroid)."""
        return {
            "name": self.name,
            "size": self.size,
            "sampled": self.sampled,
            "share": self.share,
            "nearest_subject": self.nearest_subject,
            "subject_distance": self.subject_distance,
            "niche_distance": self.niche_distance,
            "mean_fallback_weight": self.mean_fallback_weight,
            "routed_subjects": self.routed_subjects,
            "examples": self.examples,
            "description": self.description,
            "ids": self.ids,
        }


@dataclass
class CoverageReport:
    """What :func:`analyse_coverage` found; :meth:`to_dict` is the JSON report (docs/coverage.md)."""

    log: str
    router: str
    router_sha256: str
    settings: CoverageSettings
    cut: float
    lines: int
    routed: int
    unverified: int
    damage: Optional[dict]
    uncovered: int
    mostly_fallback: int
    subjects: list[dict]
    clusters: list[Cluster]
    clusters_below_floor: int
    sampled: int
    embedding_source: Optional[str]
    missing_embeddings: int
    notes: list[str] = field(default_factory=list)

    @property
    def uncovered_share(self) -> float:
        """Share of the routed queries that are uncovered (fallback weight above the threshold)."""
        return self.uncovered / self.routed if self.routed else 0.0

    @property
    def mostly_fallback_share(self) -> float:
        """Share of the routed queries routed mostly by the global fallback (weight >= :data:`MOSTLY`)."""
        return self.mostly_fallback / self.routed if self.routed else 0.0

    def to_dict(self) -> dict:
        """The JSON report."""
        s = self.settings
        return {
            "format": REPORT_FORMAT,
            "log": self.log,
            "router": self.router,
            "router_sha256": self.router_sha256,
            "settings": {
                "uncovered_above": s.uncovered_above,
                "mostly_fallback_from": MOSTLY,
                "min_size": s.min_size,
                "cut": self.cut,
                "max_points": s.max_points,
                "examples": s.examples,
                "seed": s.seed,
            },
            "lines": {
                "read": self.lines,
                "routed": self.routed,
                "not_routed": self.lines - self.routed,
                "unverified": self.unverified,
                "damage": self.damage,
            },
            "uncovered": {"count": self.uncovered, "share": self.uncovered_share},
            "mostly_fallback": {"count": self.mostly_fallback, "share": self.mostly_fallback_share},
            "subjects": self.subjects,
            "clusters": [c.to_dict() for c in self.clusters],
            "clusters_below_floor": self.clusters_below_floor,
            "sample": {
                "sampled": self.sampled,
                "embedding_source": self.embedding_source,
                "missing_embeddings": self.missing_embeddings,
            },
            "notes": list(self.notes),
        }


class _Tally:
    """Counts of one pass over the log, and the reservoir sample of uncovered queries."""

    def __init__(self, settings: CoverageSettings) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        self.routed = 0
        self.uncovered = 0
        self.mostly = 0
        self.per_subject: Counter = Counter()
        self.per_niche: Counter = Counter()
        self.mostly_fallback: Counter = Counter()
        self.uncovered_of: Counter = Counter()
        self.fallback_sum: dict[str, float] = {}
        self.distance_sum: dict[str, float] = {}
        self.sample: list[tuple[str, Optional[str], float, Optional[str]]] = []

    def add(self, record: dict, number: int) -> None:
        if "subject" not in record:
            return
        self.routed += 1
        subject, alpha = record["subject"], float(record["fallback_weight"])
        self.per_subject[subject] += 1
        self.per_niche[(subject, record.get("niche"))] += 1
        self.fallback_sum[subject] = self.fallback_sum.get(subject, 0.0) + alpha
        self.distance_sum[subject] = self.distance_sum.get(subject, 0.0) + float(record["nearest_distance"])
        if alpha >= MOSTLY:
            self.mostly_fallback[subject] += 1
            self.mostly += 1
        if alpha <= self.settings.uncovered_above:
            return
        self.uncovered_of[subject] += 1
        self.uncovered += 1
        key = record.get("id") or f"line-{number}"
        entry = (key, record.get("text"), alpha, subject)
        if len(self.sample) < self.settings.max_points:
            self.sample.append(entry)
        else:  # reservoir sampling (algorithm R): every uncovered query kept with equal chance
            j = int(self.rng.integers(self.uncovered))
            if j < self.settings.max_points:
                self.sample[j] = entry


def _subject_rows(router: Any, tally: _Tally) -> list[dict]:
    """Traffic per subject and niche, every subject of the router listed (unseen ones with 0)."""
    rows = []
    names = list(router.subject_names_) + sorted(
        s for s in tally.per_subject if s not in set(router.subject_names_) and s is not None
    )
    for subject in names:
        count = tally.per_subject.get(subject, 0)
        trained = router.niches_.get(subject, [])
        niches = []
        for k, n in enumerate(trained):
            seen = tally.per_niche.get((subject, k), 0)
            niches.append(
                {
                    "niche": k,
                    "trained_size": int(n.size),
                    "count": seen,
                    "share": seen / tally.routed if tally.routed else 0.0,
                }
            )
        rows.append(
            {
                "subject": subject,
                "count": count,
                "share": count / tally.routed if tally.routed else 0.0,
                "uncovered": tally.uncovered_of.get(subject, 0),
                "mostly_fallback": tally.mostly_fallback.get(subject, 0),
                "mean_fallback_weight": tally.fallback_sum.get(subject, 0.0) / count if count else None,
                "mean_nearest_distance": tally.distance_sum.get(subject, 0.0) / count if count else None,
                "niches": niches,
            }
        )
    return rows


def _embeddings(
    tally: _Tally, router: Any, log: Path, sidecar: Optional[PathLike]
) -> tuple[list[int], Optional[np.ndarray], Optional[str], list[str]]:
    """``(rows of the sample with an embedding, their embeddings, source, notes)``."""
    notes: list[str] = []
    ids = [entry[0] for entry in tally.sample]
    folder = Path(sidecar) if sidecar is not None else default_sidecar(log)
    dim = int(router.tables_.dim)
    if sidecar is not None or folder.is_dir():
        found = read_sidecar(folder, ids, dim=dim)
        rows = [i for i, key in enumerate(ids) if key in found]
        if len(rows) < len(ids):
            notes.append(f"{len(ids) - len(rows)} sampled uncovered queries have no embedding in {folder}")
        if rows:
            return rows, np.stack([found[ids[i]] for i in rows]), f"sidecar {folder}", notes
    texts = [(i, entry[1]) for i, entry in enumerate(tally.sample) if entry[1] is not None]
    if texts:
        from cascal.embedding import load_embedder

        embedder = load_embedder(router.embedding_model)
        X = np.asarray(embedder.encode([t for _, t in texts]), dtype=np.float32)
        notes.append(f"the uncovered queries' logged text was embedded again with {router.embedding_model}")
        return [i for i, _ in texts], X, f"text embedded with {router.embedding_model}", notes
    notes.append(
        "no embedding of the uncovered queries (serve with --log-embeddings, or --log-text): clusters not computed"
    )
    return [], None, None, notes


def _cosine_to(rows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(n, m)`` cosine distances of unit ``rows`` to ``targets`` (any length)."""
    return np.clip(1.0 - rows @ unit_rows(np.asarray(targets, dtype=np.float64)).T, 0.0, 2.0)


def _clusters(tally: _Tally, router: Any, rows: list[int], X: np.ndarray, cut: float) -> tuple[list[Cluster], int]:
    """The reported clusters (largest first) and how many fell below the size floor."""
    s = tally.settings
    U = unit_rows(np.asarray(X, dtype=np.float64))
    labels = np.zeros(U.shape[0], dtype=np.int64)
    if U.shape[0] >= 2:
        Z = kernels.linkage(U, method="average", metric="cosine")
        labels = np.asarray(kernels.fcluster(Z, cut, criterion="distance"), dtype=np.int64) - 1
    scale = tally.uncovered / len(rows) if rows else 0.0  # sampled queries with an embedding
    reps, cents = router.tables_.subject_reps, router.tables_.centroids
    found, below = [], 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        size = int(round(members.size * scale))
        if size < s.min_size:
            below += 1
            continue
        centre = unit_rows(U[members].mean(axis=0, keepdims=True))
        to_subjects = _cosine_to(centre, reps)[0]
        nearest = int(np.argmin(to_subjects))
        entries = [tally.sample[rows[m]] for m in members]
        closeness = U[members] @ centre[0]
        order = np.argsort(-closeness, kind="stable")
        examples = [entries[i][1] for i in order if entries[i][1] is not None][: s.examples]
        found.append(
            Cluster(
                name="",
                size=size,
                sampled=int(members.size),
                share=size / tally.routed if tally.routed else 0.0,
                nearest_subject=router.subject_names_[nearest],
                subject_distance=round(float(to_subjects[nearest]), 6),
                niche_distance=round(float(_cosine_to(centre, cents)[0].min()), 6),
                mean_fallback_weight=round(float(np.mean([e[2] for e in entries])), 6),
                routed_subjects=dict(Counter(str(e[3]) for e in entries).most_common()),
                examples=[str(t) for t in examples],
                ids=[entries[i][0] for i in order],
                centroid=centre[0],
            )
        )
    found.sort(key=lambda c: (-c.size, c.subject_distance))
    width = max(2, len(str(len(found))))
    for k, c in enumerate(found, start=1):
        c.name = f"uncovered_{k:0{width}d}"
        c.description = draft_description(c)
    return found, below


def draft_description(cluster: Cluster) -> str:
    """The task description of a cluster before a generator writes one: its examples quoted, or a
    placeholder to replace when no text was logged."""
    if cluster.examples:
        quoted = "; ".join(" ".join(t.split())[:200] for t in cluster.examples[:3])
        return f"Questions like these, which the router's current subjects do not cover: {quoted}"
    return (
        f"Uncovered traffic near the subject {cluster.nearest_subject!r} (cosine distance "
        f"{cluster.subject_distance:.2f}); no query text was logged: replace this with a description "
        "of these questions before generating."
    )


def analyse_coverage(
    log: PathLike,
    router: PathLike,
    *,
    embeddings: Optional[PathLike] = None,
    settings: CoverageSettings = CoverageSettings(),
    progress: bool = False,
) -> CoverageReport:
    """Measure how the router ``router`` covers the traffic of the decision log ``log``.

    Args:
        log: a decision log written by ``cascal serve --log-decisions``.
        router: the router file the gateway served (its SHA-256 must match the lines that record one).
        embeddings: the embedding sidecar folder (default ``<log>.embeddings`` when it exists).
        settings: thresholds, sample size and cut (:class:`CoverageSettings`).
        progress: show a progress bar while reading the log.

    Raises:
        DataError: the log is empty, damaged from its first line, written by another router, or a
            sidecar part is unreadable.

    Warns:
        DecisionLogWarning: the log was read up to a damaged line, or some lines do not record
            their router.
    """
    from cascal.pipeline.route import load_router

    log, router_path = Path(log), Path(router)
    fitted = load_router(router_path)
    digest = file_sha256(router_path)
    reader = DecisionLogReader(log, digest, router_name=str(router_path), progress=progress)
    tally = _Tally(settings)
    for number, record in enumerate(reader, start=1):
        tally.add(record, number)
    if reader.lines == 0:
        raise DataError(f"{log}: no decision line to analyse")
    reader.warn()
    fd = float(fitted.fallback_distance_)
    cut = float(settings.cut) if settings.cut != AUTO_CUT else min(2.0, max(1e-6, 1.0 - (1.0 - fd) ** 2))
    notes: list[str] = []
    if tally.routed == 0:
        notes.append("no line of the log carries the routing fields (logged by an older gateway, or no routed request)")
    clusters: list[Cluster] = []
    below = 0
    source: Optional[str] = None
    rows: list[int] = []
    if tally.sample:
        rows, X, source, found_notes = _embeddings(tally, fitted, log, embeddings)
        notes += found_notes
        if X is not None:
            clusters, below = _clusters(tally, fitted, rows, X, cut)
    return CoverageReport(
        log=str(log),
        router=str(router_path),
        router_sha256=digest,
        settings=settings,
        cut=cut,
        lines=reader.lines,
        routed=tally.routed,
        unverified=reader.unverified,
        damage=None if reader.damage is None else reader.damage.to_dict(),
        uncovered=tally.uncovered,
        mostly_fallback=tally.mostly,
        subjects=_subject_rows(fitted, tally),
        clusters=clusters,
        clusters_below_floor=below,
        sampled=len(tally.sample),
        embedding_source=source,
        missing_embeddings=len(tally.sample) - len(rows),
        notes=notes,
    )
