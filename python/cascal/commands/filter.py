"""``cascal filter``: generator-quality statistics (self-answer, spread) and a filtered dataset folder
(see :mod:`cascal.pipeline.filter` for the exact rule)."""

from __future__ import annotations

import argparse
import sys

NAME = "filter"
HELP = "measure self-answer and spread of an answered generated dataset and write the questions that pass"


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1], got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", metavar="DATASET", help="answered dataset folder (generator key as answer)")
    parser.add_argument("--out", required=True, metavar="DIR", help="filtered dataset folder to write")
    parser.add_argument("--min-self-answer", type=_share, default=0.0, metavar="SHARE",
                        help="drop whole subjects whose self-answer share is below SHARE (default 0)")
    parser.add_argument("--require-spread", action="store_true",
                        help="keep only questions on which the pool disagrees with a unique plurality")
    parser.add_argument("--keep-disagreeing", action="store_true",
                        help="do not require the key to be a plurality answer of the pool")


def run(args: argparse.Namespace) -> int:
    from cascal.data import DataError
    from cascal.pipeline.filter import REPORT_FILE, filter_dataset

    try:
        report = filter_dataset(
            args.dataset,
            args.out,
            require_self_answer=not args.keep_disagreeing,
            require_spread=args.require_spread,
            min_self_answer=args.min_self_answer,
        )
    except (DataError, ValueError) as exc:
        print(f"cascal filter: error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    if report.dropped_subjects:
        print(f"dropped subjects (self-answer below {args.min_self_answer:.0%}): {', '.join(report.dropped_subjects)}")
    print(f"kept {report.overall.kept} of {report.overall.n_questions} questions in {args.out} (report: {REPORT_FILE})")
    return 0
