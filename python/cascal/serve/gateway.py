"""The running parts of one gateway in one object, :class:`Gateway`, which the application keeps as
``app.state.gateway`` for its endpoints and middleware."""

from __future__ import annotations

import hmac
import logging
from typing import Mapping, Optional, Sequence

from cascal.serve.decision_log import DecisionLog, DecisionRecord
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.outbound import RedactingFilter
from cascal.serve.routing import Decision, RouteEngine
from cascal.serve.settings import GatewaySettings
from cascal.serve.upstream import UpstreamPool

__all__ = ["Gateway"]

#: the loggers whose records may quote a key (the error middleware's tracebacks, uvicorn's errors)
_REDACTED_LOGGERS = ("cascal.serve", "uvicorn.error")


class Gateway:
    """Settings, routing engine, upstreams, metrics, decision log and serving state of one gateway.

    Attributes:
        ready: set once the application started (router, embedder and pool loaded, batcher running).
        draining: set when shutdown begins; ``/health`` then answers 503.
        self_test_error: why routing the probe failed when the gateway was built (:meth:`self_test`),
            or ``None``.
        redactor: hides every pool key and the gateway's own key; applied to what the upstreams
            relay, the decision log and the gateway's error logs.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        engine: RouteEngine,
        upstreams: UpstreamPool,
        metrics: GatewayMetrics,
        decision_log: Optional[DecisionLog] = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.upstreams = upstreams
        self.metrics = metrics
        self.decision_log = decision_log
        self.ready = False
        self.draining = False
        self.self_test_error: Optional[str] = None
        self._key = settings.api_key.encode("utf-8") if settings.api_key else None
        upstreams.add_secrets([settings.api_key])
        self.redactor = upstreams.redactor
        if decision_log is not None:
            decision_log.redact = self.redactor.text
        self._log_filter = RedactingFilter(self.redactor)
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether ``headers`` carry the gateway's key as ``Authorization: Bearer <key>`` (compared
        in constant time; always true when no key is configured)."""
        if self._key is None:
            return True
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), self._key)

    def self_test(self) -> Optional[str]:
        """Route one probe vector (the router's first subject representative) through the router;
        ``None`` when it routes, else the reason it failed.

        A router whose tables load but cannot route (values the kernel refuses) would otherwise
        look healthy while every request fails; ``/health`` answers 503 with this reason instead.
        """
        import numpy as np

        try:
            probe = np.asarray(self.engine.router.tables_.subject_reps[:1], dtype=np.float64)
            self.engine.router.route(probe)
        except Exception as exc:  # noqa: BLE001 - any failure makes the gateway unhealthy
            return f"routing self-test failed: {type(exc).__name__}: {exc}"
        return None

    def count_decisions(self, decisions: Sequence[Decision]) -> None:
        """Count routing decisions by their top-ranked model."""
        for d in decisions:
            self.metrics.decisions.labels(model=d.ranking[0]).inc()

    def record(self, record: DecisionRecord) -> None:
        """Write ``record`` to the decision log, if the gateway keeps one."""
        if self.decision_log is not None:
            self.decision_log.write(record)

    async def aclose(self) -> None:
        """Stop the batcher, close the upstream clients and the decision log."""
        self.ready = False
        await self.engine.stop()
        await self.upstreams.aclose()
        if self.decision_log is not None:
            self.decision_log.close()
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)
