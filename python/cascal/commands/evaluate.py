"""``cascal evaluate``: routers × key sources × seeds on a dataset with real answers
(:func:`cascal.evaluation.run_evaluation`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cascal.commands._args import add_out_of_range, comma_list, positive_int
from cascal.errors import InvalidParameterError

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
        help="large | small | all | lone-strong (24 pools: each of the 4 strongest models with 8 of the 20 "
        "weakest) | name,name,... (repeat for several pools; default: large)",
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
        "--labels",
        type=comma_list,
        default=None,
        metavar="N,N",
        help="label-budget curves instead of the router comparison: numbers of gold labels drawn from "
        "the training split, e.g. 0,10,20,50,100 (CASCAL with labels, label-free CASCAL, best single and kNN "
        "on the labels; the table first compares CASCAL with labels to the better of label-free and best single)",
    )
    parser.add_argument(
        "--label-strategy",
        type=comma_list,
        default=["random"],
        metavar="S,S",
        help="with --labels: how labels are chosen: random, active (CASCAL's suggest_labels); default random",
    )
    parser.add_argument(
        "--label-draws",
        type=positive_int,
        default=3,
        help="with --labels: random label draws per seed and budget (default 3)",
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
    if args.ablations and args.labels is not None:
        raise InvalidParameterError("--ablations and --labels are separate runs; give one of them")
    if args.ablations:
        return _run_ablations(args)
    if args.labels is not None:
        return _run_label_budget(args)
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


def _run_label_budget(args: argparse.Namespace) -> int:
    from cascal.evaluation.label_budget import _groups, budget_table, goal_table, run_label_budget

    try:
        budgets = [int(b) for b in args.labels]
    except ValueError:
        raise InvalidParameterError(
            f"--labels: expected comma-separated integers, got {','.join(args.labels)}"
        ) from None
    results = run_label_budget(
        args.data,
        pools=args.pool or ["large"],
        budgets=budgets,
        strategies=args.label_strategy,
        seeds=args.seeds,
        draws=args.label_draws,
        out_dir=args.out,
        progress=not args.quiet,
        plots=not args.no_plots,
    )
    for name, summary in _groups(results):
        print(f"\npool {name}\n{goal_table(summary)}\n\n{budget_table(summary)}")
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
