"""Configuration files of the LLM side: ``tasks.yaml`` (what to generate) and ``pool.yaml`` (who answers).

Both files are strict: a missing required field, a value of the wrong type or an unknown field raises
:class:`ConfigError` whose message names the file and the field, e.g.
``pool.yaml: models[2].base_url: required``. Typos never pass silently.

``pool.yaml``::

    retry:                  # optional, see RetryPolicy
      max_attempts: 6
    defaults:               # optional, any model field except name
      base_url: http://127.0.0.1:8000/v1
      temperature: 0.0
    models:
      - name: llama-8b                        # column name in predictions.csv
        model: meta-llama/Llama-3.1-8B-Instruct
        api_key_env: MY_KEY                   # optional; no key -> "EMPTY" (local servers)
        max_concurrency: 8

``tasks.yaml``::

    questions_per_subject: 50
    generator: {name: gen, base_url: ..., model: ...}   # optional, same fields as a pool model
    subjects:
      organic_chemistry: "Graduate-level organic chemistry: reaction mechanisms, ..."
      law:
        description: "US constitutional law ..."
        questions: 20                                   # overrides questions_per_subject
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import yaml

from cascal.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]

#: Key sent when a model has no ``api_key_env``: local servers (vLLM, llama.cpp, Ollama) ignore it.
EMPTY_API_KEY = "EMPTY"


# ----------------------------------------------------------------------------- retry policy
@dataclass(frozen=True)
class RetryPolicy:
    """How a client retries failed requests (exponential backoff with jitter).

    Attempt ``i`` (0-based) that fails is followed by a wait of
    ``min(max_delay, base_delay * 2**i) * (1 + jitter * U(-1, 1))``; a 429 reply carrying
    ``Retry-After`` waits that long instead, capped at ``max_retry_after``.

    Attributes:
        max_attempts: requests per prompt before giving up (>= 1).
        base_delay: first backoff in seconds.
        max_delay: cap of the exponential backoff in seconds.
        jitter: relative jitter in [0, 1].
        max_retry_after: cap in seconds on a server's ``Retry-After``.
        reask_unparsable: extra requests when a reply has no extractable answer letter.
    """

    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.25
    max_retry_after: float = 60.0
    reask_unparsable: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) or self.max_attempts < 1:
            raise ConfigError(f"max_attempts: must be an integer >= 1, got {self.max_attempts!r}")
        if not isinstance(self.reask_unparsable, int) or isinstance(self.reask_unparsable, bool) or self.reask_unparsable < 0:
            raise ConfigError(f"reask_unparsable: must be an integer >= 0, got {self.reask_unparsable!r}")
        for name in ("base_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or not math.isfinite(value):
                raise ConfigError(f"{name}: must be a finite number >= 0, got {value!r}")
        if not _is_number(self.jitter) or not 0 <= self.jitter <= 1:
            raise ConfigError(f"jitter: must be a number in [0, 1], got {self.jitter!r}")

    def backoff(self, attempt: int, u: float) -> float:
        """Wait after failed attempt ``attempt`` (0-based); ``u`` is a uniform draw in [-1, 1]."""
        delay = min(self.max_delay, self.base_delay * (2.0 ** attempt))
        return max(0.0, delay * (1.0 + self.jitter * u))

    def retry_after(self, seconds: float) -> float:
        """A server's ``Retry-After`` clamped to ``[0, max_retry_after]``."""
        return min(max(0.0, seconds), self.max_retry_after)


