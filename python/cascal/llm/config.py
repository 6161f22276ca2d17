"""Configuration files of the LLM side: ``tasks.yaml`` (what to generate) and ``pool.yaml`` (who answers).

Both files are strict: a missing required field, a value of the wrong type (nothing is coerced:
``"8"`` is not an integer, ``true`` is not a number) or an unknown field raises
:class:`~cascal.errors.ConfigError` whose message names the file and the field, e.g.
``pool.yaml: models[2].base_url: required``. Typos never pass silently. An empty section
(``retry:`` alone) is an empty mapping. Every number has bounds far beyond sensible values
(docs/algorithm.md#config-file-limits), so a 400-digit integer is refused, never overflowed later.
The files are UTF-8 YAML of at most 1 MiB without anchors and aliases (``&name`` / ``*name`` are
refused with the line: ``defaults:`` shares fields between models; :mod:`cascal.yaml_files`). The
schemas are frozen pydantic models; building one directly (``ModelConfig(name=..., ...)``) checks the
same rules.

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
      - name: base-8b                         # a base model on a few-shot prompt:
        model: meta-llama/Meta-Llama-3-8B
        stop: ["\\nQuestion:"]                 # end the reply where it starts the next question

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

import os
import unicodedata
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional, Sequence, TypeVar, Union, cast

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from cascal.errors import ArgumentTypeError, ConfigError
from cascal.validation import MAX_PRICE_PER_MTOK, Interval, short_repr
from cascal.yaml_files import read_yaml

if TYPE_CHECKING:
    from pydantic._internal._model_construction import ModelMetaclass
else:
    ModelMetaclass = type(BaseModel)


PathLike = Union[str, "os.PathLike[str]"]

#: Key sent when a model has no ``api_key_env``: local servers (vLLM, llama.cpp, Ollama) ignore it.
EMPTY_API_KEY = "EMPTY"


# ----------------------------------------------------------------------------- value bounds
# Every number of pool.yaml and tasks.yaml has an upper bound (docs/algorithm.md#config-file-limits):
# far beyond any sensible value, and low enough that no arithmetic on it overflows (a 400-digit
# integer is refused here, never met later by float() or a timer).
#: Seconds: timeouts, deadlines, backoff delays (a million is 11.6 days).
MAX_SECONDS = 1e6
#: ``max_attempts`` and ``reask_unparsable``.
MAX_ATTEMPTS = 1000
#: ``max_concurrency``: requests in flight to one model.
MAX_CONCURRENCY = 100_000
#: ``max_tokens`` (the token-count bound of the answer cache, ``cascal.llm.cache.MAX_TOKEN_COUNT``).
MAX_TOKENS = 10**9
#: ``seed``: a signed 64-bit integer, what OpenAI-compatible servers take.
SEED_RANGE = (-(2**63), 2**63 - 1)
#: ``questions_per_subject`` and a subject's ``questions``.
MAX_QUESTIONS = 1_000_000


# ----------------------------------------------------------------------------- field rules
def _problem(message: str, *path: Union[str, int]) -> PydanticCustomError:
    """A validation problem; ``path`` locates it below the place pydantic reports it."""
    return PydanticCustomError("cascal_config", "{message}", {"message": message, "path": path})


def _rule(
    test: Union[Interval, Callable[[Any], bool]],
    requirement: Optional[str] = None,
    *,
    at_least: Optional[float] = None,
    at_most: Optional[float] = None,
) -> PlainValidator:
    """Keep a value unchanged when it passes ``test``, else "must <requirement>, got <value>"
    (an :class:`Interval` describes itself: "must be an integer >= 1"); a number that passes but
    lies beyond ``at_least`` / ``at_most`` gets "must be at most <bound>, got <value>"."""
    ok = test.is_satisfied_by if isinstance(test, Interval) else test

    def check(value: Any) -> Any:
        if not ok(value):
            raise _problem(f"must {requirement or f'be {test}'}, got {short_repr(value)}")
        # the comparisons are exact for integers of any size (no float conversion)
        if at_most is not None and value > at_most:
            raise _problem(f"must be at most {_bound(at_most)}, got {short_repr(value)}")
        if at_least is not None and value < at_least:
            raise _problem(f"must be at least {_bound(at_least)}, got {short_repr(value)}")
        return value

    return PlainValidator(check)


def _bound(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:.15g}"


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


_Text = Annotated[str, _rule(_text, "be a non-empty string")]
#: Unicode categories a name may not contain: control and format characters, surrogates, private
#: use, line and paragraph separators (a name goes into HTTP headers, logs and CSV columns)
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def _name(value: Any) -> bool:
    return _text(value) and not any(unicodedata.category(c) in _UNPRINTABLE for c in value)


_Name = Annotated[str, _rule(_name, "be a non-empty string without control characters (CR, LF, tab, ...)")]
_Url = Annotated[
    str, _rule(lambda v: isinstance(v, str) and v.startswith(("http://", "https://")), "start with http:// or https://")
]
_EnvName = Annotated[str, _rule(lambda v: isinstance(v, str) and bool(v), "be an environment variable name")]
_Flag = Annotated[bool, _rule(lambda v: isinstance(v, bool), "be true or false")]
_Questions = Annotated[int, _rule(Interval(Integral, 1, None, closed="left"), at_most=MAX_QUESTIONS)]
_Seconds = Annotated[float, _rule(Interval(Real, 0, None, closed="left"), at_most=MAX_SECONDS)]
_PositiveSeconds = Annotated[
    float, _rule(Interval(Real, 0, None, closed="neither"), "be a positive number of seconds", at_most=MAX_SECONDS)
]
_Price = Annotated[float, _rule(Interval(Real, 0, None, closed="left"), at_most=MAX_PRICE_PER_MTOK)]
_Description = Annotated[str, _rule(_text, "be a non-empty description string")]
_SubjectName = Annotated[str, _rule(_text, "be a non-empty subject name")]
_EMPTY_IF_NULL = BeforeValidator(lambda value: {} if value is None else value)
#: Most stop sequences an OpenAI-compatible chat completion accepts.
MAX_STOP = 4


def _stop_list(value: Any) -> "tuple[str, ...]":
    """A list of 1..MAX_STOP non-empty strings, kept as a tuple (a string alone is refused: a list is
    what the YAML should say, and one character string is easily a mistake)."""
    if (
        not isinstance(value, (list, tuple))
        or not 1 <= len(value) <= MAX_STOP
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise _problem(f"must be a list of 1 to {MAX_STOP} non-empty strings, got {short_repr(value)}")
    return tuple(value)


_Stop = Annotated["tuple[str, ...]", PlainValidator(_stop_list)]


class _SchemaMeta(ModelMetaclass):
    """Direct construction (pydantic builds nested schemas without calling the class): positional
    arguments follow the field order, and a refused value raises :class:`ConfigError`."""

    def __call__(cls, *args: Any, **data: Any) -> Any:
        named = dict(zip(cast("type[BaseModel]", cls).model_fields, args))
        if len(named) < len(args) or named.keys() & data.keys():
            raise ArgumentTypeError(f"{cls.__name__}(): too many positional arguments, or one also given by name")
        data.update(named)
        try:
            return super().__call__(**data)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


class _Schema(BaseModel, metaclass=_SchemaMeta):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields_only(cls, data: Any) -> Any:
        # extra="forbid" refuses them as well; this names the allowed fields in the message
        for key in data if isinstance(data, Mapping) else ():
            if key not in cls.model_fields:
                raise _problem(f"unknown field (allowed: {', '.join(sorted(cls.model_fields))})", str(key))
        return data


# ----------------------------------------------------------------------------- retry policy
class RetryPolicy(_Schema):
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

    max_attempts: Annotated[int, _rule(Interval(Integral, 1, None, closed="left"), at_most=MAX_ATTEMPTS)] = 6
    base_delay: _Seconds = 0.5
    max_delay: _Seconds = 30.0
    jitter: Annotated[float, _rule(Interval(Real, 0, 1, closed="both"))] = 0.25
    max_retry_after: _Seconds = 60.0
    reask_unparsable: Annotated[int, _rule(Interval(Integral, 0, None, closed="left"), at_most=MAX_ATTEMPTS)] = 1

    def backoff(self, attempt: int, u: float) -> float:
        """Wait after failed attempt ``attempt`` (0-based); ``u`` is a uniform draw in [-1, 1]."""
        delay = min(self.max_delay, self.base_delay * (2.0**attempt))
        return max(0.0, delay * (1.0 + self.jitter * u))

    def retry_after(self, seconds: float) -> float:
        """A server's ``Retry-After`` clamped to ``[0, max_retry_after]``."""
        return min(max(0.0, seconds), self.max_retry_after)


