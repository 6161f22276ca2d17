"""The gateway's endpoints: one function per route, taking the request and reading the gateway from
``request.app.state.gateway``. Authentication, error responses and request metrics are the
middleware's (:mod:`cascal.serve.middleware`); a handler raises an
:class:`~cascal.serve.errors.APIError` to refuse.

- ``POST /v1/chat/completions`` (:func:`chat_completions`): ``model: "cascal"`` routes (header
  ``x-cascal-route``: the top ``top_k`` model names as a JSON list), a pool model's name goes to
  that model, ``cascal-vote[-K]`` asks the top K and votes; ``stream: true`` passes server-sent
  events through. A router trained with prices takes a per-request cost weight (body field
  ``cascal_cost_weight`` or header ``x-cascal-cost-weight``) and reports the routed choice's
  expected cost (header ``x-cascal-expected-cost``, USD per 1,000 queries: the first choice, or
  the K voters' sum);
- ``POST /v1/route`` (:func:`route`): the decision only (:meth:`cascal.serve.routing.Decision.to_json`;
  the same cost weight field/header);
- ``GET /v1/models`` (:func:`models`): the pool models plus ``cascal``;
- ``GET /health`` (:func:`health`): 200 once router, embedder and pool are loaded and the gateway
  serves, 503 while starting or draining;
- ``GET /metrics`` (:func:`prometheus`): Prometheus text format;
- ``POST /admin/reload`` (:func:`admin_reload`): read the router file and pool.yaml again and swap
  them in (:meth:`cascal.serve.gateway.Gateway.reload`); only with a gateway key (404 without one).

Every handler uses the serving state its request holds (:func:`~cascal.serve.middleware.serving_state`):
router, pool and upstreams; routed replies name its router (``x-cascal-router``, the router file's
SHA-256; ``router_sha256`` in ``/v1/route`` answers and in the decision log).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from cascal.errors import ReloadError
from cascal.serve.decision_log import DecisionRecord
from cascal.serve.errors import APIError, error_body
from cascal.serve.gateway import Gateway, ReloadUnavailable
from cascal.serve.metrics import CONTENT_TYPE_LATEST
from cascal.serve.middleware import error_response, serving_state, unauthorized
from cascal.serve.protocol import ChatRequest, parse_chat, parse_route
from cascal.serve.responses import JSONBody
from cascal.serve.routing import Decision
from cascal.serve.settings import ROUTED_MODEL
from cascal.serve.state import ServingState
from cascal.serve.upstream import unless_disconnected
from cascal.serve.vote import ask_and_vote

__all__ = [
    "admin_reload",
    "chat_completions",
    "health",
    "models",
    "not_found",
    "prometheus",
    "read_body",
    "route",
    "ROUTER_HEADER",
]

#: the response header naming the router a chat request was served with (its file's SHA-256)
ROUTER_HEADER = "x-cascal-router"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (declared or received)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body exceeds {limit} bytes", code="request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(413, f"the request body exceeds {limit} bytes", code="request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------- /v1/chat/completions
@dataclass
class _Answering:
    """A checked chat request on its way to the pool: the serving state it holds, the models to
    ask, best first, the response headers so far, when its handler started and its routing decision
    (for the decision log)."""

    chat: ChatRequest
    state: ServingState
    ranking: list
    headers: dict
    started: float
    decision: Optional[Decision] = None

    def record(self, endpoint: str = "chat", **fields: Any) -> DecisionRecord:
        """The decision log record of this request, timed now (``fields``: of :class:`DecisionRecord`)."""
        latency_ms = (time.perf_counter() - self.started) * 1000.0
        return DecisionRecord(
            endpoint,
            self.chat.text,
            self.ranking,
            latency_ms=latency_ms,
            router_sha256=self.state.sha256,
            decision=self.decision,
            **fields,
        )


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``: parse, route (unless a pool model is named), then ask the pool:
    one model with failover, a stream, or a vote."""
    gateway: Gateway = request.app.state.gateway
    state = serving_state(request.scope)
    settings = gateway.settings
    started = time.perf_counter()
    with gateway.engine.expect() as ticket:
        raw = await read_body(request, settings.max_body_bytes)
        chat = parse_chat(
            raw, request.headers, settings=settings, pool=state.upstreams.names, priced=state.routing.has_costs
        )
        decision = None
        if chat.routed:
            decision = await gateway.engine.route(chat.text, ticket, chat.cost_weight, state.routing)
    ranking = [chat.model] if decision is None else list(decision.ranking)
    headers = {
        "x-cascal-route": json.dumps(ranking[: settings.top_k], separators=(",", ":")),
        ROUTER_HEADER: state.sha256,
    }
    if decision is not None:
        gateway.count_decisions([decision])
        headers.update(_cost_headers(decision, chat.vote or 1))
    answering = _Answering(chat, state, ranking, headers, started, decision)
    if chat.vote is not None:
        return await _vote(request, gateway, answering, chat.vote)
    if chat.stream:
        return await _stream(gateway, answering)
    return await _complete(request, gateway, answering)


