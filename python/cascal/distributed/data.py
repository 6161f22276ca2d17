"""Batch routing on Ray Data: ``map_batches`` with a callable class that loads the router once per worker.

The per-batch work is :class:`cascal.pipeline.route_batch.BatchRouter`, the one the single-process
``cascal route-batch`` runs, so both engines give the same rows bit for bit (the routing kernel
routes each row independently of the rows batched with it).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any, Optional, Union

from cascal.errors import CascalError, InvalidParameterError, exception_chain
from cascal.pipeline.route_batch import (
    DEFAULT_BATCH_SIZE,
    BatchRouter,
    BatchSummary,
    check_inputs,
    check_output,
    parquet_inputs,
    progress_bar,
    write_parquet_atomic,
)

__all__ = ["RouteBatches", "RouteRowGroups", "route_dataset", "route_parquet_ray", "ensure_ray"]

PathLike = Union[str, "os.PathLike[str]"]


class RouteBatches:
    """The ``map_batches`` callable: built once per Ray actor (it loads the router file and, for text
    queries, the embedder there), then called with ``pyarrow.Table`` batches.

    Errors name the column and the row: by the id column's value when there is one, else by its
    position in the batch (Ray does not tell which file a batch came from).
    """

    def __init__(
        self,
        router_path: str,
        *,
        embedding_column: Optional[str] = None,
        text_column: Optional[str] = None,
        id_column: Optional[str] = None,
        top_k: Optional[int] = None,
        embedder: Optional[str] = None,
    ) -> None:
        self.id_column = id_column
        self.work = BatchRouter(
            router_path,
            embedding_column=embedding_column,
            text_column=text_column,
            id_column=id_column,
            top_k=top_k,
            embedder=embedder,
        )

    def __call__(self, batch: Any) -> Any:
        id_column = self.id_column

        def row_label(i: int) -> str:
            if id_column is None:
                return f"row {i} of a batch"
            return f"row {id_column}={batch.column(id_column)[i].as_py()!r}"

        return self.work(batch, where="ray dataset", row_label=row_label)


def ensure_ray(address: Optional[str] = None, **init_kwargs: Any) -> Any:
    """``ray``, initialised: the running instance if any, else ``ray.init(address=...)``; ``address``
    defaults to ``$RAY_ADDRESS`` (Ray reads it itself), else a new local instance."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, **init_kwargs)
    return ray


