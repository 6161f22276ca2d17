"""Every tunable of a running gateway in one frozen dataclass (filled by ``cascal serve``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from cascal.errors import InvalidParameterError

__all__ = ["GatewaySettings", "ROUTED_MODEL", "VOTE_PREFIX"]

#: the model name that asks the gateway to route
ROUTED_MODEL = "cascal"
#: ``cascal-vote-K`` asks the top K models and returns the plurality answer
VOTE_PREFIX = "cascal-vote"


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway behaves.

    Attributes:
        host: address to bind; ``127.0.0.1`` unless told otherwise.
        port: TCP port (0 picks a free one).
        api_key: when set, every request needs ``Authorization: Bearer <api_key>`` (the value, read
            from the variable named by ``--api-key-env``; never logged).
        top_k: models listed in the ``x-cascal-route`` header and the K of a bare ``cascal-vote``.
        whole_conversation: embed every message's text instead of the last user message.
        max_failover: upstream tries per routed request (the first included), down the ranking.
        breaker_failures: consecutive failures that open a model's circuit breaker.
        breaker_cooldown: seconds an open breaker skips its model before letting a request probe it.
        batch_max: most queries embedded and routed by one router call.
        batch_wait: longest wait, in seconds, for more queries to join a batch (only while other
            requests are known to be on their way).
        batch_pipeline: most batches embedded and routed at once, each in one of as many worker
            threads (the next batch is embedded while the event loop answers the one before).
        max_body_bytes: larger request bodies are refused with 413.
        log_decisions: JSON-lines file of routing decisions, or ``None``.
        log_text: write the query text into the decision log (otherwise only its hash).
        log_embeddings: write each routed query's embedding to the decision log's sidecar folder
            ``<log_decisions>.embeddings`` (needs ``log_decisions``; the text is still only written
            with ``log_text``).
        graceful_timeout: seconds shutdown waits for requests in flight before cancelling them.
        max_route_inputs: most texts one ``/v1/route`` request may route (400 beyond); big lists are
            routed in slices so they cannot hold the batcher from other requests.
        max_header_bytes: largest request head (request line and headers), answered 431 beyond,
            before any authentication.
        header_timeout: seconds a connection may take to send a request's headers (from its opening,
            or from the first byte of a keep-alive request); then it is closed.
        body_timeout: seconds a request body may stall (no byte received) before the connection is
            closed.
        keepalive_timeout: seconds an idle keep-alive connection is kept between requests.
        max_connections: most open connections; one more is answered 503 at once and closed.
            Keep it below the file-descriptor limit (``ulimit -n``; ``cascal serve`` raises the soft
            limit when it can).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: Optional[str] = None
    top_k: int = 3
    whole_conversation: bool = False
    max_failover: int = 3
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0
    batch_max: int = 64
    batch_wait: float = 0.003
    batch_pipeline: int = 2
    max_body_bytes: int = 1 << 20
    log_decisions: Optional[str] = None
    log_text: bool = False
    log_embeddings: bool = False
    graceful_timeout: float = 30.0
    max_route_inputs: int = 2048
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1024

    def __post_init__(self) -> None:
        for name in (
            "top_k",
            "max_failover",
            "breaker_failures",
            "batch_max",
            "batch_pipeline",
            "max_body_bytes",
            "max_route_inputs",
            "max_header_bytes",
            "max_connections",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in ("breaker_cooldown", "batch_wait", "graceful_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidParameterError(f"{name}: must be a number >= 0, got {value!r}")
        for name in ("header_timeout", "body_timeout", "keepalive_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise InvalidParameterError(f"{name}: must be a number of seconds > 0, got {value!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise InvalidParameterError(f"port: must be an integer in 0..65535, got {self.port!r}")
        if self.log_embeddings and not self.log_decisions:
            raise InvalidParameterError(
                "log_embeddings: needs log_decisions (the sidecar sits beside the decision log)"
            )
        if self.api_key is not None and not self.api_key:
            raise InvalidParameterError("api_key: must be a non-empty string or None")

    def __repr__(self) -> str:  # the key never appears in a repr, a log or a traceback
        fields = {k: v for k, v in self.__dict__.items() if k != "api_key"}
        fields["api_key"] = "<set>" if self.api_key else None
        return "GatewaySettings(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"
