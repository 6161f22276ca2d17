"""The Starlette application of the gateway: endpoints, authentication, body limit, errors.

Endpoints (OpenAI-style error JSON for every refusal):

- ``POST /v1/chat/completions``: ``model: "cascal"`` routes (header ``x-cascal-route``: the top
  ``top_k`` model names as a JSON list), a pool model's name goes to that model, ``cascal-vote[-K]``
  asks the top K and votes; ``stream: true`` passes server-sent events through. A router trained
  with prices takes a per-request cost weight (body field ``cascal_cost_weight`` or header
  ``x-cascal-cost-weight``) and reports the routed choice's expected cost (header
  ``x-cascal-expected-cost``, USD per 1,000 queries: the first choice, or the K voters' sum);
- ``POST /v1/route``: the decision only (:meth:`cascal.serve.routing.Decision.to_json`; the same
  cost weight field/header);
- ``GET /v1/models``: the pool models plus ``cascal``;
- ``GET /health``: 200 once router, embedder and pool are loaded and the gateway serves, 503 while
  starting or draining;
- ``GET /metrics``: Prometheus text format.

With an API key configured every request, ``/health`` and ``/metrics`` included, needs
``Authorization: Bearer <key>`` (compared with :func:`hmac.compare_digest`), else 401.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Optional

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from cascal.serve.decision_log import DecisionLog
from cascal.serve.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from cascal.serve.protocol import (
    APIError,
    check_messages,
    cost_weight,
    error_body,
    parse_json,
    query_text,
    route_inputs,
)
from cascal.serve.routing import Decision, RouteEngine
from cascal.serve.settings import ROUTED_MODEL, GatewaySettings
from cascal.serve.upstream import Forwarded, UpstreamPool
from cascal.serve.vote import ask_and_vote, vote_size

__all__ = ["Gateway", "create_app"]

_logger = logging.getLogger("cascal.serve")

Handler = Callable[[Request], Awaitable[Response]]


class Gateway:
    """The running parts of one gateway: settings, routing engine, upstreams, metrics, log, state.

    Attributes:
        ready: set once the application started (router, embedder and pool loaded, batcher running).
        draining: set when shutdown begins; ``/health`` then answers 503.
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
        self._key = settings.api_key.encode("utf-8") if settings.api_key else None

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the gateway's key (always, when none is configured)."""
        if self._key is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("utf-8"), self._key)

    async def read_json(self, request: Request) -> dict:
        """The JSON body, refused with 413 past ``max_body_bytes`` and 400 when malformed."""
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise APIError(413, f"the request body exceeds {limit} bytes", code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise APIError(413, f"the request body exceeds {limit} bytes", code="request_too_large")
            chunks.append(chunk)
        return parse_json(b"".join(chunks))

    def count_decisions(self, decisions: list[Decision]) -> None:
        for d in decisions:
            self.metrics.decisions.labels(model=d.ranking[0]).inc()

    def log(
        self,
        endpoint: str,
        text: str,
        ranking: Any,
        model: Optional[str],
        failovers: int,
        status: int,
        started: float,
        usage: Any = None,
        extra: Optional[dict] = None,
    ) -> None:
        if self.decision_log is not None:
            self.decision_log.write(
                endpoint=endpoint,
                text=text,
                ranking=list(ranking),
                model=model,
                failovers=failovers,
                status=status,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                usage=usage if isinstance(usage, dict) else None,
                extra=extra,
            )


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def create_app(gateway: Gateway) -> Starlette:
    """The Starlette application serving ``gateway`` (its lifespan starts and stops the batcher,
    the upstream clients and the decision log)."""
    metrics = gateway.metrics
    settings = gateway.settings

    def endpoint(name: str, handler: Handler) -> Handler:
        async def wrapped(request: Request) -> Response:
            started = time.perf_counter()
            metrics.in_flight.inc()
            try:
                if not gateway.authorized(request):
                    raise APIError(
                        401,
                        "missing or incorrect API key (send Authorization: Bearer <key>)",
                        code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"},
                    )
                response = await handler(request)
            except APIError as error:
                response = _error_response(error)
            except Exception as exc:  # noqa: BLE001 - a bug answers 500 in OpenAI form, never a traceback
                _logger.exception("%s: internal error", name)
                response = _error_response(APIError(500, f"internal error ({type(exc).__name__})", "server_error"))
            finally:
                metrics.in_flight.dec()
            metrics.requests.labels(endpoint=name, status=str(response.status_code)).inc()
            metrics.latency.labels(endpoint=name).observe(time.perf_counter() - started)
            return response

        return wrapped

    # ------------------------------------------------------------------ /v1/chat/completions
    async def chat(request: Request) -> Response:
        started = time.perf_counter()
        with gateway.engine.expect() as ticket:
            body = await gateway.read_json(request)
            messages = check_messages(body)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise APIError(400, "model: required string", param="model")
            pool = gateway.upstreams
            k = vote_size(model, settings.top_k, len(pool.names))
            stream = bool(body.get("stream"))
            if model in pool.names:  # a pool model by name: no routing, no failover
                ranking: list[str] = [model]
                text = ""
                tries = 1
            elif model == ROUTED_MODEL or k is not None:
                text = query_text(messages, settings.whole_conversation)
                weight = _cost_weight(gateway, body, request)
                decision = await gateway.engine.route(text, ticket, weight)
                gateway.count_decisions([decision])
                ranking = list(decision.ranking)
                tries = settings.max_failover
            else:
                raise APIError(
                    404,
                    f"model {model!r} not found: ask for {ROUTED_MODEL!r}, 'cascal-vote-K' or a pool "
                    f"model ({', '.join(pool.names)})",
                    code="model_not_found",
                    param="model",
                )
        headers = {"x-cascal-route": json.dumps(ranking[: settings.top_k], separators=(",", ":"))}
        if model not in pool.names:
            headers.update(_cost_headers(decision, k or 1))
        if k is not None:
            forwarded = await ask_and_vote(pool, ranking, body, k)
            headers["x-cascal-model"] = forwarded.model
            gateway.log(
                "vote",
                text,
                ranking,
                forwarded.model,
                0,
                200,
                started,
                forwarded.body.get("usage"),
                {"vote": forwarded.body["cascal"]["vote"]},
            )
            return JSONResponse(forwarded.body, headers=headers)
        if stream:
            return await _stream(text, ranking, body, tries, headers, started)
        try:
            forwarded = await pool.complete(ranking, body, tries)
        except APIError as error:
            gateway.log("chat", text, ranking, None, max(0, tries - 1), error.status, started)
            raise
        headers.update(_answer_headers(forwarded))
        gateway.log(
            "chat", text, ranking, forwarded.model, forwarded.failovers, 200, started, forwarded.body.get("usage")
        )
        return JSONResponse(forwarded.body, headers=headers)

    async def _stream(text: str, ranking: list[str], body: dict, tries: int, headers: dict, started: float) -> Response:
        try:
            opened = await gateway.upstreams.stream(ranking, body, tries)
        except APIError as error:
            gateway.log("chat", text, ranking, None, max(0, tries - 1), error.status, started)
            raise
        headers.update(
            {
                "x-cascal-model": opened.model,
                "x-cascal-failovers": str(len(opened.attempts) - 1),
                "cache-control": "no-cache",
            }
        )

        async def events() -> AsyncIterator[bytes]:
            try:
                async for piece in opened.events():
                    yield piece
            finally:
                if opened.error is not None:
                    metrics.upstream_errors.labels(model=opened.model, kind=opened.error).inc()
                gateway.log(
                    "chat",
                    text,
                    ranking,
                    opened.model,
                    len(opened.attempts) - 1,
                    200,
                    started,
                    opened.usage,
                    {"stream": True, **({"stream_error": opened.error} if opened.error else {})},
                )

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    # ------------------------------------------------------------------ /v1/route
    async def route(request: Request) -> Response:
        started = time.perf_counter()
        with gateway.engine.expect() as ticket:
            body = await gateway.read_json(request)
            texts, many = route_inputs(body, settings.whole_conversation)
            weight = _cost_weight(gateway, body, request)
            decisions = await gateway.engine.route_many(texts, ticket, weight)
        gateway.count_decisions(decisions)
        for text, d in zip(texts, decisions):
            gateway.log("route", text, d.ranking, None, 0, 200, started)
        items = [d.to_json(settings.top_k) for d in decisions]
        if many:
            return JSONResponse({"object": "list", "data": items})
        return JSONResponse({"object": "cascal.route", **items[0]})

    # ------------------------------------------------------------------ the rest
    async def models(request: Request) -> Response:
        data = [{"id": ROUTED_MODEL, "object": "model", "created": 0, "owned_by": "cascal"}]
        data += [{"id": n, "object": "model", "created": 0, "owned_by": "cascal-pool"} for n in gateway.upstreams.names]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        status = "draining" if gateway.draining else "ok" if gateway.ready else "starting"
        body = {
            "status": status,
            "router": gateway.engine.router is not None,
            "embedder": getattr(gateway.engine.embedder, "name", None),
            "pool": gateway.upstreams.names,
            "breakers": {n: u.breaker.state for n, u in gateway.upstreams.upstreams.items()},
        }
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = "method not allowed" if status == 405 else f"no such endpoint: {request.url.path}"
        return JSONResponse(error_body(message, "invalid_request_error", code="not_found"), status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.engine.start()
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            await gateway.engine.stop()
            await gateway.upstreams.aclose()
            if gateway.decision_log is not None:
                gateway.decision_log.close()

    routes = [
        Route("/v1/chat/completions", endpoint("chat", chat), methods=["POST"]),
        Route("/v1/route", endpoint("route", route), methods=["POST"]),
        Route("/v1/models", endpoint("models", models), methods=["GET"]),
        Route("/health", endpoint("health", health), methods=["GET"]),
        Route("/metrics", endpoint("metrics", prometheus), methods=["GET"]),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={404: not_found, 405: not_found, HTTPException: not_found}
    )


def _cost_weight(gateway: Gateway, body: dict, request: Request) -> Optional[float]:
    """The request's cost weight (:func:`cascal.serve.protocol.cost_weight`); a weight above 0 for a
    router without prices is refused with a 400 naming the field or header."""
    weight = cost_weight(body, request.headers)
    if weight and not gateway.engine.has_costs:
        name = "cascal_cost_weight" if "x-cascal-cost-weight" not in request.headers else "x-cascal-cost-weight"
        raise APIError(400, f"{name}: the router has no expected costs (train it with --prices)", param=name)
    return weight


def _cost_headers(decision: Decision, k: int) -> dict:
    """``x-cascal-expected-cost`` (first ``k`` models, USD per 1,000 queries) and
    ``x-cascal-cost-weight`` of a priced router's decision; nothing without prices."""
    cost = decision.expected_cost(k)
    if cost is None:
        return {}
    headers = {"x-cascal-expected-cost": f"{cost:.6g}"}
    if decision.cost_weight is not None:
        headers["x-cascal-cost-weight"] = f"{decision.cost_weight:g}"
    return headers


def _answer_headers(forwarded: Forwarded) -> dict:
    return {"x-cascal-model": forwarded.model, "x-cascal-failovers": str(forwarded.failovers)}
