"""``cascal bench``: every Rust kernel against its numpy/scipy reference, as a ratio table."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "time the Rust kernels against their numpy/scipy references and print the ratios"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small inputs and few repeats (seconds, not minutes)")
    parser.add_argument(
        "-k",
        "--match",
        action="append",
        default=None,
        metavar="TEXT",
        help="only cases whose name contains this text; repeat to run several in one process, e.g. -k fit -k route",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the raw timings as JSON")


def run(args: argparse.Namespace) -> int:
    from cascal.bench.runner import run as run_bench

    run_bench(quick=args.quick, match=args.match, json_path=args.json)
    return 0
