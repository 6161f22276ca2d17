"""Building a gateway from files and running it under uvicorn.

:func:`build_gateway` loads the router, checks the embedder against the one the router file records
(a different embedder would put queries in another space than the training questions, so it is
refused), loads the pool and checks that it serves every routed model
(:func:`cascal.serve.state.load_state`). :func:`run_gateway` serves it until SIGINT/SIGTERM and
reloads it on SIGHUP; shutdown stops accepting connections, lets the requests in flight finish (up to
``graceful_timeout`` seconds; ``/health`` answers 503 meanwhile) and closes the upstream clients.
:class:`GatewayThread` runs one in a background thread (tests, ``cascal demo --serve``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

import uvicorn

from cascal.errors import ReloadError, ServerStartError
from cascal.io.decision_embeddings import EmbeddingSidecar, default_sidecar
from cascal.serve.app import create_app
from cascal.serve.connection import ConnectionLimits, attach_limits
from cascal.serve.decision_log import DecisionLog
from cascal.serve.gateway import Gateway
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.routing import RouteEngine
from cascal.serve.settings import GatewaySettings
from cascal.serve.state import check_embedder, load_state

__all__ = [
    "build_gateway",
    "gateway_config",
    "raise_fd_limit",
    "check_embedder",
    "exposure_warning",
    "run_gateway",
    "GatewayServer",
    "GatewayThread",
]

logger = logging.getLogger("cascal.serve")

PathLike = Union[str, Path]

#: the environment variable switching the ``tokenizers`` library's thread pool (read at every call)
TOKENIZERS_PARALLELISM = "TOKENIZERS_PARALLELISM"

#: gc thresholds of a serving process: a larger first generation promotes fewer objects of requests
#: in flight to the older generations, so full collections are rarer (measured in docs/serve.md).
GC_THRESHOLDS = (20_000, 20, 10)


def tune_gc() -> None:
    """Keep CPython's cyclic GC from stalling a serving process.

    A full (generation 2) collection walks every tracked object, and once router, embedder, numpy,
    Starlette and uvicorn are loaded there are many: under load the objects of requests in flight
    get promoted and trigger full collections, each holding the GIL and stalling every request in
    flight (the p99 tail at many clients; measured in docs/serve.md). ``gc.freeze()`` moves the
    objects alive after startup to a permanent generation that collections skip, and the larger
    first threshold makes full collections rarer.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_gateway(
    router: Any,
    pool: Any,
    settings: GatewaySettings,
    *,
    embedder: Any = None,
    reloadable: bool = True,
) -> Gateway:
    """A :class:`Gateway` over a router (a path or a fitted router) and a pool (a path or a
    :class:`~cascal.llm.config.PoolConfig`).

    Args:
        embedder: an embedder or an embedder name; default the one the router records.
        reloadable: whether :meth:`Gateway.reload` may read the files again (it can only when
            router and pool are paths).

    Raises:
        cascal.errors.RouterFileError: the router file cannot be read.
        cascal.errors.EmbeddingError: the embedder differs from the router's, or cannot be loaded.
        cascal.errors.ConfigError: the pool lacks a routed model, uses a reserved name, or an
            ``api_key_env`` variable is not set.
    """
    from cascal.embedding import Embedder, load_embedder

    metrics = GatewayMetrics()
    state = load_state(router, pool, settings, metrics, embedder_name=None)
    recorded = state.router.embedding_model
    recorded_hash = getattr(state.router, "embedding_sha256", None)
    if embedder is not None and not isinstance(embedder, Embedder) and not recorded_hash:
        check_embedder(recorded, str(embedder))  # by name, before loading: a wrong name costs nothing
    if not isinstance(embedder, Embedder):
        embedder = load_embedder(recorded if embedder is None else str(embedder))
    check_embedder(recorded, embedder.name, recorded_hash=recorded_hash, given_hash=embedder.content_hash)

    def on_batch(size: int, seconds: float) -> None:
        metrics.batch_size.observe(size)
        metrics.routing_latency.observe(seconds)

    # the engine's worker threads (settings.batch_pipeline) are the gateway's parallelism: the
    # tokenizers library's own thread pool stays off, whatever the environment says
    os.environ[TOKENIZERS_PARALLELISM] = "false"
    engine = RouteEngine(
        state.router,
        embedder,
        batch_max=settings.batch_max,
        batch_wait=settings.batch_wait,
        on_batch=on_batch,
        pipeline=settings.batch_pipeline,
    )
    log = None
    if settings.log_decisions:
        sidecar = EmbeddingSidecar(default_sidecar(settings.log_decisions)) if settings.log_embeddings else None
        log = DecisionLog(
            settings.log_decisions,
            log_text=settings.log_text,
            embeddings=sidecar,
            on_drop=metrics.decision_log_dropped.inc,
        )
    return Gateway(settings, engine, state, metrics, log, reloadable=reloadable)


