"""``cascal serve``: an OpenAI-compatible routing gateway in front of a pool of models.

An application keeps its ``openai`` client, points its base URL at the gateway and asks for
``model="cascal"``: the gateway embeds the question with the router's embedder, ranks the pool with
the trained :class:`cascal.CascalRouter` and forwards the request to the best-ranked healthy model.
Built on Starlette and uvicorn (the optional extra ``pip install 'cascal[serve]'``); nothing here is
imported by ``import cascal``.

Modules, one purpose each:

- :mod:`~cascal.serve.settings` — :class:`GatewaySettings`, every tunable of a running gateway;
- :mod:`~cascal.serve.protocol` — OpenAI-style error bodies, request checks, the text to embed;
- :mod:`~cascal.serve.routing` — :class:`RouteEngine`: embedding and routing with micro-batching;
- :mod:`~cascal.serve.breaker` — the per-upstream :class:`CircuitBreaker`;
- :mod:`~cascal.serve.upstream` — forwarding through the ``openai`` client, failover, streaming;
- :mod:`~cascal.serve.vote` — ``cascal-vote-K``: ask the top K models, plurality of their letters;
- :mod:`~cascal.serve.metrics` — Prometheus metrics in a private registry;
- :mod:`~cascal.serve.decision_log` — one JSON line per routed request;
- :mod:`~cascal.serve.app` — the Starlette application (:func:`create_app`);
- :mod:`~cascal.serve.server` — loading router, embedder and pool, running uvicorn, a thread helper.

See ``docs/serve.md``.
"""

from __future__ import annotations

from cascal.serve.settings import GatewaySettings

__all__ = ["GatewaySettings"]
