"""``cascal answer DATASET --pool pool.yaml``: every pool model answers every question of a dataset."""

from __future__ import annotations

import argparse

from cascal.commands._args import comma_list

NAME = "answer"
HELP = "have every model of a pool answer every question of a dataset folder (cached, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", help="dataset folder (questions.jsonl); predictions/logprobs/cost CSVs are written into it"
    )
    parser.add_argument("--pool", required=True, help="pool.yaml describing the models and their endpoints")
    parser.add_argument(
        "--cache", default=None, metavar="PATH", help="response cache (default: DATASET/answer_cache.sqlite)"
    )
    parser.add_argument(
        "--models",
        type=comma_list,
        default=None,
        metavar="A,B",
        help="comma-separated subset of the pool's model names",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, metavar="N", help="override every model's max_concurrency"
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="if another run is answering DATASET, wait for it to finish (default: stop at once)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cascal.errors import InvalidParameterError
    from cascal.llm.config import load_pool
    from cascal.pipeline.answer import answer_dataset

    if args.concurrency is not None and args.concurrency < 1:
        raise InvalidParameterError(f"--concurrency: must be >= 1, got {args.concurrency}")
    result = answer_dataset(
        args.dataset,
        load_pool(args.pool),
        cache_path=args.cache,
        progress=not args.no_progress,
        models=args.models,
        concurrency=args.concurrency,
        wait=args.wait,
    )
    stats = result.extra.get("answering", {})
    print(f"{args.dataset}: {result.n_questions} questions")
    print(f"{'model':<32} {'answered':>9} {'unparsable':>10} {'missing':>7} {'cached':>7} {'requests':>9}")
    for name, s in stats.items():
        print(
            f"{name:<32} {s['answered']:>9} {s['unparsable']:>10} {s['missing']:>7} {s['cached']:>7} {s['requests_sent']:>9}"
        )
    missing = {name: s["missing"] for name, s in stats.items() if s["missing"]}
    if missing:
        per_model = ", ".join(f"{name} {n}" for name, n in missing.items())
        print(
            f"missing: {sum(missing.values())} answers ({per_model}) got no usable reply after every retry; "
            "they are left empty (not asked, no vote): run the command again to ask only those"
        )
    return 0
