"""The OpenAI-compatible test server: what an openai client sees, the request log, fault plans."""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.request

import openai
import pytest

from cascal.simulate.chat_server import ChatReply, ChatRequest, ChatServer, Fault, prompt_hash

MESSAGES = [{"role": "user", "content": "What is two plus two? (A) 3 (B) 4"}]


def echo(req: ChatRequest) -> ChatReply:
    """Replies with the model id and the prompt's word count, plus one logprob per token."""
    text = f"{req.model} heard {len(req.messages[-1]['content'].split())} words. The answer is (B)."
    tokens = text.split(" ")
    return ChatReply(text, token_logprobs=[-0.1 * (i + 1) for i in range(len(tokens))])


def post(url: str, body: dict) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_plain_completion_through_openai_client():
    with ChatServer(echo) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        resp = client.chat.completions.create(model="m-1", messages=MESSAGES, logprobs=True, temperature=0, seed=3)
        expected = echo(ChatRequest("m-1", MESSAGES, {}))
        assert resp.choices[0].message.content == expected.text
        lps = [t.logprob for t in resp.choices[0].logprobs.content]
        assert lps == pytest.approx(expected.token_logprobs)
        assert resp.usage.completion_tokens == len(expected.token_logprobs)
        assert resp.usage.prompt_tokens == len(MESSAGES[0]["content"].split())
        # without logprobs requested none are returned
        plain = client.chat.completions.create(model="m-1", messages=MESSAGES)
        assert plain.choices[0].logprobs is None
        assert server.request_log == [("m-1", prompt_hash(MESSAGES))] * 2
        client.close()


def test_params_reach_the_responder():
    seen: list[ChatRequest] = []

    def spy(req: ChatRequest) -> ChatReply:
        seen.append(req)
        return ChatReply("ok")

    with ChatServer(spy) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        client.chat.completions.create(
            model="x", messages=MESSAGES, temperature=0.7, max_tokens=12, seed=5, logprobs=True
        )
        client.close()
    assert seen[0].params["temperature"] == 0.7 and seen[0].params["max_tokens"] == 12
    assert seen[0].params["seed"] == 5 and seen[0].params["logprobs"] is True
    assert seen[0].messages == MESSAGES and seen[0].attempt == 0 and seen[0].index == 0


def test_streaming_matches_plain_reply():
    with ChatServer(echo) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        stream = client.chat.completions.create(
            model="m-2", messages=MESSAGES, stream=True, logprobs=True, stream_options={"include_usage": True}
        )
        text, lps, usage, finish = "", [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                text += choice.delta.content or ""
                if choice.logprobs and choice.logprobs.content:
                    lps += [t.logprob for t in choice.logprobs.content]
                finish = choice.finish_reason or finish
        client.close()
    expected = echo(ChatRequest("m-2", MESSAGES, {}))
    assert text == expected.text and finish == "stop"
    assert lps == pytest.approx(expected.token_logprobs)
    assert usage is not None and usage.completion_tokens == len(expected.token_logprobs)


def test_models_endpoint_and_unknown_paths():
    with ChatServer(echo, models=["a", "b"]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        assert [m.id for m in client.models.list()] == ["a", "b"]
        client.close()
        status, _, _ = post(server.base_url + "/nothing", {})
        assert status == 404


@pytest.mark.parametrize(
    "body, problem",
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"x": 1}]}, "messages[0]"),
    ],
)
def test_invalid_requests_get_400_and_are_not_logged(body, problem):
    with ChatServer(echo) as server:
        status, _, data = post(server.base_url + "/chat/completions", body)
        assert status == 400
        assert problem in json.loads(data)["error"]["message"]
        assert server.request_log == []


def test_attempt_counts_repeats_of_the_same_prompt():
    attempts: list[int] = []

    def spy(req: ChatRequest) -> ChatReply:
        attempts.append(req.attempt)
        return ChatReply("ok")

    other = [{"role": "user", "content": "different"}]
    with ChatServer(spy) as server:
        for msgs in (MESSAGES, MESSAGES, other, MESSAGES):
            assert post(server.base_url + "/chat/completions", {"model": "m", "messages": msgs})[0] == 200
        post(server.base_url + "/chat/completions", {"model": "n", "messages": MESSAGES})
    assert attempts == [0, 1, 0, 2, 0]


