"""Pipeline stage **route-batch**: route a large log of queries stored as Parquet, in bounded memory.

The input is one Parquet file or a directory of them (every ``*.parquet`` below it, in path order;
names starting with ``.`` or ``_`` are skipped). Each row carries either a query embedding (a
``fixed_size_list`` or ``list`` of floats of the router's dimension) or the query text, embedded
with the router's embedder (:func:`cascal.embedding.load_embedder`). The output is one Parquet file
with one row per input row, in input order:

- the id column, when one is named (passed through unchanged);
- ``ranking``: ``list<string>``, the ``top_k`` model names, best first;
- ``scores``: ``list<double>``, their routing scores, in the same order;
- ``expected_cost``: ``double``, the expected cost of the routed choice, when the router knows prices.

Rows are read in record batches of ``batch_size`` (only the needed columns), routed and appended to
the output as one row group each, so memory stays bounded by a few batches whatever the size of the
input. The output is written to a temporary file beside ``out`` and renamed over it at the end: a
reader never sees a partial file (and a killed run's temporary file is removed by the next run,
:func:`cascal.io.files.remove_stale_temps`).

The output never replaces an input: ``out`` may not be one of the input files (by any name: a
symbolic or hard link is the same file, compared by device and inode) nor lie inside an input
directory (:func:`check_output`). An existing ``out`` is replaced only if it is a previous
route-batch output (its Parquet schema metadata holds the key :data:`OUTPUT_MARKER`) or with
``force``. All input files with rows must give the id column one type (:func:`check_inputs`). :class:`BatchRouter` is the per-batch work; the Ray engine
(:mod:`cascal.distributed`) runs the same class in every worker.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np

from cascal.errors import ConfigError, DataError, EmbeddingError, InvalidParameterError, KernelError
from cascal.io.files import atomic_path

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EMBEDDING_COLUMN",
    "BatchRouter",
    "BatchSummary",
    "OUTPUT_MARKER",
    "check_inputs",
    "check_output",
    "parquet_inputs",
    "route_parquet",
    "write_parquet_atomic",
]

PathLike = Union[str, "os.PathLike[str]"]

#: rows per record batch (384-d float32 embeddings: 24 MiB of input per batch)
DEFAULT_BATCH_SIZE = 16_384
#: the embedding column read when neither an embedding nor a text column is named
DEFAULT_EMBEDDING_COLUMN = "embedding"
#: output column names
RANKING, SCORES, EXPECTED_COST = "ranking", "scores", "expected_cost"
#: key of the Parquet schema metadata marking a file as route-batch output (value: the cascal version)
OUTPUT_MARKER = b"cascal.route_batch"


def import_pyarrow() -> Any:
    """``pyarrow`` (with ``pyarrow.parquet`` and ``pyarrow.compute`` loaded), or a
    :class:`~cascal.errors.ConfigError` naming the extra to install."""
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ConfigError("route-batch needs pyarrow: pip install 'cascal[parquet]'") from None
    return pyarrow


def parquet_inputs(path: PathLike) -> list[Path]:
    """The Parquet files of ``path``: the file itself, or every ``*.parquet`` below a directory,
    sorted by path (parts starting with ``.`` or ``_`` skipped, as Spark and Ray write them).

    Raises:
        cascal.errors.DataError: ``path`` does not exist, or a directory holds no Parquet file.
    """
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.exists():
        raise DataError(f"{root}: no such file or directory")
    files = sorted(
        f
        for f in root.rglob("*.parquet")
        if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(root).parts)
    )
    if not files:
        raise DataError(f"{root}: the directory holds no .parquet file")
    return files


def open_parquet(path: Path) -> Any:
    pa = import_pyarrow()
    try:
        return pa.parquet.ParquetFile(path, buffer_size=1 << 22, pre_buffer=False)
    except (pa.ArrowInvalid, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a Parquet file ({exc})") from None


# ------------------------------------------------------------------------------------ the batch work
class BatchRouter:
    """Routes Arrow tables or record batches with one fitted router; built once, called per batch.

    Args:
        router: a fitted :class:`cascal.CascalRouter` or the path of a router file.
        embedding_column: column of query embeddings (``fixed_size_list`` or ``list`` of floats of the
            router's dimension); default ``"embedding"`` when no ``text_column`` is named.
        text_column: column of query texts (``string``), embedded with ``embedder``.
        id_column: a column copied to the output unchanged, first.
        top_k: models kept per row, best first (default: the whole pool).
        embedder: embedder (or its name) for ``text_column``; default the router's own. Another
            embedder than the router's is refused (the queries would land in another space).

    Raises:
        cascal.errors.InvalidParameterError: both or neither columns, a bad ``top_k``.
        cascal.errors.RouterFileError: the router file cannot be read.
        cascal.errors.EmbeddingError: the embedder differs from the router's or cannot be loaded.
    """

    def __init__(
        self,
        router: Any,
        *,
        embedding_column: Optional[str] = None,
        text_column: Optional[str] = None,
        id_column: Optional[str] = None,
        top_k: Optional[int] = None,
        embedder: Any = None,
    ) -> None:
        self.pa = import_pyarrow()
        if embedding_column is not None and text_column is not None:
            raise InvalidParameterError("embedding_column, text_column: name one of them, not both")
        if text_column is None and embedding_column is None:
            embedding_column = DEFAULT_EMBEDDING_COLUMN
        for name, value in (("embedding_column", embedding_column), ("text_column", text_column)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidParameterError(f"{name}: expected a column name, got {value!r}")
        if id_column is not None and id_column in (embedding_column, text_column):
            raise InvalidParameterError(f"id_column: {id_column!r} is also the query column")
        if isinstance(router, (str, os.PathLike)):
            from cascal.pipeline.route import load_router

            router = load_router(os.fspath(router))
        self.router = router
        self.model_names: list[str] = list(router.model_names_)
        self.dim = int(router.tables_.dim)
        n_models = len(self.model_names)
        if top_k is None:
            top_k = n_models
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n_models:
            raise InvalidParameterError(f"top_k: must be between 1 and the pool size {n_models}, got {top_k!r}")
        self.top_k = top_k
        self.embedding_column = embedding_column
        self.text_column = text_column
        self.id_column = id_column
        self.embedder = _resolve_embedder(router, embedder) if text_column is not None else None
        self._names = self.pa.array(self.model_names, type=self.pa.string())

    @property
    def query_column(self) -> str:
        """The column the queries are read from."""
        return str(self.text_column if self.text_column is not None else self.embedding_column)

    @property
    def input_columns(self) -> list[str]:
        """The columns a batch must carry (id column first)."""
        return ([self.id_column] if self.id_column is not None else []) + [self.query_column]

    # ---------------------------------------------------------------- schema checks (before any row)
    def check_schema(self, schema: Any, where: str) -> None:
        """Refuse a file whose schema lacks a needed column or has the query column of a wrong type.

        Raises:
            cascal.errors.DataError: naming ``where`` (the file), the column and the problem.
        """
        pa = self.pa
        for name in self.input_columns:
            if schema.get_field_index(name) < 0:
                have = ", ".join(schema.names) or "none"
                raise DataError(f"{where}: no column {name!r} (columns: {have})")
        t = schema.field(self.query_column).type
        prefix = f"{where}: column {self.query_column!r}"
        if self.text_column is not None:
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise DataError(f"{prefix}: expected strings (the query texts), got {t}")
            return
        if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
            raise DataError(f"{prefix}: expected a list of floats per row (the query embedding), got {t}")
        if not pa.types.is_floating(t.value_type):
            raise DataError(f"{prefix}: expected a list of floats per row, got a list of {t.value_type}")
        if pa.types.is_fixed_size_list(t) and t.list_size != self.dim:
            raise DataError(f"{prefix}: embeddings of dimension {t.list_size}, the router expects {self.dim}")

    # ---------------------------------------------------------------- one batch
    def __call__(self, batch: Any, *, where: str = "batch", row_label: Optional[Callable[[int], str]] = None) -> Any:
        """Route one ``pyarrow.Table`` or ``RecordBatch``; returns a ``pyarrow.Table`` with the id
        column (when named), ``ranking``, ``scores`` and, when the router knows prices, ``expected_cost``.

        Args:
            where: the source named in errors (a file path).
            row_label: row index in the batch -> how an error names the row (default ``row <i>``).

        Raises:
            cascal.errors.DataError: a missing column, a wrong type or dimension, a null, NaN,
                infinite or all-zero embedding, a null or empty text; the message names ``where``,
                the column and the row.
        """
        pa = self.pa
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        self.check_schema(table.schema, where)
        label = row_label or (lambda i: f"row {i}")
        column = table.column(self.query_column)
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        prefix = f"{where}: column {self.query_column!r}"
        n = table.num_rows
        if self.text_column is not None:
            X = self._embed_texts(column, prefix, label)
        else:
            X = self._embeddings(column, prefix, label)
        if n == 0:
            ranked = np.zeros((0, self.top_k), dtype=np.int64)
            top_scores = np.zeros((0, self.top_k), dtype=np.float64)
            expected_cost: Optional[np.ndarray] = None
        else:
            try:
                routing = self.router.route(_pad_rows(X), top_k=self.top_k)
            except KernelError as exc:
                raise DataError(f"{prefix}: {_bad_row_problem(X, label) or exc}") from None
            ranked = np.asarray(routing.ranked[:n], dtype=np.int64)
            top_scores = np.take_along_axis(np.asarray(routing.scores[:n], dtype=np.float64), ranked, axis=1)
            expected_cost = routing.expected_cost  # None unless the router was fitted with prices
            if expected_cost is not None:
                expected_cost = np.asarray(expected_cost)[:n]
        k = self.top_k
        offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
        names = self._names.take(pa.array(ranked.ravel()))
        columns = {}
        if self.id_column is not None:
            columns[self.id_column] = table.column(self.id_column)
        columns[RANKING] = pa.ListArray.from_arrays(offsets, names)
        columns[SCORES] = pa.ListArray.from_arrays(offsets, pa.array(top_scores.ravel()))
        if expected_cost is not None:
            columns[EXPECTED_COST] = pa.array(np.asarray(expected_cost, dtype=np.float64))
        return pa.table(columns)

    def _embeddings(self, column: Any, prefix: str, label: Callable[[int], str]) -> np.ndarray:
        pa, pc = self.pa, self.pa.compute
        if column.null_count:
            first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{prefix}: {label(first)}: no embedding (null)")
        if not pa.types.is_fixed_size_list(column.type):
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            wrong = np.flatnonzero(lengths != self.dim)
            if wrong.size:
                i = int(wrong[0])
                raise DataError(
                    f"{prefix}: {label(i)}: embedding of dimension {lengths[i]}, the router expects {self.dim}"
                )
        values = column.flatten()
        if values.null_count:
            at = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{prefix}: {label(at // self.dim)}: the embedding holds a null value")
        X = values.to_numpy(zero_copy_only=False).reshape(-1, self.dim)
        return X if X.dtype in (np.float32, np.float64) else X.astype(np.float32)

    def _embed_texts(self, column: Any, prefix: str, label: Callable[[int], str]) -> np.ndarray:
        texts = column.to_pylist()
        for i, text in enumerate(texts):
            if text is None or not text.strip():
                raise DataError(f"{prefix}: {label(i)}: {'no text (null)' if text is None else 'empty text'}")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        assert self.embedder is not None
        X = np.asarray(self.embedder.encode(texts), dtype=np.float32)
        if X.shape != (len(texts), self.dim):
            raise EmbeddingError(
                f"embedder {self.embedder.name}: embeddings of shape {X.shape}, the router expects dimension {self.dim}"
            )
        return X


#: rows per block of the Rust routing kernel (``ROW_BLOCK`` in rust/cascal-core/src/routing.rs)
KERNEL_ROW_BLOCK = 512


def _pad_rows(X: np.ndarray) -> np.ndarray:
    """``X`` with copies of its first row appended up to a multiple of :data:`KERNEL_ROW_BLOCK` rows.

    The kernel routes blocks of rows with a GEMM whose blocking depends on the block's shape (a
    block of at most 64 rows takes another path of the ``gemm`` crate), so a row routed in a short
    tail block can differ in the last bits from the same row routed in a full block. Routing only
    full blocks makes every row's result independent of how the rows were batched: the local and
    the Ray engine, whose batches start at different rows, give identical scores and rankings.
    """
    pad = -len(X) % KERNEL_ROW_BLOCK
    if pad == 0:
        return X
    return np.concatenate([X, np.repeat(X[:1], pad, axis=0)])


def _bad_row_problem(X: np.ndarray, label: Callable[[int], str]) -> Optional[str]:
    """``"<row>: <problem>"`` for the first NaN, infinite or all-zero row of ``X``, else ``None``."""
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        return f"{label(int(np.flatnonzero(~finite)[0]))}: the embedding holds NaN or infinite values"
    zero = ~np.any(X != 0, axis=1)
    if zero.any():
        return f"{label(int(np.flatnonzero(zero)[0]))}: the embedding is all zeros"
    return None


def _resolve_embedder(router: Any, embedder: Any) -> Any:
    """The embedder for text queries: ``embedder`` (an :class:`~cascal.embedding.Embedder` or a
    name) or the router's own; refused when it is not the router's (an ``openai:`` embedder may be
    reached at another URL as long as the model is the same)."""
    from cascal.embedding import resolve_router_embedder

    recorded = getattr(router, "embedding_model", None)
    return resolve_router_embedder(recorded, getattr(router, "embedding_sha256", None), embedder)


# ------------------------------------------------------------------------------------ files
def check_inputs(files: Sequence[Path], batch_router: BatchRouter) -> int:
    """Open every file's footer, check its schema; the total number of rows.

    Raises:
        cascal.errors.DataError: a file that is not Parquet, a missing or mistyped column, no rows
            at all, two files (with rows) whose id columns have different types (naming both).
    """
    total = 0
    id_type: Optional[tuple[Path, Any]] = None  # the first file with rows, and its id column's type
    for path in files:
        pf = open_parquet(path)
        try:
            batch_router.check_schema(pf.schema_arrow, str(path))
            rows = int(pf.metadata.num_rows)
            total += rows
            column = batch_router.id_column
            if column is not None and rows:  # a file without rows adds none to the output
                t = pf.schema_arrow.field(column).type
                if id_type is None:
                    id_type = (path, t)
                elif not t.equals(id_type[1]):
                    raise DataError(
                        f"{path}: column {column!r} is {t}, but {id_type[0]} has it as {id_type[1]}; the output "
                        "has one id column: give every input file the same id type"
                    )
        finally:
            pf.close()
    if total == 0:
        where = str(files[0]) if len(files) == 1 else f"{len(files)} files from {files[0].parent}"
        raise DataError(f"{where}: no rows to route")
    return total


def check_output(inputs: PathLike, files: Sequence[Path], out: PathLike, *, force: bool = False) -> None:
    """Refuse an output that would destroy an input or a file route-batch did not write.

    ``out`` is refused when it is one of ``files`` (the same file under any name: compared by
    ``os.stat`` device and inode, so a symbolic or hard link counts), when it lies inside the input
    directory ``inputs`` (symbolic links resolved; a rerun would read it as input), and, unless
    ``force``, when it exists and is not a previous route-batch output (no :data:`OUTPUT_MARKER` in
    its Parquet schema metadata). ``force`` never allows replacing an input.

    Raises:
        cascal.errors.DataError: naming ``out`` and why.
    """
    target = Path(out)
    root = Path(inputs)
    if root.is_dir():
        resolved_root = root.resolve()
        resolved_out = target.parent.resolve() / target.name
        if resolved_out == resolved_root or resolved_root in resolved_out.parents:
            raise DataError(f"{target}: is inside the input directory {root}; write the output elsewhere")
    try:
        out_stat = target.stat()
    except OSError:
        return  # nothing there yet (or not reachable: the write reports it)
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (out_stat.st_dev, out_stat.st_ino):
            raise DataError(f"{target}: is an input file ({path}); writing it would replace the queries being routed")
    if force or target.is_dir():
        return  # a directory is refused by the writer
    if not _is_route_batch_output(target):
        raise DataError(f"{target}: exists and is not a route-batch output; pass --force (force=True) to replace it")


def _is_route_batch_output(path: Path) -> bool:
    """Whether ``path`` is a Parquet file whose schema metadata carries :data:`OUTPUT_MARKER`."""
    pa = import_pyarrow()
    try:
        metadata = pa.parquet.read_schema(path).metadata or {}
    except (pa.ArrowException, OSError, ValueError):
        return False
    return OUTPUT_MARKER in metadata


@contextmanager
def write_parquet_atomic(out: PathLike) -> Iterator[Callable[[Any], None]]:
    """``write(table)`` appending tables (one row group each) to a Parquet file that replaces
    ``out`` atomically when the block ends (:func:`cascal.io.files.atomic_path`: a reader sees the
    old file or the new one; a failed or killed run leaves ``out`` as it was). The file's schema
    metadata carries :data:`OUTPUT_MARKER`, which lets a later run replace it without ``force``.
    The writer is opened with the first table's schema; every later table must have the same.

    Raises:
        cascal.errors.DataError: ``out`` is a directory, or the block wrote no table.
    """
    pa = import_pyarrow()
    target = Path(out)
    if target.is_dir():
        raise DataError(f"{target}: is a directory (--out names the output file)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        writer: list[Any] = []

        def write(table: Any) -> None:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), OUTPUT_MARKER: _version()})
            if not writer:
                writer.append(pa.parquet.ParquetWriter(tmp, table.schema))
            writer[0].write_table(table)

        try:
            yield write
            if not writer:
                raise DataError(f"{target}: nothing was routed, no output written")
        finally:
            if writer:
                writer[0].close()


def _version() -> bytes:
    from cascal._core import __version__

    return str(__version__).encode("utf-8")


@dataclass(frozen=True)
class BatchSummary:
    """What a route-batch run did: rows and files routed, wall seconds, the output file."""

    rows: int
    files: int
    seconds: float
    out: Path

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def progress_bar(total: int, progress: bool, desc: str = "route-batch") -> Any:
    """A tqdm bar counting rows (disabled when ``progress`` is false)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="rows", unit_scale=True, desc=desc, disable=not progress)


