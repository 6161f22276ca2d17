"""The ``cascal`` command line: discovers the sub-commands in :mod:`cascal.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

import cascal.commands


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per module of :mod:`cascal.commands`."""
    from cascal import __version__

    parser = argparse.ArgumentParser(
        prog="cascal",
        description="Label-free LLM routing: Routing with Generated Data and the CASCAL router.",
    )
    parser.add_argument("--version", action="version", version=f"cascal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(cascal.commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"cascal.commands.{info.name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``cascal`` script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
