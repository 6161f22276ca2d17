"""Prometheus metrics of the gateway, in a private registry (so several gateways in one process, as
in the tests, never share or clash), rendered in the text exposition format for ``GET /metrics``.

No label ever carries a key, a URL or a query text: labels are endpoint names, status codes, pool
model names, error kinds, reload outcomes and the router in use (:meth:`GatewayMetrics.name_router`).

**Several worker processes** (``cascal serve --workers N``, :mod:`cascal.serve.workers`): the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before it starts the workers, so ``prometheus_client``
keeps every value in a file per process there, and ``GET /metrics`` on any worker renders all of
them (:func:`multiprocess_dir`): counters and histograms summed over the workers, requests in flight
summed over the live ones, and the per-worker gauges (circuit breakers, the router in use, when it
was loaded) with a ``pid`` label each. ``prometheus_client`` cannot remove a value from those files,
so a gauge that one process would drop (a breaker of a model no longer in the pool, the router
before a reload) is set to 0 instead, and ``cascal_router_info`` is a gauge there (an ``Info``
cannot be shared between processes).
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

__all__ = ["GatewayMetrics", "CONTENT_TYPE_LATEST", "MULTIPROC_DIR_ENV", "RELOAD_OUTCOMES", "multiprocess_dir"]

#: the environment variable that puts ``prometheus_client`` in multiprocess mode (read at its import)
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Optional[str]:
    """The folder of the worker processes' metric files, when this process is one of several workers."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


#: the ``outcome`` label values of ``cascal_reloads_total``
RELOAD_OUTCOMES = ("success", "failure")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """The gateway's counters, gauges and histograms (names start with ``cascal_``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "cascal_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "cascal_request_latency_seconds",
            "request latency by endpoint",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "cascal_routing_decisions", "routing decisions by top-ranked model", ["model"], registry=r
        )
        self.routing_latency = Histogram(
            "cascal_routing_latency_seconds", "embed + route time of one batch", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(
            "cascal_routing_batch_size",
            "queries per router call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.answered = Counter(
            "cascal_upstream_answers", "replies forwarded by the model that answered", ["model"], registry=r
        )
        self.upstream_errors = Counter(
            "cascal_upstream_errors", "failed upstream requests by model and kind", ["model", "kind"], registry=r
        )
        self.upstream_latency = Histogram(
            "cascal_upstream_latency_seconds",
            "upstream time to the reply (or first byte)",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.failovers = Counter("cascal_failovers", "requests moved to the next-ranked model", registry=r)
        self.shared = multiprocess_dir() is not None
        self.breaker_open = Gauge(
            "cascal_circuit_open",
            "1 while a model's circuit breaker is open",
            ["model"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.in_flight = Gauge(
            "cascal_requests_in_flight", "requests being served", registry=r, multiprocess_mode="livesum"
        )
        self.decision_log_dropped = Counter(
            "cascal_decision_log_dropped",
            "decision-log lines dropped: the writer thread's queue was full, or a write failed",
            registry=r,
        )
        self.reloads = Counter("cascal_reloads", "reloads of router and pool by outcome", ["outcome"], registry=r)
        for outcome in RELOAD_OUTCOMES:
            self.reloads.labels(outcome=outcome)
        info_help = "the router in use: file sha256, load time, pool models"
        if self.shared:
            self.router_gauge = Gauge(
                "cascal_router_info",
                info_help,
                ["sha256", "loaded_at", "models"],
                registry=r,
                multiprocess_mode="liveall",
            )
        else:
            self.router_info = Info("cascal_router", info_help, registry=r)
        self._router_labels: Optional[tuple[str, str, str]] = None
        self.router_loaded = Gauge(
            "cascal_router_loaded_timestamp_seconds",
            "Unix time the router in use was loaded",
            registry=r,
            multiprocess_mode="liveall",
        )
        # the labelled children counted on every request, looked up once (``labels()`` takes a lock
        # and builds a key each call: about 5 microseconds against 1 for the child's own ``inc``)
        self._children: dict[tuple, Any] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def count_request(self, endpoint: str, status: int, seconds: float) -> None:
        """One request of ``endpoint`` answered with ``status`` after ``seconds`` (to its response head)."""
        self._child(self.requests, endpoint, str(status)).inc()
        self._child(self.latency, endpoint).observe(seconds)

    def count_decision(self, model: str) -> None:
        """One routing decision whose top-ranked model is ``model``."""
        self._child(self.decisions, model).inc()

    def name_router(self, sha256: str, loaded_at: str, loaded_unix: float, models: Sequence[str]) -> None:
        """Name the router in use (``cascal_router_info``, one label set: a swap replaces it)."""
        labels = (sha256, loaded_at, ",".join(models))
        if self.shared:
            if self._router_labels is not None and self._router_labels != labels:
                self.router_gauge.labels(*self._router_labels).set(0)
            self.router_gauge.labels(*labels).set(1)
        else:
            self.router_info.info(dict(zip(("sha256", "loaded_at", "models"), labels)))
        self._router_labels = labels
        self.router_loaded.set(loaded_unix)

    def drop_breaker(self, model: str) -> None:
        """Stop reporting the breaker of ``model`` (no longer in the pool); 0 where values are shared."""
        if self.shared:
            self.breaker_open.labels(model=model).set(0)
        try:
            self.breaker_open.remove(model)
        except KeyError:
            pass

    def render(self) -> bytes:
        """The text exposition of every metric."""
        folder = multiprocess_dir()
        if folder is None:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=folder)
        return generate_latest(registry)
