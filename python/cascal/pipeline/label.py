"""Pipeline stage **label**: a person answers the questions a router suggests, one at a time.

:func:`label_dataset` loads a dataset folder and a router file and runs :func:`label_session`, the
interactive loop (its question source is a function, so the loop is tested without a router):

- the router's :meth:`~cascal.CascalRouter.suggest_labels` picks the questions whose labels would
  most change its routing (already labelled questions are never suggested again);
- each question is shown with its subject, id, text, lettered options and a counter ``3/20``;
- a letter (either case) answers; ``s`` (or ``skip``) skips; ``q`` (or ``quit``) quits. On a
  question with 17 or more options ``Q`` (and from 19, ``S``) is an option, so there only the
  words ``quit`` / ``skip`` are commands. Anything else is refused with a message and asked again;
- after every answer the labels file is rewritten atomically (:func:`cascal.io.save_labels`), so a
  crash or ``kill -9`` loses nothing already typed;
- end of input (Ctrl-D, or the end of a piped stdin) stops like ``q``; Ctrl-C stops too, after
  saving, and the command exits with status 130. Input need not be a terminal: answers can be piped
  in, one per line.

``n`` is the **total** number of labels wanted in the labels file, so re-running the same command
continues where the last run stopped: the labels already in the file are read back, passed to the
router (never suggested again) and counted; with ``n`` already reached nothing is asked. A skipped
question is not shown again in the same session, but skips are not saved (the labels file holds
answers only): a later session may offer it again.

One session at a time writes a labels file: a second one on the same file is refused
(:func:`labels_lock`).

Suggestions are asked once per session (for the labels still missing) and again only when skips
used them up, with the labels known by then.
"""

from __future__ import annotations

import os
import select
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, TextIO, Union

import numpy as np

from cascal.data import LETTERS, ResponseMatrix
from cascal.errors import DataError, InvalidParameterError
from cascal.io.files import labels_lock
from cascal.validation import short_repr

__all__ = [
    "Key",
    "LabelSummary",
    "LineReader",
    "label_dataset",
    "label_session",
    "labels_lock",
    "parse_key",
    "stdin_reader",
]

#: What a session asks for questions: ``suggest(labels, n)`` returns up to ``n`` row indices, best
#: first, never a labelled row; ``labels`` is ``None`` before the first label.
Suggest = Callable[[Optional[np.ndarray], int], np.ndarray]
Stop = Literal["done", "quit", "end of input", "interrupted", "no more suggestions"]


@dataclass(frozen=True)
class LabelSummary:
    """How a labelling session ended.

    Attributes:
        answered: labels typed in this session (all saved).
        skipped: questions skipped in this session.
        total: labels in the labels file now.
        target: the total asked for (``n``).
        stop: why the session ended: ``"done"`` (``total`` reached ``target``), ``"quit"``,
            ``"end of input"``, ``"interrupted"`` (Ctrl-C) or ``"no more suggestions"``.
        path: the labels file.
    """

    answered: int
    skipped: int
    total: int
    target: int
    stop: Stop
    path: Path


@dataclass(frozen=True)
class Key:
    """One typed line, understood: ``action`` is ``"answer"`` (``choice`` is the option index),
    ``"skip"``, ``"quit"`` or ``"invalid"`` (``message`` says why and what to type)."""

    action: Literal["answer", "skip", "quit", "invalid"]
    choice: int = -1
    message: str = ""


def _commands(n_options: int) -> tuple[str, str]:
    """How skip and quit are typed on a question with ``n_options`` options (the letters ``S`` and
    ``Q`` are options from 19 and 17 options on)."""
    skip = "skip" if "S" in LETTERS[:n_options] else "s"
    quit_ = "quit" if "Q" in LETTERS[:n_options] else "q"
    return skip, quit_


def prompt_text(n_options: int) -> str:
    """The prompt shown under a question with ``n_options`` options."""
    skip, quit_ = _commands(n_options)
    return f"answer (A-{LETTERS[n_options - 1]}, {skip} = skip, {quit_} = quit): "


def parse_key(text: str, n_options: int) -> Key:
    """What the line ``text`` means on a question with ``n_options`` options (see the module docstring)."""
    word = text.strip()
    letters = LETTERS[:n_options]
    skip, quit_ = _commands(n_options)
    if len(word) == 1 and word.upper() in letters:
        return Key("answer", choice=letters.index(word.upper()))
    if word.lower() in {"skip", skip}:
        return Key("skip")
    if word.lower() in {"quit", quit_}:
        return Key("quit")
    hint = f"type a letter A-{letters[-1]}, {skip} to skip or {quit_} to quit"
    if not word:
        return Key("invalid", message=f"no answer typed: {hint}")
    shown = word if len(word) <= 20 else word[:17] + "..."
    return Key("invalid", message=f"{shown!r} is not an option of this question: {hint}")


