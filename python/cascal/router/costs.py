"""Expected cost of every model per query: prices, token counts and the per-niche cost tables
(docs/algorithm.md#cost-aware-routing).

A model's cost on one question, in USD per 1,000 queries, is::

    cost[q, m] = 1000 * (input_tokens[q] * price_input[m] + output_tokens[q, m] * price_output[m]) / 1e6

with prices in USD per million tokens (:class:`Prices`). ``output_tokens`` are the completion tokens
the model spent on the training question (``ResponseMatrix.cost``, read from ``cost.csv``).
``input_tokens`` are the same for every model (the prompt): the router learns them from the
question text, ``prompt_overhead_tokens + chars(question + options) / chars_per_token`` (both
settings of :class:`Prices`; without question texts only the overhead counts).

:func:`cost_tables` turns those per-question costs into the tables routing mixes: every training
question belongs to its nearest niche of its own subject; a niche's cost of a model is the mean
over its questions, shrunk toward the model's global mean by :data:`PRIOR_QUESTIONS` pseudo-questions
(so a niche differs from the global cost only as far as its questions show it: long chains of
thought in math, short answers in history). Costs a model has no data for (not asked) are ignored;
a model without any known cost costs its input tokens only.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from os import PathLike, fspath
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from cascal.data import ResponseMatrix
from cascal.errors import ConfigError, DataError, InvalidParameterError, PricingWarning
from cascal.validation import MAX_PRICE_PER_MTOK, short_repr

__all__ = [
    "MAX_PRICE_PER_MTOK",
    "PRIOR_QUESTIONS",
    "Prices",
    "cost_tables",
    "input_tokens",
    "load_prices",
    "parse_prices",
    "question_costs",
]

#: Pseudo-questions of the global mean added to every niche's cost mean (shrinkage strength).
PRIOR_QUESTIONS = 10.0
#: Default characters per token (English text, common BPE tokenizers).
DEFAULT_CHARS_PER_TOKEN = 4.0
#: Queries the cost unit counts: costs are USD per this many queries.
QUERIES_PER_UNIT = 1000


#: Bounds of ``chars_per_token``: no tokenizer splits a character into more than 4 tokens (its
#: UTF-8 bytes), nor makes a token of a million characters.
CHARS_PER_TOKEN_RANGE = (0.01, 1e6)
#: Largest ``prompt_overhead_tokens`` (a billion, far beyond any context window).
MAX_PROMPT_OVERHEAD_TOKENS = 1e9


def _number_in(value: object, name: str, low: float, high: float) -> float:
    """``value`` as a float when it is a number in ``[low, high]`` (bool is not a number; an
    integer too large for a float is out of range), else :class:`InvalidParameterError`."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if low <= value <= high:  # exact: a 400-digit integer never reaches float()
            return float(value)
    elif isinstance(value, (float, np.floating)) and math.isfinite(value) and low <= value <= high:
        return float(value)
    raise InvalidParameterError(f"{name}: must be a number in [{low:.15g}, {high:.15g}], got {short_repr(value)}")


