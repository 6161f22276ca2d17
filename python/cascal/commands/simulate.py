"""``cascal simulate --port N``: serve the SIMULATED generators and pool on 127.0.0.1.

Point a ``pool.yaml`` (printed at start) or a tasks file's ``generator`` at it to run ``cascal
generate`` / ``cascal answer`` / ``cascal route --answer`` offline. No language model is involved.
"""

from __future__ import annotations

import argparse
import sys

NAME = "simulate"
HELP = "serve the simulated generators and pool models (OpenAI-compatible, 127.0.0.1 only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0 = any free port; default 8000)")
    parser.add_argument("--seed", type=int, default=0, help="world seed: which model specialises where (default 0)")
    parser.add_argument("--models", type=int, default=6, help="simulated pool size (default 6)")
    parser.add_argument(
        "--write-pool", default=None, metavar="PATH", help="write a pool.yaml of the simulated pool models"
    )
    parser.add_argument(
        "--write-generators",
        default=None,
        metavar="PATH",
        help="write a pool-format yaml of the simulated generators (for `cascal generate --pool`)",
    )


def run(args: argparse.Namespace) -> int:
    from cascal.io import atomic_write_text
    from cascal.simulate import SimWorld, serve_simulator
    from cascal.simulate.server import pool_yaml

    world = SimWorld(seed=args.seed, n_models=args.models)
    server = serve_simulator(world, port=args.port)
    try:
        text = pool_yaml(server.base_url, world)
        for path, content in (
            (args.write_pool, text),
            (args.write_generators, pool_yaml(server.base_url, world, generators=True)),
        ):
            if path:  # read by a later `cascal answer --pool`: never left half written
                atomic_write_text(path, content)
        print(f"SIMULATED LLM server on {server.base_url} (seed {args.seed}; no real model behind it)")
        print(f"generators: {', '.join(world.generator_names)}")
        print(f"pool: {', '.join(world.model_names)}")
        print("pool.yaml for it:\n" + text, flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.stop()  # also when a --write-* file cannot be written: the port is released
    return 0