# ----------------------------------------------------------------------------- one endpoint
@dataclass(frozen=True)
class ModelConfig:
    """One model behind an OpenAI-compatible endpoint, with its sampling parameters.

    Attributes:
        name: the pool member's name (column in predictions.csv); unique within a pool.
        base_url: endpoint root, e.g. ``http://127.0.0.1:8000/v1``.
        model: model id sent in the request (``model`` field of the chat completion).
        api_key_env: environment variable holding the API key; ``None`` sends ``"EMPTY"``.
        max_concurrency: requests in flight at once for this model.
        timeout: seconds before a request is abandoned (and retried).
        stream: request streamed responses (server-sent events).
        temperature, top_p, max_tokens, seed: sampling parameters (``None`` = server default).
        logprobs: ask for token log-probabilities (the mean is the confidence signal).
    """

    name: str
    base_url: str
    model: str
    api_key_env: Optional[str] = None
    max_concurrency: int = 8
    timeout: float = 120.0
    stream: bool = False
    temperature: Optional[float] = 0.0
    top_p: Optional[float] = None
    max_tokens: Optional[int] = 2048
    seed: Optional[int] = None
    logprobs: bool = True

    def __post_init__(self) -> None:
        for name in ("name", "base_url", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name}: must be a non-empty string, got {value!r}")
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url: must start with http:// or https://, got {self.base_url!r}")
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str) or not self.api_key_env):
            raise ConfigError(f"api_key_env: must be an environment variable name, got {self.api_key_env!r}")
        if not _is_int(self.max_concurrency) or self.max_concurrency < 1:
            raise ConfigError(f"max_concurrency: must be an integer >= 1, got {self.max_concurrency!r}")
        if not _is_number(self.timeout) or not self.timeout > 0 or not math.isfinite(self.timeout):
            raise ConfigError(f"timeout: must be a positive number of seconds, got {self.timeout!r}")
        for name in ("stream", "logprobs"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        if self.temperature is not None and (not _is_number(self.temperature) or not 0 <= self.temperature <= 2):
            raise ConfigError(f"temperature: must be a number in [0, 2], got {self.temperature!r}")
        if self.top_p is not None and (not _is_number(self.top_p) or not 0 < self.top_p <= 1):
            raise ConfigError(f"top_p: must be a number in (0, 1], got {self.top_p!r}")
        if self.max_tokens is not None and (not _is_int(self.max_tokens) or self.max_tokens < 1):
            raise ConfigError(f"max_tokens: must be an integer >= 1, got {self.max_tokens!r}")
        if self.seed is not None and not _is_int(self.seed):
            raise ConfigError(f"seed: must be an integer, got {self.seed!r}")

    def api_key(self) -> str:
        """The key to send: the value of ``api_key_env``, or ``"EMPTY"`` when no variable is configured.

        Raises:
            ConfigError: ``api_key_env`` is set but the variable is missing or empty.
        """
        if self.api_key_env is None:
            return EMPTY_API_KEY
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"model {self.name!r}: api_key_env: environment variable {self.api_key_env} is not set"
            )
        return key

    def sampling_params(self) -> dict[str, Any]:
        """The request parameters that shape the reply (sent to the server and part of the cache key)."""
        params: dict[str, Any] = {}
        for name in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(self, name)
            if value is not None:
                params[name] = value
        if self.logprobs:
            params["logprobs"] = True
        return params


# ----------------------------------------------------------------------------- the pool
@dataclass(frozen=True)
class PoolConfig:
    """The pool of models that answer questions, plus the retry policy of their clients."""

    models: tuple[ModelConfig, ...]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    source: Optional[str] = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"{self.source or 'pool'}: models: duplicate name(s) {dupes}")

    @property
    def names(self) -> list[str]:
        """Model names in pool order."""
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelConfig:
        """The model called ``name``; :class:`ConfigError` if the pool has none."""
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"{self.source or 'pool'}: no model named {name!r}; known: {self.names}")

    def select(self, names: Sequence[str]) -> "PoolConfig":
        """A pool with only the named models, in the given order."""
        return PoolConfig(tuple(self.get(n) for n in names), retry=self.retry, source=self.source)

    def with_concurrency(self, max_concurrency: int) -> "PoolConfig":
        """A pool whose models all allow ``max_concurrency`` requests in flight."""
        models = tuple(replace(m, max_concurrency=max_concurrency) for m in self.models)
        return PoolConfig(models, retry=self.retry, source=self.source)

    def with_retry(self, retry: RetryPolicy) -> "PoolConfig":
        """The same pool with another retry policy."""
        return PoolConfig(self.models, retry=retry, source=self.source)


# ----------------------------------------------------------------------------- the tasks
@dataclass(frozen=True)
class TasksConfig:
    """What to generate: one description per subject and how many questions each.

    Attributes:
        subjects: subject name -> one-paragraph description, in file order.
        questions: subject name -> number of questions to generate.
        generator: default generator endpoint, or ``None`` (then the caller must name one).
        source: the file the config came from.
    """

    subjects: dict[str, str]
    questions: dict[str, int]
    generator: Optional[ModelConfig] = None
    source: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.subjects:
            raise ConfigError(f"{self.source or 'tasks'}: subjects: at least one subject is required")
        if set(self.subjects) != set(self.questions):
            raise ConfigError(f"{self.source or 'tasks'}: questions: must give a count for every subject")

    @property
    def names(self) -> list[str]:
        """Subject names in file order."""
        return list(self.subjects)

    def n_questions(self, subject: str) -> int:
        """Questions to generate for ``subject``."""
        if subject not in self.questions:
            raise ConfigError(f"{self.source or 'tasks'}: no subject named {subject!r}; known: {self.names}")
        return self.questions[subject]


# ----------------------------------------------------------------------------- parsing
_MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
_RETRY_FIELDS = {f.name for f in fields(RetryPolicy)}


def load_pool(path: PathLike) -> PoolConfig:
    """Read and validate a ``pool.yaml``; errors name the file and the field."""
    source = Path(path).name
    return parse_pool(_read_yaml(path), source=source)


def load_tasks(path: PathLike) -> TasksConfig:
    """Read and validate a ``tasks.yaml``; errors name the file and the field."""
    source = Path(path).name
    return parse_tasks(_read_yaml(path), source=source)


