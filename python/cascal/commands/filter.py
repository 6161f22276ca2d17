"""``cascal filter``: generator-quality statistics (self-answer, spread) and a filtered dataset folder
(see :mod:`cascal.pipeline.filter` for the exact rule)."""

from __future__ import annotations

import argparse

from cascal.commands._args import add_out_of_range, share

NAME = "filter"
HELP = "measure self-answer and spread of an answered generated dataset and write the questions that pass"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="answered dataset folder (generator key as answer)")
    parser.add_argument("--out", required=True, metavar="DIR", help="filtered dataset folder to write")
    parser.add_argument(
        "--min-self-answer",
        type=share,
        default=0.0,
        metavar="SHARE",
        help="drop whole subjects whose self-answer share is below SHARE (default 0)",
    )
    parser.add_argument(
        "--require-spread",
        action="store_true",
        help="keep only questions on which the pool disagrees with a unique plurality",
    )
    parser.add_argument(
        "--keep-disagreeing", action="store_true", help="do not require the key to be a plurality answer of the pool"
    )
    add_out_of_range(parser)


def run(args: argparse.Namespace) -> int:
    from cascal.pipeline.filter import REPORT_FILE, filter_dataset

    report = filter_dataset(
        args.dataset,
        args.out,
        require_self_answer=not args.keep_disagreeing,
        require_spread=args.require_spread,
        min_self_answer=args.min_self_answer,
        out_of_range=args.out_of_range,
    )
    print(report.table())
    if report.dropped_subjects:
        print(f"dropped subjects (self-answer below {args.min_self_answer:.0%}): {', '.join(report.dropped_subjects)}")
    print(f"kept {report.overall.kept} of {report.overall.n_questions} questions in {args.out} (report: {REPORT_FILE})")
    return 0
