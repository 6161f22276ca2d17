"""``cascal serve``: an OpenAI-compatible routing gateway in front of a pool of models.

An application keeps its ``openai`` client, points its base URL at the gateway and asks for
``model="cascal"``: the gateway embeds the question with the router's embedder, ranks the pool with
the trained :class:`cascal.CascalRouter` and forwards the request to the best-ranked healthy model.
Built on Starlette and uvicorn (the optional extra ``pip install 'cascal[serve]'``); nothing here is
imported by ``import cascal``.

Modules, one purpose each (a request passes them in this order):

- :mod:`~cascal.serve.app` — :func:`create_app`: the routes, their middleware and the lifespan;
- :mod:`~cascal.serve.middleware` — request metrics, errors as OpenAI JSON, the API key (pure ASGI);
- :mod:`~cascal.serve.endpoints` — one handler per endpoint, reading ``request.app.state.gateway``;
- :mod:`~cascal.serve.protocol` — :func:`parse_chat` / :func:`parse_route`: a body decoded and
  checked once into a :class:`ChatRequest` / :class:`RouteRequest`;
- :mod:`~cascal.serve.routing` — :class:`RouteEngine`: embedding and routing with micro-batching;
- :mod:`~cascal.serve.upstream` — forwarding through the ``openai`` client, failover, streaming;
- :mod:`~cascal.serve.breaker` — the per-upstream :class:`CircuitBreaker`;
- :mod:`~cascal.serve.vote` — ``cascal-vote-K``: ask the top K models, plurality of their letters;
- :mod:`~cascal.serve.decision_log` — a :class:`DecisionRecord` per routed request, one JSON line each;

and around them :mod:`~cascal.serve.state` (:class:`ServingState`: router, pool and upstreams as one
immutable object a request holds; :func:`load_state`), :mod:`~cascal.serve.gateway` (:class:`Gateway`,
the running parts of one gateway, and its reload),
:mod:`~cascal.serve.settings` (:class:`GatewaySettings`), :mod:`~cascal.serve.errors`
(:class:`APIError`, :class:`GatewayError`), :mod:`~cascal.serve.metrics` (Prometheus, private
registry) and :mod:`~cascal.serve.server` (loading router, embedder and pool; uvicorn; a thread
helper). The load benchmark is :mod:`cascal.bench.gateway_load`.

See ``docs/serve.md``.
"""

from __future__ import annotations

from cascal.serve.settings import GatewaySettings

__all__ = ["GatewaySettings"]
