"""``cascal answer DATASET --pool pool.yaml``: every pool model answers every question of a dataset."""

from __future__ import annotations

import argparse
import sys

NAME = "answer"
HELP = "have every model of a pool answer every question of a dataset folder (cached, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder (questions.jsonl); predictions/logprobs/cost CSVs are written into it")
    parser.add_argument("--pool", required=True, help="pool.yaml describing the models and their endpoints")
    parser.add_argument("--cache", default=None, metavar="PATH", help="response cache (default: DATASET/answer_cache.sqlite)")
    parser.add_argument("--models", default=None, metavar="A,B", help="comma-separated subset of the pool's model names")
    parser.add_argument("--concurrency", type=int, default=None, metavar="N", help="override every model's max_concurrency")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cascal.data import DataError
    from cascal.pipeline.answer import answer_dataset
    from cascal.llm.client import EndpointError
    from cascal.llm.config import load_pool

    models = None
    if args.models is not None:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        if not models:
            print("error: --models: give at least one model name", file=sys.stderr)
            return 2
    if args.concurrency is not None and args.concurrency < 1:
        print(f"error: --concurrency: must be >= 1, got {args.concurrency}", file=sys.stderr)
        return 2
    try:
        pool = load_pool(args.pool)
        result = answer_dataset(
            args.dataset,
            pool,
            cache_path=args.cache,
            progress=not args.no_progress,
            models=models,
            concurrency=args.concurrency,
        )
    except EndpointError as exc:
        print(f"error: {exc}\n(every reply received so far is cached; run the command again to resume)", file=sys.stderr)
        return 1
    except (DataError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats = result.extra.get("answering", {})
    print(f"{args.dataset}: {result.n_questions} questions")
    print(f"{'model':<32} {'answered':>9} {'unparsable':>10} {'failed':>7} {'cached':>7} {'requests':>9}")
    for name, s in stats.items():
        print(f"{name:<32} {s['answered']:>9} {s['unparsable']:>10} {s['failed']:>7} {s['cached']:>7} {s['requests_sent']:>9}")
    return 0
