"""``cascal route-batch INPUT --router R --out OUT``: route a Parquet log of queries offline.

Reads an embedding column (or a text column embedded with the router's embedder) in record batches,
writes one Parquet file with the ranking, scores (and expected cost when the router knows prices) of
every row; ``--engine ray`` runs the batches on Ray Data (the optional extra ``cascal[ray]``).
See :mod:`cascal.pipeline.route_batch` and ``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import sys

from cascal.commands._args import import_extra, positive_int

NAME = "route-batch"
HELP = "route every row of a Parquet file or directory (embeddings or texts) and write rankings to Parquet"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="a Parquet file, or a directory of *.parquet files")
    parser.add_argument("--router", required=True, metavar="R", help="router file written by `cascal train`")
    parser.add_argument("--out", required=True, metavar="OUT", help="output Parquet file (written atomically)")
    column = parser.add_mutually_exclusive_group()
    column.add_argument(
        "--embedding-column",
        default=None,
        metavar="COL",
        help="column of query embeddings (list of floats of the router's dimension; default 'embedding')",
    )
    column.add_argument(
        "--text-column", default=None, metavar="COL", help="column of query texts, embedded with --embedder"
    )
    parser.add_argument(
        "--embedder",
        default=None,
        metavar="SPEC",
        help="embedder of --text-column (default the router's own; a different one is refused)",
    )
    parser.add_argument("--id-column", default=None, metavar="COL", help="column copied to the output unchanged")
    parser.add_argument(
        "--top-k", type=positive_int, default=None, help="models kept per row, best first (default: the whole pool)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=16_384, help="rows per record batch (default 16384)")
    parser.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: Ray Data map_batches (needs cascal[ray]; default local)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="Ray cluster to join with --engine ray (default $RAY_ADDRESS, else a local Ray instance)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="router actors with --engine ray (default: up to the cluster's CPUs less one, left to reading)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing --out that is not a route-batch output (an input is never replaced)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress and sys.stderr.isatty()
    options = dict(
        embedding_column=args.embedding_column,
        text_column=args.text_column,
        id_column=args.id_column,
        top_k=args.top_k,
        batch_size=args.batch_size,
        embedder=args.embedder,
        progress=progress,
        force=args.force,
    )
    if args.engine == "ray":
        distributed = import_extra("cascal.distributed", NAME, "ray")
        import_extra("ray.data", NAME, "ray")
        summary = distributed.route_parquet_ray(
            args.input, args.router, args.out, address=args.ray_address, workers=args.workers, **options
        )
    else:
        import_extra("pyarrow.parquet", NAME, "parquet")
        from cascal.pipeline.route_batch import route_parquet

        summary = route_parquet(args.input, args.router, args.out, **options)
    print(
        f"route-batch: {summary.rows} rows from {summary.files} file(s) -> {summary.out} "
        f"in {summary.seconds:.1f} s ({summary.rows_per_second:,.0f} rows/s, engine {args.engine})"
    )
    return 0
