"""Reading and writing dataset folders.

A dataset folder holds:

- ``questions.jsonl``: one JSON object per line with ``question_id``, ``category``, ``question``,
  ``options`` (2..20 strings) and ``answer`` (gold or generator key letter; ``null`` if unknown);
  other fields are kept in ``ResponseMatrix.extra["question_fields"]``.
- ``predictions.csv``: ``question_id`` plus one column per model; a cell is a letter, ``?`` (the
  model answered but no letter could be extracted) or empty (the model was not asked).
- optional ``logprobs.csv`` / ``cost.csv`` of the same shape (numbers; empty = unknown).
- optional ``embeddings_<model>.npy`` (or ``embeddings.npy``), row-aligned with questions.jsonl.

Every malformed input raises :class:`~cascal.data.DataError` naming the file, the line and the column.
Text files are UTF-8, with or without a byte-order mark.

Question ids and every field of ``questions.jsonl`` keep the JSON values they were read with: the
loaded ``question_ids`` hold the ids as written (``7`` stays an integer, ``"007"`` a string) and each
record is kept in ``extra["question_records"]``, so loading a folder and saving it again writes the
same records (a field the matrix changed is written from the matrix). :func:`save_answers` writes
only the answer files of a folder and never touches its questions.

Every file is written to a uniquely named temporary file in the folder (``.<name>.<random>.tmp``)
and moved over the target with :func:`os.replace`, so a reader sees the old file or the new one,
and two writers never share a temporary file. A run that rewrites the answer files from what it
read earlier (``cascal answer``) holds the folder's lock, :func:`dataset_lock` (the file
``.cascal.lock`` in the folder), for the whole run.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import IO, Any, Callable, Literal, Optional, Sequence, Union

import numpy as np

from cascal.data import LETTERS, MAX_OPTIONS, NO_ANSWER, NOT_ASKED, DataError, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.validation import short_repr

PathLike = Union[str, "os.PathLike[str]"]
OutOfRange = Literal["error", "unparsable"]
#: The values of ``load_dataset``'s ``out_of_range`` (and of the commands' ``--out-of-range``).
OUT_OF_RANGE_CHOICES = ("error", "unparsable")

QUESTIONS_FILE = "questions.jsonl"
PREDICTIONS_FILE = "predictions.csv"
LOGPROBS_FILE = "logprobs.csv"
COST_FILE = "cost.csv"
#: Optional per-model response lengths in characters (same layout as cost.csv); read on request by
#: :func:`load_model_table` (``cascal evaluate --cost`` turns it into output tokens).
RESPONSE_CHARS_FILE = "response_chars.csv"
#: The lock file of a dataset folder (:func:`dataset_lock`).
LOCK_FILE = ".cascal.lock"
_CORE_FIELDS = ("question_id", "category", "question", "options", "answer")
#: ``ResponseMatrix.extra`` key of the fields of questions.jsonl beyond the core ones (one dict per question).
QUESTION_FIELDS = "question_fields"
#: ``ResponseMatrix.extra`` key of the records as read from questions.jsonl (one dict per question).
QUESTION_RECORDS = "question_records"
#: Deepest nesting of JSON arrays and objects accepted on a line of questions.jsonl.
MAX_JSON_DEPTH = 100
_FLOAT32_MAX = float(np.finfo(np.float32).max)

__all__ = [
    "LABELS_HEADER",
    "LOCK_FILE",
    "MAX_JSON_DEPTH",
    "MAX_LABELS_BYTES",
    "OUT_OF_RANGE_CHOICES",
    "dataset_lock",
    "embedding_files",
    "embeddings_path",
    "load_dataset",
    "load_embeddings_file",
    "load_model_table",
    "load_labels",
    "save_answers",
    "save_dataset",
    "save_labels",
]


# ---------------------------------------------------------------------------------------- loading
def load_dataset(
    path: PathLike,
    *,
    embeddings: Optional[str] = "auto",
    out_of_range: OutOfRange = "error",
    mmap: bool = False,
) -> ResponseMatrix:
    """Load a dataset folder into a :class:`ResponseMatrix` (rows in questions.jsonl order).

    ``question_ids`` is an object array of the ids as written in questions.jsonl (integers and
    strings); the CSV files match them by their text (``7`` and ``"7"`` are the same id).

    Args:
        path: the folder.
        embeddings: ``"auto"`` picks up the folder's only ``embeddings_*.npy`` (an error if there are
            several: name one), a model name picks ``embeddings_<name>.npy``, ``None`` loads none.
        out_of_range: what a prediction letter beyond its question's options means: ``"error"``
            (default) raises; ``"unparsable"`` records it as -1 and counts such cells per model in
            ``extra["out_of_range"]`` (real harness outputs contain a few, e.g. "J" on a 9-option question).
        mmap: leave a float32 embeddings file memory-mapped (read-only) instead of reading it into
            memory (see :func:`load_embeddings_file`); ``cascal train`` does, so fitting on a large
            file does not hold a second copy of it.

    Raises:
        cascal.errors.DataError: a missing or malformed file; the message starts with the file and,
            where there is one, the line.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a dataset folder (no such directory)")
    if out_of_range not in OUT_OF_RANGE_CHOICES:
        raise DataError(f"out_of_range: expected 'error' or 'unparsable', got {short_repr(out_of_range)}")
    if embeddings is not None and not isinstance(embeddings, str):
        raise DataError(f"embeddings: expected 'auto', a model name or None, got {short_repr(embeddings)}")
    qfile = folder / QUESTIONS_FILE
    if not qfile.exists():
        raise DataError(f"{qfile}: missing (every dataset folder needs {QUESTIONS_FILE})")
    questions = _read_questions(qfile)
    row_of = {q.key: i for i, q in enumerate(questions)}
    n_options = np.array([len(q.options) for q in questions], dtype=np.int8)

    pfile = folder / PREDICTIONS_FILE
    if pfile.exists():
        models, answers, out_counts = _read_predictions(pfile, row_of, n_options, out_of_range)
    else:
        models, answers, out_counts = [], np.full((len(questions), 0), NOT_ASKED, dtype=np.int8), {}

    logprobs = _read_numeric(folder / LOGPROBS_FILE, row_of, models) if (folder / LOGPROBS_FILE).exists() else None
    cost = _read_numeric(folder / COST_FILE, row_of, models) if (folder / COST_FILE).exists() else None

    emb, emb_name = _read_embeddings(folder, embeddings, len(questions), mmap)
    ids = np.empty(len(questions), dtype=object)
    ids[:] = [q.record["question_id"] for q in questions]
    return ResponseMatrix(
        answers=answers,
        n_options=n_options,
        subjects=np.array([q.category for q in questions], dtype=str),
        model_names=models,
        gold=np.array([q.gold for q in questions], dtype=np.int8),
        logprobs=logprobs,
        cost=cost,
        question_ids=ids,
        questions=[q.question for q in questions],
        options=[q.options for q in questions],
        embeddings=emb,
        embedding_model=emb_name,
        extra={
            QUESTION_FIELDS: [{k: v for k, v in q.record.items() if k not in _CORE_FIELDS} for q in questions],
            QUESTION_RECORDS: [q.record for q in questions],
            "out_of_range": out_counts,
            "path": str(folder),
        },
    )


