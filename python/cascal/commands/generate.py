"""``cascal generate``: write a dataset of generated multiple-choice questions (see
:mod:`cascal.pipeline.generate`).

The generator is either a model entry of a pool file (``--generator NAME --pool pool.yaml``, using
that file's retry policy) or the ``generator`` entry of the tasks file (no ``--pool``).
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "generate"
HELP = "generate multiple-choice questions per subject with a generator LLM and write a dataset folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", required=True, metavar="TASKS_YAML", help="subjects and their descriptions")
    parser.add_argument("--generator", default=None, metavar="NAME",
                        help="name of the generator: a model of --pool, or the tasks file's generator")
    parser.add_argument("--pool", default=None, metavar="POOL_YAML", help="pool file holding the generator entry")
    parser.add_argument("--out", required=True, metavar="DIR", help="dataset folder to write")
    parser.add_argument("--n", type=int, default=None, metavar="N", help="questions per subject (overrides tasks.yaml)")
    parser.add_argument("--batch-size", type=int, default=10, help="questions asked for per request (default 10)")
    parser.add_argument("--max-attempts", type=int, default=None,
                        help="requests per subject (default 2*ceil(N/batch)+2)")
    parser.add_argument("--options", type=int, default=4, dest="n_options", help="options per question to ask for")
    parser.add_argument("--near-threshold", type=float, default=0.8,
                        help="character 5-gram Jaccard at or above which two questions are duplicates")
    parser.add_argument("--cache", default=None, metavar="PATH",
                        help="response cache (default <out>/generation_cache.sqlite)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_generator(args: argparse.Namespace):
    """``(TasksConfig, ModelConfig, RetryPolicy | None)`` from the command-line arguments."""
    from cascal.llm.config import ConfigError, load_pool, load_tasks

    tasks = load_tasks(args.tasks)
    if args.pool is not None:
        pool = load_pool(args.pool)
        if args.generator is None:
            raise ConfigError(f"--generator: name the generator among {pool.names} of {args.pool}")
        return tasks, pool.get(args.generator), pool.retry
    if tasks.generator is None:
        raise ConfigError(f"{args.tasks}: generator: not set; add it there or pass --generator NAME --pool pool.yaml")
    if args.generator is not None and args.generator != tasks.generator.name:
        raise ConfigError(
            f"--generator: {args.generator!r} is not the generator of {args.tasks} ({tasks.generator.name!r}); "
            "pass --pool to pick a pool model"
        )
    return tasks, tasks.generator, None


def run(args: argparse.Namespace) -> int:
    from cascal.pipeline.generate import REPORT_FILE, GenerationError, format_report_table, generate_dataset
    from cascal.llm.client import EndpointError
    from cascal.llm.config import ConfigError

    try:
        tasks, generator, retry = resolve_generator(args)
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
    except (ConfigError, EndpointError, GenerationError, ValueError) as exc:
        print(f"cascal generate: error: {exc}", file=sys.stderr)
        return 2
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    short = [s for s in report["subjects"] if s["shortfall"]]
    print(format_report_table(report))
    print(f"wrote {report['generated']} questions to {out}")
    if short:
        print(f"warning: {len(short)} subject(s) fell short of N; see {out / REPORT_FILE}", file=sys.stderr)
    return 0
