"""The one way cascal reads a YAML configuration file (``pool.yaml``, ``tasks.yaml``, prices files).

:func:`read_yaml` returns the file's single document as plain Python values (mappings, lists,
strings, numbers, booleans, ``None``) or raises :class:`~cascal.errors.ConfigError` whose message
starts with the file (``<file>:`` or ``<file>:<line>:``). It bounds the work a file can cause:

- size: at most :data:`MAX_CONFIG_BYTES` (1 MiB) are read; a longer file is refused before it is
  parsed (the longest shipped config, ``examples/prices.yaml``, is about 10 KB; a 1 MiB file takes
  about a second over libyaml's parser, five over PyYAML's pure-Python one);
- anchors and aliases (``&name`` / ``*name``) are refused at their line: a few hundred bytes of
  aliases name billions of values (the "billion laughs") that validation and error messages would
  walk, and no config file needs them (``pool.yaml`` shares fields through ``defaults:``);
- nesting: at most :data:`MAX_DEPTH` levels of mappings and lists (config files use three or four);
  deeper nesting would exhaust the parser's recursion;
- text: UTF-8 (a byte-order mark is allowed); other bytes are refused with their line;
- values: a scalar that its tag cannot hold (``2026-02-30`` as a date, ``!!int abc``, an integer of
  more digits than Python converts) is refused with its line instead of raising a stray exception.

The numbers it returns are not range-checked: each file's schema does that (and refuses booleans,
strings, NaN, infinities and integers out of its bounds).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Union, cast

import yaml

from cascal.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "read_yaml"]

#: Largest config file read, in bytes (1 MiB).
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of mappings and lists in a config file.
MAX_DEPTH = 32
#: Longest parser message quoted in an error (a message may quote a long tag or value).
_MAX_PROBLEM = 200

PathLike = Union[str, "os.PathLike[str]"]


class _Refused(yaml.YAMLError):
    """A construct :class:`_PlainLoader` does not read: an anchor, an alias, or nesting too deep."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


class _PythonEvents(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """PyYAML's pure-Python event parser (used when PyYAML was built without libyaml)."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)


def _event_parser() -> type:
    """libyaml's event parser when PyYAML has it (about 5 times faster: a 1 MiB prices file reads in
    about 1 s instead of 5), else the pure-Python one; both give the same events and marks."""
    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return _PythonEvents
    return cast(type, CParser)


def _loader_class(events: type) -> type:
    """A safe loader over the event parser ``events`` (module docs for what it refuses)."""

    class PlainLoader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver, events):
        """A safe loader without anchors and aliases, with bounded nesting, and whose value
        constructors raise YAML errors (with the value's line) instead of ``ValueError`` & co.

        The composer (events -> nodes) is PyYAML's Python one even over libyaml's parser, so that
        every node passes :meth:`compose_node` (libyaml's own composer resolves aliases unseen).
        """

        def __init__(self, text: str) -> None:
            events.__init__(self, text)  # type: ignore[misc]
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(_alias_message(f"alias *{event.anchor[:40]}"), event.start_mark)
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise _Refused(_alias_message(f"anchor &{anchor[:40]}"), event.start_mark)
            if self._depth >= MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels of mappings and lists", event.start_mark)
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep=deep)
            except yaml.YAMLError:
                raise
            except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as exc:
                # e.g. "2026-02-30" (a date that does not exist), "!!int abc", a 5000-digit integer
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"cannot read {_clip(node.value) if isinstance(node.value, str) else 'the value'} "
                    f"as {node.tag.rsplit(':', 1)[-1]} ({_clip(str(exc))})",
                    node.start_mark,
                ) from None

    return PlainLoader


_PlainLoader = _loader_class(_event_parser())


def _alias_message(kind: str) -> str:
    return f"YAML anchors and aliases are not supported, found {kind}; write the value out"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_PROBLEM else text[: _MAX_PROBLEM - 3] + "..."


def read_yaml(path: PathLike, *, label: Optional[str] = None, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """The single YAML document of the config file ``path`` (module docs for what is refused).

    Args:
        path: the file.
        label: how messages name the file (default: ``path`` as given).
        max_bytes: the size cap (default :data:`MAX_CONFIG_BYTES`).

    Raises:
        ConfigError: the file is missing, unreadable, too large, not UTF-8, not YAML, or uses
            what the module docs list as refused; the message starts with ``<label>:`` and, when
            the problem has a place, its line.
    """
    name = os.fspath(path)
    label = name if label is None else label
    if not Path(name).is_file():
        raise ConfigError(f"{label}: file not found" if not Path(name).exists() else f"{label}: not a file")
    try:
        with open(name, "rb") as handle:
            data = handle.read(max_bytes + 1)  # never more than the cap, whatever the file claims
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the file ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ConfigError(
            f"{label}: file larger than {max_bytes} bytes ({max_bytes / 2**20:g} MiB), the limit for config files"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{label}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    loader = _PlainLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"{label}:{exc.mark.line + 1}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ConfigError(f"{label}: not valid YAML: {where}{_clip(problem)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: not valid YAML: {_clip(str(exc))}") from None
    finally:
        loader.dispose()
