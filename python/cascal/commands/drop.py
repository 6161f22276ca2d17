"""``cascal drop ROUTER --model NAME --out OUT``: a router that no longer routes to some models.

Removing a model from a pool (retired, too expensive, an outage) needs no new answers and no
refit: the saved router's per-model columns are dropped (:meth:`cascal.CascalRouter.without_models`)
and the niches, centroids and routing constants are kept. The result is saved like any router, so
``cascal route`` / ``cascal serve`` load it as they load a trained one. docs/operations.md says what
this keeps from the full pool's fit and how far it is from a refit on the smaller pool.
"""

from __future__ import annotations

import argparse

NAME = "drop"
HELP = "write a copy of a trained router that never routes to the given models (no refit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("router", help="router file written by `cascal train`")
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="NAME",
        help="a model to drop, as the router names it (repeat for several)",
    )
    parser.add_argument("--out", required=True, help="router file to write (may not be ROUTER itself)")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from cascal.errors import InvalidParameterError
    from cascal.pipeline.route import load_router

    if Path(args.out).resolve() == Path(args.router).resolve():
        raise InvalidParameterError(f"--out: {args.out} is the input router; write the smaller router elsewhere")
    router = load_router(args.router)
    start = time.perf_counter()
    smaller = router.without_models(args.model)
    elapsed = time.perf_counter() - start
    smaller.save(args.out)
    kept = ", ".join(smaller.model_names_)
    print(f"dropped {', '.join(dict.fromkeys(args.model))} in {elapsed * 1e3:.1f} ms (no refit)")
    print(f"{args.out}: routes to {len(smaller.model_names_)} models: {kept}")
    return 0