class GatewayServer(uvicorn.Server):
    """uvicorn's server that marks the gateway as draining as soon as shutdown begins and, with
    ``sighup``, reloads it on ``SIGHUP`` (:meth:`Gateway.reload`; the main thread only)."""

    def __init__(
        self, config: uvicorn.Config, gateway: Gateway, *, freeze_gc: bool = False, sighup: bool = False
    ) -> None:
        super().__init__(config)
        self.gateway = gateway
        self.freeze_gc = freeze_gc
        self.sighup = sighup
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self._reloads: set[asyncio.Task[Any]] = set()

    async def startup(self, sockets: Optional[list[socket.socket]] = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.sighup and hasattr(signal, "SIGHUP"):
            self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        if self.freeze_gc and not self.should_exit:
            tune_gc()  # everything loaded at startup is long-lived (see tune_gc)

    def _on_sighup(self) -> None:
        """Start a reload (a failed one is logged and reported by the gateway; nothing is raised)."""
        if self.loop is None or self.should_exit:
            return

        async def reload() -> None:
            with contextlib.suppress(ReloadError):
                await self.gateway.reload("SIGHUP")

        task = self.loop.create_task(reload())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def shutdown(self, sockets: Optional[list[socket.socket]] = None) -> None:
        self.gateway.draining = True
        if self.sighup and self.loop is not None and hasattr(signal, "SIGHUP"):
            self.loop.remove_signal_handler(signal.SIGHUP)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a late SIGHUP must not end the draining
        await super().shutdown(sockets)


def _http_protocol() -> Any:
    """The HTTP protocol class: uvicorn's httptools protocol with the gateway's connection limits
    (:mod:`cascal.serve.connection`), or uvicorn's h11 one when httptools is not installed."""
    try:
        from cascal.serve.connection import LimitedHttpToolsProtocol
    except ImportError:  # httptools missing: h11 bounds the head itself; no read timeouts
        logger.warning("httptools is not installed: header and body read timeouts are not enforced")
        return "h11"
    return LimitedHttpToolsProtocol


def gateway_config(gateway: Gateway, *, log_level: str = "warning") -> uvicorn.Config:
    """The uvicorn configuration of ``gateway`` (its settings, the limited protocol, no access log)."""
    s = gateway.settings
    config = uvicorn.Config(
        create_app(gateway),
        host=s.host,
        port=s.port,
        http=_http_protocol(),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(round(s.graceful_timeout))) if s.graceful_timeout else None,
        timeout_keep_alive=s.keepalive_timeout,  # type: ignore[arg-type]  # a float works (call_later)
        h11_max_incomplete_event_size=s.max_header_bytes,
        server_header=False,
        backlog=2048,
    )
    attach_limits(
        config,
        ConnectionLimits(
            max_header_bytes=s.max_header_bytes,
            header_timeout=s.header_timeout,
            body_timeout=s.body_timeout,
            max_connections=s.max_connections,
        ),
    )
    return config


