"""The simulated world: hidden true answers, a pool of niche specialists and generators of set strength.

Everything here is a pure function of the world seed and its arguments (see :mod:`.hashing`).

Pool models (``sim-model-1`` … ``sim-model-N``): each niche of the catalogue has one *specialist*
(right with probability ``specialist_skill``) and one *runner-up* (``runner_up_skill``); every other
model is right with a probability drawn in ``weak_skill_range``. A wrong model picks the question's
*common distractor* with its ``distractor_affinity``, else a uniformly random wrong option. The last
``n_family`` models belong to the weak generator's family: like it, they fall for the common
distractor almost always (as a small generator shares the mistakes of its small siblings). The mean
token logprob of a reply is higher when the model is right, so consensus weighting has signal.

Generators (``sim-generator-strong`` / ``-medium`` / ``-weak`` / ``-oracle``) write a key that is right
with probability ``key_accuracy``; a wrong key is the common distractor with the generator's
``distractor_affinity``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cascal.errors import InvalidParameterError, UnknownModelError
from cascal.simulate.catalogue import SUBJECTS
from cascal.simulate.hashing import stable_int, stable_rng, stable_unit

MODEL_PREFIX = "sim-model-"
GENERATOR_PREFIX = "sim-generator-"


@dataclass(frozen=True)
class GeneratorProfile:
    """A simulated question writer: how often its answer key is right, and how it errs."""

    name: str
    key_accuracy: float
    distractor_affinity: float

    def __post_init__(self) -> None:
        if not self.name.startswith(GENERATOR_PREFIX):
            raise InvalidParameterError(
                f"name: a simulated generator's name starts with {GENERATOR_PREFIX!r}, got {self.name!r}"
            )
        for field_name in ("key_accuracy", "distractor_affinity"):
            value = getattr(self, field_name)
            if not 0.0 <= value <= 1.0:
                raise InvalidParameterError(f"{field_name}: must be a probability in [0, 1], got {value}")


DEFAULT_GENERATORS: tuple[GeneratorProfile, ...] = (
    GeneratorProfile(GENERATOR_PREFIX + "strong", 0.90, 0.5),
    GeneratorProfile(GENERATOR_PREFIX + "medium", 0.70, 0.7),
    GeneratorProfile(GENERATOR_PREFIX + "weak", 0.45, 0.9),
    GeneratorProfile(GENERATOR_PREFIX + "oracle", 1.00, 0.0),
)


@dataclass(frozen=True)
class ModelAnswer:
    """What a simulated pool model does with one question."""

    choice: int  # option index, or -1 when the model gives no extractable answer
    correct: bool
    mean_logprob: float


@dataclass
class SimWorld:
    """Parameters of the simulated world. Equal parameters give identical behaviour.

    Args:
        seed: the world seed; changes which model specialises where and every random draw.
        n_models: pool size (``sim-model-1`` … ``sim-model-<n_models>``).
        specialist_skill: accuracy of a niche's specialist.
        runner_up_skill: accuracy of a niche's second-best model.
        weak_skill_range: accuracy range of the other models on that niche.
        n_family: how many pool models share the weak generator's mistakes.
        family_affinity / other_affinity: chance that a wrong answer is the common distractor.
        unparsable_rate: chance that a reply contains no answer letter.
        generators: the generator profiles served.
    """

    seed: int = 0
    n_models: int = 6
    specialist_skill: float = 0.9
    runner_up_skill: float = 0.65
    weak_skill_range: tuple[float, float] = (0.25, 0.5)
    n_family: int = 2
    family_affinity: float = 0.7
    other_affinity: float = 0.3
    unparsable_rate: float = 0.01
    generators: tuple[GeneratorProfile, ...] = DEFAULT_GENERATORS
    skills: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.n_models < 3:
            raise InvalidParameterError(f"n_models: the simulated pool needs at least 3 models, got {self.n_models}")
        for name in ("specialist_skill", "runner_up_skill", "family_affinity", "other_affinity", "unparsable_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidParameterError(f"{name}: must be a probability in [0, 1], got {value}")
        lo, hi = self.weak_skill_range
        if not 0.0 <= lo <= hi <= 1.0:
            raise InvalidParameterError(
                f"weak_skill_range: expected 0 <= low <= high <= 1, got {self.weak_skill_range}"
            )
        if not 0 <= self.n_family < self.n_models:
            raise InvalidParameterError(f"n_family: must be in [0, n_models), got {self.n_family}")
        self.skills = self._draw_skills()

    # ------------------------------------------------------------------ the pool
    @property
    def model_names(self) -> list[str]:
        """Names of the simulated pool models."""
        return [f"{MODEL_PREFIX}{i + 1}" for i in range(self.n_models)]

    @property
    def generator_names(self) -> list[str]:
        """Names of the simulated generators."""
        return [g.name for g in self.generators]

    def _draw_skills(self) -> np.ndarray:
        """``(n_models, n_subjects, n_niches)`` probability of a right answer."""
        n_subjects = len(SUBJECTS)
        n_niches = max(len(s.niches) for s in SUBJECTS)
        rng = stable_rng("skills", self.seed, self.n_models)
        lo, hi = self.weak_skill_range
        skills = rng.uniform(lo, hi, size=(self.n_models, n_subjects, n_niches))
        order = rng.permutation(self.n_models)
        for flat in range(n_subjects * n_niches):
            s, k = divmod(flat, n_niches)
            specialist = order[flat % self.n_models]
            runner_up = order[(flat + 1 + flat // self.n_models) % self.n_models]
            if runner_up == specialist:
                runner_up = order[(flat + 1) % self.n_models]
            skills[specialist, s, k] = self.specialist_skill
            skills[runner_up, s, k] = self.runner_up_skill
        return skills

    def model_index(self, model: str) -> int:
        """Column of a pool model; :class:`~cascal.errors.UnknownModelError` for a name outside the pool."""
        names = self.model_names
        if model not in names:
            raise UnknownModelError(f"model: {model!r} is not a simulated pool model; known: {names}")
        return names.index(model)

    def skill(self, model: str, niche: Optional[tuple[int, int]]) -> float:
        """Probability that ``model`` answers a question of ``niche`` right (its mean skill when the
        niche is unknown)."""
        m = self.model_index(model)
        if niche is None:
            return float(self.skills[m].mean())
        return float(self.skills[m, niche[0], niche[1]])

    def distractor_affinity(self, model: str) -> float:
        """Chance that a wrong answer of ``model`` is the question's common distractor."""
        in_family = self.model_index(model) >= self.n_models - self.n_family
        return self.family_affinity if in_family else self.other_affinity

    # ------------------------------------------------------------------ questions
    def truth(self, case: str, n_options: int) -> int:
        """The hidden right option of question ``case`` (derivable from the question text alone)."""
        return stable_int("truth", self.seed, case) % _check_options(n_options)

    def distractor(self, case: str, n_options: int) -> int:
        """The wrong option that weak solvers fall for on question ``case``."""
        n = _check_options(n_options)
        right = self.truth(case, n)
        return (right + 1 + stable_int("distractor", self.seed, case) % (n - 1)) % n

    def _wrong_choice(self, who: str, case: str, n_options: int, affinity: float) -> int:
        n_options = _check_options(n_options)
        right = self.truth(case, n_options)
        common = self.distractor(case, n_options)
        if stable_unit("affinity", self.seed, who, case) < affinity:
            return common
        offset = 1 + stable_int("wrong", self.seed, who, case) % (n_options - 1)
        return (right + offset) % n_options

    def answer(self, model: str, case: str, n_options: int, niche: Optional[tuple[int, int]]) -> ModelAnswer:
        """What pool ``model`` answers on question ``case`` of ``niche`` with ``n_options`` options."""
        right = self.truth(case, n_options)
        correct = stable_unit("correct", self.seed, model, case) < self.skill(model, niche)
        choice = right if correct else self._wrong_choice(model, case, n_options, self.distractor_affinity(model))
        if stable_unit("unparsable", self.seed, model, case) < self.unparsable_rate:
            choice = -1
        return ModelAnswer(
            choice=choice, correct=correct and choice >= 0, mean_logprob=self._mean_logprob(model, case, correct)
        )

    def _mean_logprob(self, model: str, case: str, correct: bool) -> float:
        m = self.model_index(model)
        base = -0.15 - 0.35 * stable_unit("calibration", self.seed, m)  # each model has its own scale
        noise = stable_rng("logprob", self.seed, model, case).normal(0.0, 0.12)
        return float(min(base + (0.0 if correct else -0.4) + noise, -1e-3))

    def generator(self, name: str) -> GeneratorProfile:
        """The profile of generator ``name``; :class:`~cascal.errors.UnknownModelError` for an unknown one."""
        for g in self.generators:
            if g.name == name:
                return g
        raise UnknownModelError(f"generator: {name!r} is not a simulated generator; known: {self.generator_names}")

    def generator_key(self, generator: str, case: str, n_options: int) -> int:
        """The answer key ``generator`` writes for question ``case``."""
        profile = self.generator(generator)
        if stable_unit("key", self.seed, generator, case) < profile.key_accuracy:
            return self.truth(case, n_options)
        return self._wrong_choice(generator, case, n_options, profile.distractor_affinity)


def _check_options(n_options: int) -> int:
    """``n_options`` as a Python int, checked to lie in 2..20."""
    if isinstance(n_options, bool) or not isinstance(n_options, (int, np.integer)) or not 2 <= n_options <= 20:
        raise InvalidParameterError(f"n_options: a question needs an integer 2..20 options, got {n_options!r}")
    return int(n_options)
