"""Shared fixtures of the gateway tests: a router trained on the simulated world, the simulator on
127.0.0.1, pool files pointing at it, and a factory of gateways served by uvicorn in a thread."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from simulated_data import simulated_questions, simulated_responses  # noqa: E402

from cascal.serve.server import GatewayThread, build_gateway  # noqa: E402
from cascal.serve.settings import GatewaySettings  # noqa: E402
from cascal.simulate import SimWorld, serve_simulator  # noqa: E402

N_SUBJECTS = 2
PER_SUBJECT = 60


def train_router(world: SimWorld, path: Path, embedder: str = "hashing-256", embed: Optional[Callable] = None) -> Path:
    """Fit CASCAL on the simulated pool's answers to generated questions and save it to ``path``."""
    from cascal.embedding import load_embedder
    from cascal.router import CascalRouter

    data = simulated_responses(world, N_SUBJECTS, PER_SUBJECT)
    questions = data.questions or []
    encoder = embed or load_embedder(embedder).encode
    X = np.asarray(encoder(list(questions)), dtype=np.float32)
    router = CascalRouter(embedding_model=embedder, random_state=0).fit(X, data)
    router.save(path)
    return path


def pool_file(path: Path, entries: list[tuple[str, str]], timeout: float = 5.0) -> Path:
    """A pool.yaml of ``(name, base_url)`` entries (model id = name)."""
    lines = ["defaults:", f"  timeout: {timeout}", "models:"]
    for name, url in entries:
        lines += [f"  - name: {name}", f"    model: {name}", f"    base_url: {url}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def world() -> SimWorld:
    return SimWorld(seed=11)


@pytest.fixture(scope="session")
def router_file(world, tmp_path_factory) -> Path:
    return train_router(world, tmp_path_factory.mktemp("serve_router") / "router.cascal")


@pytest.fixture(scope="session")
def simulator(world) -> Iterator:
    with serve_simulator(world) as server:
        yield server


@pytest.fixture(scope="module")
def upstream() -> Iterator:
    """The misbehaving upstream of ``misbehaving_upstream.py`` on 127.0.0.1, one per test module."""
    from misbehaving_upstream import MisbehavingUpstream

    with MisbehavingUpstream() as up:
        yield up


@pytest.fixture(scope="session")
def questions(world) -> list:
    """Held-out style questions (another generation attempt) to send through the gateway."""
    qs, _ = simulated_questions(SimWorld(seed=11), 2, 20)
    return qs


#: engines a gateway test can run on: ``@pytest.mark.parametrize("start_gateway", ENGINES, indirect=True)``
ENGINES = ["local", "ray"]


@pytest.fixture(scope="session")
def ray_serve_port() -> int:
    """The port of Ray Serve's HTTP proxy for the session (Serve starts once, on first use)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_gateway(router_file, tmp_path, request) -> Iterator[Callable[..., GatewayThread]]:
    """``start_gateway(pool_path, **settings)`` -> a started gateway (stopped at teardown): a
    :class:`GatewayThread`, or with the indirect parameter ``"ray"`` the same gateway deployed on a
    local Ray Serve as 2 replicas (:class:`cascal.distributed.serve.RayGateway`: same ``url``,
    ``base_url``, ``gateway`` and ``stop``)."""
    engine = getattr(request, "param", "local")
    started: list = []
    if engine == "ray":
        pytest.importorskip("ray.serve")
        request.getfixturevalue("ray_local")
        port = request.getfixturevalue("ray_serve_port")

    def start(pool: Path, router=None, embedder=None, **settings):
        if engine == "ray":
            from cascal.distributed.serve import run_gateway_ray

            gw = run_gateway_ray(
                router or router_file,
                pool,
                GatewaySettings(port=port, **settings),
                embedder=embedder,
                replicas=2,
                num_cpus=0.5,
            )
            started.append(gw)
            return gw
        gateway = build_gateway(router or router_file, pool, GatewaySettings(port=0, **settings), embedder=embedder)
        thread = GatewayThread(gateway).start()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.stop()
