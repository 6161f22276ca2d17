"""``cascal demo``: the whole Routing-with-Generated-Data pipeline, offline, on a SIMULATED pool."""

from __future__ import annotations

import argparse

from cascal.commands._args import comma_list

NAME = "demo"
HELP = "run generate -> answer -> embed -> filter -> train -> route -> evaluate offline on a simulated pool"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="cascal-demo",
        help="output folder (datasets, routers, report.md, plots); default ./cascal-demo",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (2 subjects, fewer questions)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated world (default 0)")
    parser.add_argument(
        "--generators",
        type=comma_list,
        default=["weak", "strong"],
        help="comma-separated generator strengths to compare, from weak, medium, strong (default weak,strong)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no stage lines or progress bars")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="then serve the router with the `cascal serve` gateway and send a few requests through it "
        "(needs cascal[serve])",
    )
    parser.add_argument(
        "--drift",
        action="store_true",
        help="then the drift step: train on some subjects, route traffic a third of which comes from subjects "
        "the tasks never named through a logging gateway, `cascal coverage --describe` drafts their tasks, "
        "`cascal refresh` and a reload follow; accuracy before and after (OUT/drift)",
    )


def run(args: argparse.Namespace) -> int:
    from cascal.demo.runner import run_demo

    result = run_demo(
        args.out, quick=args.quick, seed=args.seed, generators=args.generators, progress=not args.no_progress
    )
    if args.no_progress:
        print(result["table"])
        print(f"report: {result['report']}")
    if args.drift:
        from pathlib import Path

        from cascal.demo.drift import DriftConfig, run_drift

        drift = run_drift(
            Path(args.out) / "drift", DriftConfig.for_mode(args.quick, args.seed), progress=not args.no_progress
        )
        if args.no_progress:
            print(drift["table"])
    if args.serve:
        from cascal.demo.gateway import serve_demo

        serve_demo(args.out, seed=args.seed, generator=args.generators[0])
    return 0
