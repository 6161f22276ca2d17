"""``/health`` routes a probe through the router: a router that loads but cannot route is unhealthy.

Before, a router whose tables held an infinite score served with ``/health`` at 200 while every
routed request failed in the kernel.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from conftest import pool_file
from starlette.testclient import TestClient

from cascal.router import CascalRouter
from cascal.serve.app import create_app
from cascal.serve.server import build_gateway
from cascal.serve.settings import GatewaySettings


def _broken(router_file) -> CascalRouter:
    """The router of ``router_file`` with an infinite global score: it loads from no file any more,
    but a router built in memory (or tables changed after loading) can still hold one."""
    router = CascalRouter.load(router_file)
    scores = np.array(router.tables_.global_scores)
    scores[0] = np.inf
    router.tables_ = dataclasses.replace(router.tables_, global_scores=scores)
    return router


def test_health_is_503_with_the_reason_when_the_probe_fails(router_file, world, simulator, tmp_path):
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    gateway = build_gateway(_broken(router_file), pool, GatewaySettings(port=0))
    assert gateway.self_test_error and "global_scores" in gateway.self_test_error
    with TestClient(create_app(gateway)) as http:
        response = http.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy" and "global_scores" in body["reason"]


def test_health_is_200_when_the_probe_routes(router_file, world, simulator, tmp_path):
    pool = pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])
    gateway = build_gateway(router_file, pool, GatewaySettings(port=0))
    assert gateway.self_test() is None
    with TestClient(create_app(gateway)) as http:
        response = http.get("/health")
    assert response.status_code == 200 and "reason" not in response.json()
