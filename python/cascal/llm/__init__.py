"""The LLM side of Routing with Generated Data: pool configuration, the async chat client, the response
cache, answer extraction, answering a dataset with every pool model, and an OpenAI-compatible test server.

Everything that talks to an LLM goes through :class:`cascal.llm.client.ChatClient` (the ``openai``
client against a configurable ``base_url``).
"""

from __future__ import annotations

from cascal.llm.config import (
    ConfigError,
    ModelConfig,
    PoolConfig,
    RetryPolicy,
    TasksConfig,
    load_pool,
    load_tasks,
)

__all__ = [
    "ConfigError",
    "ModelConfig",
    "PoolConfig",
    "RetryPolicy",
    "TasksConfig",
    "load_pool",
    "load_tasks",
]
