"""The embeddings files of a dataset folder: ``embeddings_<model>.npy`` (or ``embeddings.npy``).

Each holds a 2-D numeric ``.npy`` array with one row per question, in questions.jsonl order (a
``/`` in the model name is written ``__``). Files are opened memory-mapped and checked before use;
an array of Python objects is refused without being unpickled, and a header promising more data
than the file holds is refused, not allocated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from cascal.data import DataError
from cascal.io.files import PathLike
from cascal.validation import short_repr

__all__ = [
    "MMAP_CHECK_ROWS",
    "embedding_files",
    "embeddings_path",
    "holds_objects",
    "load_embeddings_file",
    "load_folder_embeddings",
    "misaligned_embeddings",
    "open_npy",
]

#: Rows checked at a time by :func:`load_embeddings_file` with ``mmap=True``.
MMAP_CHECK_ROWS = 65_536


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


def open_npy(file: Path) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped read-only (a header promising more data than the
    file holds is refused, not allocated). Pickled (object) arrays are refused, never unpickled."""
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, EOFError) as exc:  # not an .npy file, truncated, or an object array
        if holds_objects(file):
            raise DataError(f"{file}: holds Python objects (pickled data), not numbers; refused unread") from None
        raise DataError(f"{file}: not a readable .npy array ({str(exc)[:200]})") from None
    except OSError:
        raise
    except Exception as exc:  # numpy parses the header with ast and tokenize: a damaged one raises anything
        raise DataError(f"{file}: not a readable .npy array ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(arr, np.ndarray):  # np.load opens a zip archive as an .npz mapping
        close = getattr(arr, "close", None)
        if close is not None:
            close()
        raise DataError(f"{file}: not a .npy array (an .npz archive?)")
    return arr


def holds_objects(file: Path) -> bool:
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
    arr = open_npy(file)
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


def load_folder_embeddings(
    folder: Path, which: Optional[str], n_rows: int, mmap: bool = False
) -> tuple[Optional[np.ndarray], Optional[str]]:
    """The embeddings of the dataset folder ``folder`` chosen by ``which`` and their model name
    (``None`` for ``embeddings.npy``), or ``(None, None)``: ``"auto"`` takes the only file (none
    is fine), a model name its file, ``None`` none (see :func:`load_embeddings_file` for ``mmap``).

    Raises:
        cascal.errors.DataError: ``"auto"`` with several files, a model without a file, or a file
            :func:`load_embeddings_file` refuses.
    """
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


def misaligned_embeddings(folder: Path, n_rows: int, skip: Optional[Path]) -> list[Path]:
    """The embeddings files of ``folder`` whose row count is not ``n_rows`` (``skip``, about to be
    replaced, is not looked at).

    Raises:
        cascal.errors.DataError: a file that is not a readable ``.npy`` array (see :func:`open_npy`).
    """
    stale = []
    for file in embedding_files(folder).values():
        if skip is not None and file == skip:
            continue
        shape = open_npy(file).shape
        if len(shape) != 2 or shape[0] != n_rows:
            stale.append(file)
    return stale
