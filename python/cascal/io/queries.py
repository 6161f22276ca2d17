"""Reading the texts of logged traffic: a gateway's decision log, or a file of query texts.

Three layouts are read, told apart by their first line, line by line (a large file is never read whole):

- **a decision log** of ``cascal serve`` (its first line an object with ``endpoint`` and
  ``ranking``; the gateway writes ``text`` only with ``--log-text``): read by the decision-log
  reader, :class:`cascal.io.decision_log.DecisionLogReader`, so damage and the router check are
  those of ``cascal coverage``: the first damaged line ends the reading; with ``router_sha256``
  given, a line written by another router is refused and lines without a hash are accepted with a
  warning;
- **other JSON lines** (a line starting with ``{``): objects carrying the query in ``text`` or
  ``question`` (a dataset's questions.jsonl). A line that is not valid JSON ends the reading there;
- **plain text**: one query per non-empty line.

Lines without a text field are counted, not read. Damage keeps the queries before it and a
:class:`~cascal.errors.DecisionLogWarning` names ``file:line``. At most ``limit`` queries are kept
(the first ones).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from cascal.errors import DataError, DecisionLogWarning, InvalidParameterError
from cascal.io.decision_log import DecisionLogReader, is_decision_line

__all__ = ["LoggedQueries", "read_queries"]

#: Fields of a JSON line that hold the query text, in the order they are looked for.
TEXT_FIELDS = ("text", "question")


@dataclass
class LoggedQueries:
    """The query texts read from one file.

    Attributes:
        path: the file read.
        texts: the query texts, in file order.
        lines: lines read (blank lines included).
        without_text: JSON lines that held no query text (a decision log written without ``--log-text``).
        damaged_line: the 1-based line where reading stopped on damage, or ``None``.
        truncated: reading stopped at ``limit`` queries.
        decision_log: the file is a gateway decision log.
        unverified: decision lines that record no ``router_sha256`` (accepted unchecked).
    """

    path: Path
    texts: list[str] = field(default_factory=list)
    lines: int = 0
    without_text: int = 0
    damaged_line: Optional[int] = None
    truncated: bool = False
    decision_log: bool = False
    unverified: int = 0

    def take(self, text: Optional[str], limit: int) -> bool:
        """Count ``text`` (``None``: a line without a query text) and keep it unless ``limit`` texts
        are kept already; returns whether reading should go on."""
        if text is None:
            self.without_text += 1
            return True
        if len(self.texts) >= limit:
            self.truncated = True
            return False
        self.texts.append(text)
        return True


def _text_of(record: object) -> Optional[str]:
    if not isinstance(record, dict):
        return None
    for name in TEXT_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _first_record(file: Path) -> object:
    """The parsed first non-empty line of ``file`` when it is a JSON line, else ``None``."""
    with open(file, "rb") as fh:
        for raw in fh:
            line = raw.decode("utf-8-sig", errors="replace").strip()
            if line:
                try:
                    return json.loads(line) if line.startswith("{") else None
                except (ValueError, RecursionError):
                    return None
    return None


def _read_decision_log(out: LoggedQueries, limit: int, router_sha256: Optional[str], router_name: str) -> None:
    reader = DecisionLogReader(out.path, router_sha256, router_name=router_name)
    for record in reader:
        if not out.take(_text_of(record), limit):
            break
    out.lines = reader.lines
    out.unverified = reader.unverified
    out.damaged_line = None if reader.damage is None else reader.damage.line
    reader.warn(used="read", stacklevel=4)


def _read_lines(out: LoggedQueries, limit: int) -> None:
    jsonl: Optional[bool] = None
    with open(out.path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            out.lines = number
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataError(f"{out.path}:{number}: not UTF-8 text ({exc.reason})") from None
            if not line:
                continue
            if jsonl is None:
                jsonl = line.startswith("{")
            text: Optional[str] = line
            if jsonl:
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    out.damaged_line = number
                    break
                text = _text_of(record)
            if not out.take(text, limit):
                break
    if out.damaged_line is not None:
        warnings.warn(
            f"{out.path}:{out.damaged_line}: damaged line (not JSON); read the {len(out.texts)} queries "
            "before it and stopped there",
            DecisionLogWarning,
            stacklevel=4,
        )


def read_queries(
    path: Union[str, Path],
    *,
    limit: int = 50_000,
    router_sha256: Optional[str] = None,
    router_name: str = "the router",
) -> LoggedQueries:
    """The query texts of a decision log or a texts file (module docstring).

    Args:
        path: the file.
        limit: queries kept at most.
        router_sha256: the hex SHA-256 of the router a decision log must come from (``None``: not checked).
        router_name: how that router is named in errors and warnings.

    Raises:
        cascal.errors.DataError: the file is missing or not UTF-8 (naming the line), a decision log
            is damaged from its first line or holds a line of another router (naming the line), or
            the file holds no query text at all (a decision log without ``text`` fields says to log
            with ``--log-text``).
        cascal.errors.InvalidParameterError: ``limit`` below 1.

    Warns:
        DecisionLogWarning: a damaged line ended the reading (the queries before it are returned);
            decision lines that record no router.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParameterError(f"limit: must be an integer >= 1, got {limit!r}")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such queries file")
    out = LoggedQueries(path=file)
    out.decision_log = is_decision_line(_first_record(file))
    if out.decision_log:
        _read_decision_log(out, limit, router_sha256, router_name)
    else:
        _read_lines(out, limit)
    if not out.texts:
        if out.without_text:
            raise DataError(
                f"{file}: none of its {out.without_text} records holds a query text (field 'text' or "
                "'question'); a decision log has texts only when `cascal serve` runs with --log-text"
            )
        raise DataError(f"{file}: holds no query text")
    return out