# ----------------------------------------------------------------------------- one endpoint
class ModelConfig(_Schema):
    """One model behind an OpenAI-compatible endpoint, with its sampling parameters.

    Attributes:
        name: the pool member's name (column in predictions.csv); unique within a pool.
        base_url: endpoint root, e.g. ``http://127.0.0.1:8000/v1``.
        model: model id sent in the request (``model`` field of the chat completion).
        api_key_env: environment variable holding the API key; ``None`` sends ``"EMPTY"``.
        max_concurrency: requests in flight at once for this model.
        timeout: seconds of silence before a request is abandoned (and retried): it bounds the wait
            for the connection and for each next piece of the reply, not the whole request.
        request_deadline: seconds one request may take in all, from sending it to the last byte of
            the reply (streamed or not); past it the attempt fails and is retried like a timeout. It
            stops a server that keeps the connection alive by trickling bytes, which ``timeout``
            never does. The default, 30 minutes, lets a slow local server write 8192 tokens at under
            5 tokens a second; raise it for slower servers or longer replies.
        stream: request streamed responses (server-sent events).
        temperature, top_p, max_tokens, seed: sampling parameters (``None`` = server default).
        logprobs: ask for token log-probabilities (the mean is the confidence signal).
        stop: up to 4 stop sequences sent with every request (``None`` = none): the server ends the
            reply where one begins. For few-shot prompts and base models, which answer and then write
            their prompt's next example (``["\\nQuestion:"]``); part of the cache key, like the
            sampling parameters, since it changes the reply.
        price_input_per_mtok, price_output_per_mtok: list price in USD per million input
            (prompt) and output (completion) tokens, for cost-aware routing (in ``[0, 1e6]``;
            ``None`` = unknown, priced 0 with a warning; docs/algorithm.md#cost-aware-routing).
    """

    name: _Name
    base_url: _Url
    model: _Text
    api_key_env: Optional[_EnvName] = None
    max_concurrency: Annotated[int, _rule(Interval(Integral, 1, None, closed="left"), at_most=MAX_CONCURRENCY)] = 8
    timeout: _PositiveSeconds = 120.0
    request_deadline: _PositiveSeconds = 1800.0
    stream: _Flag = False
    temperature: Optional[Annotated[float, _rule(Interval(Real, 0, 2, closed="both"))]] = 0.0
    top_p: Optional[Annotated[float, _rule(Interval(Real, 0, 1, closed="right"))]] = None
    max_tokens: Optional[Annotated[int, _rule(Interval(Integral, 1, None, closed="left"), at_most=MAX_TOKENS)]] = 2048
    seed: Optional[
        Annotated[
            int, _rule(Interval(Integral, None, None, closed="neither"), at_least=SEED_RANGE[0], at_most=SEED_RANGE[1])
        ]
    ] = None
    logprobs: _Flag = True
    stop: Optional[_Stop] = None
    price_input_per_mtok: Optional[_Price] = None
    price_output_per_mtok: Optional[_Price] = None

    def api_key(self) -> str:
        """The key to send: the value of ``api_key_env``, or ``"EMPTY"`` when no variable is configured.

        Raises:
            ConfigError: ``api_key_env`` is set but the variable is missing or empty.
        """
        if self.api_key_env is None:
            return EMPTY_API_KEY
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(f"model {self.name!r}: api_key_env: environment variable {self.api_key_env} is not set")
        return key

    def sampling_params(self) -> dict[str, Any]:
        """The request parameters that shape the reply (sent to the server and part of the cache key)."""
        params = {
            k: getattr(self, k) for k in ("temperature", "top_p", "max_tokens", "seed") if getattr(self, k) is not None
        }
        if self.logprobs:
            params["logprobs"] = True
        if self.stop is not None:
            params["stop"] = list(self.stop)
        return params


