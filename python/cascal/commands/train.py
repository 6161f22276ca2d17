"""``cascal train DATASET --out router.cascal``: fit a CASCAL router on a dataset folder and save it.

The dataset needs the pool's answers (``predictions.csv``, e.g. from ``cascal answer``) and question
embeddings (``embeddings_<name>.npy``, e.g. from ``cascal embed``). The answer key is never read: CASCAL
is query-only. The router file records the embedder's name, so ``cascal route`` embeds new questions
the same way.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Optional

from cascal.commands._args import add_out_of_range, number_or_auto, read_prices

NAME = "train"
HELP = "fit a CASCAL router on a dataset folder (answers + embeddings) and save it to one file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder with predictions.csv and embeddings_<name>.npy")
    parser.add_argument("--out", required=True, help="router file to write (e.g. router.cascal)")
    parser.add_argument(
        "--embeddings", default="auto", help="embedder name of the embeddings file to use (default: the only one)"
    )
    parser.add_argument(
        "--clustering", choices=("agglomerative", "kmeans"), default=None, help="niche clustering method"
    )
    parser.add_argument("--max-niches", type=int, default=None, help="largest number of niches per model and subject")
    parser.add_argument(
        "--min-consensus", type=float, default=None, help="agreement a question needs to count toward a niche"
    )
    parser.add_argument("--top-k", type=int, default=None, help="ensemble size stored as the router's default")
    parser.add_argument(
        "--subject-temp",
        type=number_or_auto,
        default=None,
        metavar="T|auto",
        help="soft subject assignment temperature; 0 = nearest subject only; "
        "default auto (calibrated on the training subjects)",
    )
    parser.add_argument(
        "--fallback-distance",
        type=number_or_auto,
        default=None,
        metavar="D|auto",
        help="niche distance beyond which the global ranking blends in; "
        "default auto (0.99 quantile of the training questions' distances)",
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="PATH",
        help="labels file (question_id,answer; e.g. from `cascal label`) whose answers calibrate the router",
    )
    parser.add_argument("--random-state", type=int, default=0, help="seed of the clustering (default 0)")
    parser.add_argument(
        "--prices",
        default=None,
        metavar="FILE",
        help="prices YAML (layout of examples/prices.yaml) or pool.yaml with price_input_per_mtok / "
        "price_output_per_mtok: the router learns each model's expected cost per niche from cost.csv",
    )
    parser.add_argument(
        "--cost-weight",
        type=float,
        default=None,
        metavar="W",
        help="default cost weight stored in the router (needs --prices; default 0 = skill only)",
    )
    add_out_of_range(parser)


def _router_params(args: argparse.Namespace) -> dict:
    """The :class:`cascal.CascalRouter` parameters given on the command line."""
    params: dict = {"random_state": args.random_state}
    for option in (
        "clustering",
        "max_niches",
        "min_consensus",
        "top_k",
        "subject_temp",
        "fallback_distance",
        "cost_weight",
    ):
        value: Optional[Any] = getattr(args, option)
        if value is not None:
            params[option] = value
    return params


def run(args: argparse.Namespace) -> int:
    from cascal.pipeline.train import describe, labels_line, train_router

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # e.g. models without a usable answer
        try:
            router = train_router(
                args.dataset,
                args.out,
                embeddings=args.embeddings,
                out_of_range=args.out_of_range,
                prices=read_prices(args.prices),
                labels=args.labels,
                **_router_params(args),
            )
        finally:
            for warning in caught:
                print(f"cascal train: warning: {warning.message}", file=sys.stderr)
    print(describe(router))
    if args.labels is not None:
        print(labels_line(router, args.labels))
    print(f"saved router to {args.out}")
    return 0
