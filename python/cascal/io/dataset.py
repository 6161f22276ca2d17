"""Dataset folders: :func:`load_dataset`, :func:`save_dataset` and :func:`save_answers`.

A dataset folder holds:

- ``questions.jsonl`` (:mod:`cascal.io.questions`): one JSON object per question;
- ``predictions.csv`` and the optional ``logprobs.csv`` / ``cost.csv`` (:mod:`cascal.io.tables`):
  ``question_id`` plus one column per model;
- optional ``embeddings_<model>.npy`` (or ``embeddings.npy``, :mod:`cascal.io.embeddings`),
  row-aligned with questions.jsonl.

Every malformed input raises :class:`~cascal.data.DataError` naming the file, the line and the
column. Every file is written atomically (:mod:`cascal.io.files`): a reader sees the old file or
the new one. :func:`save_answers` writes only the answer files of a folder and never touches its
questions; a run that rewrites them from what it read earlier (``cascal answer``) holds the
folder's lock, :func:`~cascal.io.files.dataset_lock`, for the whole run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from cascal.data import NOT_ASKED, DataError, ResponseMatrix
from cascal.io.embeddings import embeddings_path, load_folder_embeddings, misaligned_embeddings
from cascal.io.files import PathLike, atomic_open, atomic_write_text
from cascal.io.questions import (
    CORE_FIELDS,
    QUESTION_FIELDS,
    QUESTION_RECORDS,
    QUESTIONS_FILE,
    json_ids,
    question_lines,
    read_questions,
)
from cascal.io.tables import (
    COST_FILE,
    LOGPROBS_FILE,
    OUT_OF_RANGE_CHOICES,
    PREDICTIONS_FILE,
    OutOfRange,
    read_numbers,
    read_predictions,
    write_answer_tables,
)
from cascal.validation import short_repr

__all__ = ["load_dataset", "save_answers", "save_dataset"]


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
    questions = read_questions(qfile)
    row_of = {q.key: i for i, q in enumerate(questions)}
    n_options = np.array([len(q.options) for q in questions], dtype=np.int8)

    pfile = folder / PREDICTIONS_FILE
    if pfile.exists():
        models, answers, out_counts = read_predictions(pfile, row_of, n_options, out_of_range)
    else:
        models, answers, out_counts = [], np.full((len(questions), 0), NOT_ASKED, dtype=np.int8), {}

    logprobs = read_numbers(folder / LOGPROBS_FILE, row_of, models) if (folder / LOGPROBS_FILE).exists() else None
    cost = read_numbers(folder / COST_FILE, row_of, models) if (folder / COST_FILE).exists() else None

    emb, emb_name = load_folder_embeddings(folder, embeddings, len(questions), mmap)
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
            QUESTION_FIELDS: [{k: v for k, v in q.record.items() if k not in CORE_FIELDS} for q in questions],
            QUESTION_RECORDS: [q.record for q in questions],
            "out_of_range": out_counts,
            "path": str(folder),
        },
    )


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
    ids = json_ids(responses)
    lines = question_lines(responses, ids)
    target = None
    if responses.embeddings is not None:
        name = responses.embedding_model
        target = embeddings_path(folder, name) if name else folder / "embeddings.npy"
    stale = misaligned_embeddings(folder, responses.n_questions, skip=target) if folder.is_dir() else []
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / QUESTIONS_FILE, "".join(lines))
    write_answer_tables(folder, [str(q) for q in ids], responses)
    for file in stale:  # a folder reused for another question set
        file.unlink()
    if target is not None:
        embeddings = np.asarray(responses.embeddings, dtype=np.float32)
        with atomic_open(target, "wb") as fh:
            np.save(fh, embeddings)
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
    keys = [str(q) for q in json_ids(responses)]
    on_disk = read_questions(qfile)
    mine = list(zip(keys, responses.n_options.tolist()))
    theirs = [(q.key, len(q.options)) for q in on_disk]
    if mine != theirs:
        i = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        raise DataError(
            f"{qfile}: its questions differ from those of the answers to save (row {i}: "
            f"{short_repr(theirs[i] if i < len(theirs) else None)} in the file, "
            f"{short_repr(mine[i] if i < len(mine) else None)} to save; (id, number of options))"
        )
    write_answer_tables(folder, keys, responses)
    return folder
