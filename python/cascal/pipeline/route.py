"""Pipeline stage **route**: rank the pool for new questions with a trained router, ask the top
models and take their plurality vote.

A question is embedded with the embedder recorded in the router file
(:func:`cascal.embedding.load_embedder`), so it lands in the same space as the training questions.
The top-k models are asked through the same client, retries and prompt as ``cascal answer``; their
plurality vote breaks ties toward the higher-ranked model (the router's ``answer`` rule).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from cascal.errors import InvalidParameterError

__all__ = ["RankedModel", "PoolAnswer", "load_router", "rank_question", "ask_models", "vote"]


@dataclass(frozen=True)
class RankedModel:
    """One pool model's place in a routing: its name and routing score (higher is better), and its
    expected cost for the question in USD per 1,000 queries (``None`` when the router has no prices)."""

    name: str
    score: float
    expected_cost: Optional[float] = None


@dataclass(frozen=True)
class PoolAnswer:
    """What one asked model replied: the option index it chose (-1 when none could be extracted)."""

    name: str
    choice: int
    text: str


def load_router(path: Union[str, Path]) -> Any:
    """The :class:`cascal.CascalRouter` saved at ``path``.

    Raises:
        cascal.errors.RouterFileError: the file is missing, corrupt or not a router file.
    """
    from cascal.router import CascalRouter

    return CascalRouter.load(path)


def rank_question(
    router: Any, question: str, *, embedder: Any = None, cost_weight: Optional[float] = None
) -> list[RankedModel]:
    """Every pool model ranked for ``question``, best first, with its routing score.

    Args:
        router: a fitted router (``route`` and ``model_names_``); CASCAL's records its embedder.
        question: the question text (as it would appear in a dataset's ``question`` field).
        embedder: the embedder to use (an embedder or a name); default the router's own. It is
            checked against the router (:func:`cascal.embedding.resolve_router_embedder`).
        cost_weight: cost weight of a cost-aware router (default: the router's own;
            docs/algorithm.md#cost-aware-routing).

    Raises:
        cascal.errors.InvalidParameterError: an empty question, or a router without a recorded
            embedder and none given.
        cascal.errors.EmbeddingError: the embedder cannot be loaded or differs from the router's.
    """
    if not isinstance(question, str) or not question.strip():
        raise InvalidParameterError("question: must be a non-empty string")
    name = getattr(router, "embedding_model", None)
    if embedder is None and not name:
        raise InvalidParameterError("router: it records no embedding model; pass the embedder explicitly")
    from cascal.embedding import resolve_router_embedder

    embedder = resolve_router_embedder(name, getattr(router, "embedding_sha256", None), embedder)
    x = np.asarray(embedder.encode([question]), dtype=np.float32)
    n_models = len(router.model_names_)
    if hasattr(router, "route_details"):
        details = router.route_details(x, top_k=n_models, cost_weight=cost_weight)
        names, scores, ranked, costs = router.model_names_, details.probs, details.ranked, details.expected_cost
    else:
        routing = router.route(x, top_k=n_models)
        names, scores, ranked, costs = routing.model_names, routing.scores, routing.ranked, None
    return [
        RankedModel(names[j], float(scores[0, j]), None if costs is None else float(costs[0, j])) for j in ranked[0]
    ]


def ask_models(pool: Any, names: Sequence[str], question: str, options: Sequence[str]) -> list[PoolAnswer]:
    """Ask the named models of ``pool`` the question (answering prompt of :mod:`cascal.pipeline.answer`).

    A model whose endpoint fails after the retries gets ``choice = -1`` and the error as its text.

    Raises:
        cascal.errors.ConfigError: the pool has no entry for some of ``names``.
        cascal.errors.InvalidParameterError: an empty question, or fewer than 2 / more than 20 options.
        cascal.errors.EndpointError: an endpoint is unreachable or rejects the request.
    """
    from cascal.errors import ConfigError
    from cascal.llm.client import ChatClient, RequestFailed
    from cascal.llm.extract import extract_answer
    from cascal.pipeline.answer import build_messages

    missing = [n for n in names if n not in pool.names]
    if missing:
        raise ConfigError(f"{pool.source or 'pool'}: no entry for routed model(s) {missing}; the pool has {pool.names}")
    messages = build_messages(question, list(options))

    async def ask(name: str) -> PoolAnswer:
        async with ChatClient(pool.get(name), pool.retry) as client:
            try:
                completion = await client.complete(messages)
            except RequestFailed as exc:
                return PoolAnswer(name, -1, f"(no usable reply: {exc})")
        # off the event loop, so that reading one reply never holds up the other models' requests
        choice = await asyncio.to_thread(extract_answer, completion.text, len(options))
        return PoolAnswer(name, choice, completion.text)

    async def ask_all() -> list[PoolAnswer]:
        return list(await asyncio.gather(*(ask(n) for n in names)))

    return asyncio.run(ask_all())


def vote(answers: Sequence[PoolAnswer]) -> int:
    """Plurality of the answers' choices (given best-ranked first); ties go to the choice of the
    highest-ranked model among the tied; -1 when no model gave a usable answer."""
    from cascal.router.base import ensemble_vote

    if not answers:
        return -1
    choices = np.array([[a.choice for a in answers]], dtype=np.int64)
    return int(ensemble_vote(np.arange(len(answers))[None, :], choices)[0])