async def _complete(request: Request, gateway: Gateway, answering: _Answering) -> Response:
    """The first reply down the ranking (a pool model named: that model, one try)."""
    tries = gateway.settings.max_failover if answering.chat.routed else 1
    try:
        # a client that leaves cancels the upstream call: nobody would read the reply
        forwarded = await unless_disconnected(
            request.receive, answering.state.upstreams.complete(answering.ranking, answering.chat.body, tries)
        )
    except APIError as error:
        gateway.record(answering.record(failovers=max(0, tries - 1), status=error.status))
        raise
    model_header = answering.state.upstreams.header_values[forwarded.model]  # encoded when the pool loaded
    answering.headers.update({"x-cascal-model": model_header, "x-cascal-failovers": str(forwarded.failovers)})
    usage = forwarded.body.get("usage")
    gateway.record(answering.record(model=forwarded.model, failovers=forwarded.failovers, usage=usage))
    return JSONResponse(forwarded.body, headers=answering.headers)


async def _stream(gateway: Gateway, answering: _Answering) -> Response:
    """The events of the first model down the ranking whose stream opens; logged when it ends."""
    tries = gateway.settings.max_failover if answering.chat.routed else 1
    try:
        opened = await answering.state.upstreams.stream(answering.ranking, answering.chat.body, tries)
    except APIError as error:
        gateway.record(answering.record(failovers=max(0, tries - 1), status=error.status))
        raise
    failovers = len(opened.attempts) - 1
    answering.headers.update(
        {
            "x-cascal-model": answering.state.upstreams.header_values[opened.model],
            "x-cascal-failovers": str(failovers),
            "cache-control": "no-cache",
        }
    )

    async def events() -> AsyncIterator[bytes]:
        try:
            async for piece in opened.events():
                yield piece
        finally:
            if opened.error is not None:
                gateway.metrics.upstream_errors.labels(model=opened.model, kind=opened.error).inc()
            extra = {"stream": True, **({"stream_error": opened.error} if opened.error else {})}
            record = answering.record(model=opened.model, failovers=failovers, usage=opened.usage, extra=extra)
            gateway.record(record)

    return StreamingResponse(events(), media_type="text/event-stream", headers=answering.headers)


async def _vote(request: Request, gateway: Gateway, answering: _Answering, k: int) -> Response:
    """The plurality reply of the first ``k`` healthy models (:func:`cascal.serve.vote.ask_and_vote`);
    a client that leaves cancels every upstream call."""
    forwarded = await unless_disconnected(
        request.receive, ask_and_vote(answering.state.upstreams, answering.ranking, answering.chat.body, k)
    )
    answering.headers["x-cascal-model"] = answering.state.upstreams.header_values[forwarded.model]
    usage, vote = forwarded.body.get("usage"), forwarded.body["cascal"]["vote"]
    gateway.record(answering.record("vote", model=forwarded.model, usage=usage, extra={"vote": vote}))
    return JSONResponse(forwarded.body, headers=answering.headers)


def _cost_headers(decision: Decision, k: int) -> dict:
    """``x-cascal-expected-cost`` (first ``k`` models, USD per 1,000 queries) and
    ``x-cascal-cost-weight`` of a priced router's decision; nothing without prices."""
    cost: Optional[float] = decision.expected_cost(k)
    if cost is None:
        return {}
    headers = {"x-cascal-expected-cost": f"{cost:.6g}"}
    if decision.cost_weight is not None:
        headers["x-cascal-cost-weight"] = f"{decision.cost_weight:g}"
    return headers