def parse_pool(data: Any, source: str = "pool.yaml") -> PoolConfig:
    """Validate an already-parsed pool mapping (see the module docstring for the layout)."""
    top = _mapping(data, source, "")
    _no_unknown(top, {"models", "defaults", "retry"}, source, "")
    defaults = _mapping(top.get("defaults", {}), source, "defaults")
    if "name" in defaults:
        raise ConfigError(f"{source}: defaults.name: a name cannot be a default (names must be unique)")
    _no_unknown(defaults, _MODEL_FIELDS - {"name"}, source, "defaults")
    retry = parse_retry(top.get("retry", {}), source, "retry")
    if "models" not in top:
        raise ConfigError(f"{source}: models: required")
    raw_models = top["models"]
    if not isinstance(raw_models, list) or not raw_models:
        raise ConfigError(f"{source}: models: must be a non-empty list of model entries")
    models = tuple(
        parse_model({**defaults, **_mapping(entry, source, f"models[{i}]")}, source, f"models[{i}]")
        for i, entry in enumerate(raw_models)
    )
    names = [m.name for m in models]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(f"{source}: models[{i}].name: duplicate name {name!r}")
    return PoolConfig(models, retry=retry, source=source)


def parse_model(data: Any, source: str, where: str) -> ModelConfig:
    """Validate one model entry found at ``where`` in ``source``."""
    entry = _mapping(data, source, where)
    _no_unknown(entry, _MODEL_FIELDS, source, where)
    for required in ("name", "base_url", "model"):
        if entry.get(required) is None:
            raise ConfigError(f"{source}: {where}.{required}: required")
    return _build(ModelConfig, entry, source, where)


def parse_retry(data: Any, source: str, where: str) -> RetryPolicy:
    """Validate a retry section found at ``where`` in ``source``."""
    entry = _mapping(data, source, where)
    _no_unknown(entry, _RETRY_FIELDS, source, where)
    return _build(RetryPolicy, entry, source, where)


def parse_tasks(data: Any, source: str = "tasks.yaml") -> TasksConfig:
    """Validate an already-parsed tasks mapping (see the module docstring for the layout)."""
    top = _mapping(data, source, "")
    _no_unknown(top, {"subjects", "questions_per_subject", "generator"}, source, "")
    default_n = top.get("questions_per_subject", 50)
    if not _is_int(default_n) or default_n < 1:
        raise ConfigError(f"{source}: questions_per_subject: must be an integer >= 1, got {default_n!r}")
    generator = None
    if top.get("generator") is not None:
        generator = parse_model(top["generator"], source, "generator")
    if "subjects" not in top:
        raise ConfigError(f"{source}: subjects: required")
    raw = _mapping(top["subjects"], source, "subjects")
    if not raw:
        raise ConfigError(f"{source}: subjects: at least one subject is required")
    subjects: dict[str, str] = {}
    questions: dict[str, int] = {}
    for name, spec in raw.items():
        where = f"subjects.{name}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: subjects: subject names must be non-empty strings, got {name!r}")
        n = default_n
        if isinstance(spec, Mapping):
            _no_unknown(spec, {"description", "questions"}, source, where)
            if "description" not in spec:
                raise ConfigError(f"{source}: {where}.description: required")
            description = spec["description"]
            n = spec.get("questions", default_n)
            if not _is_int(n) or n < 1:
                raise ConfigError(f"{source}: {where}.questions: must be an integer >= 1, got {n!r}")
            where = f"{where}.description"
        else:
            description = spec
        if not isinstance(description, str) or not description.strip():
            raise ConfigError(f"{source}: {where}: must be a non-empty description string, got {description!r}")
        subjects[name] = " ".join(description.split())
        questions[name] = int(n)
    return TasksConfig(subjects, questions, generator=generator, source=source)


# ----------------------------------------------------------------------------- helpers
def _read_yaml(path: PathLike) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p.name}: not valid YAML: {exc}") from exc


def _mapping(data: Any, source: str, where: str) -> dict:
    if data is None and where:
        return {}
    if not isinstance(data, Mapping):
        label = f"{where}: " if where else ""
        raise ConfigError(f"{source}: {label}expected a mapping, got {type(data).__name__}")
    return dict(data)


def _no_unknown(entry: Mapping, allowed: Iterable[str], source: str, where: str) -> None:
    unknown = sorted(str(k) for k in entry if k not in set(allowed))
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"{source}: {prefix}{unknown[0]}: unknown field (allowed: {', '.join(sorted(allowed))})"
        )


def _build(cls: Any, entry: dict, source: str, where: str) -> Any:
    try:
        return cls(**entry)
    except ConfigError as exc:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{source}: {prefix}{exc}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = [
    "ConfigError",
    "EMPTY_API_KEY",
    "ModelConfig",
    "PoolConfig",
    "RetryPolicy",
    "TasksConfig",
    "load_pool",
    "load_tasks",
    "parse_model",
    "parse_pool",
    "parse_retry",
    "parse_tasks",
]
