"""The client side of talking to LLMs (the pipeline stages that use it live in :mod:`cascal.pipeline`).

- :mod:`cascal.llm.config`: ``pool.yaml`` / ``tasks.yaml`` (strict, errors name file and field);
- :mod:`cascal.llm.client`: async chat client (``openai.AsyncOpenAI``), bounded concurrency, retries;
- :mod:`cascal.llm.cache`: SQLite (WAL) response cache, written before a reply is used;
- :mod:`cascal.llm.extract`: the answer letter of a free-text reply;

Everything that talks to an LLM goes through :class:`cascal.llm.client.ChatClient` (the ``openai``
client against a configurable ``base_url``). The config names are imported eagerly; the others on
first use, so that ``import cascal.llm`` does not import ``openai``.
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

_LAZY = {
    "ChatClient": "cascal.llm.client",
    "Completion": "cascal.llm.client",
    "EndpointError": "cascal.llm.client",
    "RequestFailed": "cascal.llm.client",
    "ResponseCache": "cascal.llm.cache",
    "extract_answer": "cascal.llm.extract",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cascal.llm' has no attribute {name!r}")


__all__ = [
    *_LAZY,
    "ConfigError",
    "ModelConfig",
    "PoolConfig",
    "RetryPolicy",
    "TasksConfig",
    "load_pool",
    "load_tasks",
]
