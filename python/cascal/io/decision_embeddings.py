"""The embedding sidecar of a decision log: each logged query's embedding, keyed by the line's ``id``.

``cascal serve --log-decisions PATH --log-embeddings`` keeps the sidecar in the folder
``PATH.embeddings/`` (:func:`default_sidecar`). It is a set of *parts*, each an uncompressed ``.npz``
file with two arrays: ``ids`` (unicode, one decision id per row) and ``embeddings`` (float32
``(rows, d)``). A writer (:class:`EmbeddingSidecar`) buffers rows and writes a part atomically
(temporary file, then rename) when the buffer holds ``part_rows`` rows, when its oldest row is
``max_age`` seconds old, and when it is closed; parts are written by one background thread, so
the caller (the gateway's event loop) only appends to a list. Every writer names its parts with its own random
token, so several processes (gateway replicas) append to one sidecar without coordination and a
reader never sees half a part; a crash loses at most the rows still buffered.

:func:`read_sidecar` loads the rows of the ids asked for, one part at a time (memory bounded by one
part plus the rows kept).
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from cascal.errors import DataError
from cascal.io.files import PathLike, atomic_path

__all__ = ["EMBEDDINGS_SUFFIX", "PART_GLOB", "EmbeddingSidecar", "default_sidecar", "read_sidecar"]

#: what :func:`default_sidecar` appends to the decision log's path
EMBEDDINGS_SUFFIX = ".embeddings"
#: the file names of the parts in a sidecar folder
PART_GLOB = "part-*.npz"


def default_sidecar(log_path: PathLike) -> Path:
    """The sidecar folder of the decision log ``log_path``: ``<log_path>.embeddings``."""
    path = Path(log_path)
    return path.with_name(path.name + EMBEDDINGS_SUFFIX)


class EmbeddingSidecar:
    """Appends ``(id, embedding)`` rows to a sidecar folder in atomic parts (module docstring).

    Args:
        folder: the sidecar folder (created with its parents).
        part_rows: rows per part.
        max_age: seconds after which a buffered row is written with the next :meth:`add`, even if
            the part is not full (so a quiet gateway's rows reach the disk too).
    """

    def __init__(self, folder: PathLike, *, part_rows: int = 1024, max_age: float = 60.0) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.part_rows = max(1, int(part_rows))
        self.max_age = float(max_age)
        self._token = secrets.token_hex(6)
        self._parts = 0
        self._ids: list[str] = []
        self._rows: list[np.ndarray] = []
        self._oldest = 0.0
        self._lock = threading.Lock()
        self._closed = False
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cascal-sidecar")
        self._pending: list[Future] = []

    def add(self, decision_id: str, embedding: np.ndarray) -> None:
        """Buffer one row; writes a part when the buffer is full or old (see the class docstring)."""
        with self._lock:
            if self._closed:
                return
            if not self._ids:
                self._oldest = time.monotonic()
            self._ids.append(decision_id)
            self._rows.append(embedding)
            if len(self._ids) >= self.part_rows or time.monotonic() - self._oldest >= self.max_age:
                self._flush_locked()

    def flush(self) -> None:
        """Write the buffered rows as one part and wait until every part handed to the writer
        thread is on disk (re-raising a write's error)."""
        with self._lock:
            self._flush_locked()
            pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def close(self) -> None:
        """Write what is buffered, wait for the writer thread and refuse further rows (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.flush()
        self._writer.shutdown(wait=True)

    def _flush_locked(self) -> None:
        if not self._ids:
            return
        target = self.folder / f"part-{self._token}-{self._parts:06d}.npz"
        self._parts += 1
        self._pending = [f for f in self._pending if not f.done() or f.exception() is not None]
        self._pending.append(self._writer.submit(_write_part, target, self._ids, self._rows))
        self._ids, self._rows = [], []


def _write_part(target: Path, ids: list[str], rows: list[np.ndarray]) -> None:
    """One part, written atomically."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ids=np.asarray(ids, dtype=np.str_), embeddings=np.asarray(np.stack(rows), dtype=np.float32))


def read_sidecar(folder: PathLike, wanted: Iterable[str], *, dim: Optional[int] = None) -> dict[str, np.ndarray]:
    """The float32 embeddings of the ids in ``wanted`` that the sidecar ``folder`` holds.

    Parts are read one at a time, in name order; an id found in several parts keeps its first row.

    Args:
        dim: the expected embedding width (the router's); a part of another width is refused.

    Raises:
        DataError: ``folder`` is not a folder, or a part is unreadable, malformed or of the wrong
            width (the message names the part).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: no embedding sidecar here (a folder written by cascal serve --log-embeddings)")
    want = set(wanted)
    found: dict[str, np.ndarray] = {}
    for part in sorted(root.glob(PART_GLOB)):
        if len(found) == len(want):
            break
        try:
            with np.load(part, allow_pickle=False) as data:
                ids, rows = data["ids"], data["embeddings"]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{part}: not an embedding sidecar part ({type(exc).__name__}: {exc})") from None
        if ids.ndim != 1 or rows.ndim != 2 or rows.shape[0] != ids.shape[0] or ids.dtype.kind != "U":
            raise DataError(f"{part}: expected ids (n,) and embeddings (n, d), got {ids.shape} and {rows.shape}")
        if dim is not None and rows.shape[1] != dim:
            raise DataError(f"{part}: embeddings have {rows.shape[1]} dimensions, the router's have {dim}")
        for i, key in enumerate(ids.tolist()):
            if key in want and key not in found:
                found[key] = np.asarray(rows[i], dtype=np.float32)
    return found
