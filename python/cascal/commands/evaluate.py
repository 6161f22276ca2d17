"""``cascal evaluate``: routers × key sources × seeds on a dataset with real answers
(:func:`cascal.evaluation.run_evaluation`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cascal.commands._args import add_out_of_range, comma_list, positive_int

NAME = "evaluate"
HELP = "evaluate CASCAL and the baselines on real answers: accuracy, Kendall tau, per-category tables and plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        type=Path,
        metavar="DIR",
        help="dataset folder with real answers and embeddings (e.g. the MMLU-Pro outputs)",
    )
    parser.add_argument(
        "--pool",
        action="append",
        default=None,
        metavar="POOL",
        help="large | small | all | name,name,... (repeat for several pools; default: large)",
    )
    parser.add_argument(
        "--keys",
        type=comma_list,
        default=["real", "strong", "medium", "weak"],
        metavar="K,K",
        help="key sources for query-answer routers: real, strong, medium, weak "
        "(default: all four; a generator must be outside the pool, so --pool all needs --keys real)",
    )
    parser.add_argument(
        "--generator-key",
        action="append",
        default=[],
        metavar="MODEL",
        help="extra simulated generator: a model outside the pool whose answers become the key",
    )
    parser.add_argument("--seeds", type=positive_int, default=5, help="number of splits, seeds 0..N-1 (default 5)")
    parser.add_argument(
        "--routers",
        type=comma_list,
        default=None,
        metavar="R,R",
        help="routers to run (default: all): random, best-consensus, smoothie-train, cascal, knn, "
        "cluster-rank, cascal-gt, best-single-gold, oracle",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("evaluation"),
        metavar="DIR",
        help="output folder for results.json, report.md and PNG plots (default ./evaluation)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--cost",
        action="store_true",
        help="also evaluate cost-aware CASCAL: sweep the cost weight, draw the cost-accuracy curve against "
        "every single model and their convex hull, table at 5/10/25/50%% of the best model's cost, APGR "
        "(needs token counts: cost.csv, or response_chars.csv; see docs/data-format.md)",
    )
    parser.add_argument(
        "--prices",
        type=Path,
        default=None,
        metavar="FILE",
        help="prices YAML for --cost (e.g. examples/prices.yaml; default: 1 USD per million tokens for every model)",
    )
    add_out_of_range(parser, default="unparsable")


def run(args: argparse.Namespace) -> int:
    from cascal.evaluation import run_evaluation
    from cascal.evaluation.report import accuracy_table

    prices = None
    if args.prices is not None:
        from cascal.router.costs import load_prices

        prices = load_prices(args.prices)
    results = run_evaluation(
        args.data,
        pools=args.pool or ["large"],
        keys=args.keys,
        generator_keys=args.generator_key,
        seeds=args.seeds,
        routers=args.routers,
        out_dir=args.out,
        progress=not args.quiet,
        plots=not args.no_plots,
        out_of_range=args.out_of_range,
        cost=args.cost,
        prices=prices,
    )
    for name, pool in results["pools"].items():
        print(f"\npool {name}\n{accuracy_table(pool)}")
        if "cost" in pool:
            from cascal.evaluation.cost_curve import cost_table

            cost = pool["cost"]
            print(
                f"\ncost ({cost['skipped']})" if "skipped" in cost else f"\ncost ({cost['note']})\n{cost_table(cost)}"
            )
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'report.md'}")
    return 0