def test_fault_sequence_is_consumed_in_arrival_order():
    plan = [Fault.http_500(), None, Fault.rate_limit(2.5), Fault.empty_choices(), Fault.malformed_json()]
    with ChatServer(echo, faults=plan) as server:
        url = server.base_url + "/chat/completions"
        body = {"model": "m", "messages": MESSAGES}
        results = [post(url, body) for _ in range(6)]
        kinds = [r.fault for r in server.requests]
    assert [r[0] for r in results] == [500, 200, 429, 200, 200, 200]
    assert results[2][1]["Retry-After"] == "2.5"
    assert json.loads(results[3][2])["choices"] == []
    with pytest.raises(json.JSONDecodeError):
        json.loads(results[4][2])
    assert json.loads(results[5][2])["choices"][0]["message"]["content"].endswith("(B).")
    assert kinds == ["http_500", None, "rate_limit", "empty_choices", "malformed_json", None]


def test_truncated_body_is_short_of_its_content_length():
    with ChatServer(echo, faults=[Fault.truncated()]) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    announced = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
    assert 0 < len(payload) < announced


def test_responder_exception_becomes_http_500():
    def broken(req: ChatRequest) -> ChatReply:
        raise RuntimeError("boom")

    with ChatServer(broken) as server:
        status, _, data = post(server.base_url + "/chat/completions", {"model": "m", "messages": MESSAGES})
    assert status == 500 and "boom" in json.loads(data)["error"]["message"]


def test_server_refuses_non_loopback_and_bad_arguments():
    with pytest.raises(ValueError, match="loopback"):
        ChatServer(echo, host="0.0.0.0")
    with pytest.raises(TypeError, match="responder"):
        ChatServer("not callable")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Fault.kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="tokens"):
        ChatReply("a b", token_logprobs=[-1.0], tokens=["a", "b"])


def test_stop_releases_the_port_and_a_stalled_handler():
    server = ChatServer(echo, faults=[Fault.timeout(30.0)]).start()
    port = server.port
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = json.dumps({"model": "m", "messages": MESSAGES}).encode()
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    server.stop()  # must not wait 30 s for the stalled handler
    sock.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_unknown_model_is_a_404_not_a_500():
    """A responder raising LookupError (unknown model) maps to HTTP 404, which clients do not retry."""

    def only_m1(req: ChatRequest) -> ChatReply:
        if req.model != "m-1":
            raise LookupError(f"no model {req.model!r}")
        return ChatReply("The answer is (A).")

    with ChatServer(only_m1) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="no model 'm-2'"):
            client.chat.completions.create(model="m-2", messages=MESSAGES)
        assert client.chat.completions.create(model="m-1", messages=MESSAGES).choices[0].message.content
        client.close()


# ----------------------------------------------------------------------------- hostile replies
def raw_exchange(port: int, body: dict, timeout: float = 5.0) -> tuple[bytes, str]:
    """Send one request on a fresh connection and read until the server closes it: (bytes, "eof" or "reset")."""
    payload = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            return data, "reset"
    return data, "eof"


def fixed(req: ChatRequest) -> ChatReply:
    return ChatReply("The answer is (B).", token_logprobs=[-0.5, -0.5, -0.5, -0.5])


STREAM = {"stream": True, "stream_options": {"include_usage": True}}


