"""``cascal generate``: write a dataset of generated multiple-choice questions (see
:mod:`cascal.pipeline.generate`).

The generator is either a model entry of a pool file (``--generator NAME --pool pool.yaml``, using
that file's retry policy) or the ``generator`` entry of the tasks file (no ``--pool``); see
:func:`cascal.pipeline.generate.resolve_generator`.
"""

from __future__ import annotations

import argparse
import json
import sys

from cascal.commands._args import positive_int

NAME = "generate"
HELP = "generate multiple-choice questions per subject with a generator LLM and write a dataset folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, metavar="TASKS_YAML", help="subjects and their descriptions")
    parser.add_argument(
        "--generator",
        default=None,
        metavar="NAME",
        help="name of the generator: a model of --pool, or the tasks file's generator",
    )
    parser.add_argument("--pool", default=None, metavar="POOL_YAML", help="pool file holding the generator entry")
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    parser.add_argument(
        "--n", type=positive_int, default=None, metavar="N", help="questions per subject (overrides tasks.yaml)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=10, help="questions asked for per request (default 10)"
    )
    parser.add_argument(
        "--max-attempts", type=positive_int, default=None, help="requests per subject (default 2*ceil(N/batch)+2)"
    )
    parser.add_argument("--options", type=int, default=4, dest="n_options", help="options per question to ask for")
    parser.add_argument(
        "--near-threshold",
        type=float,
        default=0.8,
        help="character 5-gram Jaccard at or above which two questions are duplicates",
    )
    parser.add_argument(
        "--cache", default=None, metavar="PATH", help="response cache (default <out>/generation_cache.sqlite)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cascal.pipeline.generate import REPORT_FILE, format_report_table, generate_dataset, resolve_generator

    tasks, generator, retry = resolve_generator(args.tasks, generator=args.generator, pool_path=args.pool)
    out = generate_dataset(
        tasks,
        generator,
        args.out,
        n_per_subject=args.n,
        batch_size=args.batch_size,
        max_attempts=args.max_attempts,
        n_options=args.n_options,
        near_threshold=args.near_threshold,
        cache_path=args.cache,
        retry=retry,
        progress=not args.no_progress,
    )
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    short = [s for s in report["subjects"] if s["shortfall"]]
    print(format_report_table(report))
    print(f"wrote {report['generated']} questions to {out}")
    if short:
        print(f"warning: {len(short)} subject(s) fell short of N; see {out / REPORT_FILE}", file=sys.stderr)
    return 0
