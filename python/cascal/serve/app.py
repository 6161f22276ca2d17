"""The Starlette application of a gateway: :func:`create_app` wires the endpoints of
:mod:`cascal.serve.endpoints`, each behind the middleware of :mod:`cascal.serve.middleware`
(metrics, errors as OpenAI JSON, the API key), and a lifespan that starts and stops the gateway.

With an API key configured every endpoint, ``/health`` and ``/metrics`` included, needs
``Authorization: Bearer <key>`` (compared with :func:`hmac.compare_digest`), else 401. Unknown
paths and methods answer 404 / 405 in OpenAI's error form, and with a key configured only to a
request that carries it (401 otherwise), so which paths exist does not leak to a client without
the key. Paths are matched exactly: ``/v1/route/`` is a 404, never a redirect (a redirect would be
answered before the key is checked and would build its ``Location`` from the client's ``Host``).
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from cascal.serve import endpoints
from cascal.serve.gateway import Gateway
from cascal.serve.middleware import gateway_middleware

__all__ = ["Gateway", "create_app"]

#: (path, method, metrics label, handler) of every endpoint
ENDPOINTS = (
    ("/v1/chat/completions", "POST", "chat", endpoints.chat_completions),
    ("/v1/route", "POST", "route", endpoints.route),
    ("/v1/models", "GET", "models", endpoints.models),
    ("/health", "GET", "health", endpoints.health),
    ("/metrics", "GET", "metrics", endpoints.prometheus),
    ("/admin/reload", "POST", "admin_reload", endpoints.admin_reload),
)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Start the routing batcher; at shutdown close the gateway (:meth:`Gateway.aclose`)."""
    gateway: Gateway = app.state.gateway
    await gateway.engine.start()
    gateway.ready = True
    try:
        yield
    finally:
        await gateway.aclose()


def create_app(gateway: Gateway) -> Starlette:
    """The Starlette application serving ``gateway``, kept as ``app.state.gateway``."""
    routes = [
        Route(path, handler, methods=[method], name=name, middleware=gateway_middleware(name))
        for path, method, name, handler in ENDPOINTS
    ]
    handlers = {404: endpoints.not_found, 405: endpoints.not_found, HTTPException: endpoints.not_found}
    app = Starlette(routes=routes, lifespan=_lifespan, exception_handlers=handlers)
    app.router.redirect_slashes = False
    app.state.gateway = gateway
    return app
