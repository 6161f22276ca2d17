"""``cascal label DATASET --router R --n 20``: answer the questions a router suggests, in the terminal.

The router picks the questions whose labels would most change its routing; each is shown with its
subject and lettered options; a letter answers, ``s`` skips, ``q`` quits (Ctrl-D too). Every answer
is saved at once to the labels file (default ``DATASET/labels.csv``), which ``cascal train
--labels`` reads. ``--n`` is the total wanted in the file: re-running the same command continues
where the last run stopped. See :mod:`cascal.pipeline.label`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cascal.commands._args import add_out_of_range, positive_int

NAME = "label"
HELP = "answer the questions a router suggests, one by one in the terminal, into a labels file (resumable)"

#: Exit status after Ctrl-C (the answers typed so far are saved), as :data:`cascal.cli.EXIT_INTERRUPTED`.
EXIT_INTERRUPTED = 130


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder with predictions.csv and embeddings_<name>.npy")
    parser.add_argument("--router", required=True, help="router file written by `cascal train` on the same pool")
    parser.add_argument(
        "--n",
        type=positive_int,
        default=20,
        help="total labels wanted in the labels file, counting those it already holds (default 20)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="labels file (question_id,answer), read first to resume, saved after every answer "
        "(default: DATASET/labels.csv)",
    )
    parser.add_argument(
        "--embeddings", default=None, help="embedder name of the embeddings file to use (default: the router's)"
    )
    add_out_of_range(parser)


def run(args: argparse.Namespace) -> int:
    from cascal.pipeline.label import label_dataset, stdin_reader

    out = Path(args.out) if args.out is not None else Path(args.dataset) / "labels.csv"
    summary = label_dataset(
        args.dataset,
        args.router,
        out,
        args.n,
        embeddings=args.embeddings,
        out_of_range=args.out_of_range,
        read=stdin_reader(),
        write=lambda text: print(text, flush=True),
    )
    ended = {
        "done": f"done: {summary.total} of {summary.target} labels",
        "quit": f"stopped: {summary.total} of {summary.target} labels",
        "end of input": f"end of input: {summary.total} of {summary.target} labels",
        "interrupted": f"interrupted: {summary.total} of {summary.target} labels",
        "no more suggestions": f"no more questions to suggest: {summary.total} labels (of {summary.target} wanted)",
    }[summary.stop]
    skipped = f", {summary.skipped} skipped" if summary.skipped else ""
    print(f"\n{ended} in {summary.path} ({summary.answered} new this session{skipped})", flush=True)
    if summary.total < summary.target and summary.stop != "no more suggestions":
        print("run the same command again to continue", flush=True)
    return EXIT_INTERRUPTED if summary.stop == "interrupted" else 0