# ---------------------------------------------------------------------- /v1/route
async def route(request: Request) -> Response:
    """``POST /v1/route``: the routing decision of one text, a conversation, or a list of texts,
    with the SHA-256 of the router file that decided (``router_sha256``)."""
    gateway: Gateway = request.app.state.gateway
    state = serving_state(request.scope)
    settings = gateway.settings
    started = time.perf_counter()
    with gateway.engine.expect() as ticket:
        raw = await read_body(request, settings.max_body_bytes)
        asked = parse_route(raw, request.headers, settings=settings, priced=state.routing.has_costs)
        decisions = await gateway.engine.route_many(asked.texts, ticket, asked.cost_weight, state.routing)
    gateway.count_decisions(decisions)
    latency_ms = (time.perf_counter() - started) * 1000.0
    for text, d in zip(asked.texts, decisions):
        gateway.record(
            DecisionRecord("route", text, d.ranking, latency_ms=latency_ms, router_sha256=state.sha256, decision=d)
        )
    items = [d.to_json(settings.top_k) for d in decisions]
    if asked.many:
        return JSONBody({"object": "list", "data": items, "router_sha256": state.sha256})
    return JSONBody({"object": "cascal.route", **items[0], "router_sha256": state.sha256})


# ---------------------------------------------------------------------- the rest
async def models(request: Request) -> Response:
    """``GET /v1/models``: ``cascal`` and the pool models."""
    names = serving_state(request.scope).upstreams.names
    data = [{"id": ROUTED_MODEL, "object": "model", "created": 0, "owned_by": "cascal"}]
    data += [{"id": n, "object": "model", "created": 0, "owned_by": "cascal-pool"} for n in names]
    return JSONBody({"object": "list", "data": data})


async def health(request: Request) -> Response:
    """``GET /health``: 200 while serving, 503 while starting, draining or when routing a probe
    vector fails (``reason`` says why); the router in use (file SHA-256, load time, models), the
    pool, the breakers' states and why the last reload failed (``last_reload_error``)."""
    gateway: Gateway = request.app.state.gateway
    state = serving_state(request.scope)
    status = "draining" if gateway.draining else "ok" if gateway.ready else "starting"
    failure = state.self_test_error or gateway.self_test()  # a router that cannot route is not healthy
    if failure and status == "ok":
        status = "unhealthy"
    body = {
        "status": status,
        **({"reason": failure} if failure else {}),
        "router": state.describe(),
        "embedder": getattr(gateway.engine.embedder, "name", None),
        "pool": state.upstreams.names,
        "breakers": {n: u.breaker.state for n, u in state.upstreams.upstreams.items()},
        "reloadable": gateway.reloadable and gateway.has_key,
        "last_reload_error": gateway.last_reload_error,
        **({"worker": gateway.worker} if gateway.worker is not None else {}),
    }
    return JSONBody(body, status_code=200 if status == "ok" else 503)


async def prometheus(request: Request) -> Response:
    """``GET /metrics``: every metric in Prometheus text format."""
    gateway: Gateway = request.app.state.gateway
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def admin_reload(request: Request) -> Response:
    """``POST /admin/reload``: reload router file and pool.yaml (:meth:`Gateway.reload`). 200 with
    the new state; 409 ``reload_failed`` when the files are refused (the old state keeps serving);
    501 ``reload_unavailable`` when this gateway cannot reload. Without a gateway key the endpoint
    does not exist (404, as an unknown path): an open gateway cannot be reloaded by anyone."""
    gateway: Gateway = request.app.state.gateway
    if not gateway.has_key:
        raise APIError(404, f"no such endpoint: {request.url.path}", code="not_found")
    await read_body(request, gateway.settings.max_body_bytes)  # any body is read and ignored
    try:
        result = await gateway.reload("POST /admin/reload")
    except ReloadUnavailable as error:
        raise APIError(501, str(error), "reload_error", code="reload_unavailable") from None
    except ReloadError as error:
        message = f"reload refused, still serving router {gateway.serving.sha256}: {error}"
        raise APIError(409, message, "reload_error", code="reload_failed") from None
    if gateway.reload_peers is not None:  # the other worker processes read the same files
        gateway.reload_peers()
    return JSONBody(result.to_json())


async def not_found(request: Request, exc: Exception) -> Response:
    """The router's 404 and 405 as OpenAI error JSON; with a key configured, a request without it
    gets the endpoints' 401 instead, whatever its path (no path or method is confirmed to it)."""
    gateway: Gateway = request.app.state.gateway
    if not gateway.authorized(request.headers):
        return error_response(unauthorized())
    status = getattr(exc, "status_code", 404)
    path = request.url.path
    path = path if len(path) <= 100 else path[:97] + "..."
    message = "method not allowed" if status == 405 else f"no such endpoint: {path}"
    return JSONBody(error_body(message, "invalid_request_error", code="not_found"), status_code=status)
