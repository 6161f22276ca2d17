"""``cascal serve-bench``: load benchmark of the ``cascal serve`` gateway on 127.0.0.1 (``docs/serve.md``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cascal.commands._args import import_extra, positive_int

NAME = "serve-bench"
HELP = "measure the gateway on 127.0.0.1: /v1/route decisions/s and p50/p99 at 1/16/64 clients per embedder, added chat latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per concurrency level (default 3)")
    parser.add_argument("--clients", default="1,16,64", help="comma-separated concurrency levels (default 1,16,64)")
    parser.add_argument(
        "--chat-requests",
        type=positive_int,
        default=300,
        help="sequential chat requests each way for the added latency (default 300)",
    )
    parser.add_argument(
        "--embedder",
        action="append",
        default=None,
        metavar="NAME",
        help="embedder of the router and the gateway, e.g. static:DIR (repeat for one row group each; "
        "default hashing-256)",
    )
    parser.add_argument(
        "--questions",
        type=Path,
        default=None,
        metavar="FILE",
        help="questions.jsonl whose question texts are the /v1/route queries (default: the simulated questions)",
    )
    parser.add_argument(
        "--decision-log",
        choices=("off", "lines", "embeddings"),
        default="off",
        help="have the gateway write a decision log (lines) and its embedding sidecar (embeddings) (default off)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="run the gateway with `cascal serve --workers N` (default 1; not with --decision-log)",
    )


def run(args: argparse.Namespace) -> int:
    import_extra("cascal.serve.server", NAME, "serve")  # the benchmark starts a gateway process
    from cascal.bench.gateway_load import format_results, run_load_benchmark

    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    results = run_load_benchmark(
        clients,
        seconds=args.seconds,
        chat_requests=args.chat_requests,
        embedders=args.embedder or ["hashing-256"],
        questions_file=args.questions,
        decision_log=args.decision_log,
        workers=args.workers,
    )
    print(format_results(results))
    return 0
