"""Reading the UTF-8 text files of a dataset folder (questions.jsonl, the CSV files, labels files).

Text files are UTF-8, with or without a byte-order mark; any other bytes are refused with a
:class:`~cascal.errors.DataError` naming the file and the line.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Optional

from cascal.errors import DataError

__all__ = ["has_surrogate", "read_text", "split_lines"]


def read_text(file: Path, limit: Optional[int] = None) -> str:
    """The content of ``file`` as UTF-8 text (a leading byte-order mark is dropped).

    Raises:
        cascal.errors.DataError: bytes that are not UTF-8 (naming the file and the line), or a file
            of more than ``limit`` bytes (at most ``limit + 1`` are read).
        OSError: the file cannot be read.
    """
    if limit is None:
        data = file.read_bytes()
    else:
        with open(file, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise DataError(f"{file}: larger than {limit} bytes; refused")
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(split_lines(data[start : start + exc.start].decode("utf-8")))
        raise DataError(f"{file}:{line}: not UTF-8 text ({exc.reason} at byte {start + exc.start})") from None


def split_lines(text: str) -> list[str]:
    """``text`` split at ``\\n``, ``\\r\\n`` and ``\\r`` (as files are read in text mode)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def has_surrogate(text: str) -> bool:
    """Whether ``text`` holds an unpaired surrogate (from a JSON ``\\ud800`` escape), which no UTF-8
    file, CSV cell or embedder takes."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
