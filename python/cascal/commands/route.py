"""``cascal route ROUTER "question"``: rank the pool for one question; optionally ask the top models.

The question is embedded with the embedder recorded in the router file (``cascal.embed.load_embedder``),
so it lands in the same space as the training questions. With ``--answer --pool pool.yaml`` the top-k
models are asked (through the same client, retries and prompt as ``cascal answer``) and their
plurality vote is printed (ties: the higher-ranked model's answer, as in DESIGN §3D).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

NAME = "route"
HELP = "rank the pool for a question with a trained router; --answer asks the top-k models and votes"


@dataclass(frozen=True)
class RankedModel:
    """One pool model's place in a routing: its name and routing score (higher is better)."""

    name: str
    score: float


@dataclass(frozen=True)
class PoolAnswer:
    """What one asked model replied: the option index it chose (-1 when none could be extracted)."""

    name: str
    choice: int
    text: str


def load_router(path: Union[str, Path]) -> Any:
    """The :class:`cascal.CascalRouter` saved at ``path``."""
    from cascal.router import CascalRouter

    return CascalRouter.load(path)


def rank_question(router: Any, question: str, *, embedder: Any = None) -> list[RankedModel]:
    """Every pool model ranked for ``question``, best first, with its routing score.

    Args:
        router: a fitted router (``route`` and ``model_names_``); CASCAL's records its embedder.
        question: the question text (as it would appear in a dataset's ``question`` field).
        embedder: the embedder to use; default ``load_embedder(router.embedding_model)``.

    Raises:
        ValueError: an empty question, or a router without a recorded embedder and none given.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question: must be a non-empty string")
    if embedder is None:
        name = getattr(router, "embedding_model", None)
        if not name:
            raise ValueError("router: it records no embedding model; pass the embedder explicitly")
        from cascal.embed import load_embedder

        embedder = load_embedder(name)
    x = np.asarray(embedder.encode([question]), dtype=np.float32)
    routing = router.route(x, top_k=len(router.model_names_))
    return [RankedModel(routing.model_names[j], float(routing.scores[0, j])) for j in routing.ranked[0]]


def ask_models(pool: Any, names: Sequence[str], question: str, options: Sequence[str]) -> list[PoolAnswer]:
    """Ask the named models of ``pool`` the question (answering prompt of :mod:`cascal.llm.answering`).

    A model whose endpoint fails after the retries gets ``choice = -1`` and the error as its text;
    an unreachable endpoint raises :class:`cascal.llm.client.EndpointError`.
    """
    from cascal.llm.answering import build_messages
    from cascal.llm.client import ChatClient, RequestFailed
    from cascal.llm.extract import extract_answer

    messages = build_messages(question, list(options))

    async def ask(name: str) -> PoolAnswer:
        async with ChatClient(pool.get(name), pool.retry) as client:
            try:
                completion = await client.complete(messages)
            except RequestFailed as exc:
                return PoolAnswer(name, -1, f"(no usable reply: {exc})")
        return PoolAnswer(name, extract_answer(completion.text, len(options)), completion.text)

    async def ask_all() -> list[PoolAnswer]:
        return list(await asyncio.gather(*(ask(n) for n in names)))

    return asyncio.run(ask_all())


def vote(answers: Sequence[PoolAnswer]) -> int:
    """Plurality of the answers' choices (given best-ranked first); ties go to the choice of the
    highest-ranked model among the tied; -1 when no model gave a usable answer."""
    from cascal.base import ensemble_vote

    if not answers:
        return -1
    choices = np.array([[a.choice for a in answers]], dtype=np.int64)
    return int(ensemble_vote(np.arange(len(answers))[None, :], choices)[0])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("router", help="router file written by `cascal train`")
    parser.add_argument("question", help="the question text")
    parser.add_argument("--top-k", type=int, default=3, help="models to show as the ensemble (default 3)")
    parser.add_argument("--answer", action="store_true", help="ask the top-k models (needs --pool and --option)")
    parser.add_argument("--pool", default=None, help="pool.yaml naming the routed models' endpoints (for --answer)")
    parser.add_argument("--option", action="append", default=None, metavar="TEXT", help="an answer option, in order A, B, ... (repeat; for --answer)")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, OSError, RuntimeError) as exc:  # bad router file, embedder, pool file, endpoint
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from cascal.data import LETTERS

    router = load_router(args.router)
    n_models = len(router.model_names_)
    if not 1 <= args.top_k <= n_models:
        print(f"error: --top-k: must be between 1 and the pool size {n_models}, got {args.top_k}", file=sys.stderr)
        return 2
    if args.answer and (args.pool is None or not args.option or len(args.option) < 2):
        print("error: --answer needs --pool pool.yaml and at least two --option values", file=sys.stderr)
        return 2
    ranked = rank_question(router, args.question)
    print(f"routing with embedder {router.embedding_model} (top {args.top_k} marked *):")
    for i, model in enumerate(ranked):
        mark = "*" if i < args.top_k else " "
        print(f"{mark} {i + 1:>2}. {model.name:<32} {model.score:.4f}")
    if not args.answer:
        return 0
    from cascal.llm.config import load_pool

    pool = load_pool(args.pool)
    chosen = [m.name for m in ranked[: args.top_k]]
    missing = [n for n in chosen if n not in pool.names]
    if missing:
        print(f"error: {args.pool}: no entry for routed model(s) {missing}; pool has {pool.names}", file=sys.stderr)
        return 2
    answers = ask_models(pool, chosen, args.question, args.option)
    for a in answers:
        letter = LETTERS[a.choice] if a.choice >= 0 else "?"
        print(f"{a.name:<32} answered {letter}")
    final = vote(answers)
    print(f"vote of the top {args.top_k}: {LETTERS[final] if final >= 0 else '? (no usable answer)'}")
    return 0