# ----------------------------------------------------------------------------- the pool
class PoolConfig(_Schema):
    """The pool of models that answer questions (unique names, pool order), the retry policy of
    their clients, and the file it came from (``source``, for messages)."""

    models: tuple[ModelConfig, ...]
    retry: RetryPolicy = RetryPolicy()
    source: Optional[str] = None

    @model_validator(mode="after")
    def _unique_names(self) -> "PoolConfig":
        for i, name in enumerate(self.names):
            if name in self.names[:i]:
                raise _problem(f"duplicate name {short_repr(name)}", "models", i, "name")
        return self

    @property
    def names(self) -> list[str]:
        """Model names in pool order."""
        return [m.name for m in self.models]

    def prices(self) -> dict[str, tuple[float, float]]:
        """Model name -> ``(input, output)`` USD per million tokens, for the models with a price
        (a missing half counts 0); ``CascalRouter.fit(..., prices=pool.prices())`` takes it."""
        return {
            m.name: (float(m.price_input_per_mtok or 0.0), float(m.price_output_per_mtok or 0.0))
            for m in self.models
            if m.price_input_per_mtok is not None or m.price_output_per_mtok is not None
        }

    def get(self, name: str) -> ModelConfig:
        """The model called ``name``; :class:`ConfigError` if the pool has none."""
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"{self.source or 'pool'}: no model named {short_repr(name)}; known: {self.names}")

    def select(self, names: Sequence[str]) -> "PoolConfig":
        """A pool with only the named models, in the given order."""
        return PoolConfig(models=tuple(self.get(n) for n in names), retry=self.retry, source=self.source)

    def with_concurrency(self, max_concurrency: int) -> "PoolConfig":
        """A pool whose models all allow ``max_concurrency`` requests in flight."""
        models = tuple(ModelConfig(**{**dict(m), "max_concurrency": max_concurrency}) for m in self.models)
        return PoolConfig(models=models, retry=self.retry, source=self.source)

    def with_retry(self, retry: RetryPolicy) -> "PoolConfig":
        """The same pool with another retry policy."""
        return PoolConfig(models=self.models, retry=retry, source=self.source)


