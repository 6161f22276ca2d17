"""Stop sequences per pool model (``stop:`` in pool.yaml): validated, sent with every request, and part
of the cache key like the sampling parameters (a stop sequence changes the reply)."""

from __future__ import annotations

import asyncio
import textwrap

import pytest

from cascal.errors import ConfigError
from cascal.llm.cache import ResponseCache
from cascal.llm.client import ChatClient
from cascal.llm.config import ModelConfig, RetryPolicy, load_pool
from cascal.simulate.chat_server import ChatReply, ChatRequest, ChatServer

FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, jitter=0.0)
MESSAGES = [{"role": "user", "content": "Question: Pick one.\nOptions:\nA. x\nB. y\nAnswer: Let's think step by step."}]


def write_pool(tmp_path, stop_yaml: str):
    path = tmp_path / "pool.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            models:
              - name: base-7b
                base_url: http://127.0.0.1:8000/v1
                model: base-7b
                stop: {stop_yaml}
            """
        ),
        encoding="utf-8",
    )
    return path


def test_the_pool_file_reads_a_stop_list(tmp_path):
    pool = load_pool(write_pool(tmp_path, '["\\nQuestion:", "\\n\\nQ:"]'))
    cfg = pool.models[0]
    assert cfg.stop == ("\nQuestion:", "\n\nQ:")
    assert cfg.sampling_params()["stop"] == ["\nQuestion:", "\n\nQ:"]


def test_no_stop_leaves_the_request_and_its_cache_key_as_before():
    cfg = ModelConfig(name="m", base_url="http://127.0.0.1:8000/v1", model="m")
    assert cfg.stop is None and "stop" not in cfg.sampling_params()


@pytest.mark.parametrize(
    "stop_yaml",
    ['"\\nQuestion:"', "[]", '["a", "b", "c", "d", "e"]', '[""]', "[1]", '["ok", null]', "{a: 1}", "true"],
)
def test_a_bad_stop_is_a_config_error_naming_file_and_field(tmp_path, stop_yaml):
    with pytest.raises(ConfigError) as info:
        load_pool(write_pool(tmp_path, stop_yaml))
    message = str(info.value)
    assert "pool.yaml" in message and "stop" in message and "1 to 4 non-empty strings" in message


@pytest.mark.parametrize("stream", [False, True])
def test_the_server_receives_the_stop_list(stream):
    received: list[ChatRequest] = []

    def responder(req: ChatRequest) -> ChatReply:
        received.append(req)
        return ChatReply("Spending is fiscal policy. The answer is (B).")

    with ChatServer(responder) as server:
        cfg = ModelConfig(
            name="base-7b", base_url=server.base_url, model="base-7b", stop=["\nQuestion:"], stream=stream
        )

        async def go():
            async with ChatClient(cfg, FAST) as client:
                return await client.complete(MESSAGES)

        reply = asyncio.run(go())
    assert reply.text.endswith("The answer is (B).")
    assert [r.params.get("stop") for r in received] == [["\nQuestion:"]]


def test_the_stop_list_is_part_of_the_cache_key(tmp_path):
    def responder(req: ChatRequest) -> ChatReply:
        return ChatReply("The answer is (B).")

    with ChatServer(responder) as server, ResponseCache(tmp_path / "c.sqlite") as cache:
        plain = ModelConfig(name="base-7b", base_url=server.base_url, model="base-7b")
        stopped = ModelConfig(name="base-7b", base_url=server.base_url, model="base-7b", stop=["\nQuestion:"])

        async def ask(cfg):
            async with ChatClient(cfg, FAST, cache=cache) as client:
                return await client.complete(MESSAGES)

        for cfg in (plain, stopped, stopped):
            asyncio.run(ask(cfg))
        # the reply without a stop list is not reused for the request with one; that one is then cached
        assert len(server.request_log) == 2
