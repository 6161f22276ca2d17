"""``cascal embedder build``: distil a static embedder folder from a sentence-transformers model
folder (the Model2Vec method, torch-free; see :mod:`cascal.encoders.distill` and docs/embedding.md)."""

from __future__ import annotations

import argparse

from cascal.commands._args import import_extra, positive_int

NAME = "embedder"
HELP = "build a static embedder (torch-free, microseconds per query) from a sentence-transformers model folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cascal.encoders.distill import DEFAULT_DIM, DEFAULT_MAX_TOKENS, DEFAULT_SIF

    parser.add_argument("action", choices=("build",), help="build: write a static embedder folder")
    parser.add_argument("source", metavar="SRC", help="sentence-transformers model folder (BERT, mean pooling)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder to write the embedder to")
    parser.add_argument(
        "--dim",
        type=positive_int,
        default=DEFAULT_DIM,
        help=f"output dimension (PCA components; default {DEFAULT_DIM})",
    )
    parser.add_argument(
        "--sif",
        type=float,
        default=DEFAULT_SIF,
        help=f"SIF coefficient of the token rank weights (default {DEFAULT_SIF})",
    )
    parser.add_argument(
        "--max-tokens",
        type=positive_int,
        default=DEFAULT_MAX_TOKENS,
        help=f"most tokens of a text the embedder reads (default {DEFAULT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--vocab-limit", type=positive_int, default=None, help="keep only the first N vocabulary tokens (default all)"
    )
    parser.add_argument("--name", default=None, help="embedder name in the manifest (default static-<model>-d<dim>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import_extra("tokenizers", NAME, "static")
    from cascal.embedding import StaticEmbedder
    from cascal.encoders.distill import build_static

    bar = None
    if not args.no_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="embed the vocabulary", unit="token")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        manifest = build_static(
            args.source,
            args.out,
            dim=args.dim,
            sif=args.sif,
            max_tokens=args.max_tokens,
            name=args.name,
            vocab_limit=args.vocab_limit,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    embedder = StaticEmbedder(args.out)
    build = manifest["build"]
    print(
        f"{manifest['name']}: {manifest['vocab_size']} tokens x {manifest['dim']} dims "
        f"(PCA keeps {build['pca_variance_kept']:.1%} of the variance) in {args.out}\n"
        f"embedder name: {embedder.name}\nfiles sha256: {embedder.content_hash}"
    )
    return 0
