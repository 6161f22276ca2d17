"""Labels files: the correct answers a person gave for some questions (``cascal label`` writes one,
``cascal train --labels`` reads it).

A labels file is CSV: the header ``question_id,answer``, then one line per labelled question with
its id as text (as in predictions.csv) and the letter of its correct option. Questions the file
does not name are unlabelled.
"""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

import numpy as np

from cascal.data import LETTERS, NO_ANSWER, DataError, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.io.files import PathLike, atomic_write_text
from cascal.io.questions import json_ids, letter_index
from cascal.io.tables import quote_cell
from cascal.io.text import read_text
from cascal.validation import short_repr

__all__ = ["LABELS_HEADER", "MAX_LABELS_BYTES", "load_labels", "save_labels"]

#: The header of a labels file (``cascal label`` writes one, ``cascal train --labels`` reads it).
LABELS_HEADER = ("question_id", "answer")
#: Largest labels file read, in bytes; a larger file is refused after reading this many.
MAX_LABELS_BYTES = 64 * 2**20


def load_labels(path: PathLike, responses: ResponseMatrix) -> np.ndarray:
    """The answers of a labels file (``question_id,answer``) aligned with the rows of ``responses``.

    The header is ``question_id,answer``; each later line names a question of ``responses`` (its id
    as text, as in predictions.csv) and its correct option as one upper-case letter (``A`` = option
    0). Blank lines are skipped; a question listed twice with the same letter counts once. Questions
    the file does not name are unlabelled.

    Args:
        path: the labels file (e.g. written by ``cascal label``).
        responses: the dataset the labels are for (its ``question_ids`` and ``n_options``).

    Returns:
        ``(n_q,)`` int64 answer indices, ``-1`` where a question is unlabelled.

    Raises:
        cascal.errors.DataError: the file is larger than :data:`MAX_LABELS_BYTES`, not UTF-8, empty,
            or has another header; a line with another number of cells than two, a question_id that
            is not in the dataset, an answer that is empty, not a letter or beyond its question's
            options, or a question_id listed again with another answer. The message starts with
            the file and the line.
        OSError: the file cannot be read.
    """
    file = Path(path)
    keys = [str(q) for q in json_ids(responses)]
    row_of = {key: i for i, key in enumerate(keys)}
    n_options = np.asarray(responses.n_options)
    labels = np.full(len(keys), NO_ANSWER, dtype=np.int64)
    first_line: dict[int, int] = {}
    reader = csv.reader(StringIO(read_text(file, limit=MAX_LABELS_BYTES), newline=""))
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{file}: empty file (expected the header {','.join(LABELS_HEADER)})") from None
        if tuple(c.strip() for c in header) != LABELS_HEADER:
            raise DataError(f"{file}:1: header must be {','.join(LABELS_HEADER)}, got {short_repr(','.join(header))}")
        for cells in reader:
            lineno = reader.line_num
            if not cells:
                continue
            if len(cells) != len(LABELS_HEADER):
                raise DataError(f"{file}:{lineno}: {len(cells)} cells, expected 2 (question_id,answer)")
            qid, cell = cells
            row = row_of.get(qid)
            if row is None:
                raise DataError(f"{file}:{lineno}: question_id {short_repr(qid)} is not in the dataset's questions")
            letter = cell.strip()
            where = f"{file}:{lineno}: column 'answer' of question_id {short_repr(qid)}"
            if letter == "":
                raise DataError(f"{where}: empty (delete the line to leave the question unlabelled)")
            idx = letter_index(letter)
            if idx is None:
                raise DataError(f"{where}: {short_repr(letter)} is not an upper-case letter A-T")
            if idx >= n_options[row]:
                raise DataError(
                    f"{where}: {letter!r} is beyond the question's {int(n_options[row])} options "
                    f"(A-{LETTERS[int(n_options[row]) - 1]})"
                )
            if row in first_line:
                if labels[row] != idx:
                    raise DataError(
                        f"{where}: {letter!r} contradicts {LETTERS[int(labels[row])]!r} on line {first_line[row]}"
                    )
                continue
            labels[row] = idx
            first_line[row] = lineno
    except csv.Error as exc:  # a cell over the csv module's field size limit, a NUL byte
        raise DataError(f"{file}:{max(reader.line_num, 1)}: unreadable CSV ({exc})") from None
    return labels


def save_labels(path: PathLike, responses: ResponseMatrix, labels: np.ndarray) -> Path:
    """Write the labelled questions of ``labels`` (aligned with the rows of ``responses``, ``-1`` =
    unlabelled) as a labels file :func:`load_labels` reads: the header ``question_id,answer``, then
    one line per labelled question in row order. The file is replaced atomically (a reader or a
    killed writer sees the old file or the new one); its folder is created if needed. Returns the path.

    Raises:
        cascal.errors.InvalidParameterError: ``labels`` is not an integer array with one entry per row.
        cascal.errors.DataError: an entry is below -1 or beyond its question's options; the
            question ids cannot be written (see :func:`save_dataset`).
    """
    file = Path(path)
    arr = np.asarray(labels)
    if arr.dtype == bool or arr.dtype.kind not in "iu" or arr.shape != (responses.n_questions,):
        raise InvalidParameterError(
            f"labels: expected an integer array of shape ({responses.n_questions},), got {arr.dtype} {arr.shape}"
        )
    y = arr.astype(np.int64)
    n_options = np.asarray(responses.n_options, dtype=np.int64)
    bad = (y < NO_ANSWER) | (y >= n_options)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"labels: row {row} is {int(y[row])}, not -1 or an option of its {int(n_options[row])}")
    keys = [str(q) for q in json_ids(responses)]
    lines = [",".join(LABELS_HEADER) + "\n"]
    lines += [f"{quote_cell(keys[row])},{LETTERS[int(y[row])]}\n" for row in np.flatnonzero(y >= 0)]
    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, "".join(lines))
    return file