def _read_text(file: Path, limit: Optional[int] = None) -> str:
    """The content of ``file`` as UTF-8 text (a leading byte-order mark is dropped); other bytes
    raise :class:`DataError` naming the file and the line, and so does a file of more than ``limit``
    bytes (at most ``limit + 1`` are read)."""
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
        line = len(_lines(data[start : start + exc.start].decode("utf-8")))
        raise DataError(f"{file}:{line}: not UTF-8 text ({exc.reason} at byte {start + exc.start})") from None


def _lines(text: str) -> list[str]:
    """``text`` split at ``\\n``, ``\\r\\n`` and ``\\r`` (as files are read in text mode)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


@dataclass
class _Question:
    """One line of questions.jsonl: the record as read and the forms the matrix keeps."""

    record: dict
    key: str
    category: str
    question: str
    options: list[str]
    gold: int


def _read_questions(qfile: Path) -> list[_Question]:
    questions: list[_Question] = []
    seen: dict[str, int] = {}
    lineno = 0

    def refuse(problem: str) -> DataError:
        return DataError(f"{qfile}:{lineno}: {problem}")

    for lineno, line in enumerate(_lines(_read_text(qfile)), start=1):
        if not line or line.isspace():
            continue
        rec = _json_object(line, refuse)
        for key in ("question_id", "category", "question", "options"):
            if key not in rec:
                raise refuse(f"missing field '{key}'")
        qid = rec["question_id"]
        if not isinstance(qid, (int, str)) or isinstance(qid, bool):
            raise refuse(f"question_id must be an integer or a string, got {short_repr(qid)}")
        key = str(qid)
        if key in seen:
            raise refuse(f"duplicate question_id {short_repr(qid)} (first on line {seen[key]})")
        seen[key] = lineno
        opts = rec["options"]
        if not isinstance(opts, list) or not 2 <= len(opts) <= MAX_OPTIONS:
            count = len(opts) if isinstance(opts, list) else type(opts).__name__
            raise refuse(f"field 'options' must be a list of 2..{MAX_OPTIONS} strings, got {count}")
        gold = _answer_index(rec.get("answer"), len(opts))
        if gold is None:
            raise refuse(
                f"field 'answer' is {short_repr(rec.get('answer'))}, not a letter among the question's {len(opts)} options"
            )
        question = _Question(rec, key, str(rec["category"]), str(rec["question"]), [str(o) for o in opts], gold)
        if "\\u" in line:  # only a \u escape can put an unpaired surrogate into decoded UTF-8 text
            for name, text in (
                ("question_id", key),
                ("category", question.category),
                ("question", question.question),
                *(("options", o) for o in question.options),
            ):
                if _has_surrogate(text):
                    raise refuse(f"field '{name}' holds an unpaired surrogate, not text")
        questions.append(question)
    return questions


def _json_object(line: str, refuse: Callable[[str], DataError]) -> dict:
    """One line of questions.jsonl parsed: a JSON object nested at most :data:`MAX_JSON_DEPTH` deep;
    ``refuse(problem)`` makes the error to raise."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise refuse(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise refuse(f"JSON nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        raise refuse(f"invalid JSON ({str(exc).split(';')[0]})") from None
    if not isinstance(rec, dict):
        raise refuse(f"expected a JSON object, got {type(rec).__name__}")
    if line.count("[") + line.count("{") > MAX_JSON_DEPTH and _nesting_exceeds(rec, MAX_JSON_DEPTH):
        raise refuse(f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    return rec


def _nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _has_surrogate(text: str) -> bool:
    """Whether ``text`` holds an unpaired surrogate (from a JSON ``\\ud800`` escape), which no UTF-8
    file, CSV cell or embedder takes."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _answer_index(letter: Any, n_options: int) -> Optional[int]:
    """The option index of an ``answer`` value: -1 for missing, ``null`` or ``""``, ``None`` when
    it is not a letter among ``n_options`` options."""
    if letter is None or letter == "":
        return NO_ANSWER
    idx = _letter_index(letter)
    return idx if idx is not None and idx < n_options else None


def _letter_index(cell: Any) -> Optional[int]:
    if isinstance(cell, str) and len(cell) == 1 and cell in LETTERS:
        return LETTERS.index(cell)
    return None


def _csv_rows(file: Path, row_of: dict) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    """Header (model columns) and (line, row index, cells) of a question_id-keyed CSV, checked for
    raggedness, unknown/duplicate/missing ids."""
    reader = csv.reader(StringIO(_read_text(file), newline=""))
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


def _read_predictions(file: Path, row_of: dict, n_options: np.ndarray, out_of_range: OutOfRange):
    models, rows = _csv_rows(file, row_of)
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
            idx = _letter_index(cell)
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


def _read_numeric(file: Path, row_of: dict, models: list[str]) -> np.ndarray:
    cols, rows = _csv_rows(file, row_of)
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
    return _read_numeric(file, row_of, list(responses.model_names))


def embedding_files(folder: PathLike) -> dict[str, Path]:
    """Embedding files of a dataset folder by model name (``embeddings.npy`` is named ``""``)."""
    found = {}
    for p in sorted(Path(folder).glob("embeddings*.npy")):
        stem = p.stem
        if stem == "embeddings":
            found[""] = p
        elif stem.startswith("embeddings_"):
            found[stem[len("embeddings_") :]] = p
    return found


def embeddings_path(folder: PathLike, model: str) -> Path:
    """Where the embeddings of ``model`` live in a dataset folder (``/`` in names becomes ``__``)."""
    return Path(folder) / f"embeddings_{model.replace('/', '__')}.npy"


def _open_npy(file: Path) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped read-only (a header promising more data than the
    file holds is refused, not allocated). Pickled (object) arrays are refused, never unpickled."""
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as exc:  # not an .npy file, truncated, or an object array
        if _holds_objects(file):
            raise DataError(f"{file}: holds Python objects (pickled data), not numbers; refused unread") from None
        raise DataError(f"{file}: not a readable .npy array ({str(exc)[:200]})") from None
    if not isinstance(arr, np.ndarray):  # np.load opens a zip archive as an .npz mapping
        close = getattr(arr, "close", None)
        if close is not None:
            close()
        raise DataError(f"{file}: not a .npy array (an .npz archive?)")
    return arr


def _holds_objects(file: Path) -> bool:
    """Whether the header of the ``.npy`` file ``file`` declares Python objects (read without the data)."""
    try:
        with open(file, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            fmt = np.lib.format
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            return bool(read_header(fh)[2].hasobject)
    except Exception:  # any unreadable header simply does not declare objects
        return False


def load_embeddings_file(file: PathLike, n_rows: int, *, mmap: bool = False) -> np.ndarray:
    """The embeddings in ``file`` as float32 rows, checked: a plain numeric ``.npy`` array (strings and
    pickled objects are refused), 2-D with ``n_rows`` rows, every value finite in float32.

    ``mmap=True`` returns a float32 C-ordered file as a read-only memory map (no copy: the pages are
    read on demand and the operating system may drop them again); the values are checked block by
    block. Other dtypes are converted into memory as without ``mmap``.

    Raises:
        cascal.errors.DataError: naming the file and the problem.
    """
    file = Path(file)
    arr = _open_npy(file)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{file}: dtype {arr.dtype} is not numeric (expected float embeddings)")
    if arr.ndim != 2 or arr.shape[0] != n_rows:
        raise DataError(f"{file}: expected {n_rows} rows (one per question) of a 2-D array, got shape {arr.shape}")
    if mmap and arr.dtype == np.float32 and arr.flags.c_contiguous:
        for start in range(0, n_rows, MMAP_CHECK_ROWS):
            if not np.isfinite(arr[start : start + MMAP_CHECK_ROWS]).all():
                raise DataError(f"{file}: contains NaN or infinite values")
        return np.asarray(arr)  # a plain read-only ndarray view of the mapping
    if not np.isfinite(arr).all():
        raise DataError(f"{file}: contains NaN or infinite values")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused just below
        emb = np.array(arr, dtype=np.float32)  # a copy: the mapping is released
    del arr
    if not np.isfinite(emb).all():
        raise DataError(f"{file}: contains values beyond the float32 range")
    return emb


#: Rows checked at a time by :func:`load_embeddings_file` with ``mmap=True``.
MMAP_CHECK_ROWS = 65_536


def _read_embeddings(
    folder: Path, which: Optional[str], n_rows: int, mmap: bool = False
) -> tuple[Optional[np.ndarray], Optional[str]]:
    if which is None:
        return None, None
    files = embedding_files(folder)
    if which == "auto":
        if not files:
            return None, None
        if len(files) > 1:
            raise DataError(f"{folder}: several embedding files {sorted(files)}; pass embeddings=<model name>")
        name, file = next(iter(files.items()))
    else:
        key = which.replace("/", "__")
        if key not in files:
            raise DataError(f"{folder}: no embeddings for model {short_repr(which)} (found {sorted(files) or 'none'})")
        name, file = which, files[key]
    return load_embeddings_file(file, n_rows, mmap=mmap), (name or None)


# ---------------------------------------------------------------------------------------- saving
def save_dataset(responses: ResponseMatrix, path: PathLike) -> Path:
    """Write ``responses`` as a dataset folder (created if needed; files replaced atomically).

    Saving replaces the folder's dataset: a logprobs.csv or cost.csv that ``responses`` lacks is removed,
    and so is an embeddings file whose rows no longer match the questions.

    Needs question texts and options (``responses.questions`` / ``.options``). Writes
    questions.jsonl and predictions.csv, plus logprobs.csv, cost.csv and the embeddings file when
    present. Question ids are written as they are (integers as JSON integers, strings as strings);
    a question loaded from a folder is written as it was read, except the fields the matrix changed.
    Returns the folder.

    Raises:
        cascal.errors.DataError: no question texts or options; an id that is neither an integer
            nor a string, or two ids with the same text; option lists that disagree with
            ``n_options``; an embeddings file in the folder that cannot be read.
    """
    folder = Path(path)
    if responses.questions is None or responses.options is None:
        raise DataError("responses: question texts and options are needed to save a dataset folder")
    if "" in responses.model_names:
        raise DataError("model_names: a model needs a non-empty name to become a column of predictions.csv")
    ids = _json_ids(responses)
    lines = _question_lines(responses, ids)
    target = None
    if responses.embeddings is not None:
        name = responses.embedding_model
        target = embeddings_path(folder, name) if name else folder / "embeddings.npy"
    stale = _misaligned_embeddings(folder, responses.n_questions, skip=target) if folder.is_dir() else []
    folder.mkdir(parents=True, exist_ok=True)
    _atomic_write(folder / QUESTIONS_FILE, lambda fh: fh.writelines(lines))
    _write_answer_files(folder, [str(q) for q in ids], responses)
    for file in stale:  # a folder reused for another question set
        file.unlink()
    if target is not None:
        embeddings = np.asarray(responses.embeddings, dtype=np.float32)
        _atomic_write_bytes(target, lambda fh: np.save(fh, embeddings))
    return folder


def save_answers(responses: ResponseMatrix, path: PathLike) -> Path:
    """Write the answer files of ``responses`` into the existing dataset folder ``path``:
    predictions.csv, and logprobs.csv / cost.csv (each removed when ``responses`` lacks it).

    questions.jsonl and the embeddings files are left untouched; the questions of ``responses`` must
    be the folder's (same ids and option counts, same order), as after :func:`load_dataset`.

    Raises:
        cascal.errors.DataError: the folder has no questions.jsonl, or its questions differ.
    """
    folder = Path(path)
    qfile = folder / QUESTIONS_FILE
    if not qfile.exists():
        raise DataError(f"{qfile}: missing (save_answers adds answers to an existing dataset folder)")
    keys = [str(q) for q in _json_ids(responses)]
    on_disk = _read_questions(qfile)
    mine = list(zip(keys, responses.n_options.tolist()))
    theirs = [(q.key, len(q.options)) for q in on_disk]
    if mine != theirs:
        i = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        raise DataError(
            f"{qfile}: its questions differ from those of the answers to save (row {i}: "
            f"{short_repr(theirs[i] if i < len(theirs) else None)} in the file, "
            f"{short_repr(mine[i] if i < len(mine) else None)} to save; (id, number of options))"
        )
    _write_answer_files(folder, keys, responses)
    return folder


def _json_ids(responses: ResponseMatrix) -> list[Union[int, str]]:
    """The question ids as JSON values, checked: integers or strings, unique as text, valid UTF-8."""
    ids: list[Union[int, str]] = []
    seen: dict[str, int] = {}
    for i, qid in enumerate(np.asarray(responses.question_ids).tolist()):
        if isinstance(qid, np.generic):  # numpy scalars inside an object array
            qid = qid.item()
        if isinstance(qid, bool) or not isinstance(qid, (int, str)):
            raise DataError(f"question_ids: entry {i} is {short_repr(qid)}; ids must be integers or strings")
        key = str(qid)
        if _has_surrogate(key):
            raise DataError(f"question_ids: entry {i} holds an unpaired surrogate, not text")
        if key in seen:
            raise DataError(
                f"question_ids: entries {seen[key]} and {i} are both {short_repr(key)} (ids must differ as text)"
            )
        seen[key] = i
        ids.append(qid)
    return ids


def _per_question(responses: ResponseMatrix, key: str) -> Optional[list]:
    value = responses.extra.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != responses.n_questions:
        raise DataError(f"extra[{key!r}]: expected a list with one entry per question ({responses.n_questions})")
    return value


def _question_lines(responses: ResponseMatrix, ids: list[Union[int, str]]) -> list[str]:
    """The lines of questions.jsonl for ``responses``."""
    assert responses.questions is not None and responses.options is not None
    records = _per_question(responses, QUESTION_RECORDS)
    fields = _per_question(responses, QUESTION_FIELDS)
    lines = []
    for i in range(responses.n_questions):
        options = list(responses.options[i])
        if len(options) != responses.n_options[i]:
            raise DataError(
                f"options: question {i} has {len(options)} option texts, n_options says {responses.n_options[i]}"
            )
        gold = int(responses.gold[i]) if responses.gold is not None else NO_ANSWER
        core: dict[str, Any] = {
            "question_id": ids[i],
            "category": str(responses.subjects[i]),
            "question": responses.questions[i],
            "options": options,
            "answer": LETTERS[gold] if gold >= 0 else None,
        }
        rec = _merge_record(core, records[i] if records is not None else None, fields[i] if fields is not None else {})
        lines.append(_json_line(rec, i))
    return lines


def _merge_record(core: dict, read: Optional[dict], fields: dict) -> dict:
    """The record to write: ``core`` (the matrix's values) and the other ``fields``; where ``read``
    (the record as loaded) still says the same, its values and key order are kept."""
    if read is None:
        return {**core, **{k: v for k, v in fields.items() if k not in core}}
    if "category" in read and str(read["category"]).rstrip("\x00") == core["category"]:  # numpy str drops trailing NULs
        core["category"] = read["category"]
    if "question" in read and str(read["question"]) == core["question"]:
        core["question"] = read["question"]
    read_options = read.get("options")
    if isinstance(read_options, list) and [str(o) for o in read_options] == [str(o) for o in core["options"]]:
        core["options"] = read_options
    gold = NO_ANSWER if core["answer"] is None else LETTERS.index(core["answer"])
    if _answer_index(read.get("answer"), len(core["options"])) == gold:
        if "answer" in read:
            core["answer"] = read["answer"]
        else:
            del core["answer"]
    order = [k for k in read if k in core or k in fields]
    order += [k for k in (*core, *fields) if k not in read]
    return {k: core[k] if k in core else fields[k] for k in dict.fromkeys(order)}


def _json_line(rec: dict, i: int) -> str:
    try:
        text = json.dumps(rec, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DataError(f"question {i}: cannot be written as JSON ({str(exc)[:200]})") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # an unpaired surrogate in an extra field: keep it as a \u escape
            text = json.dumps(rec)
    return text + "\n"


def _write_answer_files(folder: Path, keys: list[str], responses: ResponseMatrix) -> None:
    """predictions.csv, and logprobs.csv / cost.csv or their removal."""

    def cell(code: int) -> str:
        return "" if code == NOT_ASKED else "?" if code == NO_ANSWER else LETTERS[code]

    models = responses.model_names
    _atomic_write(folder / PREDICTIONS_FILE, lambda fh: _write_table(fh, keys, models, responses.answers, cell))
    for name, arr in ((LOGPROBS_FILE, responses.logprobs), (COST_FILE, responses.cost)):
        if arr is not None:
            _atomic_write(
                folder / name, functools.partial(_write_table, keys=keys, models=models, arr=arr, fmt=_num_cell)
            )
        elif (folder / name).exists():
            (folder / name).unlink()  # stale: it described another set of answers


def _misaligned_embeddings(folder: Path, n_rows: int, skip: Optional[Path]) -> list[Path]:
    """Embedding files whose row count does not match ``n_rows`` (``skip`` is about to be replaced)."""
    stale = []
    for file in embedding_files(folder).values():
        if skip is not None and file == skip:
            continue
        shape = _open_npy(file).shape
        if len(shape) != 2 or shape[0] != n_rows:
            stale.append(file)
    return stale


def _num_cell(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def _quote(cell: str) -> str:
    """A CSV cell for any text: quoted when it holds a comma, a quote or a line break (``\\r``
    included, which the csv module's writer leaves bare), or is empty."""
    if cell == "" or any(c in cell for c in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _write_table(
    fh: IO[str], keys: Sequence[str], models: Sequence[str], arr: np.ndarray, fmt: Callable[[Any], str]
) -> None:
    fh.write(",".join(_quote(c) for c in ["question_id", *models]) + "\n")
    for i, key in enumerate(keys):
        fh.write(",".join([_quote(key), *(fmt(v) for v in arr[i])]) + "\n")


def _atomic_write(target: Path, write: Callable[[IO[str]], None]) -> None:
    """Write ``target`` as UTF-8 text through ``write``, atomically (see :func:`_atomic_replace`)."""
    with _atomic_replace(target, "w", encoding="utf-8", newline="") as fh:
        write(fh)


def _atomic_write_bytes(target: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``target`` as bytes through ``write``, atomically (see :func:`_atomic_replace`)."""
    with _atomic_replace(target, "wb") as fh:
        write(fh)


def _new_file_mode() -> int:
    """The permissions ``open()`` gives a new file: ``0o666`` less the process's umask."""
    umask = os.umask(0o022)  # the umask can only be read by setting it: restore it at once
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def _atomic_replace(target: Path, mode: str, **kwargs: Any) -> Iterator[Any]:
    """A uniquely named temporary file in ``target``'s folder (``.<name>.<random>.tmp``, matched by
    no dataset file pattern) that replaces ``target`` when the block ends, or is removed if it fails."""
    fh = tempfile.NamedTemporaryFile(
        mode, dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False, **kwargs
    )
    tmp = Path(fh.name)
    try:
        with fh:
            os.chmod(tmp, _new_file_mode())  # as open() would create it, not tempfile's 0o600
            yield fh
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def dataset_lock(folder: PathLike, *, wait: bool = False, purpose: str = "answered") -> Iterator[Path]:
    """Hold the exclusive lock of the dataset folder ``folder`` (an ``flock`` on its
    :data:`LOCK_FILE`, which records the holder's pid) while the ``with`` block runs.

    The lock is released when the block ends or the process dies (the kernel drops it with the file
    descriptor), so a killed run never leaves the folder locked; the lock file itself stays. On a
    system without ``fcntl`` (Windows) nothing is locked.

    Args:
        folder: an existing dataset folder.
        wait: wait for the other holder to finish instead of refusing at once.
        purpose: what the holder does to the folder, for the message.

    Yields:
        The lock file's path.

    Raises:
        cascal.errors.DataError: ``wait`` is false and another process holds the lock; the message
            names the folder and that process's pid.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield Path(folder) / LOCK_FILE
        return
    path = Path(folder) / LOCK_FILE
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such dataset folder")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise DataError(
                f"{folder}: folder is being {purpose} by another run (pid {holder}); wait for it to finish "
                "(or pass --wait)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------- labels
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
    keys = [str(q) for q in _json_ids(responses)]
    row_of = {key: i for i, key in enumerate(keys)}
    n_options = np.asarray(responses.n_options)
    labels = np.full(len(keys), NO_ANSWER, dtype=np.int64)
    first_line: dict[int, int] = {}
    reader = csv.reader(StringIO(_read_text(file, limit=MAX_LABELS_BYTES), newline=""))
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
            idx = _letter_index(letter)
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
    keys = [str(q) for q in _json_ids(responses)]
    lines = [",".join(LABELS_HEADER) + "\n"]
    lines += [f"{_quote(keys[row])},{LETTERS[int(y[row])]}\n" for row in np.flatnonzero(y >= 0)]
    file.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(file, lambda fh: fh.writelines(lines))
    return file
