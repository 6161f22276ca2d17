"""``cascal refresh DATASET --router R --tasks NEW_TASKS.yaml --pool POOL``: follow drifted traffic,
label-free (see :mod:`cascal.pipeline.refresh`).

Generates, answers, embeds and filters questions for the tasks' new subjects, merges them with
DATASET (the folder the router was trained on), refits with the router's parameters, shadow-checks
the new router against the old one (on logged traffic with ``--decisions`` or ``--queries``, and on
the new questions), writes it atomically and, with ``--reload-url``, asks the running gateway to
load it. The router file is written before the reload is asked, and stays written if it fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import TYPE_CHECKING, Optional

from cascal.commands._args import positive_int, read_prices

if TYPE_CHECKING:
    from cascal.llm.config import ModelConfig, RetryPolicy, TasksConfig

NAME = "refresh"
HELP = "cover drifted traffic: generate, answer, embed and filter questions for new subjects, merge, refit, shadow-check, write and reload"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="dataset folder the router was trained on (answers + embeddings)")
    parser.add_argument("--router", required=True, metavar="R", help="the router file in use")
    parser.add_argument(
        "--tasks",
        required=True,
        metavar="TASKS_YAML",
        help="subjects to cover (e.g. the draft of `cascal coverage`); subjects DATASET already has are skipped",
    )
    parser.add_argument(
        "--pool",
        required=True,
        metavar="POOL_YAML",
        help="pool.yaml with every model of DATASET (answers the new questions)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="PATH",
        help="router file to write, atomically (default: --router itself; the old one is kept in the work folder)",
    )
    parser.add_argument(
        "--generator",
        default=None,
        metavar="NAME",
        help="the generator: a model of --generator-pool, else of --pool, else the tasks file's generator",
    )
    parser.add_argument(
        "--generator-pool", default=None, metavar="POOL_YAML", help="pool file holding the generator entry"
    )
    parser.add_argument(
        "--work",
        default=None,
        metavar="DIR",
        help="work folder: caches, new questions, merged dataset (default DATASET-refresh)",
    )
    parser.add_argument(
        "--n", type=positive_int, default=None, metavar="N", help="questions per new subject (overrides the tasks file)"
    )
    traffic = parser.add_mutually_exclusive_group()
    traffic.add_argument(
        "--decisions",
        default=None,
        metavar="LOG",
        help="decision log of `cascal serve --log-text` for the shadow check on logged traffic",
    )
    traffic.add_argument(
        "--queries",
        default=None,
        metavar="FILE",
        help="query texts for the shadow check instead: one per line, or JSON lines with 'text' or 'question'",
    )
    parser.add_argument(
        "--max-queries",
        type=positive_int,
        default=50_000,
        metavar="N",
        help="logged queries read for the shadow check, at most (the first N; default 50000)",
    )
    parser.add_argument(
        "--no-filter",
        action="store_true",
        help="keep every new question (default: only those the pool's plurality answers as the key)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="override every pool model's max_concurrency",
    )
    parser.add_argument(
        "--prices",
        default=None,
        metavar="FILE",
        help="prices YAML or pool.yaml with prices, for a router that routes on cost (as `cascal train --prices`)",
    )
    parser.add_argument(
        "--reload-url",
        default=None,
        metavar="URL",
        help="then POST URL/admin/reload on the running gateway (needs --key-env)",
    )
    parser.add_argument(
        "--key-env", default=None, metavar="VAR", help="environment variable holding the gateway key for --reload-url"
    )
    parser.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="also write the refresh report (JSON) here (always in the work folder)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no step lines or progress bars")


def _generator(args: argparse.Namespace) -> "tuple[TasksConfig, ModelConfig, Optional[RetryPolicy]]":
    """``(tasks, generator, retry)``: the generator of --generator-pool, else a model of --pool, else
    the tasks file's (:func:`cascal.pipeline.generate.resolve_generator`)."""
    from cascal.llm.config import load_tasks
    from cascal.pipeline.generate import resolve_generator

    if args.generator_pool is not None:
        return resolve_generator(args.tasks, generator=args.generator, pool_path=args.generator_pool)
    tasks = load_tasks(args.tasks)
    own = tasks.generator
    if args.generator is not None and (own is None or own.name != args.generator):
        return resolve_generator(args.tasks, generator=args.generator, pool_path=args.pool)
    return resolve_generator(args.tasks, generator=args.generator)


def _reload_key(args: argparse.Namespace) -> str:
    from cascal.errors import ConfigError

    if args.key_env is None:
        raise ConfigError("--reload-url: needs --key-env VAR, the environment variable holding the gateway key")
    key = os.environ.get(args.key_env, "")
    if not key.strip():
        raise ConfigError(f"--key-env: the environment variable {args.key_env} is not set or empty")
    return key


def run(args: argparse.Namespace) -> int:
    import json

    from cascal.errors import ReloadError
    from cascal.io import atomic_write_text
    from cascal.llm.config import load_pool
    from cascal.pipeline.refresh import refresh_router
    from cascal.pipeline.reload import reload_gateway

    key = _reload_key(args) if args.reload_url is not None else None  # checked before anything is paid
    tasks, generator, retry = _generator(args)
    queries, source = None, None
    if args.decisions is not None or args.queries is not None:
        from cascal.io.decision_log import file_sha256
        from cascal.io.queries import read_queries
        from cascal.pipeline.refresh import router_in_use

        source = args.decisions if args.decisions is not None else args.queries
        routed_by = router_in_use(args.router, args.dataset, args.work)
        if not routed_by.is_file():
            from cascal.errors import RouterFileError

            raise RouterFileError(f"{routed_by}: no such router file")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logged = read_queries(
                source, limit=args.max_queries, router_sha256=file_sha256(routed_by), router_name=str(routed_by)
            )
        for warning in caught:
            print(f"cascal refresh: warning: {warning.message}", file=sys.stderr)
        queries = logged.texts
    result = refresh_router(
        args.dataset,
        args.router,
        tasks,
        generator,
        load_pool(args.pool),
        out=args.out,
        work_dir=args.work,
        queries=queries,
        queries_source=source,
        n_per_subject=args.n,
        generation_retry=retry,
        filter_questions=not args.no_filter,
        concurrency=args.concurrency,
        prices=read_prices(args.prices),
        progress=not args.no_progress,
    )
    requests = sum(int(s.get("requests_sent", 0)) for s in result.answering.values())
    cached = sum(int(s.get("cached", 0)) for s in result.answering.values())
    print(f"new subjects: {', '.join(result.subjects)}")
    if result.skipped_subjects:
        print(f"skipped (already in {args.dataset}): {', '.join(result.skipped_subjects)}")
    print(
        f"new questions: {result.generated} generated, {result.kept} kept; merged dataset {result.dataset_dir} "
        f"({result.questions} questions)"
    )
    print(f"answering the new questions: {requests} requests sent, {cached} replies from the cache")
    print(result.shadow.table())
    summary = result.to_dict()
    if args.report is not None:
        atomic_write_text(args.report, json.dumps(summary, indent=2) + "\n")
    print(
        f"wrote the new router to {result.router_path}"
        + (f" (the old one: {result.previous_router})" if result.previous_router else "")
    )
    if args.reload_url is not None:
        assert key is not None
        try:
            answer = reload_gateway(args.reload_url, key)
        except ReloadError as exc:
            raise ReloadError(f"{exc}; the new router is written to {result.router_path} all the same") from None
        print(f"gateway reloaded: {json.dumps(answer, sort_keys=True)}")
    return 0
