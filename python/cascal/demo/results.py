"""The demo's configuration and its measured results (shared by the runner and the report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

from cascal.errors import InvalidParameterError, NotFoundError

GENERATORS = ("weak", "strong")


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo run.

    Attributes:
        n_subjects: subjects of the simulated catalogue used (each has 3 niches).
        n_train: generated training questions per subject and generator.
        n_test: held-out test questions per subject.
        generators: generator strengths, in order (``weak``, ``strong``, ``medium``).
        seed: world seed (which model specialises where; every simulated draw).
        knn_k: neighbours of the kNN-correctness baseline.
        concurrency: requests in flight per pool model.
    """

    n_subjects: int = 4
    n_train: int = 90
    n_test: int = 40
    generators: tuple[str, ...] = GENERATORS
    seed: int = 0
    knn_k: int = 10
    concurrency: int = 8

    @classmethod
    def for_mode(cls, quick: bool, seed: int = 0, generators: Sequence[str] = GENERATORS) -> "DemoConfig":
        """The default configuration or the ``quick`` one (2 subjects, 40% of the requests)."""
        if quick:
            return cls(n_subjects=2, n_train=70, n_test=30, generators=tuple(generators), seed=seed)
        return cls(generators=tuple(generators), seed=seed)

    def __post_init__(self) -> None:
        from cascal.simulate import SUBJECTS

        if not 1 <= self.n_subjects <= len(SUBJECTS):
            raise InvalidParameterError(f"n_subjects: must be in 1..{len(SUBJECTS)}, got {self.n_subjects}")
        for name in ("n_train", "n_test", "knn_k", "concurrency"):
            if getattr(self, name) < 1:
                raise InvalidParameterError(f"{name}: must be >= 1, got {getattr(self, name)}")
        known = {"weak", "medium", "strong"}
        if not self.generators or set(self.generators) - known:
            raise InvalidParameterError(
                f"generators: expected a non-empty subset of {sorted(known)}, got {list(self.generators)}"
            )


@dataclass
class RouterScore:
    """Accuracy of one router trained on one generator's data, on the simulated test set."""

    router: str
    kind: str  # "query-only", "query-answer", "label-free" or "reference"
    generator: str  # "weak"/"strong"/... or "-" for references
    data: str  # "raw", "filtered" or "-"
    top1: float
    top3: float


@dataclass
class DemoResult:
    """Everything the demo measured (also saved as ``results.json``)."""

    config: DemoConfig
    scores: list[RouterScore]
    generation: dict[str, dict] = field(default_factory=dict)  # generator -> key accuracy, sizes, filter stats
    test: dict = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)

    def score(self, router: str, generator: str = "-", data: str = "raw") -> RouterScore:
        """The row of ``router`` for ``generator``/``data`` (references: generator ``"-"``)."""
        data = "-" if generator == "-" else data
        for s in self.scores:
            if s.router == router and s.generator == generator and s.data == data:
                return s
        raise NotFoundError(f"no score for router {router!r}, generator {generator!r}, data {data!r}")

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config),
            "scores": [asdict(s) for s in self.scores],
            "generation": self.generation,
            "test": self.test,
            "timings": self.timings,
            "examples": self.examples,
        }