def label_session(
    responses: ResponseMatrix,
    suggest: Suggest,
    out: Union[str, Path],
    n: int,
    *,
    read: Callable[[str], str] = input,
    write: Callable[[str], None] = print,
) -> LabelSummary:
    """Ask a person for the answers of suggested questions until the labels file holds ``n``.

    Args:
        responses: the questions (``question_ids``, ``subjects``, ``questions``, ``options``).
        suggest: the question source (see :data:`Suggest`), e.g. a router's ``suggest_labels``.
        out: the labels file; read first when it exists (resume), rewritten after every answer.
        n: the total number of labels wanted in ``out`` (not the number to add in this session).
        read: reads one line after showing a prompt; raises ``EOFError`` at the end of input
            (default :func:`input`).
        write: shows one block of text (default :func:`print`).

    Returns:
        a :class:`LabelSummary`; Ctrl-C (``KeyboardInterrupt``) ends the session with
        ``stop="interrupted"`` after saving.

    Raises:
        cascal.errors.InvalidParameterError: ``n`` is not a positive integer.
        cascal.errors.DataError: the questions have no texts or options; an existing ``out``
            is not a valid labels file for them (:func:`cascal.io.load_labels`; it is left
            untouched); another session holds ``out`` (:func:`labels_lock`).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidParameterError(f"n: must be a positive integer, got {n!r}")
    if responses.questions is None or responses.options is None:
        raise DataError("responses: question texts and options are needed to ask for labels")
    path = Path(out)
    with labels_lock(path):
        return _session(responses, suggest, path, n, read, write)


def _session(
    responses: ResponseMatrix,
    suggest: Suggest,
    path: Path,
    n: int,
    read: Callable[[str], str],
    write: Callable[[str], None],
) -> LabelSummary:
    """:func:`label_session` once its labels file is locked."""
    from cascal.io import load_labels, save_labels

    labels = load_labels(path, responses) if path.exists() else np.full(responses.n_questions, -1, dtype=np.int64)
    before = total = int((labels >= 0).sum())
    skipped: set[int] = set()
    queue: deque[int] = deque()
    stop: Stop = "done"
    if total >= n:
        write(f"{path} already holds {total} labels (--n {n} is the total wanted): nothing to ask; raise --n for more")
    elif total:
        write(f"{path} holds {total} labels: asking for {n - total} more (--n {n} is the total wanted)")
    try:
        while total < n:
            if not queue:
                queue.extend(_fresh_rows(suggest, labels, n - total, skipped))
                if not queue:
                    stop = "no more suggestions"
                    break
            row = queue.popleft()
            write(_show(responses, row, total + 1, n))
            key = _ask(read, int(responses.n_options[row]), write)
            if key is None:
                stop = "end of input"
                break
            if key.action == "quit":
                stop = "quit"
                break
            if key.action == "skip":
                skipped.add(row)
                continue
            labels[row] = key.choice
            save_labels(path, responses, labels)
            total += 1
    except KeyboardInterrupt:
        stop = "interrupted"
        total = int((labels >= 0).sum())
        if total > before:  # after a Ctrl-C during a save the file may lack the last answer
            save_labels(path, responses, labels)
    return LabelSummary(total - before, len(skipped), total, n, stop, path)


def _fresh_rows(suggest: Suggest, labels: np.ndarray, missing: int, skipped: set[int]) -> list[int]:
    """Up to ``missing`` suggested rows that are neither labelled nor skipped (asking for as many
    more as were skipped, which the source may offer again)."""
    known = labels if (labels >= 0).any() else None
    rows = np.asarray(suggest(None if known is None else labels.copy(), missing + len(skipped)))
    if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
        raise InvalidParameterError(f"suggest: expected a 1-D array of row indices, got {rows.dtype} {rows.shape}")
    fresh: list[int] = []
    for r in rows.tolist():
        if not 0 <= r < labels.shape[0]:
            raise InvalidParameterError(f"suggest: row {r} is not a row of the dataset (0..{labels.shape[0] - 1})")
        if labels[r] < 0 and r not in skipped and r not in fresh:
            fresh.append(r)
    return fresh[:missing]


def _show(responses: ResponseMatrix, row: int, number: int, n: int) -> str:
    assert responses.questions is not None and responses.options is not None
    qid = responses.question_ids[row] if responses.question_ids is not None else row
    lines = ["", f"[{number}/{n}] {responses.subjects[row]} - question {qid}", str(responses.questions[row])]
    lines += [f"  {LETTERS[i]}. {option}" for i, option in enumerate(responses.options[row])]
    return "\n".join(lines)


def _ask(read: Callable[[str], str], n_options: int, write: Callable[[str], None]) -> Optional[Key]:
    """The first valid key typed (``None`` at the end of input); invalid lines are explained."""
    while True:
        try:
            text = read(prompt_text(n_options))
        except EOFError:
            return None
        key = parse_key(text, n_options)
        if key.action != "invalid":
            return key
        write(key.message)


class LineReader:
    """Reads answers from a file descriptor (default: standard input), one line per call, showing
    a prompt on ``out`` first; raises ``EOFError`` at the end of input.

    It waits with :func:`select.select` in short slices instead of blocking in ``read``: a Ctrl-C
    (SIGINT) that the kernel hands to another thread of the process (the kernels' worker threads)
    does not interrupt a blocked ``read`` of the main thread, so :func:`input` could sit until the
    next Enter before raising ``KeyboardInterrupt``; here it is raised within one slice.
    """

    #: Longest wait between two checks for a pending Ctrl-C (seconds).
    SLICE = 0.2

    def __init__(self, fd: int = 0, out: Optional[TextIO] = None):
        self.fd = fd
        self.out = out
        self.buffer = b""

    def __call__(self, prompt: str) -> str:
        out = self.out if self.out is not None else sys.stdout
        out.write(prompt)
        out.flush()
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], self.SLICE)
            if not ready:
                continue  # back in the interpreter: a pending Ctrl-C raises KeyboardInterrupt here
            chunk = os.read(self.fd, 4096)
            if not chunk:  # end of input (Ctrl-D on a terminal, the end of a pipe)
                if not self.buffer:
                    raise EOFError
                line, self.buffer = self.buffer, b""
                return line.decode("utf-8", "replace")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")


def stdin_reader() -> Callable[[str], str]:
    """The reader of answers for an interactive session: a :class:`LineReader` on standard input
    where it has a file descriptor ``select`` can wait on (POSIX), else :func:`input`."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return input
    if os.name != "posix":
        return input
    return LineReader(fd)


def label_dataset(
    dataset_dir: Union[str, Path],
    router_path: Union[str, Path],
    out: Union[str, Path],
    n: int,
    *,
    embeddings: Optional[str] = None,
    out_of_range: Literal["error", "unparsable"] = "error",
    read: Optional[Callable[[str], str]] = None,
    write: Callable[[str], None] = print,
) -> LabelSummary:
    """:func:`label_session` on the questions of ``dataset_dir``, suggested by the router file
    ``router_path`` (its :meth:`~cascal.CascalRouter.suggest_labels` on the folder's embeddings and
    answers, given the labels known so far).

    Args:
        dataset_dir: a dataset folder with the pool's answers and embeddings.
        router_path: a router file written by ``cascal train`` (its pool must be the folder's).
        out: the labels file (see :func:`label_session`).
        n: the total number of labels wanted in ``out``.
        embeddings: which embeddings file: default the router's embedder, else the folder's only one.
        out_of_range: what a prediction letter beyond its question's options means (see
            :func:`cascal.io.load_dataset`).
        read: reads one answer line after a prompt (see :func:`label_session`); default
            :func:`stdin_reader`.
        write: shows one block of text (default :func:`print`).

    Raises:
        cascal.errors.RouterFileError: the router file is missing or not a router file.
        cascal.errors.DataError: the folder has no answers or embeddings, its models differ from
            the router's pool, or ``out`` is not a valid labels file for it.
    """
    from cascal.io import load_dataset
    from cascal.router import CascalRouter

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidParameterError(f"n: must be a positive integer, got {n!r}")
    router: Any = CascalRouter.load(router_path)
    which = embeddings if embeddings is not None else (router.embedding_model or "auto")
    dataset = load_dataset(dataset_dir, embeddings=which, out_of_range=out_of_range)
    if dataset.embeddings is None:
        raise DataError(f"{dataset_dir}: no embeddings_<name>.npy; run `cascal embed` on it first")
    if list(dataset.model_names) != list(router.model_names_):
        raise DataError(
            f"{dataset_dir}: predictions.csv's models {short_repr(dataset.model_names)} differ from the "
            f"pool of {router_path}, {short_repr(router.model_names_)}"
        )
    X = dataset.embeddings

    def suggest(labels: Optional[np.ndarray], count: int) -> np.ndarray:
        return np.asarray(router.suggest_labels(X, dataset, count, labels=labels))

    return label_session(dataset, suggest, out, n, read=read if read is not None else stdin_reader(), write=write)
