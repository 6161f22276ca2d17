"""Embedding and routing for the gateway, with micro-batching of concurrent requests.

:meth:`RouteEngine.decide` embeds texts with the router's embedder and ranks the whole pool with one
routing kernel call on the router's own tables and constants (``cost_weighted_tables`` and
``route_params``, what :meth:`cascal.CascalRouter.route` routes with), so a decision's ranking is the
router's (and ``cascal route``'s) for the same text. With soft subject assignment the kernel also
returns the subject weights it mixed with, reported as :attr:`Decision.subject_weights`. Each
decision also names its nearest niche (:attr:`Decision.niche`) and keeps the query's embedding
(:attr:`Decision.embedding`) for the decision log.

:meth:`RouteEngine.route` is what request handlers await: queries arriving together are collected
into one batch (at most ``batch_max``), embedded and routed by a single router call in a worker
thread (the event loop keeps serving meanwhile). A batch waits for more queries at most
``batch_wait`` seconds, and only while other requests are known to be on their way
(:meth:`RouteEngine.expect`): a lone request is routed at once.

Up to ``pipeline`` batches are in flight at once, each in one of the engine's own ``pipeline``
worker threads: while one batch is embedded and routed, the next one is collected and started, so
the event loop's work on requests (HTTP, JSON, answering the batch before) overlaps with the
embedding of the next batch. The static embedder's tokenizer and the routing kernel release the
GIL, so where a second core is free the two run in parallel; with one batch in flight they would
alternate, each waiting for the other (docs/embedding.md, "Where a request's CPU goes").

A request with many texts (``/v1/route`` with a list) queues them ``route_slice`` at a time, the
next slice only once the previous one is routed, so the queries of other requests arriving
meanwhile are routed between its slices instead of waiting for the whole list.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from cascal import kernels
from cascal.serve.errors import GatewayError

__all__ = ["Decision", "LoadedRouter", "RouteEngine", "Ticket"]


@dataclass(frozen=True)
class Decision:
    """The routing of one query over the whole pool.

    Attributes:
        ranking: pool model names, best first.
        scores: their routing scores (the router's distribution), aligned with ``ranking``.
        subject: the nearest (most weighted) subject.
        subject_weights: subject -> weight under soft assignment (the routing kernel's own weights;
            subjects too far to matter weigh exactly 0), ``None`` when the router assigns hard
            (``subject_temp_ == 0``).
        nearest_distance: cosine distance to the nearest niche centroid of that subject.
        alpha: weight of the global ranking blended in (``0`` = none, ``1`` = the global ranking only).
        expected_costs: expected cost of each model of ``ranking``, USD per 1,000 queries
            (``None`` when the router has no prices; docs/algorithm.md#cost-aware-routing).
        cost_weight: the cost weight the query was routed with (``None`` = the router's own).
        niche: index, among ``subject``'s niches (the router's ``niches_[subject]`` order), of the
            niche centroid nearest to the query (the one ``nearest_distance`` is measured to).
        embedding: the query's embedding as routed (not part of the JSON form).
    """

    ranking: tuple[str, ...]
    scores: tuple[float, ...]
    subject: Optional[str]
    subject_weights: Optional[dict[str, float]]
    nearest_distance: float
    alpha: float
    expected_costs: Optional[tuple[float, ...]] = None
    cost_weight: Optional[float] = None
    niche: Optional[int] = None
    embedding: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @property
    def subject_weight(self) -> float:
        """The weight of :attr:`subject` in the query's subject mixture (1 under hard assignment)."""
        if self.subject_weights is None or self.subject is None:
            return 1.0
        return float(self.subject_weights.get(self.subject, 1.0))

    def expected_cost(self, k: int = 1) -> Optional[float]:
        """Expected cost of asking the first ``k`` models (USD per 1,000 queries), or ``None``."""
        return None if self.expected_costs is None else float(sum(self.expected_costs[:k]))

    @property
    def fell_back(self) -> bool:
        """Whether the global ranking was blended in (the query lies beyond the fallback distance)."""
        return self.alpha > 0.0

    def to_json(self, top_k: Optional[int] = None) -> dict:
        """The ``/v1/route`` form of the decision."""
        ranking: list[dict[str, Any]] = [{"model": m, "score": s} for m, s in zip(self.ranking, self.scores)]
        out: dict[str, Any] = {
            "ranking": ranking,
            "models": list(self.ranking),
            "subject": self.subject,
            "subject_weights": self.subject_weights,
            "nearest_distance": self.nearest_distance,
            "fallback": self.fell_back,
            "alpha": self.alpha,
        }
        if top_k is not None:
            out["top_k"] = list(self.ranking[:top_k])
        if self.expected_costs is not None:
            for entry, cost in zip(ranking, self.expected_costs):
                entry["expected_cost"] = cost
            out["expected_cost"] = self.expected_cost(1)
            out["cost_weight"] = self.cost_weight
        return out


class Ticket:
    """A request announced by :meth:`RouteEngine.expect` and not yet queued for routing."""

    __slots__ = ("queued",)

    def __init__(self) -> None:
        self.queued = False


class _Pending:
    __slots__ = ("text", "future", "cost_weight", "routing")

    def __init__(
        self,
        text: str,
        future: "asyncio.Future[Decision]",
        cost_weight: Optional[float] = None,
        routing: Optional["LoadedRouter"] = None,
    ) -> None:
        self.text = text
        self.future = future
        self.cost_weight = cost_weight
        self.routing = routing


class LoadedRouter:
    """A fitted router as the engine routes with it: its model and subject names, whether it assigns
    subjects soft, whether it carries costs. Built once per router; never changed afterwards.

    Args:
        router: a fitted :class:`cascal.CascalRouter`.
    """

    __slots__ = ("router", "model_names", "subject_names", "soft", "has_costs", "_centroid_subject", "_niche_index")

    def __init__(self, router: Any) -> None:
        self.router = router
        self.model_names: tuple[str, ...] = tuple(router.model_names_)
        self.subject_names: tuple[str, ...] = tuple(getattr(router, "subject_names_", []))
        self.soft = float(getattr(router, "subject_temp_", 0.0) or 0.0) > 0
        self.has_costs = getattr(router, "global_costs_", None) is not None
        owners = np.asarray(router.tables_.centroid_subject, dtype=np.int64)
        self._centroid_subject = owners
        # the rank of every centroid among its subject's centroids (its index in niches_[subject])
        self._niche_index = np.zeros(owners.shape[0], dtype=np.int64)
        for s in np.unique(owners):
            members = np.flatnonzero(owners == s)
            self._niche_index[members] = np.arange(members.size)

    def decide(self, X: np.ndarray, cost_weights: Sequence[Optional[float]]) -> list[Decision]:
        """Rank the whole pool for each row of the embedded queries ``X`` with one kernel call per
        distinct cost weight (``cost_weights[i]`` for row ``i``; ``None`` = the router's own)."""
        params = self.router.route_params(len(self.model_names))
        decisions: list[Optional[Decision]] = [None] * len(X)
        for weight in dict.fromkeys(cost_weights):
            rows = [i for i, w in enumerate(cost_weights) if w == weight]
            tables = self.router.cost_weighted_tables(weight)
            result = kernels.route_batch(X[rows], tables, params, subject_weights=self.soft)
            costs = result.expected_cost
            weights = result.subject_weights
            niches = self._nearest_niches(X[rows], tables, result.subject)
            for r, i in enumerate(rows):
                order = [int(j) for j in result.ranked[r]]
                subject = int(result.subject[r])
                decisions[i] = Decision(
                    ranking=tuple(self.model_names[j] for j in order),
                    scores=tuple(float(result.probs[r, j]) for j in order),
                    subject=self.subject_names[subject] if 0 <= subject < len(self.subject_names) else None,
                    subject_weights=None if weights is None else dict(zip(self.subject_names, weights[r].tolist())),
                    nearest_distance=float(result.nearest_distance[r]),
                    alpha=float(result.alpha[r]),
                    expected_costs=None if costs is None else tuple(float(costs[r, j]) for j in order),
                    cost_weight=weight,
                    niche=int(niches[r]),
                    embedding=X[i],
                )
        return [d for d in decisions if d is not None]

    def _nearest_niches(self, X: np.ndarray, tables: Any, subjects: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid of each query's subject, among that subject's centroids
        (cosine: the largest dot product with the unit centroids; ties to the lower index, as the
        kernel breaks them)."""
        cents = np.asarray(tables.centroids, dtype=np.float32)
        sims = X @ cents.T / np.maximum(np.linalg.norm(cents, axis=1), 1e-30)
        sims[self._centroid_subject[None, :] != np.asarray(subjects)[:, None]] = -np.inf
        return self._niche_index[np.argmax(sims, axis=1)]


class RouteEngine:
    """An embedder and the batching of queries, each routed by the router its request names.

    A request passes the :class:`LoadedRouter` it was admitted with (:meth:`route`, ``routing``); the
    queries of one batch are embedded together and each group of queries of the same router is
    routed by one kernel call on that router. A gateway that swaps its router therefore routes every
    query with the router its request started with, even in a batch that mixes both.

    Args:
        router: a fitted :class:`cascal.CascalRouter`: :attr:`routing`, used when a request names none.
        embedder: the embedder of the router's training embeddings.
        batch_max: most queries per router call.
        batch_wait: longest wait in seconds for a batch to fill (see the module docstring).
        on_batch: called with ``(batch size, seconds)`` after every router call (metrics).
        route_slice: most texts of one request queued at a time (see the module docstring).
        pipeline: most batches in flight at once, and the number of worker threads (see the
            module docstring); ``1`` routes one batch at a time.
    """

    def __init__(
        self,
        router: Any,
        embedder: Any,
        *,
        batch_max: int = 64,
        batch_wait: float = 0.003,
        on_batch: Optional[Callable[[int, float], None]] = None,
        route_slice: int = 256,
        pipeline: int = 2,
    ) -> None:
        self.embedder = embedder
        self.batch_max = batch_max
        self.batch_wait = batch_wait
        self.on_batch = on_batch
        self.route_slice = max(1, int(route_slice))
        self.pipeline = max(1, int(pipeline))
        self.routing = LoadedRouter(router)
        self._queue: Optional[asyncio.Queue[_Pending]] = None
        self._worker: Optional[asyncio.Task[None]] = None
        self._slots: Optional[asyncio.Semaphore] = None
        self._executor: Optional[ThreadPoolExecutor] = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._announced = 0  # requests received whose queries are not queued yet

    @property
    def router(self) -> Any:
        """The router of :attr:`routing`."""
        return self.routing.router

    @property
    def has_costs(self) -> bool:
        """Whether :attr:`routing`'s router carries expected costs (trained with prices)."""
        return self.routing.has_costs

    # ------------------------------------------------------------------ synchronous core
    def decide(
        self,
        texts: Sequence[str],
        cost_weights: Optional[Sequence[Optional[float]]] = None,
        routings: Optional[Sequence[Optional[LoadedRouter]]] = None,
    ) -> list[Decision]:
        """Embed ``texts`` together and rank the whole pool for each, text ``i`` with the router
        ``routings[i]`` (``None``: :attr:`routing`) and the cost weight ``cost_weights[i]`` (``None``:
        the router's own); one kernel call per distinct (router, cost weight)."""
        X = np.asarray(self.embedder.encode(list(texts)), dtype=np.float32)
        weights = list(cost_weights) if cost_weights is not None else [None] * len(texts)
        chosen = [r or self.routing for r in routings] if routings is not None else [self.routing] * len(texts)
        decisions: list[Optional[Decision]] = [None] * len(texts)
        for routing in {id(r): r for r in chosen}.values():
            rows = [i for i, r in enumerate(chosen) if r is routing]
            for i, decision in zip(rows, routing.decide(X[rows], [weights[i] for i in rows])):
                decisions[i] = decision
        return [d for d in decisions if d is not None]

    # ------------------------------------------------------------------ batching
    async def start(self) -> None:
        """Start the batching worker on the running event loop."""
        if self._worker is None:
            self._queue = asyncio.Queue()
            self._slots = asyncio.Semaphore(self.pipeline)
            self._executor = ThreadPoolExecutor(self.pipeline, thread_name_prefix="cascal-route")
            self._worker = asyncio.create_task(self._run(), name="cascal-route-batcher")

    async def stop(self) -> None:
        """Stop the worker; batches already routing finish, queries still queued are refused."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        while self._queue is not None and not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(GatewayError("the gateway is shutting down"))

    @contextlib.contextmanager
    def expect(self) -> Iterator[Ticket]:
        """Announce a request that is about to route (from its arrival until its queries are
        queued: pass the ticket to :meth:`route`), so that a batch being collected waits for it."""
        ticket = Ticket()
        self._announced += 1
        try:
            yield ticket
        finally:
            if not ticket.queued:
                ticket.queued = True
                self._announced -= 1

    async def route(
        self,
        text: str,
        ticket: Optional[Ticket] = None,
        cost_weight: Optional[float] = None,
        routing: Optional[LoadedRouter] = None,
    ) -> Decision:
        """The decision for one query, batched with the queries arriving at the same time."""
        return (await self.route_many([text], ticket, cost_weight, routing))[0]

    async def route_many(
        self,
        texts: Sequence[str],
        ticket: Optional[Ticket] = None,
        cost_weight: Optional[float] = None,
        routing: Optional[LoadedRouter] = None,
    ) -> list[Decision]:
        """Decisions for several queries (they join the current batch), routed by ``routing``
        (``None``: :attr:`routing`) with ``cost_weight`` (``None`` = the router's own), queued
        ``route_slice`` at a time."""
        if self._queue is None:
            raise GatewayError("RouteEngine.start() was not called")
        if ticket is not None and not ticket.queued:
            ticket.queued = True
            self._announced -= 1
        loop = asyncio.get_running_loop()
        decisions: list[Decision] = []
        for start in range(0, len(texts), self.route_slice):
            futures = []
            for text in texts[start : start + self.route_slice]:
                future: asyncio.Future[Decision] = loop.create_future()
                self._queue.put_nowait(_Pending(text, future, cost_weight, routing))
                futures.append(future)
            decisions.extend(await asyncio.gather(*futures))
        return decisions

    async def _run(self) -> None:
        assert self._queue is not None and self._slots is not None
        queue, slots = self._queue, self._slots
        loop = asyncio.get_running_loop()
        while True:
            await slots.acquire()  # a worker thread is free: collect the next batch
            try:
                batch = [await queue.get()]
                deadline = loop.time() + self.batch_wait
                while len(batch) < self.batch_max:
                    while len(batch) < self.batch_max and not queue.empty():
                        batch.append(queue.get_nowait())
                    # wait only for requests already in the house (received, not yet queued)
                    if len(batch) >= self.batch_max or self._announced <= 0 or loop.time() >= deadline:
                        break
                    await asyncio.sleep(0.0005)
            except BaseException:
                slots.release()
                raise
            task = loop.create_task(self._route_batch(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _route_batch(self, batch: list[_Pending]) -> None:
        """Route one batch in a worker thread and hand each query its decision (or an error)."""
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        try:
            texts = [p.text for p in batch]
            start = time.perf_counter()
            try:
                decisions = await loop.run_in_executor(
                    self._executor, self.decide, texts, [p.cost_weight for p in batch], [p.routing for p in batch]
                )
            except Exception as exc:  # noqa: BLE001 - the batch's requests get the error, or their own
                outcomes = (
                    [exc] if len(batch) == 1 else await loop.run_in_executor(self._executor, self._decide_apart, batch)
                )
                for p, outcome in zip(batch, outcomes):
                    if p.future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        p.future.set_exception(outcome)
                    else:
                        p.future.set_result(outcome)
                return
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - start)
            for p, decision in zip(batch, decisions):
                if not p.future.done():
                    p.future.set_result(decision)
        finally:
            self._slots.release()

    def _decide_apart(self, batch: Sequence[_Pending]) -> list:
        """Each query of a failed batch decided alone: one text the embedder or router cannot take
        (a client's) fails its own request, not the others batched with it. A decision or the
        exception of each, in order."""
        outcomes: list = []
        for p in batch:
            try:
                outcomes.append(self.decide([p.text], [p.cost_weight], [p.routing])[0])
            except Exception as exc:  # noqa: BLE001 - handed to that query's request
                outcomes.append(exc)
        return outcomes
