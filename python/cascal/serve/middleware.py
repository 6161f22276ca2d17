"""What every gateway endpoint shares, as pure ASGI middleware around it (outermost first):

- :class:`CountRequests`: ``cascal_requests_total{endpoint,status}`` and
  ``cascal_request_latency_seconds{endpoint}`` when the response starts (the latency to the
  response head, also of a stream), ``cascal_requests_in_flight`` until the response is complete;
  a client that disconnects before its body arrived is counted as status :data:`CLIENT_CLOSED`
  (499, nginx's "client closed request") and logged as one line at INFO, with no answer and no
  traceback: it is neither the gateway's error nor anything a response could reach;
- :class:`AnswerErrors`: an :class:`~cascal.serve.errors.APIError` becomes its OpenAI error JSON,
  any other exception a JSON 500 (logged with its traceback, never sent), as long as no response
  has started; after that the exception goes on to the server, which ends the connection;
- :class:`RequireKey`: with an API key configured, a request without it is refused with 401 and
  ``WWW-Authenticate: Bearer``;
- :class:`HoldState`: the gateway's serving state (router and pool) taken once, held until the
  response is complete (:meth:`~cascal.serve.gateway.Gateway.hold`) and handed to the endpoint as
  ``scope["cascal.state"]`` (:func:`serving_state`): a reload during the request never changes it.

Pure ASGI (not Starlette's ``BaseHTTPMiddleware``) so that a streamed response passes through
message by message. The gateway is read from ``scope["app"].state.gateway``.
:func:`gateway_middleware` is the stack; :func:`cascal.serve.app.create_app` puts it on every
endpoint's route, so unknown paths and methods are answered by the router's 404/405 alone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cascal.serve.errors import APIError
from cascal.serve.responses import JSONBody

if TYPE_CHECKING:
    from cascal.serve.gateway import Gateway
    from cascal.serve.state import ServingState

__all__ = [
    "CLIENT_CLOSED",
    "STATE_KEY",
    "AnswerErrors",
    "CountRequests",
    "HoldState",
    "RequireKey",
    "error_response",
    "gateway_middleware",
    "serving_state",
    "unauthorized",
]

#: the scope key of the serving state a request holds
STATE_KEY = "cascal.state"

_logger = logging.getLogger("cascal.serve")


def unauthorized() -> APIError:
    """The refusal of a request without the gateway's key (a new error each time: a raised
    exception keeps its traceback)."""
    return APIError(
        401,
        "missing or incorrect API key (send Authorization: Bearer <key>)",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )


#: the status a request is counted with when its client disconnected before it was answered
CLIENT_CLOSED = 499


def error_response(error: APIError) -> JSONBody:
    """``error`` as OpenAI's error JSON with its status and headers."""
    return JSONBody(error.body(), status_code=error.status, headers=error.headers)


class CountRequests:
    """Count the requests of one endpoint (``endpoint`` is the metric label) by status, their
    latency to the response head, and the requests in flight."""

    def __init__(self, app: ASGIApp, endpoint: str) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["app"].state.gateway
        metrics = gateway.metrics
        started = time.perf_counter()

        counted = False

        def count(status: int) -> None:
            nonlocal counted
            counted = True
            metrics.count_request(self.endpoint, status, time.perf_counter() - started)

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                count(message["status"])
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counting_send)
        except ClientDisconnect:
            _logger.info("%s: the client disconnected before its request was read", scope.get("path", "?"))
            if not counted:
                count(CLIENT_CLOSED)
        finally:
            metrics.in_flight.dec()


class AnswerErrors:
    """Answer an :class:`APIError` with its JSON and any other exception with a JSON 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
            return
        except APIError as error:
            if started:
                raise
            response = error_response(error)
        except ClientDisconnect:  # nobody to answer: CountRequests counts it
            raise
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 in OpenAI form, never a traceback
            if started:
                raise
            _logger.exception("%s: internal error", scope.get("path", "?"))
            response = error_response(APIError(500, f"internal error ({type(exc).__name__})", "server_error"))
        await response(scope, receive, send)


class RequireKey:
    """Refuse a request without the gateway's API key (401), when one is configured."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["app"].state.gateway
        if not gateway.authorized(Headers(scope=scope)):
            raise unauthorized()
        await self.app(scope, receive, send)


class HoldState:
    """Take the gateway's serving state once and hold it until the response is complete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gateway: Gateway = scope["app"].state.gateway
        with gateway.hold() as state:
            scope[STATE_KEY] = state
            await self.app(scope, receive, send)


def serving_state(scope: Scope) -> "ServingState":
    """The serving state the request holds (set by :class:`HoldState`)."""
    state: ServingState = scope[STATE_KEY]
    return state


def gateway_middleware(endpoint: str) -> list[Middleware]:
    """The middleware of one gateway endpoint, outermost first; ``endpoint`` labels its metrics."""
    return [
        Middleware(CountRequests, endpoint=endpoint),
        Middleware(AnswerErrors),
        Middleware(RequireKey),
        Middleware(HoldState),
    ]
