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
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from pathlib import Path
from typing import IO, Any, Iterator, Literal, Optional, Union

import numpy as np

from cascal.data import LETTERS, MAX_OPTIONS, NO_ANSWER, NOT_ASKED, DataError, ResponseMatrix

PathLike = Union[str, "os.PathLike[str]"]
OutOfRange = Literal["error", "unparsable"]

QUESTIONS_FILE = "questions.jsonl"
PREDICTIONS_FILE = "predictions.csv"
LOGPROBS_FILE = "logprobs.csv"
COST_FILE = "cost.csv"
_CORE_FIELDS = ("question_id", "category", "question", "options", "answer")

__all__ = ["load_dataset", "save_dataset", "embedding_files", "embeddings_path"]


# ---------------------------------------------------------------------------------------- loading
def load_dataset(
    path: PathLike,
    *,
    embeddings: Optional[str] = "auto",
    out_of_range: OutOfRange = "error",
) -> ResponseMatrix:
    """Load a dataset folder into a :class:`ResponseMatrix` (rows in questions.jsonl order).

    Args:
        path: the folder.
        embeddings: ``"auto"`` picks up the folder's only ``embeddings_*.npy`` (an error if there are
            several: name one), a model name picks ``embeddings_<name>.npy``, ``None`` loads none.
        out_of_range: what a prediction letter beyond its question's options means: ``"error"``
            (default) raises; ``"unparsable"`` records it as -1 and counts such cells per model in
            ``extra["out_of_range"]`` (real harness outputs contain a few, e.g. "J" on a 9-option question).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a dataset folder (no such directory)")
    if out_of_range not in ("error", "unparsable"):
        raise DataError(f"out_of_range: expected 'error' or 'unparsable', got {out_of_range!r}")
    qfile = folder / QUESTIONS_FILE
    if not qfile.exists():
        raise DataError(f"{qfile}: missing (every dataset folder needs {QUESTIONS_FILE})")
    records = _read_questions(qfile)
    ids = [r["question_id"] for r in records]
    row_of = {qid: i for i, qid in enumerate(ids)}
    n_options = np.array([len(r["options"]) for r in records], dtype=np.int8)
    gold = np.array([_gold_index(r, qfile, i + 1) for i, r in enumerate(records)], dtype=np.int8)

    pfile = folder / PREDICTIONS_FILE
    if pfile.exists():
        models, answers, out_counts = _read_predictions(pfile, row_of, n_options, out_of_range)
    else:
        models, answers, out_counts = [], np.full((len(records), 0), NOT_ASKED, dtype=np.int8), {}

    logprobs = _read_numeric(folder / LOGPROBS_FILE, row_of, models) if (folder / LOGPROBS_FILE).exists() else None
    cost = _read_numeric(folder / COST_FILE, row_of, models) if (folder / COST_FILE).exists() else None

    emb, emb_name = _read_embeddings(folder, embeddings, len(records))
    extra_fields = [{k: v for k, v in r.items() if k not in _CORE_FIELDS} for r in records]
    return ResponseMatrix(
        answers=answers,
        n_options=n_options,
        subjects=np.array([str(r["category"]) for r in records]),
        model_names=models,
        gold=gold,
        logprobs=logprobs,
        cost=cost,
        question_ids=np.array(ids),
        questions=[str(r["question"]) for r in records],
        options=[list(map(str, r["options"])) for r in records],
        embeddings=emb,
        embedding_model=emb_name,
        extra={"question_fields": extra_fields, "out_of_range": out_counts, "path": str(folder)},
    )


@contextlib.contextmanager
def _text_file(file: Path, **open_args: Any) -> Iterator[IO[str]]:
    """``file`` opened as UTF-8 text; bytes that are not UTF-8 raise :class:`DataError` naming it."""
    with open(file, encoding="utf-8", **open_args) as fh:
        try:
            yield fh
        except UnicodeDecodeError as exc:
            raise DataError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _read_questions(qfile: Path) -> list[dict]:
    records: list[dict] = []
    seen: dict = {}
    with _text_file(qfile) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{qfile}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{qfile}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            for key in ("question_id", "category", "question", "options"):
                if key not in rec:
                    raise DataError(f"{qfile}:{lineno}: missing field '{key}'")
            qid = rec["question_id"]
            if not isinstance(qid, (int, str)) or isinstance(qid, bool):
                raise DataError(f"{qfile}:{lineno}: question_id must be an integer or a string, got {qid!r}")
            if str(qid) in seen:
                raise DataError(f"{qfile}:{lineno}: duplicate question_id {qid!r} (first on line {seen[str(qid)]})")
            seen[str(qid)] = lineno
            opts = rec["options"]
            if not isinstance(opts, list) or not 2 <= len(opts) <= MAX_OPTIONS:
                count = len(opts) if isinstance(opts, list) else type(opts).__name__
                raise DataError(f"{qfile}:{lineno}: field 'options' must be a list of 2..{MAX_OPTIONS} strings, got {count}")
            rec["question_id"] = str(qid)
            records.append(rec)
    return records


def _gold_index(rec: dict, qfile: Path, lineno: int) -> int:
    letter = rec.get("answer")
    if letter is None or letter == "":
        return NO_ANSWER
    idx = _letter_index(letter)
    if idx is None or idx >= len(rec["options"]):
        raise DataError(
            f"{qfile}:{lineno}: field 'answer' is {letter!r}, not a letter among the question's "
            f"{len(rec['options'])} options"
        )
    return idx


def _letter_index(cell: str) -> Optional[int]:
    if isinstance(cell, str) and len(cell) == 1 and cell in LETTERS:
        return LETTERS.index(cell)
    return None


def _csv_rows(file: Path, row_of: dict) -> tuple[list[str], list[tuple[int, int, list[str]]]]:
    """Header (model columns) and (line, row index, cells) of a question_id-keyed CSV, checked for
    raggedness, unknown/duplicate/missing ids."""
    with _text_file(file, newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{file}: empty file (expected a header starting with question_id)") from None
        if not header or header[0] != "question_id":
            raise DataError(f"{file}:1: first column must be 'question_id', got {header[:1]}")
        models = header[1:]
        dup = {m for m in models if models.count(m) > 1}
        if dup:
            raise DataError(f"{file}:1: duplicate model column(s) {sorted(dup)}")
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
                raise DataError(f"{file}:{lineno}: question_id {qid!r} is not in {QUESTIONS_FILE}")
            row = row_of[qid]
            if row in seen:
                raise DataError(f"{file}:{lineno}: duplicate question_id {qid!r} (first on line {seen[row]})")
            seen[row] = lineno
            rows.append((lineno, row, cells[1:]))
    if len(seen) != len(row_of):
        missing = [q for q, r in row_of.items() if r not in seen][:5]
        raise DataError(f"{file}: {len(row_of) - len(seen)} question(s) of {QUESTIONS_FILE} have no row, e.g. {missing}")
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
                raise DataError(f"{file}:{lineno}: column '{models[col]}': unknown answer {cell!r} (expected A-T, '?' or empty)")
            if idx >= n_options[row]:
                if out_of_range == "error":
                    raise DataError(
                        f"{file}:{lineno}: column '{models[col]}': answer {cell!r} is beyond the question's "
                        f"{n_options[row]} options (load with out_of_range='unparsable' to count it as unparsable)"
                    )
                out_counts[models[col]] += 1
                answers[row, col] = NO_ANSWER
                continue
            answers[row, col] = idx
    return models, answers, {m: c for m, c in out_counts.items() if c}


def _read_numeric(file: Path, row_of: dict, models: list[str]) -> np.ndarray:
    cols, rows = _csv_rows(file, row_of)
    if cols != models:
        raise DataError(f"{file}:1: model columns {cols} differ from {PREDICTIONS_FILE}'s {models}")
    out = np.full((len(row_of), len(models)), np.nan, dtype=np.float32)
    for lineno, row, cells in rows:
        for col, cell in enumerate(cells):
            cell = cell.strip()
            if cell == "":
                continue
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{file}:{lineno}: column '{models[col]}': not a number: {cell!r}") from None
            if math.isinf(value):
                raise DataError(f"{file}:{lineno}: column '{models[col]}': infinite value {cell!r}")
            out[row, col] = value
    return out


def embedding_files(folder: PathLike) -> dict[str, Path]:
    """Embedding files of a dataset folder by model name (``embeddings.npy`` is named ``""``)."""
    found = {}
    for p in sorted(Path(folder).glob("embeddings*.npy")):
        stem = p.stem
        if stem == "embeddings":
            found[""] = p
        elif stem.startswith("embeddings_"):
            found[stem[len("embeddings_"):]] = p
    return found


def embeddings_path(folder: PathLike, model: str) -> Path:
    """Where the embeddings of ``model`` live in a dataset folder (``/`` in names becomes ``__``)."""
    return Path(folder) / f"embeddings_{model.replace('/', '__')}.npy"


def _read_embeddings(folder: Path, which: Optional[str], n_rows: int) -> tuple[Optional[np.ndarray], Optional[str]]:
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
            raise DataError(f"{folder}: no embeddings for model {which!r} (found {sorted(files) or 'none'})")
        name, file = which, files[key]
    try:
        emb = np.load(file, allow_pickle=False)
    except (ValueError, EOFError) as exc:  # not an .npy file, truncated, or an object array
        raise DataError(f"{file}: not a readable .npy array ({exc})") from None
    if emb.ndim != 2 or emb.shape[0] != n_rows:
        raise DataError(f"{file}: expected {n_rows} rows (one per question) of a 2-D array, got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise DataError(f"{file}: contains NaN or infinite values")
    return emb.astype(np.float32, copy=False), (name or None)


# ---------------------------------------------------------------------------------------- saving
def save_dataset(responses: ResponseMatrix, path: PathLike) -> Path:
    """Write ``responses`` as a dataset folder (created if needed; files replaced atomically).

    Saving replaces the folder's dataset: a logprobs.csv or cost.csv that ``responses`` lacks is removed,
    and so is an embeddings file whose rows no longer match the questions.

    Needs question texts and options (``responses.questions`` / ``.options``). Writes
    questions.jsonl and predictions.csv, plus logprobs.csv, cost.csv and the embeddings file when
    present. Returns the folder.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if responses.questions is None or responses.options is None:
        raise DataError("responses: question texts and options are needed to save a dataset folder")
    questions, options = responses.questions, responses.options
    gold = responses.gold if responses.gold is not None else np.full(responses.n_questions, -1)
    question_ids = responses.question_ids if responses.question_ids is not None else np.arange(responses.n_questions)
    fields = responses.extra.get("question_fields") or [{} for _ in range(responses.n_questions)]
    ids = [_json_id(q) for q in question_ids]

    def write_questions(fh) -> None:
        for i in range(responses.n_questions):
            rec = {
                "question_id": ids[i],
                "category": str(responses.subjects[i]),
                "question": questions[i],
                "options": list(options[i]),
                "answer": LETTERS[gold[i]] if gold[i] >= 0 else None,
            }
            rec.update({k: v for k, v in fields[i].items() if k not in rec})
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    _atomic_write(folder / QUESTIONS_FILE, write_questions)

    def cell(code: int) -> str:
        return "" if code == NOT_ASKED else "?" if code == NO_ANSWER else LETTERS[code]

    _atomic_write(folder / PREDICTIONS_FILE, lambda fh: _write_table(fh, ids, responses.model_names, responses.answers, cell))
    for name, arr in ((LOGPROBS_FILE, responses.logprobs), (COST_FILE, responses.cost)):
        if arr is not None:
            _atomic_write(folder / name, lambda fh, a=arr: _write_table(fh, ids, responses.model_names, a, _num_cell))
        elif (folder / name).exists():
            (folder / name).unlink()  # stale: it described another set of answers
    _drop_misaligned_embeddings(folder, responses.n_questions)
    if responses.embeddings is not None:
        target = embeddings_path(folder, responses.embedding_model) if responses.embedding_model else folder / "embeddings.npy"
        tmp = target.with_name(target.name + ".tmp.npy")
        np.save(tmp, np.asarray(responses.embeddings, dtype=np.float32))
        os.replace(tmp, target)
    return folder


def _drop_misaligned_embeddings(folder: Path, n_rows: int) -> None:
    """Remove embedding files whose row count no longer matches the questions (a folder reused for
    another question set); files that still align are kept as caches."""
    for file in embedding_files(folder).values():
        shape = np.load(file, mmap_mode="r", allow_pickle=False).shape
        if len(shape) != 2 or shape[0] != n_rows:
            file.unlink()


def _json_id(qid):
    value = qid.item() if hasattr(qid, "item") else qid
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def _num_cell(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def _write_table(fh, ids, models, arr, fmt) -> None:
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(["question_id", *models])
    for i, qid in enumerate(ids):
        writer.writerow([qid, *(fmt(v) for v in arr[i])])


def _atomic_write(target: Path, write) -> None:
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        write(fh)
    os.replace(tmp, target)
