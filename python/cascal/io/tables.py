"""The per-model CSV tables of a dataset folder, keyed by ``question_id``.

Each has the header ``question_id`` plus one column per model, and one line per question of
questions.jsonl (any order; ids matched by their text, so ``7`` and ``"7"`` are the same id):

- ``predictions.csv``: a cell is a letter, ``?`` (the model answered but no letter could be
  extracted) or empty (the model was not asked);
- optional ``logprobs.csv`` / ``cost.csv``, and ``response_chars.csv`` read on request
  (:func:`load_model_table`): numbers, empty = unknown; their model columns are predictions.csv's.

Every malformed cell raises :class:`~cascal.errors.DataError` naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import IO, Any, Callable, Literal, Sequence

import numpy as np

from cascal.data import LETTERS, NO_ANSWER, NOT_ASKED, DataError, ResponseMatrix
from cascal.io.files import PathLike, atomic_open
from cascal.io.questions import QUESTIONS_FILE, letter_index
from cascal.io.text import read_text
from cascal.validation import short_repr

__all__ = [
    "COST_FILE",
    "LOGPROBS_FILE",
    "OUT_OF_RANGE_CHOICES",
    "PREDICTIONS_FILE",
    "RESPONSE_CHARS_FILE",
    "OutOfRange",
    "answer_cell",
    "load_model_table",
    "number_cell",
    "quote_cell",
    "read_numbers",
    "read_predictions",
    "read_table_rows",
    "write_answer_tables",
    "write_table",
]

#: What a prediction letter beyond its question's options means (see :func:`read_predictions`).
OutOfRange = Literal["error", "unparsable"]
#: The values of ``load_dataset``'s ``out_of_range`` (and of the commands' ``--out-of-range``).
OUT_OF_RANGE_CHOICES = ("error", "unparsable")

#: The answers of the models: a letter, ``?`` or empty per question and model.
PREDICTIONS_FILE = "predictions.csv"
#: Optional log-probabilities of the answers (same layout as predictions.csv).
LOGPROBS_FILE = "logprobs.csv"
#: Optional cost of each answer (same layout as predictions.csv).
COST_FILE = "cost.csv"
#: Optional per-model response lengths in characters (same layout as cost.csv); read on request by
#: :func:`load_model_table` (``cascal evaluate --cost`` turns it into output tokens).
RESPONSE_CHARS_FILE = "response_chars.csv"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_table_rows(file: Path, row_of: dict[str, int]) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    """The model columns and the ``(line, row, cells)`` of each line of the question_id-keyed CSV
    ``file``, ``row`` being ``row_of[question_id]``.

    Raises:
        cascal.errors.DataError: an empty file, another first column, a model column repeated or
            without a name, a line with another number of cells than the header, an id that is not
            in ``row_of`` or is repeated, an id of ``row_of`` without a line, unreadable CSV.
    """
    reader = csv.reader(StringIO(read_text(file), newline=""))
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{file}: empty file (expected a header starting with question_id)") from None
        if not header or header[0] != "question_id":
            raise DataError(f"{file}:1: first column must be 'question_id', got {short_repr(header[:1])}")
        models = header[1:]
        dup = sorted(m for m, count in Counter(models).items() if count > 1)
        if dup:
            raise DataError(f"{file}:1: duplicate model column(s) {short_repr(dup)}")
        if "" in models:
            raise DataError(f"{file}:1: model column {models.index('') + 2} has no name")
        rows = []
        seen: dict[int, int] = {}
        for cells in reader:
            lineno = reader.line_num
            if not cells:
                continue
            if len(cells) != len(header):
                raise DataError(f"{file}:{lineno}: {len(cells)} cells, the header has {len(header)}")
            qid = cells[0]
            if qid not in row_of:
                raise DataError(f"{file}:{lineno}: question_id {short_repr(qid)} is not in {QUESTIONS_FILE}")
            row = row_of[qid]
            if row in seen:
                raise DataError(f"{file}:{lineno}: duplicate question_id {short_repr(qid)} (first on line {seen[row]})")
            seen[row] = lineno
            rows.append((lineno, row, cells[1:]))
    except csv.Error as exc:  # a cell over the csv module's field size limit, a stray quote with strict parsing
        raise DataError(f"{file}:{max(reader.line_num, 1)}: unreadable CSV ({exc})") from None
    if len(seen) != len(row_of):
        missing = [q for q, r in row_of.items() if r not in seen][:5]
        raise DataError(
            f"{file}: {len(row_of) - len(seen)} question(s) of {QUESTIONS_FILE} have no row, e.g. {short_repr(missing)}"
        )
    return models, rows


def read_predictions(
    file: Path, row_of: dict[str, int], n_options: np.ndarray, out_of_range: OutOfRange
) -> tuple[list[str], np.ndarray, dict[str, int]]:
    """The models, the ``(n_q, M)`` int8 answer codes and the per-model count of out-of-range
    letters (only models with some) of the predictions.csv ``file`` (see :func:`read_table_rows`).

    A letter beyond its question's ``n_options`` raises with ``out_of_range="error"``; with
    ``"unparsable"`` it becomes ``NO_ANSWER`` and is counted.

    Raises:
        cascal.errors.DataError: a cell that is not a letter A-T, ``?`` or empty; an out-of-range
            letter with ``out_of_range="error"``; any error of :func:`read_table_rows`.
    """
    models, rows = read_table_rows(file, row_of)
    answers = np.full((len(row_of), len(models)), NOT_ASKED, dtype=np.int8)
    out_counts = {m: 0 for m in models}
    for lineno, row, cells in rows:
        for col, cell in enumerate(cells):
            cell = cell.strip()
            if cell == "":
                continue
            if cell == "?":
                answers[row, col] = NO_ANSWER
                continue
            idx = letter_index(cell)
            if idx is None:
                raise DataError(
                    f"{file}:{lineno}: column {short_repr(models[col])}: unknown answer {short_repr(cell)} "
                    "(expected A-T, '?' or empty)"
                )
            if idx >= n_options[row]:
                if out_of_range == "error":
                    raise DataError(
                        f"{file}:{lineno}: column {short_repr(models[col])}: answer {cell!r} is beyond the question's "
                        f"{n_options[row]} options (--out-of-range unparsable on cascal train, filter and "
                        "evaluate, or load_dataset(out_of_range='unparsable'), counts it as unparsable)"
                    )
                out_counts[models[col]] += 1
                answers[row, col] = NO_ANSWER
                continue
            answers[row, col] = idx
    return models, answers, {m: c for m, c in out_counts.items() if c}


def read_numbers(file: Path, row_of: dict[str, int], models: list[str]) -> np.ndarray:
    """``(n_q, M)`` float32 numbers of the numeric table ``file`` (NaN where empty), whose model
    columns must be ``models`` in that order.

    Raises:
        cascal.errors.DataError: other model columns, a cell that is not a number, infinite or
            beyond the float32 range; any error of :func:`read_table_rows`.
    """
    cols, rows = read_table_rows(file, row_of)
    if cols != models:
        raise DataError(
            f"{file}:1: model columns {short_repr(cols)} differ from {PREDICTIONS_FILE}'s {short_repr(models)}"
        )
    out = np.full((len(row_of), len(models)), np.nan, dtype=np.float32)
    for lineno, row, cells in rows:
        for col, cell in enumerate(cells):
            cell = cell.strip()
            if cell == "":
                continue
            where = f"{file}:{lineno}: column {short_repr(models[col])}"
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{where}: not a number: {short_repr(cell)}") from None
            if math.isinf(value):
                raise DataError(f"{where}: infinite value {short_repr(cell)}")
            if abs(value) > _FLOAT32_MAX:
                raise DataError(f"{where}: {short_repr(cell)} is beyond the float32 range")
            out[row, col] = value
    return out


def load_model_table(folder: PathLike, responses: ResponseMatrix, name: str = RESPONSE_CHARS_FILE) -> np.ndarray:
    """``(n_q, M)`` float32 numbers of the per-model CSV ``name`` of ``folder`` (layout of
    cost.csv: ``question_id`` plus one column per model of ``responses``, in that order), aligned
    with the rows of ``responses`` (loaded from the same folder); empty cells are NaN.

    Raises:
        cascal.errors.DataError: the file is missing or malformed; the message names the file and line.
    """
    file = Path(folder) / name
    if not file.exists():
        raise DataError(f"{file}: missing")
    ids = responses.question_ids if responses.question_ids is not None else np.arange(responses.n_questions)
    row_of = {str(q): i for i, q in enumerate(ids)}
    return read_numbers(file, row_of, list(responses.model_names))


def write_answer_tables(folder: Path, keys: list[str], responses: ResponseMatrix) -> None:
    """Write predictions.csv of ``responses`` into ``folder`` (one line per id text in ``keys``),
    and logprobs.csv / cost.csv, each removed when ``responses`` lacks it; every file atomically."""
    models = responses.model_names
    with atomic_open(folder / PREDICTIONS_FILE) as fh:
        write_table(fh, keys, models, responses.answers, answer_cell)
    for name, arr in ((LOGPROBS_FILE, responses.logprobs), (COST_FILE, responses.cost)):
        if arr is not None:
            with atomic_open(folder / name) as fh:
                write_table(fh, keys, models, arr, number_cell)
        elif (folder / name).exists():
            (folder / name).unlink()  # stale: it described another set of answers


def answer_cell(code: int) -> str:
    """The predictions.csv cell of an answer code: empty (not asked), ``?`` (no answer) or the letter."""
    return "" if code == NOT_ASKED else "?" if code == NO_ANSWER else LETTERS[code]


def number_cell(value: float) -> str:
    """The cell of a number: empty for NaN (unknown), else its shortest round-trip text."""
    return "" if np.isnan(value) else repr(float(value))


def quote_cell(cell: str) -> str:
    """A CSV cell for any text: quoted when it holds a comma, a quote or a line break (``\\r``
    included, which the csv module's writer leaves bare), or is empty."""
    if cell == "" or any(c in cell for c in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def write_table(
    fh: IO[str], keys: Sequence[str], models: Sequence[str], arr: np.ndarray, fmt: Callable[[Any], str]
) -> None:
    """Write a question_id-keyed table to ``fh``: the header, then one line per id text in ``keys``
    with ``fmt`` of each value of that row of ``arr``."""
    fh.write(",".join(quote_cell(c) for c in ["question_id", *models]) + "\n")
    for i, key in enumerate(keys):
        fh.write(",".join([quote_cell(key), *(fmt(v) for v in arr[i])]) + "\n")