def route_dataset(
    ray_dataset: Any,
    router_path: PathLike,
    *,
    embedding_column: Optional[str] = None,
    text_column: Optional[str] = None,
    id_column: Optional[str] = None,
    top_k: Optional[int] = None,
    embedder: Optional[str] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: Optional[int] = None,
    num_cpus: float = 1.0,
) -> Any:
    """Route every row of ``ray_dataset`` (lazily: a new ``ray.data.Dataset``).

    Args:
        ray_dataset: rows with a query column (``embedding_column``, default ``"embedding"``: a list
            of floats of the router's dimension; or ``text_column``: the query text) and optionally
            ``id_column``.
        router_path: the router file, readable at this path on every worker (shared storage, or
            shipped with the job's ``runtime_env``); each actor loads it once.
        embedder: embedder name for ``text_column`` (default the router's own; another is refused).
        batch_size: rows per ``map_batches`` batch.
        workers: router actors (default: an autoscaling pool of 1 to the cluster's CPU count less
            one, left to the read tasks). The actors and the tasks feeding them share the cluster's
            CPUs: a pool that takes all of them leaves none to read the data, and the job waits.
        num_cpus: CPUs each actor reserves.

    Returns:
        A dataset with the id column (when named), ``ranking`` (model names, best first), ``scores``
        (their routing scores) and ``expected_cost`` when the router knows prices: the columns
        of :func:`cascal.pipeline.route_batch.route_parquet`. Set
        ``DataContext.get_current().execution_options.preserve_order = True`` to keep the input order.

    Raises:
        cascal.errors.InvalidParameterError: a bad ``batch_size`` or ``workers``; when the router file
            exists here, every check of :class:`~cascal.pipeline.route_batch.BatchRouter` happens
            before any work is submitted.
    """
    import ray

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidParameterError(f"batch_size: must be an integer >= 1, got {batch_size!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidParameterError(f"workers: must be an integer >= 1, got {workers!r}")
    options = dict(
        embedding_column=embedding_column, text_column=text_column, id_column=id_column, top_k=top_k, embedder=embedder
    )
    if Path(router_path).is_file():  # fail here, not in every actor, on a bad column choice, top_k or embedder
        BatchRouter(os.fspath(router_path), **options)  # type: ignore[arg-type]
    compute = _actor_pool(ray, workers, num_cpus)
    return ray_dataset.map_batches(
        RouteBatches,
        fn_constructor_args=(os.fspath(router_path),),
        fn_constructor_kwargs=options,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=compute,
        num_cpus=num_cpus,
    )


def _actor_pool(ray: Any, workers: Optional[int], num_cpus: float) -> Any:
    """A fixed pool of ``workers`` actors, or one autoscaling from 1 to the cluster's CPUs less one
    (left to the tasks that feed the actors: a pool holding every CPU would starve them)."""
    if workers is not None:
        return ray.data.ActorPoolStrategy(size=workers)
    cpus = ray.cluster_resources().get("CPU", 1) - 1 if ray.is_initialized() else 1
    return ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, int(cpus // max(num_cpus, 1e-9))))


def _row_groups(files: list[Path]) -> list[dict]:
    """``{"path", "row_group", "first_row"}`` of every non-empty row group of ``files``, in order."""
    import pyarrow.parquet as pq

    pieces = []
    for path in files:
        meta = pq.read_metadata(path)
        first = 0
        for i in range(meta.num_row_groups):
            rows = meta.row_group(i).num_rows
            if rows:
                pieces.append({"path": os.fspath(path.resolve()), "row_group": i, "first_row": first})
            first += rows
    return pieces


class RouteRowGroups:
    """The ``map_batches`` callable of ``route-batch --engine ray``: built once per actor (loads the
    router), called with batches of row-group items (``path``, ``row_group``, ``first_row``); reads
    each row group in record batches and routes them like the local engine (errors name the file
    and the row within it)."""

    def __init__(self, router_path: str, *, batch_size: int = DEFAULT_BATCH_SIZE, **options: Any) -> None:
        self.batch_size = batch_size
        self.work = BatchRouter(router_path, **options)

    def __call__(self, items: Any) -> Any:
        import pyarrow as pa

        from cascal.pipeline.route_batch import open_parquet, rows_from

        tables = []
        for item in items.to_pylist():
            pf = open_parquet(Path(item["path"]))
            try:
                first = int(item["first_row"])
                for batch in pf.iter_batches(
                    batch_size=self.batch_size, row_groups=[int(item["row_group"])], columns=self.work.input_columns
                ):
                    tables.append(self.work(batch, where=item["path"], row_label=rows_from(first)))
                    first += batch.num_rows
            finally:
                pf.close()
        return pa.concat_tables(tables)


def route_parquet_ray(
    inputs: PathLike,
    router: PathLike,
    out: PathLike,
    *,
    embedding_column: Optional[str] = None,
    text_column: Optional[str] = None,
    id_column: Optional[str] = None,
    top_k: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    embedder: Optional[str] = None,
    progress: bool = False,
    address: Optional[str] = None,
    workers: Optional[int] = None,
    force: bool = False,
) -> BatchSummary:
    """``cascal route-batch --engine ray``: the output of :func:`~cascal.pipeline.route_batch.route_parquet`,
    with the row groups routed by Ray actors (:class:`RouteRowGroups`, ``map_batches`` over one item
    per row group, order preserved) and written by this process.

    Files, schemas and ``out`` are checked here first (same errors as the local engine, including
    :func:`~cascal.pipeline.route_batch.check_output` and ``force``); a row-level error in
    a worker is raised here as the original :class:`~cascal.errors.CascalError`, naming file and row.
    Joins ``address`` (default ``$RAY_ADDRESS``) or starts a local Ray instance when none is running.
    """
    started = time.perf_counter()
    files = parquet_inputs(inputs)
    check_output(inputs, files, out, force=force)
    work = BatchRouter(
        os.fspath(router),
        embedding_column=embedding_column,
        text_column=text_column,
        id_column=id_column,
        top_k=top_k,
        embedder=embedder,
    )
    total = check_inputs(files, work)
    ray = ensure_ray(address)
    context = ray.data.DataContext.get_current()
    previous = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False  # the rows bar below reports progress
    try:
        # one item per row group, in file order: Ray Data's Parquet reader splits files into
        # fragments whose output order is not the files' (Ray 2.60, even with preserve_order on),
        # so the workers read the row groups themselves and the output keeps the input order
        pieces = _row_groups(files)
        dataset = ray.data.from_items(pieces, override_num_blocks=len(pieces))
        routed = dataset.map_batches(
            RouteRowGroups,
            fn_constructor_args=(os.fspath(Path(router).resolve()),),
            fn_constructor_kwargs=dict(
                embedding_column=embedding_column,
                text_column=text_column,
                id_column=id_column,
                top_k=top_k,
                embedder=embedder,
                batch_size=batch_size,
            ),
            batch_size=1,
            batch_format="pyarrow",
            compute=_actor_pool(ray, workers, 1.0),
            num_cpus=1.0,
        )
        with write_parquet_atomic(out) as write, progress_bar(total, progress, "route-batch (ray)") as bar:
            for table in routed.iter_batches(batch_size=None, batch_format="pyarrow"):
                if table.num_rows:
                    write(table)
                    bar.update(table.num_rows)
    except Exception as exc:
        cause = _cascal_cause(exc)
        if cause is None:
            raise
        raise cause from None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = previous
    return BatchSummary(total, len(files), time.perf_counter() - started, Path(out))


def _cascal_cause(exc: BaseException) -> Optional[CascalError]:
    """The :class:`CascalError` a Ray task raised, or ``None``.

    Ray Data wraps an exception of user code in a ``UserCodeException`` inside a ``RayTaskError``;
    the original may be in the chain of causes, else only in the text of the remote traceback
    (``cascal.errors.DataError: <message>``), from which it is rebuilt.
    """
    import cascal.errors

    for e in exception_chain(exc, also=("cause",)):
        if isinstance(e, CascalError):
            return e
    found = re.findall(r"^\s*cascal\.errors\.(\w+): (.+)$", str(exc), flags=re.MULTILINE)
    if found:
        name, message = found[-1]
        cls = getattr(cascal.errors, name, None)
        if isinstance(cls, type) and issubclass(cls, CascalError):
            return cls(message)
    return None
