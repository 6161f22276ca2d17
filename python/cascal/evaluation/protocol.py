"""The evaluation protocol: model pools, stratified splits and simulated answer keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from sklearn.model_selection import train_test_split

from cascal.data import ResponseMatrix
from cascal.errors import InvalidParameterError, ProtocolError

#: Pool presets for the MMLU-Pro answer folder (names without the ``_5shots`` column suffix).
POOL_PRESETS: dict[str, tuple[str, ...]] = {
    "large": (
        "gpt-4o-2024-05-13",
        "gemini-1.5-pro-002",
        "gemini-1.5-flash-002",
        "Meta-Llama-3_1-70B-Instruct",
        "jamba-1.5-large",
        "Qwen1.5-110B",
    ),
    "small": (
        "Meta-Llama-3_1-8B-Instruct",
        "mathstral-7B",
        "Phi-3-mini-4k-instruct",
        "Mixtral-8x7B-Instruct-v0.1",
        "Yi-34B",
        "gemma-7b",
    ),
}

#: Simulated generators: key name -> the real model whose answers replace the training key.
GENERATOR_PRESETS: dict[str, str] = {
    "strong": "gemini-3.1-pro",
    "medium": "Meta-Llama-3-70B",
    "weak": "Mistral-7B-Instruct-v0.2",
}

#: The key name that means "the real gold answers".
REAL_KEY = "real"

TRAIN_FRACTION = 0.6


def resolve_model(name: str, available: Sequence[str]) -> str:
    """The column of ``available`` that ``name`` refers to: the exact name, or the one column that
    is ``name`` plus a suffix such as ``_5shots`` (so ``gpt-4o-2024-05-13`` finds
    ``gpt-4o-2024-05-13_5shots``). Raises :class:`ProtocolError` listing the models otherwise."""
    available = list(available)
    if name in available:
        return name
    matches = [col for col in available if col.startswith(name + "_")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ProtocolError(f"model {name!r} is ambiguous: it matches {matches}")
    raise ProtocolError(f"unknown model {name!r}; available models: {', '.join(available)}")


#: Prefix of a random pool specification ``random:K:SEED``.
RANDOM_POOL = "random"


def random_pool(spec: str, available: Sequence[str]) -> list[str]:
    """Columns of the pool ``random:K:SEED``: ``K`` models drawn uniformly without replacement from
    ``available`` by ``numpy.random.default_rng(SEED)``, in column order.

    Raises:
        ProtocolError: not of that form, ``K`` below 2 or above the number of models, or a
            negative ``SEED``.
    """
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] != RANDOM_POOL or not all(p.strip().isdigit() for p in parts[1:]):
        raise ProtocolError(f"pool {spec!r}: a random pool is random:K:SEED with integers K >= 2 and SEED >= 0")
    k, seed = int(parts[1]), int(parts[2])
    if not 2 <= k <= len(available):
        raise ProtocolError(f"pool {spec!r}: a random pool needs 2..{len(available)} models, got {k}")
    picked = np.sort(np.random.default_rng(seed).choice(len(available), k, replace=False))
    return [available[int(i)] for i in picked]


def resolve_pool(spec: str, available: Sequence[str]) -> list[str]:
    """Column names of a pool: a preset (``large``, ``small``, ``all``), a random pool
    ``random:K:SEED`` (:func:`random_pool`) or comma-separated names."""
    spec = spec.strip()
    if not spec:
        raise ProtocolError("pool: empty pool specification")
    if spec == "all":
        return list(available)
    if spec.startswith(RANDOM_POOL + ":"):
        return random_pool(spec, list(available))
    names = POOL_PRESETS.get(spec) or tuple(n.strip() for n in spec.split(",") if n.strip())
    columns = [resolve_model(n, available) for n in names]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise ProtocolError(f"pool {spec!r}: model(s) listed twice: {duplicates}")
    if len(columns) < 2:
        raise ProtocolError(f"pool {spec!r}: a pool needs at least 2 models, got {columns}")
    return columns


@dataclass(frozen=True)
class KeySource:
    """Where the training split's answer key comes from.

    Attributes:
        name: label in tables (``real``, ``strong``, ``medium``, ``weak`` or a model name).
        generator: column of the model whose answers are the key, or ``None`` for the real gold.
    """

    name: str
    generator: Optional[str] = None


def resolve_keys(
    names: Sequence[str], generator_models: Sequence[str], available: Sequence[str], pool: Sequence[str]
) -> list[KeySource]:
    """Key sources from preset names (``real``, ``strong``, ``medium``, ``weak``) and extra generator
    models. A generator inside the pool is an error (its key would leak one pool member's answers)."""
    keys: list[KeySource] = []
    for name in names:
        if name == REAL_KEY:
            keys.append(KeySource(REAL_KEY))
        elif name in GENERATOR_PRESETS:
            keys.append(KeySource(name, resolve_model(GENERATOR_PRESETS[name], available)))
        else:
            known = ", ".join([REAL_KEY, *GENERATOR_PRESETS])
            raise ProtocolError(
                f"keys: unknown key source {name!r}; choose from {known} (or use --generator-key MODEL)"
            )
    for model in generator_models:
        column = resolve_model(model, available)
        keys.append(KeySource(model, column))
    labels = [k.name for k in keys]
    if len(set(labels)) != len(labels):
        raise ProtocolError(f"keys: key sources listed twice: {labels}")
    for key in keys:
        if key.generator is not None and key.generator in pool:
            raise ProtocolError(
                f"keys: generator {key.generator!r} (key {key.name!r}) is a member of the pool; "
                "a simulated generator must be a model outside the pool"
            )
    return keys


def stratified_split(
    subjects: np.ndarray, seed: int, train_fraction: float = TRAIN_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test row indices: a ``train_fraction`` / rest split stratified by subject."""
    if not 0.0 < train_fraction < 1.0:
        raise InvalidParameterError(f"train_fraction: must lie strictly between 0 and 1, got {train_fraction}")
    rows = np.arange(len(subjects))
    train, test = train_test_split(rows, test_size=1.0 - train_fraction, stratify=subjects, random_state=seed)
    return np.sort(train), np.sort(test)


def simulated_key(train: ResponseMatrix, generator_answers: np.ndarray, seed: int) -> np.ndarray:
    """The answer key a simulated generator writes for the training questions: the generator model's
    answers, and where it gave none (-1 unparsable, -2 not asked) a uniformly random option drawn
    with ``numpy.random.default_rng(seed)``. Returns ``(n,)`` int8."""
    generator_answers = np.asarray(generator_answers)
    if generator_answers.shape != (train.n_questions,):
        raise InvalidParameterError(
            f"generator_answers: expected shape ({train.n_questions},), got {generator_answers.shape}"
        )
    rng = np.random.default_rng(seed)
    random_key = (rng.random(train.n_questions) * train.n_options).astype(np.int64)
    key = np.where(generator_answers >= 0, generator_answers, random_key)
    return key.astype(np.int8)


@dataclass(frozen=True)
class Split:
    """One seed's data for one pool.

    Attributes:
        seed: the split seed.
        train_rows, test_rows: row indices into the full dataset.
        train, test: the pool's responses on each side (``train.gold`` is the real gold).
    """

    seed: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train: ResponseMatrix
    test: ResponseMatrix


def make_split(data: ResponseMatrix, pool: Sequence[str], seed: int) -> Split:
    """Split ``data`` (which must carry embeddings) for ``seed`` and keep the pool's columns."""
    if data.embeddings is None:
        raise ProtocolError("data: the dataset has no embeddings; run `cascal embed` first")
    train_rows, test_rows = stratified_split(data.subjects, seed)
    pooled = data.select_models(list(pool))
    return Split(seed, train_rows, test_rows, pooled.subset(train_rows), pooled.subset(test_rows))


def training_key(data: ResponseMatrix, split: Split, key: KeySource) -> np.ndarray:
    """The training split's answer key under ``key``: the real gold, or the simulated generator's
    key (:func:`simulated_key`, random fill seeded by the split seed)."""
    if key.generator is None:
        return np.array(split.train.gold, dtype=np.int8)
    column = data.model_names.index(key.generator)
    return simulated_key(split.train, data.answers[split.train_rows, column], split.seed)


#: Pool preset ``lone-strong``: each of the :data:`LONE_STRONG_TOP` strongest models (by gold
#: accuracy on the whole dataset) with :data:`LONE_STRONG_DRAWS` seeded draws of
#: :data:`LONE_STRONG_CROWD` models from the :data:`LONE_STRONG_WEAK` weakest.
LONE_STRONG = "lone-strong"
LONE_STRONG_TOP, LONE_STRONG_DRAWS, LONE_STRONG_CROWD, LONE_STRONG_WEAK = 4, 6, 8, 20
#: Seed of the crowd draws (``numpy.random.default_rng((LONE_STRONG_SEED, strong_rank, draw))``).
LONE_STRONG_SEED = 11


def lone_strong_pools(data: ResponseMatrix) -> list[tuple[str, list[str]]]:
    """The ``lone-strong`` pools of ``data``: ``(name, columns)`` with names
    ``lone-strong/<strong model>/<draw>``; the strong model comes first, the crowd in column order.
    Models are ranked by accuracy against ``data.gold`` (no answer = wrong; ties: column order)."""
    n_models = data.n_models
    if n_models < LONE_STRONG_TOP + LONE_STRONG_CROWD or n_models < LONE_STRONG_WEAK:
        raise ProtocolError(
            f"pool {LONE_STRONG!r}: needs at least {max(LONE_STRONG_TOP + LONE_STRONG_CROWD, LONE_STRONG_WEAK)} "
            f"models, the dataset has {n_models}"
        )
    gold = np.asarray(data.gold)
    if (gold < 0).any():
        raise ProtocolError(f"pool {LONE_STRONG!r}: ranks models by gold accuracy, but some questions have no gold")
    accuracy = (data.answers == gold[:, None]).mean(axis=0)
    order = np.argsort(-accuracy, kind="stable")
    strong, weak = order[:LONE_STRONG_TOP], np.sort(order[-LONE_STRONG_WEAK:])
    pools = []
    for rank, s in enumerate(strong):
        for draw in range(LONE_STRONG_DRAWS):
            rng = np.random.default_rng((LONE_STRONG_SEED, rank, draw))
            crowd = np.sort(rng.choice(weak[weak != s], LONE_STRONG_CROWD, replace=False))
            name = data.model_names[int(s)]
            pools.append((f"{LONE_STRONG}/{name}/{draw}", [name, *(data.model_names[int(c)] for c in crowd)]))
    return pools


def expand_pools(specs: Sequence[str], data: ResponseMatrix) -> list[tuple[str, list[str]]]:
    """``(name, columns)`` of every pool the specifications name: ``lone-strong`` expands to its 24
    pools (:func:`lone_strong_pools`), any other one to itself (:func:`resolve_pool`)."""
    out: list[tuple[str, list[str]]] = []
    for spec in specs:
        if spec.strip() == LONE_STRONG:
            out.extend(lone_strong_pools(data))
        else:
            out.append((spec, resolve_pool(spec, data.model_names)))
    return out
