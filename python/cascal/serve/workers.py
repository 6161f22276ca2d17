"""Serving one gateway from several worker processes (``cascal serve --workers N``).

One process's event loop is what limits a gateway: its HTTP, JSON and metrics work holds the GIL,
so on a 2-core machine one process used about 1.1 cores at 64 clients (docs/serve.md). With
``--workers N`` a supervisor process takes the port and starts N workers (``spawn``: each a fresh
interpreter that loads router, embedder and pool itself); on Linux each worker listens on a socket of
its own on that port (``SO_REUSEPORT``) and the kernel spreads new connections evenly over them
(elsewhere they share the supervisor's socket).

What the workers share, and how:

- **metrics**: the supervisor gives the workers one ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary
  folder, removed at the end); ``GET /metrics`` on any worker renders all of them
  (:mod:`cascal.serve.metrics`);
- **reload**: ``SIGHUP`` to the supervisor is passed on to every worker, each reloads its files; a
  successful ``POST /admin/reload`` reloads the worker that answered it and then, through the
  supervisor, every other one (their outcomes are in their logs and in ``cascal_reloads_total``);
- **shutdown**: ``SIGINT``/``SIGTERM`` to the supervisor is passed on as ``SIGTERM``; each worker
  drains as a single gateway does (``graceful_timeout``) and the supervisor waits for them;
- **a worker that dies** is started again (after one second), its metric files marked dead.

Not shared: circuit breakers (each worker learns a failing upstream by itself) and the decision log,
which ``--workers`` refuses for now (one file written by several processes would need one writer).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from cascal.errors import ConfigError, ServerStartError
from cascal.serve.metrics import MULTIPROC_DIR_ENV
from cascal.serve.settings import GatewaySettings

__all__ = ["run_workers", "WorkerSpec"]

logger = logging.getLogger("cascal.serve")

PathLike = Union[str, Path]

#: seconds before a worker that died is started again
RESTART_DELAY = 1.0
#: seconds the supervisor waits for the workers beyond the gateway's graceful timeout at shutdown
SHUTDOWN_MARGIN = 10.0


#: exit codes of a worker that stopped on the supervisor's SIGTERM (or a terminal's SIGINT)
_STOPPED_BY_SIGNAL = (-signal.SIGTERM, -signal.SIGINT)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker builds its gateway from (picklable: it crosses to a spawned process)."""

    router: str
    pool: str
    settings: GatewaySettings
    embedder: Optional[str] = None
    log_level: str = "info"


#: whether the kernel can balance connections over one listening socket per worker
_REUSEPORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def _socket(host: str, port: int, *, listen: bool) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``SO_REUSEPORT`` where the kernel balances over it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _REUSEPORT:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--host/--port: cannot listen on {host}:{port}: {exc.strerror}") from None
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _bind(settings: GatewaySettings) -> socket.socket:
    """The supervisor's socket: it holds the port (a free one for port 0). On Linux it only holds
    it: each worker listens on a socket of its own on the same port (``SO_REUSEPORT``), and the
    kernel spreads new connections evenly over them (one shared socket would give most connections
    to whichever worker happens to be waiting in ``accept``). Elsewhere it is the one socket every
    worker serves."""
    return _socket(settings.host, settings.port, listen=not _REUSEPORT)