def sse_events(data: bytes) -> list:
    """The JSON payloads of a server-sent-event body (``[DONE]`` left out)."""
    body = data.partition(b"\r\n\r\n")[2].decode()
    return [json.loads(line[6:]) for line in body.split("\n") if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.mark.parametrize("stream", [False, True])
def test_reset_fault_aborts_the_connection_mid_body(stream):
    with ChatServer(fixed, faults=[Fault.reset()]) as server:
        data, how = raw_exchange(server.port, {"model": "m", "messages": MESSAGES, **(STREAM if stream else {})})
        assert [r.fault for r in server.requests] == ["reset"]
    assert how == "reset" and data.startswith(b"HTTP/1.1 200")
    head, _, body = data.partition(b"\r\n\r\n")
    if not stream:
        announced = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
        assert 0 < len(body) < announced
    else:
        assert b"[DONE]" not in body


@pytest.mark.parametrize("stream", [False, True])
def test_trickle_sends_one_byte_at_a_time(stream):
    with ChatServer(fixed, faults=[Fault.trickle(0.05)]) as server:
        payload = json.dumps({"model": "m", "messages": MESSAGES, **(STREAM if stream else {})}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n\r\n"
            sock.sendall(head.encode() + payload)
            start = time.monotonic()
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(65536)
            reads = []
            while time.monotonic() - start < 0.5:
                reads.append(sock.recv(65536))
        # headers at once, then single bytes about 0.05 s apart: 0.5 s carries a handful, not the body
        body = received.partition(b"\r\n\r\n")[2] + b"".join(reads)
        assert 3 <= len(body) <= 15, body
        assert all(len(r) <= 2 for r in reads)


def test_giant_body_is_well_formed_and_as_large_as_asked():
    with ChatServer(fixed, faults=[Fault.giant_body(3_000_000), Fault.giant_body(3_000_000)]) as server:
        plain, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES})
        streamed, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES, **STREAM})
    content = json.loads(plain.partition(b"\r\n\r\n")[2])["choices"][0]["message"]["content"]
    assert content.startswith("The answer is (B). xxx") and len(content) > 3_000_000
    pieces = [c["choices"][0]["delta"].get("content", "") for c in sse_events(streamed) if c["choices"]]
    assert max(map(len, pieces)) == 3_000_000 and "".join(pieces).startswith("Thexxx")


@pytest.mark.parametrize("stream", [False, True])
def test_deep_json_is_too_deep_for_the_json_module(stream):
    with ChatServer(fixed, faults=[Fault.deep_json(100_000)]) as server:
        data, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES, **(STREAM if stream else {})})
    body = data.partition(b"\r\n\r\n")[2]
    if stream:
        body = [line for line in body.split(b"\n") if b"metadata" in line][0][6:]
    assert body.count(b"[") >= 100_000
    with pytest.raises(RecursionError):
        json.loads(body)


def test_bad_usage_and_wrong_shape_replace_the_fields():
    plan = [
        Fault.bad_usage(completion_tokens=-(10**23), prompt_tokens="12"),
        Fault.bad_usage(completion_tokens=float("nan")),
        Fault.wrong_shape(),
        Fault.wrong_shape(),
    ]
    with ChatServer(fixed, faults=plan) as server:
        first, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES})
        second, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES, **STREAM})
        shape, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES})
        shape_stream, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES, **STREAM})
    usage = json.loads(first.partition(b"\r\n\r\n")[2])["usage"]
    assert usage["completion_tokens"] == -(10**23) and usage["prompt_tokens"] == "12"
    assert math.isnan(sse_events(second)[-1]["usage"]["completion_tokens"])
    assert json.loads(shape.partition(b"\r\n\r\n")[2])["choices"] == ["The answer is (B)."]
    assert ["The answer is (B)."] in [c["choices"] for c in sse_events(shape_stream)]


def test_fault_arguments_are_checked():
    with pytest.raises(ValueError, match="Fault.size"):
        Fault("giant_body", size=-1)
    with pytest.raises(ValueError, match="Fault.seconds"):
        Fault.trickle(-1.0)
    with pytest.raises(ValueError, match="status"):
        Fault.raw_body(b"{}", status=99)
    with pytest.raises(TypeError, match="bytes"):
        Fault.raw_body("{}")  # type: ignore[arg-type]


def test_raw_body_is_sent_verbatim_with_its_status():
    with ChatServer(fixed, faults=[Fault.raw_body(b'{"odd": [1, 2', status=503)]) as server:
        data, _ = raw_exchange(server.port, {"model": "m", "messages": MESSAGES})
    assert data.startswith(b"HTTP/1.1 503") and data.endswith(b'\r\n\r\n{"odd": [1, 2')
