"""The ``cascal`` command line: discovers the sub-commands in :mod:`cascal.commands`.

Errors are reported here, in one place: a :class:`~cascal.errors.CascalError` (anything cascal
refuses on purpose) or an ``OSError`` (a file that cannot be read or written) becomes one line
``error: <message>`` on stderr and exit status 2, except an :class:`~cascal.errors.EndpointError`
(an LLM endpoint failed; the input is fine and the same command may succeed later), which exits
with 1. Ctrl-C exits with 130. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

import cascal.commands
from cascal.errors import CascalError, EndpointError

#: Exit status of an error cascal refuses on purpose, and of an unreadable or unwritable file.
EXIT_ERROR = 2
#: Exit status of an endpoint failure (:class:`~cascal.errors.EndpointError`).
EXIT_ENDPOINT = 1
#: Exit status after Ctrl-C.
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per public module of :mod:`cascal.commands`
    (modules whose name starts with ``_`` hold shared helpers, not commands)."""
    from cascal import __version__

    parser = argparse.ArgumentParser(
        prog="cascal",
        description="Label-free LLM routing: Routing with Generated Data and the CASCAL router.",
    )
    parser.add_argument("--version", action="version", version=f"cascal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(cascal.commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"cascal.commands.{info.name}")
        cmd = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def error_message(exc: BaseException) -> str:
    """The one-line text reported for ``exc``: its message (the lines of a multi-line message joined
    by spaces); for an ``OSError`` the file it concerns and the system's reason
    (``path: No such file or directory``)."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
        return f"{where}: {exc.strerror}"
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``cascal`` script; returns the process exit status (see the module
    docstring for how errors map to statuses)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CascalError, OSError) as exc:
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return EXIT_ENDPOINT if isinstance(exc, EndpointError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