def _worker_main(index: int, spec: WorkerSpec, sock: socket.socket, reloads: Any) -> None:
    """One worker: build the gateway from ``spec`` and serve until SIGTERM/SIGINT, on a socket of
    its own on ``sock``'s port where the kernel balances (:func:`_bind`), else on ``sock``."""
    from cascal.serve.server import GatewayServer, build_gateway, gateway_config, raise_fd_limit

    logging.basicConfig(level=spec.log_level.upper(), format=f"%(asctime)s worker {index} %(levelname)s %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # while loading; the running gateway reloads on it
    raise_fd_limit(spec.settings.max_connections)
    gateway = build_gateway(spec.router, spec.pool, spec.settings, embedder=spec.embedder)
    gateway.worker = index
    gateway.reload_peers = lambda: reloads.put(("reload", os.getpid()))
    server = GatewayServer(gateway_config(gateway, log_level="warning"), gateway, freeze_gc=True, sighup=True)
    if _REUSEPORT:
        host, port = sock.getsockname()[:2]
        sock.close()
        sock = _socket(host, port, listen=True)
    reloads.put(("ready", os.getpid()))  # listening: a connection from now on waits in the backlog
    server.run(sockets=[sock])


class _Supervisor:
    """The processes of one ``--workers`` gateway (module docstring)."""

    def __init__(self, spec: WorkerSpec, workers: int, sock: socket.socket, metrics_dir: str) -> None:
        self.spec = spec
        self.sock = sock
        self.metrics_dir = metrics_dir
        self.context = multiprocessing.get_context("spawn")
        self.reloads = self.context.SimpleQueue()
        self.processes: list[Optional[multiprocessing.process.BaseProcess]] = [None] * workers
        self.stopping = threading.Event()
        self.ready: set[int] = set()
        self.ready_changed = threading.Condition()

    def start(self, index: int) -> None:
        process = self.context.Process(
            target=_worker_main, args=(index, self.spec, self.sock, self.reloads), name=f"cascal-worker-{index}"
        )
        process.start()
        self.processes[index] = process

    def signal_all(self, signum: int, *, except_pid: Optional[int] = None) -> None:
        for process in self.processes:
            if process is not None and process.pid is not None and process.pid != except_pid and process.is_alive():
                try:
                    os.kill(process.pid, signum)
                except ProcessLookupError:
                    pass

    def listen(self) -> None:
        """The workers' messages (a thread): a worker is ready; a worker's successful
        ``/admin/reload``, passed on to every other worker."""
        while True:
            message = self.reloads.get()
            if message is None:
                return
            kind, pid = message
            if kind == "ready":
                with self.ready_changed:
                    self.ready.add(pid)
                    self.ready_changed.notify_all()
            elif kind == "reload" and not self.stopping.is_set():
                logger.warning("worker pid %s reloaded through /admin/reload: reloading the other workers", pid)
                self.signal_all(signal.SIGHUP, except_pid=pid)

    def wait_ready(self, stop_requested: threading.Event) -> None:
        """Until every worker has built its gateway; a worker that exits first fails the start."""
        with self.ready_changed:
            while not stop_requested.is_set():
                pids = {p.pid for p in self.processes if p is not None}
                if pids <= self.ready:
                    return
                for process in self.processes:
                    if process is not None and not process.is_alive():
                        raise ServerStartError(
                            f"worker {process.name} exited with code {process.exitcode} while loading the gateway "
                            "(its error is printed above)"
                        )
                self.ready_changed.wait(0.2)

    def watch(self) -> None:
        """Start again any worker that dies, until shutdown."""
        from prometheus_client import multiprocess

        while not self.stopping.wait(0.5):
            for index, process in enumerate(self.processes):
                if process is None or process.is_alive() or self.stopping.is_set():
                    continue
                logger.error(
                    "worker %d (pid %s) exited with %s: starting it again", index, process.pid, process.exitcode
                )
                multiprocess.mark_process_dead(process.pid, self.metrics_dir)
                time.sleep(RESTART_DELAY)
                if not self.stopping.is_set():
                    self.start(index)

    def stop(self) -> int:
        """SIGTERM to every worker, wait for the graceful shutdown; returns the worst exit code."""
        self.stopping.set()
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + (self.spec.settings.graceful_timeout or 0.0) + SHUTDOWN_MARGIN
        worst = 0
        for process in self.processes:
            if process is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                logger.error("worker pid %s did not stop in time: killed", process.pid)
                process.kill()
                process.join(5)
            # uvicorn ends a gracefully stopped server by raising the signal that stopped it again
            code = process.exitcode or 0
            worst = max(worst, 0 if code in _STOPPED_BY_SIGNAL else abs(code))
        return worst


def run_workers(spec: WorkerSpec, workers: int, on_ready: Optional[Callable[[int], None]] = None) -> int:
    """Serve the gateway of ``spec`` from ``workers`` processes until SIGINT or SIGTERM (module
    docstring); ``on_ready`` is called with the port once every worker has loaded its gateway. Returns the worst
    exit code of the workers (0 after a clean shutdown).

    Raises:
        ConfigError: ``workers`` below 1, a decision log asked for, or the address cannot be bound.
        ServerStartError: a worker exited while loading (its own error is on stderr).
    """
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {workers}")
    if spec.settings.log_decisions:
        raise ConfigError(
            "--log-decisions cannot be combined with --workers above 1 (the workers would share one log "
            "file); run one worker, or one gateway per log"
        )
    sock = _bind(spec.settings)
    metrics_dir = tempfile.mkdtemp(prefix="cascal-metrics-")
    previous_env = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = metrics_dir  # the spawned workers read it when they import prometheus_client
    supervisor = _Supervisor(spec, workers, sock, metrics_dir)
    stop_requested = threading.Event()

    def on_stop(signum: int, frame: Any) -> None:
        stop_requested.set()

    def on_hup(signum: int, frame: Any) -> None:
        supervisor.signal_all(signal.SIGHUP)

    previous = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    listener = threading.Thread(target=supervisor.listen, name="cascal-workers", daemon=True)
    listener.start()
    try:
        for index in range(workers):
            supervisor.start(index)
        try:
            supervisor.wait_ready(stop_requested)
        except ServerStartError:
            supervisor.stop()
            raise
        if on_ready is not None:
            on_ready(int(sock.getsockname()[1]))
        threading.Thread(target=supervisor.watch, name="cascal-watch", daemon=True).start()
        while not stop_requested.wait(0.5):
            pass
        return supervisor.stop()
    finally:
        supervisor.reloads.put(None)
        listener.join(5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sock.close()
        if previous_env is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous_env
        shutil.rmtree(metrics_dir, ignore_errors=True)