def exposure_warning(settings: GatewaySettings) -> Optional[str]:
    """The warning for a gateway reachable from other machines without a key, else ``None``.

    A host other than a loopback address (``127.0.0.1``, ``::1``, ``localhost``) accepts
    connections from the network; without ``api_key`` anyone who reaches it spends the pool's
    upstream credits and reads its answers.
    """
    if settings.api_key:
        return None
    host = settings.host.strip()
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"WARNING: the gateway listens on {host or 'every interface'!r}, reachable from other machines, "
        "and requires no key: anyone who can reach it can send requests to the pool's models at your "
        "expense. Set --api-key-env (or bind 127.0.0.1)."
    )


def raise_fd_limit(max_connections: int) -> None:
    """Raise the soft file-descriptor limit towards what ``max_connections`` needs (each connection
    may hold a client and an upstream socket), up to the hard limit; warn when it cannot."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    needed = 2 * max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft < needed:
        logger.warning(
            "the file-descriptor limit (%d) is low for --max-connections %d: lower it or raise `ulimit -n`",
            soft,
            max_connections,
        )


def run_gateway(gateway: Gateway, *, log_level: str = "info") -> None:
    """Serve ``gateway`` in the calling thread until SIGINT or SIGTERM (graceful shutdown);
    ``SIGHUP`` reloads router and pool (:meth:`Gateway.reload`) when the gateway can reload.

    The process is the gateway's own, so its garbage collector is tuned for serving (:func:`tune_gc`)
    once startup is done and its file-descriptor limit raised for ``max_connections``
    (:func:`raise_fd_limit`). A gateway reachable from other machines without a key starts with a
    warning on stderr and in the log (:func:`exposure_warning`).
    """
    warning = exposure_warning(gateway.settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
        logger.warning(warning)
    raise_fd_limit(gateway.settings.max_connections)
    if gateway.reloadable and hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the server is up and handles it
    server = GatewayServer(
        gateway_config(gateway, log_level=log_level), gateway, freeze_gc=True, sighup=gateway.reloadable
    )
    server.run()


class GatewayThread:
    """A gateway served by uvicorn in a daemon thread; use as a context manager.

    ``settings.port = 0`` binds a free port; :attr:`base_url` is what an ``openai`` client takes.
    :meth:`stop` is a graceful shutdown (requests in flight finish first).
    """

    def __init__(self, gateway: Gateway, *, log_level: str = "warning") -> None:
        self.gateway = gateway
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((gateway.settings.host, gateway.settings.port))
        self._port = int(self._sock.getsockname()[1])
        self.server = GatewayServer(gateway_config(gateway, log_level=log_level), gateway)
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    @property
    def port(self) -> int:
        """The bound port."""
        return self._port

    @property
    def url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.gateway.settings.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1``."""
        return self.url + "/v1"

    def _serve(self) -> None:
        try:
            asyncio.run(self.server.serve(sockets=[self._sock]))
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def start(self, timeout: float = 20.0) -> "GatewayThread":
        """Start serving and wait until the gateway is ready."""
        self._thread = threading.Thread(target=self._serve, name="cascal-gateway", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not (self.server.started and self.gateway.ready):
            if self._error is not None or not self._thread.is_alive():
                raise ServerStartError(f"the gateway did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise ServerStartError("the gateway did not start in time")
            time.sleep(0.01)
        return self

    def reload(self, timeout: float = 60.0) -> Any:
        """Run :meth:`Gateway.reload` on the server's event loop and wait for it; its
        :class:`~cascal.serve.gateway.ReloadResult`, or its :class:`~cascal.errors.ReloadError`."""
        if self.server.loop is None:
            raise ServerStartError("the gateway is not running")
        future = asyncio.run_coroutine_threadsafe(self.gateway.reload(), self.server.loop)
        return future.result(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful shutdown: stop accepting, finish the requests in flight, close (idempotent)."""
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join(timeout)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> "GatewayThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
