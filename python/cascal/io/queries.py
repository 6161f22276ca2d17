"""Reading the texts of logged traffic: a gateway's decision log, or a file of query texts.

Two layouts are read, told apart by their content, line by line (a large file is never read whole):

- **JSON lines** (a line starting with ``{``): a ``cascal serve`` decision log (the gateway writes
  ``text`` only with ``--log-text``) or any JSONL file whose objects carry the query in ``text`` or
  ``question`` (a dataset's questions.jsonl). Lines without either field are counted, not read.
- **plain text**: one query per non-empty line.

A line that is not valid JSON in a JSON-lines file (a log cut by a crash, a garbled write) ends the
reading there: the queries before it are kept and a :class:`~cascal.errors.QueriesFileWarning`
names the file and the line. At most ``limit`` queries are kept (the first ones).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from cascal.errors import DataError, InvalidParameterError, QueriesFileWarning

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
    """

    path: Path
    texts: list[str] = field(default_factory=list)
    lines: int = 0
    without_text: int = 0
    damaged_line: Optional[int] = None
    truncated: bool = False


def _text_of(record: object) -> Optional[str]:
    if not isinstance(record, dict):
        return None
    for name in TEXT_FIELDS:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def read_queries(path: Union[str, Path], *, limit: int = 50_000) -> LoggedQueries:
    """The query texts of a decision log or a texts file (module docstring).

    Raises:
        cascal.errors.DataError: the file is missing or not UTF-8 (naming the line), or it holds
            no query text at all (a decision log without ``text`` fields says to log with ``--log-text``).
        cascal.errors.InvalidParameterError: ``limit`` below 1.

    Warns:
        QueriesFileWarning: a damaged line ended the reading (the queries before it are returned).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidParameterError(f"limit: must be an integer >= 1, got {limit!r}")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{file}: no such queries file")
    out = LoggedQueries(path=file)
    jsonl: Optional[bool] = None
    with open(file, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            out.lines = number
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError as exc:
                raise DataError(f"{file}:{number}: not UTF-8 text ({exc.reason})") from None
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
            if text is None:
                out.without_text += 1
                continue
            if len(out.texts) >= limit:
                out.truncated = True
                break
            out.texts.append(text)
    if out.damaged_line is not None:
        warnings.warn(
            f"{file}:{out.damaged_line}: not a JSON line (a truncated or garbled write); read the "
            f"{len(out.texts)} queries before it and stopped there",
            QueriesFileWarning,
            stacklevel=2,
        )
    if not out.texts:
        if out.without_text:
            raise DataError(
                f"{file}: none of its {out.without_text} records holds a query text (field 'text' or "
                "'question'); a decision log has texts only when `cascal serve` runs with --log-text"
            )
        raise DataError(f"{file}: holds no query text")
    return out