@dataclass(frozen=True)
class Prices:
    """List prices of the pool and how tokens are counted.

    Attributes:
        per_model: model name -> ``(input, output)`` USD per million tokens (in ``[0, 1e6]``,
            :data:`MAX_PRICE_PER_MTOK`). A name
            matches a pool column exactly, or the one column that is the name plus a ``_suffix``
            (``gpt-4o-2024-05-13`` prices ``gpt-4o-2024-05-13_5shots``).
        chars_per_token: characters per token used to count the prompt's tokens (in ``[0.01, 1e6]``).
        prompt_overhead_tokens: tokens every prompt carries besides the question and its options
            (system prompt, few-shot examples; in ``[0, 1e9]``).

    Raises:
        InvalidParameterError: a price or setting that is not a number in its range (booleans,
            strings, NaN and infinities are not); the message names it.
    """

    per_model: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    chars_per_token: float = DEFAULT_CHARS_PER_TOKEN
    prompt_overhead_tokens: float = 0.0

    def __post_init__(self) -> None:
        checked: dict[str, tuple[float, float]] = {}
        for name, pair in dict(self.per_model).items():
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise InvalidParameterError(f"prices[{name!r}]: expected (input, output) USD per MTok, got {pair!r}")
            checked[str(name)] = (
                _number_in(pair[0], f"prices[{name!r}].price_input_per_mtok", 0.0, MAX_PRICE_PER_MTOK),
                _number_in(pair[1], f"prices[{name!r}].price_output_per_mtok", 0.0, MAX_PRICE_PER_MTOK),
            )
        object.__setattr__(self, "per_model", checked)
        cpt = _number_in(self.chars_per_token, "chars_per_token", *CHARS_PER_TOKEN_RANGE)
        object.__setattr__(self, "chars_per_token", cpt)
        overhead = _number_in(self.prompt_overhead_tokens, "prompt_overhead_tokens", 0.0, MAX_PROMPT_OVERHEAD_TOKENS)
        object.__setattr__(self, "prompt_overhead_tokens", overhead)

    @classmethod
    def coerce(cls, prices: Union["Prices", Mapping[str, Any]]) -> "Prices":
        """``prices`` itself, or a :class:`Prices` from a mapping model -> ``(input, output)``."""
        if isinstance(prices, Prices):
            return prices
        if isinstance(prices, Mapping):
            return cls(per_model=prices)
        raise InvalidParameterError(
            f"prices: expected a Prices or a mapping model -> (input, output), got {type(prices).__name__}"
        )

    def for_pool(self, model_names: Sequence[str], *, warn: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(input, output)`` price arrays ``(M,)`` in pool order; models without a price cost 0
        (with a :class:`~cascal.errors.PricingWarning` naming them when ``warn``)."""
        price_in = np.zeros(len(model_names))
        price_out = np.zeros(len(model_names))
        unpriced = []
        for m, column in enumerate(model_names):
            pair = self.price_of(column)
            if pair is None:
                unpriced.append(column)
            else:
                price_in[m], price_out[m] = pair
        if unpriced and warn:
            warnings.warn(
                f"prices: no price for model(s) {unpriced}; they are priced 0 (free)", PricingWarning, stacklevel=3
            )
        return price_in, price_out

    def price_of(self, column: str) -> Optional[tuple[float, float]]:
        """``(input, output)`` price of pool column ``column`` (exact name, else the longest name
        that ``column`` extends with ``_suffix``), or ``None``."""
        if column in self.per_model:
            return self.per_model[column]
        matches = [name for name in self.per_model if column.startswith(name + "_")]
        return self.per_model[max(matches, key=len)] if matches else None


def input_tokens(responses: ResponseMatrix, prices: Prices) -> np.ndarray:
    """``(n_q,)`` prompt tokens of every question: the overhead plus the characters of the question
    and its options over ``chars_per_token`` (the overhead alone without question texts)."""
    n = responses.n_questions
    chars = np.zeros(n)
    if responses.questions is not None:
        options = responses.options or [[] for _ in range(n)]
        chars = np.array(
            [len(q or "") + sum(len(o or "") for o in opts) for q, opts in zip(responses.questions, options)],
            dtype=np.float64,
        )
    return prices.prompt_overhead_tokens + chars / prices.chars_per_token


def question_costs(responses: ResponseMatrix, prices: Prices, *, warn: bool = True) -> np.ndarray:
    """``(n_q, M)`` cost of every model on every question, USD per 1,000 queries (module docs).

    ``responses.cost`` holds the completion tokens; a NaN there (not asked) gives NaN. Without
    ``responses.cost`` only the prompt is priced (a :class:`~cascal.errors.PricingWarning` says so when ``warn``).
    """
    price_in, price_out = prices.for_pool(responses.model_names, warn=warn)
    tokens_in = input_tokens(responses, prices)
    if responses.cost is None:
        if warn and price_out.any():
            warnings.warn(
                "prices: the responses carry no completion-token counts (cost.csv); expected costs "
                "count the prompt tokens only",
                PricingWarning,
                stacklevel=3,
            )
        tokens_out = np.zeros((responses.n_questions, responses.n_models))
    else:
        tokens_out = np.asarray(responses.cost, dtype=np.float64)
    with np.errstate(over="ignore"):  # an overflow is refused below, naming the model
        per_query = (tokens_in[:, None] * price_in[None, :] + tokens_out * price_out[None, :]) * (
            QUERIES_PER_UNIT / 1e6
        )
    _refuse_non_finite(per_query, responses.model_names, responses.question_ids)
    return per_query


def _refuse_non_finite(costs: np.ndarray, model_names: Sequence[str], question_ids: Any) -> None:
    """:class:`DataError` naming the first model with an infinite cost (NaN = unknown is allowed)."""
    infinite = np.isinf(costs)
    if infinite.any():
        m = int(np.flatnonzero(infinite.any(axis=0))[0])
        rows = np.flatnonzero(infinite[:, m])
        raise DataError(
            f"cost: model {model_names[m]!r}: expected cost not finite on {len(rows)} question(s) (first: question "
            f"{short_repr(np.asarray(question_ids)[rows[0]].item())}); its completion tokens (cost.csv) or prices are too large"
        )


def _nan_mean(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    finite = np.isfinite(values)
    counts = finite.sum(axis=axis)
    sums = np.where(finite, values, 0.0).sum(axis=axis)
    return sums / np.maximum(counts, 1), counts


def cost_tables(
    X: np.ndarray,
    subject_index: np.ndarray,
    centroids: np.ndarray,
    centroid_subject: np.ndarray,
    costs: np.ndarray,
    *,
    fallback: Optional[np.ndarray] = None,
    model_names: Optional[Sequence[str]] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-niche and global cost tables from per-question costs (module docs).

    Args:
        X: ``(n, d)`` unit training embeddings.
        subject_index: ``(n,)`` subject of every training question (index into the subjects of
            ``centroid_subject``).
        centroids: ``(C, d)`` unit niche centroids.
        centroid_subject: ``(C,)`` subject of every centroid.
        costs: ``(n, M)`` cost of every model on every training question (NaN = unknown).
        fallback: ``(M,)`` cost of a model without any known cost (default 0).
        model_names: the ``M`` model names, for the message when a table is not finite.

    Returns:
        ``(centroid_costs (C, M), global_costs (M,))``, finite.

    Raises:
        DataError: a table is not finite (costs whose sums overflow); the message names the model
            (``model #m`` without ``model_names``). A router is never stored with such a table.
    """
    costs = np.asarray(costs, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        centroid_costs, global_costs = _tables(X, subject_index, centroids, centroid_subject, costs, fallback)
    bad = ~(np.isfinite(centroid_costs).all(axis=0) & np.isfinite(global_costs))
    if bad.any():
        m = int(np.flatnonzero(bad)[0])
        name = f"model {model_names[m]!r}" if model_names is not None else f"model #{m}"
        raise DataError(
            f"cost tables: {name}: expected costs not finite (the per-question costs are too large to average)"
        )
    return centroid_costs, global_costs


def _tables(
    X: np.ndarray,
    subject_index: np.ndarray,
    centroids: np.ndarray,
    centroid_subject: np.ndarray,
    costs: np.ndarray,
    fallback: Optional[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    global_costs, counts = _nan_mean(costs)
    fill = np.zeros(costs.shape[1]) if fallback is None else np.asarray(fallback, dtype=np.float64)
    global_costs = np.where(counts > 0, global_costs, fill)
    sims = np.asarray(X, dtype=np.float64) @ np.asarray(centroids, dtype=np.float64).T
    sims[np.asarray(subject_index)[:, None] != np.asarray(centroid_subject)[None, :]] = -np.inf
    niche = np.argmax(sims, axis=1)
    centroid_costs = np.empty((len(centroids), costs.shape[1]))
    for c in range(len(centroids)):
        mean, n = _nan_mean(costs[niche == c])
        centroid_costs[c] = (mean * n + global_costs * PRIOR_QUESTIONS) / (n + PRIOR_QUESTIONS)
    return centroid_costs, global_costs


# ----------------------------------------------------------------------------- prices file
def load_prices(path: Union[str, "PathLike[str]"]) -> Prices:
    """Read a prices file (YAML; examples/prices.yaml documents the layout)::

        chars_per_token: 4.0          # optional
        prompt_overhead_tokens: 0     # optional
        models:
          gpt-4o-2024-05-13: {price_input_per_mtok: 5.0, price_output_per_mtok: 15.0, source: ..., date: ...}

    Any other keys of a model entry (``source``, ``date``, ``note``) are documentation and ignored.
    The file is read by :func:`cascal.yaml_files.read_yaml` (at most 1 MiB, UTF-8, no anchors or
    aliases); prices are numbers in ``[0, 1e6]`` USD per million tokens (:data:`MAX_PRICE_PER_MTOK`),
    ``chars_per_token`` in ``[0.01, 1e6]``, ``prompt_overhead_tokens`` in ``[0, 1e9]``.

    Raises:
        ConfigError: the file is missing or malformed, or a value is out of range; the message
            starts with the file (as given) and names the model and the field.
    """
    from cascal.yaml_files import read_yaml

    name = fspath(path)
    if not os.path.exists(name):
        raise ConfigError(f"{name}: no such prices file")
    return parse_prices(read_yaml(name), source=name)


def parse_prices(data: Any, source: str = "prices") -> Prices:
    """Validate an already-parsed prices mapping (layout: :func:`load_prices`); messages start with
    ``source``."""
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(f"{source}: expected a mapping with a 'models' mapping (model -> prices)")
    unknown = sorted(map(str, set(data) - {"models", "chars_per_token", "prompt_overhead_tokens"}))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {short_repr(unknown)} (allowed: models, chars_per_token, prompt_overhead_tokens)"
        )
    per_model: dict[str, tuple[Any, Any]] = {}
    for model, entry in data["models"].items():
        if not isinstance(entry, dict) or "price_input_per_mtok" not in entry or "price_output_per_mtok" not in entry:
            raise ConfigError(
                f"{source}: models.{short_repr(model)}: needs price_input_per_mtok and price_output_per_mtok"
            )
        per_model[str(model)] = (entry["price_input_per_mtok"], entry["price_output_per_mtok"])
    try:
        return Prices(
            per_model=per_model,
            chars_per_token=data.get("chars_per_token", DEFAULT_CHARS_PER_TOKEN),
            prompt_overhead_tokens=data.get("prompt_overhead_tokens", 0.0),
        )
    except InvalidParameterError as exc:
        raise ConfigError(f"{source}: {exc}") from None
