"""``cascal coverage DECISIONS --router R``: how the router covers the traffic a gateway logged, the
clusters of traffic it routes mostly by its global fallback, and a ``tasks.yaml`` draft for them
(:mod:`cascal.coverage`; docs/coverage.md)."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Union

from cascal.commands._args import positive_int, share

NAME = "coverage"
HELP = "report how a router covers the traffic in a gateway's decision log and draft tasks for what it misses"


def cut_value(text: str) -> Union[float, str]:
    """``"auto"`` or a cosine distance in (0, 2]."""
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a cosine distance or 'auto', got {text!r}") from None
    if not 0.0 < value <= 2.0:
        raise argparse.ArgumentTypeError(f"expected a cosine distance in (0, 2], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("decisions", metavar="DECISIONS", help="decision log written by cascal serve --log-decisions")
    parser.add_argument("--router", required=True, metavar="ROUTER", help="the router file the gateway served")
    parser.add_argument(
        "--embeddings",
        default=None,
        metavar="SIDECAR",
        help="embedding sidecar folder of the log (default DECISIONS.embeddings when it exists; "
        "without one, logged text is embedded again)",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="folder for coverage.json, tasks.yaml, coverage.png (default DECISIONS.coverage)",
    )
    parser.add_argument(
        "--uncovered-above",
        type=share,
        default=0.0,
        metavar="SHARE",
        help="a query whose fallback weight exceeds SHARE is uncovered (default 0: the global ranking blended in at all)",
    )
    parser.add_argument(
        "--min-size",
        type=positive_int,
        default=20,
        metavar="N",
        help="size floor: clusters of fewer (estimated) queries are not reported (default 20)",
    )
    parser.add_argument(
        "--cut",
        type=cut_value,
        default="auto",
        metavar="DIST|auto",
        help="cosine distance at which the average-linkage tree is cut (default auto: from the router's fallback distance)",
    )
    parser.add_argument(
        "--max-points",
        type=positive_int,
        default=2000,
        metavar="N",
        help="most uncovered queries sampled for clustering (default 2000)",
    )
    parser.add_argument(
        "--examples",
        type=int,
        default=5,
        metavar="N",
        help="example texts per cluster, when text was logged (default 5)",
    )
    parser.add_argument(
        "--questions",
        type=positive_int,
        default=50,
        metavar="N",
        help="questions per subject in the tasks.yaml draft (default 50)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample of uncovered queries (default 0)")
    parser.add_argument(
        "--describe",
        action="store_true",
        help="have a generator model name and describe each cluster from its examples (needs --generator-pool)",
    )
    parser.add_argument(
        "--generator-pool", default=None, metavar="POOL.yaml", help="pool file holding the generator of --describe"
    )
    parser.add_argument(
        "--generator",
        default=None,
        metavar="NAME",
        help="the generator's name in --generator-pool (default its first model)",
    )
    parser.add_argument(
        "--cache", default=None, metavar="PATH", help="response cache of --describe (default OUT/describe_cache.sqlite)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from cascal.coverage import CoverageSettings, analyse_coverage
    from cascal.coverage.outputs import summary, write_outputs
    from cascal.errors import ConfigError

    if args.describe and not args.generator_pool:
        raise ConfigError("--describe: name the generator's pool file with --generator-pool POOL.yaml")
    if args.examples < 0:
        raise ConfigError(f"--examples: must be >= 0, got {args.examples}")
    settings = CoverageSettings(
        uncovered_above=args.uncovered_above,
        min_size=args.min_size,
        cut=args.cut,
        max_points=args.max_points,
        examples=args.examples,
        seed=args.seed,
    )
    out = Path(args.out) if args.out else Path(args.decisions).with_name(Path(args.decisions).name + ".coverage")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        report = analyse_coverage(
            args.decisions, args.router, embeddings=args.embeddings, settings=settings, progress=not args.no_progress
        )
        if args.describe:
            from cascal.coverage.describe import describe_clusters
            from cascal.llm.config import load_pool

            pool = load_pool(args.generator_pool)
            generator = pool.get(args.generator) if args.generator else pool.models[0]
            cache = args.cache or out / "describe_cache.sqlite"
            out.mkdir(parents=True, exist_ok=True)
            n = describe_clusters(report, generator, cache_path=cache, retry=pool.retry)
            print(f"{generator.name} described {n} of {len(report.clusters)} cluster(s)")
    for warning in caught:
        print(f"cascal coverage: warning: {warning.message}", file=sys.stderr)
    paths = write_outputs(report, out, questions=args.questions)
    print(summary(report))
    print(f"wrote {paths['report']}, {paths['tasks']} and {paths['plot']}")
    return 0
