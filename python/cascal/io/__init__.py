"""Reading and writing cascal's files: dataset folders, labels files, and the atomic writes and
locks every writer of the package uses.

One module per kind of file (docs/data-format.md describes the formats):

- :mod:`cascal.io.dataset`: dataset folders as a whole (:func:`load_dataset`,
  :func:`save_dataset`, :func:`save_answers`);
- :mod:`cascal.io.questions`: ``questions.jsonl``;
- :mod:`cascal.io.tables`: the per-model CSV tables (``predictions.csv``, ``logprobs.csv``,
  ``cost.csv``, ``response_chars.csv``);
- :mod:`cascal.io.embeddings`: the ``embeddings_<model>.npy`` files;
- :mod:`cascal.io.decision_log`: a gateway's decision log read line by line (the one reader of
  ``cascal coverage`` and ``cascal refresh``), and :mod:`cascal.io.decision_embeddings` its embedding sidecar;
- :mod:`cascal.io.queries`: the query texts of a decision log or a texts file;
- :mod:`cascal.io.labels`: labels files (:func:`load_labels`, :func:`save_labels`);
- :mod:`cascal.io.text`: UTF-8 text read with errors naming the file and the line;
- :mod:`cascal.io.files`: atomic writes (a reader sees the old file or the new one) and the locks
  that refuse a second writer (:func:`dataset_lock`, :func:`labels_lock`).

The names below are importable from ``cascal.io`` itself.
"""

from __future__ import annotations

from cascal.io.dataset import load_dataset, save_answers, save_dataset
from cascal.io.embeddings import MMAP_CHECK_ROWS, embedding_files, embeddings_path, load_embeddings_file
from cascal.io.files import (
    LOCK_FILE,
    PathLike,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    dataset_lock,
    labels_lock,
)
from cascal.io.labels import LABELS_HEADER, MAX_LABELS_BYTES, load_labels, save_labels
from cascal.io.questions import MAX_JSON_DEPTH, QUESTION_FIELDS, QUESTION_RECORDS, QUESTIONS_FILE
from cascal.io.tables import (
    COST_FILE,
    LOGPROBS_FILE,
    OUT_OF_RANGE_CHOICES,
    PREDICTIONS_FILE,
    RESPONSE_CHARS_FILE,
    OutOfRange,
    load_model_table,
)

__all__ = [
    "COST_FILE",
    "LABELS_HEADER",
    "LOCK_FILE",
    "LOGPROBS_FILE",
    "MAX_JSON_DEPTH",
    "MAX_LABELS_BYTES",
    "MMAP_CHECK_ROWS",
    "OUT_OF_RANGE_CHOICES",
    "PREDICTIONS_FILE",
    "QUESTIONS_FILE",
    "QUESTION_FIELDS",
    "QUESTION_RECORDS",
    "RESPONSE_CHARS_FILE",
    "OutOfRange",
    "PathLike",
    "atomic_open",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "dataset_lock",
    "embedding_files",
    "embeddings_path",
    "labels_lock",
    "load_dataset",
    "load_embeddings_file",
    "load_labels",
    "load_model_table",
    "save_answers",
    "save_dataset",
    "save_labels",
]
