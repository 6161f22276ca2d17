"""Sub-commands of the ``cascal`` command line.

Every public module in this package is one sub-command and defines:

- ``NAME``: the sub-command's name,
- ``HELP``: a one-line description,
- ``add_arguments(parser)``: declare its options on an ``argparse`` parser,
- ``run(args) -> int``: do the work and return the exit status.

:mod:`cascal.cli` discovers them, so adding a command means adding a module here; modules whose
name starts with ``_`` hold helpers shared by commands (:mod:`cascal.commands._args`).

A command is a thin adapter: it parses, calls the library function (:mod:`cascal.pipeline`,
:mod:`cascal.evaluation`, :mod:`cascal.demo`) and prints the result. It does not catch errors:
:func:`cascal.cli.main` reports every :class:`~cascal.errors.CascalError` and ``OSError`` as one
``error:`` line, and a bug keeps its traceback.
"""