class _PoolFile(_Schema):
    """The layout of ``pool.yaml``: ``defaults`` fill the fields a model entry leaves out."""

    retry: Annotated[RetryPolicy, _EMPTY_IF_NULL] = RetryPolicy()
    defaults: Annotated[dict[Any, Any], _EMPTY_IF_NULL] = {}
    models: tuple[ModelConfig, ...]

    @field_validator("defaults")
    @classmethod
    def _model_fields_but_name(cls, defaults: dict[Any, Any]) -> dict[Any, Any]:
        allowed = sorted(set(ModelConfig.model_fields) - {"name"})
        for key in defaults:
            if key == "name":
                raise _problem("a name cannot be a default (names must be unique)", key)
            if key not in allowed:
                raise _problem(f"unknown field (allowed: {', '.join(allowed)})", str(key))
        return defaults

    @field_validator("models", mode="before")
    @classmethod
    def _apply_defaults(cls, entries: Any, info: ValidationInfo) -> Any:
        if not isinstance(entries, (list, tuple)) or not entries:
            raise _problem("must be a non-empty list of model entries")
        defaults = info.data.get("defaults", {})  # absent when the defaults were refused
        return [{**defaults, **entry} if isinstance(entry, Mapping) else entry for entry in entries]


# ----------------------------------------------------------------------------- the tasks
class TasksConfig(_Schema):
    """What to generate: one description per subject and how many questions each.

    Attributes:
        subjects: subject name -> one-paragraph description, in file order.
        questions: subject name -> number of questions to generate.
        generator: default generator endpoint, or ``None`` (then the caller must name one).
        source: the file the config came from.
    """

    subjects: dict[_SubjectName, _Description]
    questions: dict[_SubjectName, _Questions]
    generator: Optional[ModelConfig] = None
    source: Optional[str] = None

    @model_validator(mode="after")
    def _one_count_per_subject(self) -> "TasksConfig":
        if not self.subjects:
            raise _problem("at least one subject is required", "subjects")
        if set(self.subjects) != set(self.questions):
            raise _problem("must give a count for every subject", "questions")
        return self

    @property
    def names(self) -> list[str]:
        """Subject names in file order."""
        return list(self.subjects)

    def n_questions(self, subject: str) -> int:
        """Questions to generate for ``subject``."""
        if subject not in self.questions:
            raise ConfigError(f"{self.source or 'tasks'}: no subject named {short_repr(subject)}; known: {self.names}")
        return self.questions[subject]


