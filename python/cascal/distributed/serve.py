"""``cascal serve --ray``: the gateway of :mod:`cascal.serve` as autoscaled Ray Serve replicas.

Every replica builds the same Starlette application as the single-process gateway
(:func:`cascal.serve.server.build_gateway` + :func:`cascal.serve.app.create_app`) from the router
and pool files, so the API, the errors and the behaviour are the same; Ray Serve's HTTP proxy
spreads the requests over the replicas and scales their number between 1 and ``replicas`` with the
requests in flight. State stays per replica: circuit breakers, the micro-batcher and the
Prometheus metrics (``/metrics`` shows the replica that answered); a decision log is appended to by
every replica (one JSON line per write).

Hot reload does not apply here: a reload would reach one replica (``POST /admin/reload``) or none
(``SIGHUP`` goes to the driver, not the replicas), and replicas serving different routers is what a
reload must not cause. The replicas are built not reloadable (``/admin/reload`` answers 501
``reload_unavailable``); to change router or pool, deploy again (``cascal serve --ray`` anew, or
``serve.run`` of a new :func:`gateway_application`: Ray Serve replaces the replicas one by one).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Union

from cascal.distributed.data import ensure_ray
from cascal.errors import InvalidParameterError, ServerStartError

__all__ = ["gateway_application", "run_gateway_ray", "RayGateway", "APP_NAME", "DEPLOYMENT_NAME"]

PathLike = Union[str, "os.PathLike[str]"]

#: name of the Ray Serve application and of its one deployment
APP_NAME = "cascal"
DEPLOYMENT_NAME = "cascal-gateway"
#: requests one replica accepts at once: the gateway is asynchronous (it awaits its upstreams), so a
#: replica serves many requests concurrently, unlike Ray Serve's default of 5
MAX_ONGOING_REQUESTS = 512
#: requests in flight per replica the autoscaler aims at
TARGET_ONGOING_REQUESTS = 64


def gateway_application(
    router: PathLike,
    pool: PathLike,
    settings: Any,
    *,
    embedder: Optional[str] = None,
    replicas: int = 1,
    num_cpus: float = 1.0,
) -> Any:
    """A Ray Serve application (``Application``, for ``serve.run``) of the gateway.

    Args:
        router, pool: the router file and pool.yaml; every replica reads them at this path (shared
            storage on a cluster, or shipped with the job's ``runtime_env``).
        settings: the :class:`cascal.serve.settings.GatewaySettings` every replica runs with
            (``host`` and ``port`` are Ray Serve's HTTP options, see :func:`run_gateway_ray`).
        embedder: an embedder name (default the router's own; another is refused).
        replicas: the most replicas; the autoscaler starts with this many and keeps 1 to ``replicas``.
        num_cpus: CPUs each replica reserves.
    """
    from ray import serve

    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise InvalidParameterError(f"replicas: must be an integer >= 1, got {replicas!r}")
    router_path, pool_path = os.fspath(Path(router).resolve()), os.fspath(Path(pool).resolve())

    def build_app() -> Any:  # runs in every replica
        from cascal.serve.app import create_app
        from cascal.serve.server import build_gateway

        return create_app(build_gateway(router_path, pool_path, settings, embedder=embedder, reloadable=False))

    make_deployment = serve.deployment(
        name=DEPLOYMENT_NAME,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        autoscaling_config={
            "min_replicas": 1,
            "initial_replicas": replicas,
            "max_replicas": replicas,
            "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
        },
        ray_actor_options={"num_cpus": num_cpus},
    )
    return make_deployment(serve.ingress(build_app)()).bind()


class RayGateway:
    """A gateway deployed on Ray Serve: its URLs, and the gateway built once in this process from the
    same files (the configuration the replicas run; it checked router, embedder and pool before
    anything was deployed). :meth:`stop` deletes the application."""

    def __init__(self, gateway: Any, host: str, port: int) -> None:
        self.gateway = gateway
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def stop(self) -> None:
        """Delete the application (its replicas finish the requests in flight first)."""
        from ray import serve

        serve.delete(APP_NAME)


def run_gateway_ray(
    router: PathLike,
    pool: PathLike,
    settings: Any,
    *,
    embedder: Optional[str] = None,
    replicas: int = 1,
    num_cpus: float = 1.0,
    address: Optional[str] = None,
    timeout: float = 300.0,
) -> RayGateway:
    """Deploy the gateway on Ray Serve and return once every replica is ready.

    Joins ``address`` (default ``$RAY_ADDRESS``) or starts a local Ray instance when none is running;
    starts Serve's HTTP proxy on ``settings.host``/``settings.port`` unless Serve already runs.

    Raises:
        cascal.errors.RouterFileError, cascal.errors.EmbeddingError, cascal.errors.ConfigError: as
            ``cascal serve`` does, before anything is deployed (the gateway is built here first).
        cascal.errors.ServerStartError: the Ray Serve application is not running within ``timeout``.
    """
    from cascal.serve.server import build_gateway

    checked = build_gateway(router, pool, settings, embedder=embedder, reloadable=False)
    ensure_ray(address)
    from ray import serve

    serve.start(http_options={"host": settings.host, "port": settings.port})
    app = gateway_application(router, pool, settings, embedder=embedder, replicas=replicas, num_cpus=num_cpus)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    deadline = time.monotonic() + timeout
    while serve.status().applications[APP_NAME].status != "RUNNING":
        if time.monotonic() > deadline:
            raise ServerStartError(f"the Ray Serve application did not start in {timeout:.0f} s")
        time.sleep(0.2)
    return RayGateway(checked, settings.host, settings.port)
