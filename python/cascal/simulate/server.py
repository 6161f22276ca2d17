"""Serve the simulator over HTTP and describe it as a pool for the LLM-side code."""

from __future__ import annotations

from typing import Any, Optional

from cascal.simulate.responder import SimulatedResponder
from cascal.simulate.world import SimWorld


def serve_simulator(
    world: Optional[SimWorld] = None, *, host: str = "127.0.0.1", port: int = 0, faults: Any = None
) -> Any:
    """A :class:`cascal.simulate.chat_server.ChatServer` (not yet started) serving ``world``'s generators and
    pool models; use it as a context manager, then read ``server.base_url``.

    ``port=0`` picks a free port. The server binds ``host`` only (loopback by default).
    """
    from cascal.simulate.chat_server import ChatServer

    responder = SimulatedResponder(world)
    return ChatServer(responder, host=host, port=port, faults=faults, models=responder.model_names)


def simulator_pool(
    base_url: str, world: Optional[SimWorld] = None, *, max_concurrency: int = 8, models: Optional[list[str]] = None
) -> Any:
    """A :class:`cascal.llm.config.PoolConfig` of the simulated pool models behind ``base_url``
    (all of them, or the named ``models``), asking for logprobs at temperature 0."""
    from cascal.llm.config import ModelConfig, PoolConfig

    world = world if world is not None else SimWorld()
    names = models if models is not None else world.model_names
    return PoolConfig(
        models=tuple(
            ModelConfig(
                name=name, base_url=base_url, model=name, max_concurrency=max_concurrency, max_tokens=256, logprobs=True
            )
            for name in names
        )
    )


def simulator_generator(base_url: str, name: str = "sim-generator-weak") -> Any:
    """A :class:`cascal.llm.config.ModelConfig` for one simulated generator behind ``base_url``."""
    from cascal.llm.config import ModelConfig

    return ModelConfig(name=name, base_url=base_url, model=name, max_tokens=8192, logprobs=False)


def pool_yaml(
    base_url: str, world: Optional[SimWorld] = None, *, generators: bool = False, models: Optional[list[str]] = None
) -> str:
    """A ``pool.yaml`` text pointing at a running simulator (what ``cascal simulate`` prints): its
    pool models (or the named ``models`` of them), or with ``generators=True`` its generators (for
    ``cascal generate --pool``)."""
    world = world if world is not None else SimWorld()
    what = "generators" if generators else "pool"
    lines = [
        f"# SIMULATED {what} served by `cascal simulate` (no real language model behind it)",
        "defaults:",
        f"  base_url: {base_url}",
        "  temperature: 0.0",
        f"  logprobs: {'false' if generators else 'true'}",
        "models:",
    ]
    for name in world.generator_names if generators else models if models is not None else world.model_names:
        lines += [f"  - name: {name}", f"    model: {name}"]
    return "\n".join(lines) + "\n"
