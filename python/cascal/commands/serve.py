"""``cascal serve ROUTER --pool POOL.yaml``: an OpenAI-compatible routing gateway (``docs/serve.md``).

Needs the optional extra ``pip install 'cascal[serve]'`` (Starlette, uvicorn, prometheus_client).
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from cascal.commands._args import import_extra, positive_int

NAME = "serve"
HELP = "serve an OpenAI-compatible gateway that routes each chat request to the best pool model"


def seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("router", metavar="ROUTER", help="router file written by `cascal train`")
    parser.add_argument(
        "--pool", required=True, metavar="POOL.yaml", help="pool.yaml naming every routed model's endpoint"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--embedder",
        default=None,
        metavar="SPEC",
        help="embedder name (hashing-<d>, static:DIR, a sentence-transformers model, openai:MODEL@BASE_URL); "
        "default the router's own; a different one is refused (for static:DIR: other files than the router's)",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="environment variable holding the key every request must send as 'Authorization: Bearer <key>'",
    )
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=3,
        help="models listed in the x-cascal-route header and asked by a bare cascal-vote (default 3)",
    )
    parser.add_argument(
        "--log-decisions", default=None, metavar="PATH", help="append one JSON line per routed request to PATH"
    )
    parser.add_argument(
        "--log-text", action="store_true", help="write the query text into the decision log (default: its hash only)"
    )
    parser.add_argument(
        "--log-embeddings",
        action="store_true",
        help="write each routed query's embedding to the sidecar folder <log-decisions PATH>.embeddings "
        "(for cascal coverage; never the text unless --log-text)",
    )
    parser.add_argument(
        "--whole-conversation",
        action="store_true",
        help="embed the text of every message instead of the last user message",
    )
    parser.add_argument(
        "--max-failover",
        type=positive_int,
        default=3,
        help="pool models tried per routed request, down the ranking (default 3)",
    )
    parser.add_argument(
        "--breaker-failures",
        type=positive_int,
        default=3,
        help="consecutive failures that open a model's circuit breaker (default 3)",
    )
    parser.add_argument(
        "--breaker-cooldown",
        type=float,
        default=30.0,
        help="seconds an open circuit breaker skips its model (default 30)",
    )
    parser.add_argument(
        "--max-body",
        type=positive_int,
        default=1 << 20,
        metavar="BYTES",
        help="largest request body accepted (default 1048576)",
    )
    parser.add_argument(
        "--max-header",
        type=positive_int,
        default=64 * 1024,
        metavar="BYTES",
        help="largest request head (request line and headers), 431 beyond (default 65536)",
    )
    parser.add_argument(
        "--max-route-inputs",
        type=positive_int,
        default=2048,
        metavar="N",
        help="most texts one /v1/route request may route, 400 beyond (default 2048)",
    )
    parser.add_argument(
        "--header-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="close a connection that has not sent a request's headers within this time (default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="close a connection whose request body stalls this long (default 30)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        type=seconds,
        default=5.0,
        metavar="SECONDS",
        help="close an idle keep-alive connection after this time (default 5)",
    )
    parser.add_argument(
        "--max-connections",
        type=positive_int,
        default=1024,
        metavar="N",
        help="most open connections; one more is answered 503 and closed (default 1024)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        metavar="N",
        help="serve from N worker processes sharing the port: metrics and reloads span them, breakers are "
        "per worker; not with --log-decisions or --ray (default 1; docs/serve.md#several-worker-processes)",
    )
    parser.add_argument(
        "--ray",
        action="store_true",
        help="serve on Ray Serve as autoscaled replicas (needs cascal[ray]; docs/distributed.md)",
    )
    parser.add_argument(
        "--replicas",
        type=positive_int,
        default=1,
        help="with --ray: most replicas; Ray Serve starts this many and scales between 1 and it (default 1)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --ray: Ray cluster to join (default $RAY_ADDRESS, else a local Ray instance)",
    )


def run(args: argparse.Namespace) -> int:
    from cascal.errors import ConfigError

    server = import_extra("cascal.serve.server", NAME, "serve")
    build_gateway, run_gateway = server.build_gateway, server.run_gateway
    GatewaySettings = import_extra("cascal.serve.settings", NAME, "serve").GatewaySettings
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            raise ConfigError(f"--api-key-env: environment variable {args.api_key_env} is not set")
    settings = GatewaySettings(
        host=args.host,
        port=args.port,
        api_key=api_key,
        top_k=args.top_k,
        whole_conversation=args.whole_conversation,
        max_failover=args.max_failover,
        breaker_failures=args.breaker_failures,
        breaker_cooldown=args.breaker_cooldown,
        max_body_bytes=args.max_body,
        max_header_bytes=args.max_header,
        max_route_inputs=args.max_route_inputs,
        header_timeout=args.header_timeout,
        body_timeout=args.body_timeout,
        keepalive_timeout=args.keepalive_timeout,
        max_connections=args.max_connections,
        log_decisions=args.log_decisions,
        log_text=args.log_text,
        log_embeddings=args.log_embeddings,
    )
    if args.ray:
        if args.workers > 1:
            raise ConfigError("--workers: Ray Serve runs replicas of its own (--replicas); give one or the other")
        return run_on_ray(args, settings)
    if args.workers > 1:
        return run_on_workers(args, settings)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # while loading; the running gateway reloads on it
    gateway = build_gateway(args.router, args.pool, settings, embedder=args.embedder)
    names = ", ".join(gateway.upstreams.names)
    print(f"cascal serve: {args.router} ({gateway.engine.embedder.name}) over {names}")
    print(
        f"cascal serve: listening on http://{args.host}:{args.port}/v1 (model 'cascal'); Ctrl-C stops gracefully",
        flush=True,
    )
    run_gateway(gateway)
    return 0


def run_on_workers(args: argparse.Namespace, settings: Any) -> int:
    """``cascal serve --workers N``: a supervisor and N worker processes (cascal.serve.workers)."""
    import sys

    workers = import_extra("cascal.serve.workers", NAME, "serve")
    server = import_extra("cascal.serve.server", NAME, "serve")
    warning = server.exposure_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)

    def ready(port: int) -> None:
        print(
            f"cascal serve: {args.workers} workers listening on http://{args.host}:{port}/v1 (model 'cascal'); "
            "Ctrl-C stops gracefully",
            flush=True,
        )

    spec = workers.WorkerSpec(str(args.router), str(args.pool), settings, embedder=args.embedder)
    return int(workers.run_workers(spec, args.workers, on_ready=ready))


def run_on_ray(args: argparse.Namespace, settings: object) -> int:
    """``cascal serve --ray``: deploy on Ray Serve, serve until Ctrl-C, then shut Serve down.
    ``SIGHUP`` does not reload here (the replicas would not all see it): it prints why and is
    otherwise ignored."""
    import sys
    import time

    def refuse_reload(signum: int, frame: object) -> None:
        print(
            "cascal serve --ray: SIGHUP ignored: hot reload does not apply to Ray Serve replicas; "
            "deploy again with the new router or pool (docs/serve.md#reload)",
            file=sys.stderr,
            flush=True,
        )

    distributed = import_extra("cascal.distributed.serve", NAME, "ray")
    import_extra("ray.serve", NAME, "ray")
    from ray import serve

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, refuse_reload)
    try:
        gateway = distributed.run_gateway_ray(
            args.router, args.pool, settings, embedder=args.embedder, replicas=args.replicas, address=args.ray_address
        )
        names = ", ".join(gateway.gateway.upstreams.names)
        print(f"cascal serve: {args.router} ({gateway.gateway.engine.embedder.name}) over {names}")
        print(
            f"cascal serve: Ray Serve, up to {args.replicas} replica(s), listening on {gateway.base_url} "
            "(model 'cascal'); Ctrl-C stops",
            flush=True,
        )
        while True:
            time.sleep(3600)
    finally:
        import ray

        if ray.is_initialized():
            serve.shutdown()
