"""Sub-commands of the ``cascal`` command line.

Every module in this package is one sub-command and defines:

- ``NAME``: the sub-command's name,
- ``HELP``: a one-line description,
- ``add_arguments(parser)``: declare its options on an ``argparse`` parser,
- ``run(args) -> int``: do the work and return the exit status.

:mod:`cascal.cli` discovers them, so adding a command means adding a module here.
"""
