"""The running parts of one gateway in one object, :class:`Gateway`, which the application keeps as
``app.state.gateway`` for its endpoints and middleware.

The router and the pool live in a :class:`~cascal.serve.state.ServingState` that is never changed:
a request takes the current one once, when it starts (:meth:`Gateway.hold`), and keeps it to its
end, a stream included. :meth:`Gateway.reload` reads the router file and pool.yaml again, builds
and checks a new state beside the running one, then swaps the reference: requests in flight finish
on the old state, requests arriving after the swap get the new one. The upstream clients only the
old state used are closed once its last request is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from cascal.errors import CascalError, ReloadError
from cascal.serve.decision_log import DecisionLog, DecisionRecord
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.outbound import RedactingFilter, Redactor
from cascal.serve.routing import Decision, RouteEngine
from cascal.serve.settings import GatewaySettings
from cascal.serve.state import ServingState, load_state, self_test
from cascal.serve.upstream import Upstream, UpstreamPool

__all__ = ["Gateway", "ReloadResult", "ReloadUnavailable"]

#: the loggers whose records may quote a key (the error middleware's tracebacks, uvicorn's errors)
_REDACTED_LOGGERS = ("cascal.serve", "uvicorn.error")

logger = logging.getLogger("cascal.serve")


class ReloadUnavailable(ReloadError):
    """The gateway cannot reload at all: its router and pool were not read from files, or it runs
    on Ray Serve."""


@dataclass(frozen=True)
class ReloadResult:
    """A successful reload: the state now serving and the one it replaced."""

    state: ServingState
    previous: ServingState

    def to_json(self) -> dict[str, Any]:
        """The ``POST /admin/reload`` answer."""
        return {
            "object": "cascal.reload",
            "router": self.state.describe(),
            "router_sha256": self.state.sha256,
            "previous_router_sha256": self.previous.sha256,
            "pool": self.state.upstreams.names,
        }


class Gateway:
    """Settings, routing engine, serving state, metrics and decision log of one gateway.

    Attributes:
        serving: the :class:`~cascal.serve.state.ServingState` new requests get (swapped by
            :meth:`reload`; read it once per request, through :meth:`hold`).
        ready: set once the application started (router, embedder and pool loaded, batcher running).
        draining: set when shutdown begins; ``/health`` then answers 503.
        reloadable: whether :meth:`reload` may run (the state came from files, and the gateway was
            not told otherwise, as on Ray Serve).
        last_reload_error: why the last reload failed, ``None`` after a successful one (or none).
        redactor: hides every pool key (of every state served so far) and the gateway's own key;
            applied to what the upstreams relay, the decision log and the gateway's error logs.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        engine: RouteEngine,
        serving: ServingState,
        metrics: GatewayMetrics,
        decision_log: Optional[DecisionLog] = None,
        *,
        reloadable: bool = True,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.decision_log = decision_log
        self.ready = False
        self.draining = False
        self.reloadable = reloadable and serving.router_path is not None and serving.pool_path is not None
        self.last_reload_error: Optional[str] = None
        #: the index of this gateway's worker process under ``cascal serve --workers`` (else ``None``)
        self.worker: Optional[int] = None
        #: asks the other worker processes to reload (set by :mod:`cascal.serve.workers`)
        self.reload_peers: Optional[Callable[[], None]] = None
        self._key = settings.api_key.encode("utf-8") if settings.api_key else None
        self._secrets: list[Optional[str]] = [settings.api_key]
        self._holders: dict[ServingState, int] = {}
        self._open: dict[int, Upstream] = {}  # every upstream not closed yet, by id
        self._closing: set[asyncio.Task[None]] = set()
        self._reload_lock: Optional[asyncio.Lock] = None
        self.serving = serving
        self.redactor = Redactor()
        self._log_filter = RedactingFilter(self.redactor)
        self._adopt(serving)
        if decision_log is not None:
            decision_log.redact = lambda line: self.redactor.text(line)
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)

    # ------------------------------------------------------------------ the state in use
    @property
    def upstreams(self) -> UpstreamPool:
        """The current state's upstreams."""
        return self.serving.upstreams

    @property
    def self_test_error(self) -> Optional[str]:
        """Why the current router failed its routing self-test when it was loaded, or ``None``."""
        return self.serving.self_test_error

    def _adopt(self, state: ServingState) -> None:
        """Make ``state`` the one new requests get, and name it in the redactor and the metrics."""
        for key in (m.api_key() for m in state.upstreams.pool.models):
            if key not in self._secrets:
                self._secrets.append(key)
        self.redactor = Redactor(self._secrets)
        self._log_filter.redactor = self.redactor
        self.serving = state
        self._open.update({id(u): u for u in state.upstreams.upstreams.values()})
        self.engine.routing = state.routing
        self.metrics.name_router(state.sha256, state.loaded_at_iso, state.loaded_at, state.routing.model_names)

    @contextlib.contextmanager
    def hold(self) -> Iterator[ServingState]:
        """The current state, held for the duration of a request: the clients of a replaced state
        are closed only once no request holds a state that uses them."""
        state = self.serving
        self._holders[state] = self._holders.get(state, 0) + 1
        try:
            yield state
        finally:
            left = self._holders[state] - 1
            if left:
                self._holders[state] = left
            else:
                del self._holders[state]
                if state is not self.serving:
                    self._close_unused()

    def _close_unused(self) -> None:
        """Close every upstream that neither the current state nor a state still held uses."""
        live = {id(u) for s in (self.serving, *self._holders) for u in s.upstreams.upstreams.values()}
        unused = [u for key, u in self._open.items() if key not in live]
        if not unused:
            return
        for upstream in unused:
            del self._open[id(upstream)]
        task = asyncio.get_running_loop().create_task(_close_all(unused))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------------ reload
    async def reload(self, trigger: str = "reload") -> ReloadResult:
        """Read the router file and pool.yaml again, check them beside the running state
        (:func:`~cascal.serve.state.load_state`) and swap them in; concurrent reloads run one after
        the other. A failure keeps the running state, is logged and counted, and is reported in
        :attr:`last_reload_error` (cleared by the next success).

        Raises:
            cascal.errors.ReloadError: the files were refused (the old state keeps serving).
            ReloadUnavailable: this gateway cannot reload.
        """
        if not self.reloadable:
            raise ReloadUnavailable(
                "this gateway cannot reload: its router and pool were not read from files, or it runs on "
                "Ray Serve (redeploy it instead)"
            )
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            previous = self.serving
            try:
                state = await asyncio.to_thread(
                    load_state,
                    previous.router_path,
                    previous.pool_path,
                    self.settings,
                    self.metrics,
                    embedder_name=self.engine.embedder.name,
                    embedder_hash=self.engine.embedder.content_hash,
                    previous=previous,
                )
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old state serving
                self.metrics.reloads.labels(outcome="failure").inc()
                reason = str(exc) if isinstance(exc, CascalError) else f"{type(exc).__name__}: {exc}"
                reason = self.redactor.text(reason)
                self.last_reload_error = reason
                logger.error("%s failed, still serving router %s: %s", trigger, previous.sha256[:12], reason)
                raise ReloadError(reason) from None
            self._swap(previous, state)
        self.metrics.reloads.labels(outcome="success").inc()
        self.last_reload_error = None
        # WARNING, so that it shows without any logging configuration: a swap is an operator's event
        logger.warning(
            "%s: now serving router %s (was %s) over %s%s",
            trigger,
            state.sha256[:12],
            previous.sha256[:12],
            ", ".join(state.upstreams.names),
            f"; dropped from routing: {', '.join(state.dropped)}" if state.dropped else "",
        )
        return ReloadResult(state, previous)

    def _swap(self, previous: ServingState, state: ServingState) -> None:
        self._adopt(state)
        for name in previous.upstreams.names:
            if name not in state.upstreams.upstreams:
                self.metrics.drop_breaker(name)
        self._close_unused()

    # ------------------------------------------------------------------ requests
    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether ``headers`` carry the gateway's key as ``Authorization: Bearer <key>`` (compared
        in constant time; always true when no key is configured)."""
        if self._key is None:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), self._key)

    @property
    def has_key(self) -> bool:
        """Whether requests need the gateway's key."""
        return self._key is not None

    def self_test(self) -> Optional[str]:
        """Route one probe vector through the current router (:func:`~cascal.serve.state.self_test`);
        ``None`` when it routes, else the reason it failed. ``/health`` answers 503 with it."""
        return self_test(self.serving.router)

    def count_decisions(self, decisions: Sequence[Decision]) -> None:
        """Count routing decisions by their top-ranked model."""
        for d in decisions:
            self.metrics.count_decision(d.ranking[0])

    def record(self, record: DecisionRecord) -> None:
        """Write ``record`` to the decision log, if the gateway keeps one."""
        if self.decision_log is not None:
            self.decision_log.write(record)

    async def aclose(self) -> None:
        """Stop the batcher, close every upstream client and the decision log."""
        self.ready = False
        await self.engine.stop()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        upstreams, self._open = list(self._open.values()), {}
        await _close_all(upstreams)
        if self.decision_log is not None:
            self.decision_log.close()
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)


async def _close_all(upstreams: Sequence[Upstream]) -> None:
    for upstream in upstreams:
        with contextlib.suppress(Exception):
            await upstream.aclose()
