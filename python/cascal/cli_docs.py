"""Render the command-line reference ``docs/cli.md`` from the ``cascal`` argparse parsers.

The reference is generated, never edited by hand, so it cannot drift from the code. After changing
a sub-command in :mod:`cascal.commands`, regenerate it with one command::

    python -m cascal.cli_docs > docs/cli.md

``tests/package/test_docs.py`` fails while the committed file differs from :func:`render`.

The output reads only what each argument declares (option strings, metavar, choices, ``required``,
``append``, help text), not argparse's formatted ``--help`` screen, whose layout changes between
Python versions and terminal widths: the same parsers give the same Markdown everywhere.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from cascal.cli import build_parser

#: The command that regenerates the reference (quoted in the file and in test failures).
REGENERATE = "python -m cascal.cli_docs > docs/cli.md"

__all__ = ["REGENERATE", "render", "subcommands", "main"]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` by name, in the order the ``cascal`` CLI registers them."""
    for action in parser._actions:  # argparse keeps sub-parsers on its (only) _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _args_form(action: argparse.Action) -> str:
    """The value part of an argument, as argparse writes it (``X``, ``[X]``, ``[X ...]``, ...)."""
    if action.nargs == 0:
        return ""
    m = _metavar(action)
    if action.nargs is None or action.nargs == 1:
        return m
    if action.nargs == "?":
        return f"[{m}]"
    if action.nargs == "*":
        return f"[{m} ...]"
    if action.nargs == "+":
        return f"{m} [{m} ...]"
    if isinstance(action.nargs, int):
        return " ".join([m] * action.nargs)
    return m  # argparse.REMAINDER / PARSER: not used by cascal's commands


def _invocation(action: argparse.Action) -> str:
    """``--out DIR`` / ``-k, --match MATCH`` / ``dataset``: how the argument is written."""
    value = _args_form(action)
    if not action.option_strings:
        return value
    names = ", ".join(action.option_strings)
    return f"{names} {value}".rstrip()


def _usage_item(action: argparse.Action) -> str:
    if not action.option_strings:
        return _args_form(action)
    text = f"{action.option_strings[-1]} {_args_form(action)}".rstrip()
    return text if action.required else f"[{text}]"


def _documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The parser's arguments minus ``-h/--help`` (every command has it) and suppressed ones."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and a.help != argparse.SUPPRESS
    ]


def _help_text(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own %(default)s / %(prog)s expansion
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % params
    return text


def _notes(action: argparse.Action) -> str:
    """Markdown remarks that ``--help`` shows only in the usage line: required, repeatable."""
    notes = []
    if action.required and action.option_strings:
        notes.append("**required.**")
    if isinstance(action, argparse._AppendAction):
        notes.append("*repeatable.*")
    return "".join(n + " " for n in notes)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (pipes, HTML-looking brackets, emphasis stars)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|").replace("*", "\\*").replace("\n", " ")


def _prose(text: str) -> str:
    """Text safe as a Markdown paragraph (no accidental HTML)."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def _code_cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    actions = _documented(parser)
    optionals = [a for a in actions if a.option_strings]
    positionals = [a for a in actions if not a.option_strings]
    usage = " ".join([parser.prog, *(_usage_item(a) for a in optionals), *(_usage_item(a) for a in positionals)])
    lines = [f"## cascal {name}", ""]
    if parser.description:
        lines += [_prose(parser.description), ""]
    lines += ["```text", usage, "```", ""]
    if actions:
        lines += ["| argument | description |", "|---|---|"]
        for action in positionals + optionals:
            help_text = _notes(action) + _cell(_help_text(action, parser.prog))
            lines.append(f"| {_code_cell(_invocation(action))} | {help_text} |")
        lines.append("")
    return lines


def render(parser: Optional[argparse.ArgumentParser] = None) -> str:
    """The complete Markdown reference of the ``cascal`` command line (default: :func:`cascal.cli.build_parser`)."""
    parser = parser if parser is not None else build_parser()
    commands = subcommands(parser)
    top = " ".join(["cascal", *(_usage_item(a) for a in _documented(parser) if a.option_strings), "COMMAND ..."])
    lines = [
        f"<!-- Generated from the argparse parsers by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "# Command-line reference",
        "",
        _prose(parser.description or ""),
        "",
        "```text",
        top,
        "```",
        "",
        "Every command also takes `-h`/`--help`, and every command is a thin adapter over a library",
        "function (see [architecture.md](architecture.md)). `python -m cascal` is the same program as `cascal`.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    for name, sub in commands.items():
        lines.append(f"| [`{name}`](#cascal-{name}) | {_cell(sub.description or '')} |")
    lines.append("")
    for name, sub in commands.items():
        lines += _section(name, sub)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    """Print the reference to stdout (redirect it into ``docs/cli.md``)."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