class _Subject(_Schema):
    """One entry of ``subjects:``: a bare description, or ``{description, questions}``."""

    description: _Description
    questions: Optional[_Questions] = None

    @model_validator(mode="before")
    @classmethod
    def _bare_description(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return data
        if not _text(data):
            raise _problem(f"must be a non-empty description string, got {short_repr(data)}")
        return {"description": data}


class _TasksFile(_Schema):
    """The layout of ``tasks.yaml``."""

    questions_per_subject: _Questions = 50
    generator: Optional[ModelConfig] = None
    subjects: Annotated[dict[_SubjectName, _Subject], _EMPTY_IF_NULL]


# ----------------------------------------------------------------------------- reading files
def load_pool(path: PathLike) -> PoolConfig:
    """Read and validate a ``pool.yaml``; errors name the file and the field."""
    return parse_pool(_read_yaml(path), source=Path(path).name)


def load_tasks(path: PathLike) -> TasksConfig:
    """Read and validate a ``tasks.yaml``; errors name the file and the field."""
    return parse_tasks(_read_yaml(path), source=Path(path).name)


def parse_pool(data: Any, source: str = "pool.yaml") -> PoolConfig:
    """Validate an already-parsed pool mapping (see the module docstring for the layout)."""
    layout = _validate(_PoolFile, data, source)
    return _validate(PoolConfig, {"models": layout.models, "retry": layout.retry, "source": source}, source)


def parse_tasks(data: Any, source: str = "tasks.yaml") -> TasksConfig:
    """Validate an already-parsed tasks mapping (see the module docstring for the layout)."""
    layout = _validate(_TasksFile, data, source)
    subjects = {name: " ".join(s.description.split()) for name, s in layout.subjects.items()}
    questions = {name: s.questions or layout.questions_per_subject for name, s in layout.subjects.items()}
    data = {"subjects": subjects, "questions": questions, "generator": layout.generator, "source": source}
    return _validate(TasksConfig, data, source)


_S = TypeVar("_S", bound=_Schema)


def _validate(schema: type[_S], data: Any, source: str) -> _S:
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _read_yaml(path: PathLike) -> Any:
    """The YAML document of ``path`` (:func:`cascal.yaml_files.read_yaml`: UTF-8, at most 1 MiB,
    anchors and aliases refused); errors name the file by its name."""
    return read_yaml(path, label=Path(path).name)


def _describe(exc: ValidationError, source: Optional[str] = None) -> str:
    """One line ``<source>: <field path>: <problem>`` for the first problem, plus how many more."""
    errors = exc.errors(include_url=False)
    first, ctx = errors[0], errors[0].get("ctx") or {}
    problem = {"cascal_config": ctx.get("message"), "missing": "required", "extra_forbidden": "unknown field"}.get(
        first["type"]
    )
    if problem is None and first["type"] in ("model_type", "model_attributes_type", "dict_type"):
        problem = f"expected a mapping, got {type(first['input']).__name__}"
    path = "".join(_step(part) for part in (*first["loc"], *ctx.get("path", ())) if part != "[key]")
    line = ": ".join(
        p for p in (source, path.lstrip("."), problem or f"{first['msg']}, got {short_repr(first['input'])}") if p
    )
    return f"{line} (and {len(errors) - 1} more)" if len(errors) > 1 else line


def _step(part: Union[str, int]) -> str:
    """``.name``, ``[2]``, or ``['odd key']`` for a key that is not a plain word."""
    plain = isinstance(part, str) and part.replace("_", "").replace("-", "").isalnum() and len(part) <= 80
    return f".{part}" if plain else f"[{part}]" if isinstance(part, int) else f"[{short_repr(part)}]"


__all__ = [
    "ConfigError",
    "EMPTY_API_KEY",
    "ModelConfig",
    "PoolConfig",
    "RetryPolicy",
    "TasksConfig",
    "load_pool",
    "load_tasks",
    "parse_pool",
    "parse_tasks",
]
