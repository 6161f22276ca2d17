"""``cascal route ROUTER "question"``: rank the pool for one question; optionally ask the top models.

The question is embedded with the embedder recorded in the router file (``cascal.embedding.load_embedder``),
so it lands in the same space as the training questions. With ``--answer --pool pool.yaml`` the top-k
models are asked (through the same client, retries and prompt as ``cascal answer``) and their
plurality vote is printed (ties: the higher-ranked model's answer, the router's ``answer`` rule).
"""

from __future__ import annotations

import argparse

NAME = "route"
HELP = "rank the pool for a question with a trained router; --answer asks the top-k models and votes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("router", help="router file written by `cascal train`")
    parser.add_argument("question", help="the question text")
    parser.add_argument("--top-k", type=int, default=3, help="models to show as the ensemble (default 3)")
    parser.add_argument("--answer", action="store_true", help="ask the top-k models (needs --pool and --option)")
    parser.add_argument("--pool", default=None, help="pool.yaml naming the routed models' endpoints (for --answer)")
    parser.add_argument(
        "--option",
        action="append",
        default=None,
        metavar="TEXT",
        help="an answer option, in order A, B, ... (repeat; for --answer)",
    )
    parser.add_argument(
        "--cost-weight",
        type=float,
        default=None,
        metavar="W",
        help="cost weight of a router trained with prices: rank by skill minus W x expected cost in USD per "
        "1,000 queries (default: the router's own, 0 unless trained with --cost-weight)",
    )


def run(args: argparse.Namespace) -> int:
    from cascal.data import LETTERS
    from cascal.errors import InvalidParameterError
    from cascal.pipeline.route import ask_models, load_router, rank_question, vote

    if args.answer and (args.pool is None or not args.option or len(args.option) < 2):
        raise InvalidParameterError("--answer needs --pool pool.yaml and at least two --option values")
    router = load_router(args.router)
    n_models = len(router.model_names_)
    if not 1 <= args.top_k <= n_models:
        raise InvalidParameterError(f"--top-k: must be between 1 and the pool size {n_models}, got {args.top_k}")
    ranked = rank_question(router, args.question, cost_weight=args.cost_weight)
    print(f"routing with embedder {router.embedding_model} (top {args.top_k} marked *):")
    priced = ranked[0].expected_cost is not None
    for i, model in enumerate(ranked):
        mark = "*" if i < args.top_k else " "
        cost = f"  ${model.expected_cost:.4f} per 1k queries" if model.expected_cost is not None else ""
        print(f"{mark} {i + 1:>2}. {model.name:<32} {model.score:.4f}{cost}")
    if priced:
        total = sum(m.expected_cost or 0.0 for m in ranked[: args.top_k])
        print(f"expected cost of the top {args.top_k}: ${total:.4f} per 1,000 queries")
    if not args.answer:
        return 0
    from cascal.llm.config import load_pool

    answers = ask_models(load_pool(args.pool), [m.name for m in ranked[: args.top_k]], args.question, args.option)
    for a in answers:
        letter = LETTERS[a.choice] if a.choice >= 0 else "?"
        print(f"{a.name:<32} answered {letter}")
    final = vote(answers)
    print(f"vote of the top {args.top_k}: {LETTERS[final] if final >= 0 else '? (no usable answer)'}")
    return 0
