"""``cascal embed``: embed a dataset's questions and cache them as ``embeddings_<name>.npy`` in the folder
(see :mod:`cascal.embedding`)."""

from __future__ import annotations

import argparse
import sys
import warnings

from cascal.commands._args import positive_int

NAME = "embed"
HELP = "embed the questions of a dataset folder (a static embedder folder, sentence-transformers, an OpenAI-compatible endpoint, or the hashing fallback)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cascal.embedding import BACKENDS, DEFAULT_MODEL

    parser.add_argument("dataset", metavar="DATASET", help="dataset folder")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"sentence-transformers model name or path, static:DIR (a folder of `cascal embedder build`), "
        f"hashing-<d>, or openai:MODEL@BASE_URL for an OpenAI-compatible /v1/embeddings endpoint "
        f"(key from $CASCAL_EMBEDDINGS_API_KEY; default {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="auto: sentence-transformers if installed, else the hashing fallback with a warning",
    )
    parser.add_argument("--batch-size", type=positive_int, default=256, help="texts per encode call (default 256)")
    parser.add_argument("--force", action="store_true", help="recompute even if a matching cached file exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cascal.embedding import get_embedder
    from cascal.io import embeddings_path
    from cascal.pipeline.embed import embed_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        embedder = get_embedder(args.model, args.backend)
    for warning in caught:
        print(f"cascal embed: warning: {warning.message}", file=sys.stderr)
    vectors = embed_dataset(
        args.dataset, embedder, batch_size=args.batch_size, progress=not args.no_progress, force=args.force
    )
    print(
        f"{vectors.shape[0]} x {vectors.shape[1]} embeddings ({embedder.name}) in {embeddings_path(args.dataset, embedder.name)}"
    )
    return 0
