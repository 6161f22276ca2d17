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
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="run the CASCAL ablation variants instead of the routers (docs/ablations.md); --keys and "
        "--routers are not used, and --pool also takes random:K:SEED (K models drawn with SEED)",
    )
    parser.add_argument(
        "--variants",
        type=comma_list,
        default=None,
        metavar="V,V",
        help="with --ablations, the variants to run (default: all): full, subject-only, hard-subjects, "
        "equal-weights, majority, no-tau, global-only, kmeans",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_out_of_range(parser, default="unparsable")


def run(args: argparse.Namespace) -> int:
    if args.ablations:
        return _run_ablations(args)
    from cascal.evaluation import run_evaluation
    from cascal.evaluation.report import accuracy_table

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
    )
    for name, pool in results["pools"].items():
        print(f"\npool {name}\n{accuracy_table(pool)}")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'report.md'}")
    return 0


def _run_ablations(args: argparse.Namespace) -> int:
    from cascal.evaluation.ablations import ablation_table, run_ablations

    results = run_ablations(
        args.data,
        pools=args.pool or ["large"],
        seeds=args.seeds,
        variants=args.variants,
        out_dir=args.out,
        progress=not args.quiet,
        plots=not args.no_plots,
        out_of_range=args.out_of_range,
    )
    for name, pool in results["pools"].items():
        print(f"\npool {name}\n{ablation_table(pool)}")
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'report.md'}")
    return 0