def route_parquet(
    inputs: PathLike,
    router: Any,
    out: PathLike,
    *,
    embedding_column: Optional[str] = None,
    text_column: Optional[str] = None,
    id_column: Optional[str] = None,
    top_k: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    embedder: Any = None,
    progress: bool = False,
    force: bool = False,
) -> BatchSummary:
    """Route every row of the Parquet file or directory ``inputs`` and write the results to ``out``
    (one Parquet file, input order; columns in the module docstring), streaming record batches of
    ``batch_size`` rows in this process.

    Every file's schema is checked before the first row is routed; ``out`` appears only when every
    row was routed. ``out`` may not be an input or inside the input directory, and an existing
    ``out`` that is not a route-batch output is replaced only with ``force`` (:func:`check_output`).

    Raises:
        cascal.errors.DataError: a missing input, an ``out`` refused by :func:`check_output`, a file
            that is not Parquet, no rows, a missing column, id columns of different types across
            files, a wrong type or dimension, a null/NaN/infinite/all-zero embedding, an empty
            text; the message names the file, the column and the row (0-based, within the file).
        cascal.errors.InvalidParameterError: a bad ``batch_size``, ``top_k`` or column choice.
        cascal.errors.RouterFileError: the router file cannot be read.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidParameterError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    started = time.perf_counter()
    files = parquet_inputs(inputs)
    check_output(inputs, files, out, force=force)
    work = BatchRouter(
        router,
        embedding_column=embedding_column,
        text_column=text_column,
        id_column=id_column,
        top_k=top_k,
        embedder=embedder,
    )
    total = check_inputs(files, work)
    with write_parquet_atomic(out) as write, progress_bar(total, progress) as bar:
        for table in _routed_tables(files, work, batch_size, bar.update):
            write(table)
    return BatchSummary(total, len(files), time.perf_counter() - started, Path(out))


def rows_from(start: int) -> Callable[[int], str]:
    """How an error names row ``i`` of a batch that starts at row ``start`` of its file."""
    return lambda i: f"row {start + i}"


def _routed_tables(
    files: Iterable[Path], work: BatchRouter, batch_size: int, advance: Callable[[int], Any]
) -> Iterator[Any]:
    for path in files:
        pf = open_parquet(path)
        try:
            first = 0
            for batch in pf.iter_batches(batch_size=batch_size, columns=work.input_columns):
                start = first
                table = work(batch, where=str(path), row_label=rows_from(start))
                first += batch.num_rows
                advance(batch.num_rows)
                if batch.num_rows:
                    yield table
        finally:
            pf.close()
