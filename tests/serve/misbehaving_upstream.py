"""A tiny OpenAI-compatible upstream on 127.0.0.1 that misbehaves on purpose (asyncio streams, in a
thread), for the gateway's hardening tests. The ``model`` field of a request picks the behaviour:

- ``ok``: a normal reply (streamed when asked);
- ``echo``: HTTP 400 whose message quotes the ``Authorization`` header it received; streamed: a
  first event, then an event whose content and an error event quote it, then ``[DONE]``;
- ``fail``: HTTP 500 after 0.2 s;
- ``slow``: never answers; notes when the client closed the connection;
- ``trickle``: a whole reply sent one byte every 0.1 s (streamed: the first event at once, then
  the rest byte by byte);
- ``cut``: a stream that stops after two events (connection closed, no ``[DONE]``);
- ``cut_chunked``: the same over chunked encoding, stopped inside a chunk;
- ``busy``: HTTP 429; ``no_choices``: a 200 reply with an empty ``choices`` list; ``not_json``: a
  200 reply whose body is not JSON; ``a_list``: a 200 reply whose JSON is a list;
- ``too_large``: HTTP 413 with a plain-text body; ``verbose``: HTTP 422 whose message is 600
  characters long and ends with the ``Authorization`` header it received; ``no_message``: HTTP 422
  whose JSON has no message (``{"detail": ...}``);
- ``echo_ok``: a 200 reply whose content quotes the ``Authorization`` header it received;
- ``stall_body``: a reply's head and 20 bytes of its body, then silence until the client closes;
  ``cut_body``: the same, but the connection is closed after the 20 bytes;
- streams only: ``tight`` sends ``data:`` lines without the space and a comment line first;
  ``done_only`` sends nothing but ``data: [DONE]``; ``error_first`` opens with an error event;
  ``list_first`` opens with a JSON list; ``garbage_first`` opens with an event that is not JSON;
  ``silent`` closes before any event; ``done_open`` sends a whole stream, keeps the connection open
  and notes when the client closed it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Optional

#: a chat request's messages for the misbehaving upstream
QUESTION = [{"role": "user", "content": "What is 2 + 2? A) 3 B) 4"}]


def completion(model: str, text: str) -> dict:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def chunk(model: str, text: str, finish: Optional[str] = None) -> bytes:
    body = {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class MisbehavingUpstream:
    """Start with ``with MisbehavingUpstream() as up:``; ``up.base_url`` ends in ``/v1``."""

    def __init__(self) -> None:
        self.received: list[str] = []  # the model of every request, in arrival order
        self.closed_at: dict[str, float] = {}  # model -> when the client closed a ``slow`` request
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> "MisbehavingUpstream":
        self._thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            model = body.get("model", "")
            self.received.append(model)
            await getattr(self, "_" + model)(reader, writer, body, headers.get("authorization", ""))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _head(status: int, content_type: str, extra: str = "") -> bytes:
        return (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nConnection: close\r\n{extra}\r\n").encode()

    async def _json(self, writer, status: int, data: dict) -> None:
        raw = json.dumps(data).encode()
        writer.write(self._head(status, "application/json", f"Content-Length: {len(raw)}\r\n") + raw)
        await writer.drain()

    async def _ok(self, reader, writer, body, auth) -> None:
        if body.get("stream"):
            writer.write(self._head(200, "text/event-stream"))
            writer.write(chunk("ok", "Hello") + chunk("ok", " world", "stop") + b"data: [DONE]\n\n")
            await writer.drain()
        else:
            await self._json(writer, 200, completion("ok", "Hello world"))

    async def _echo(self, reader, writer, body, auth) -> None:
        if body.get("stream"):
            writer.write(self._head(200, "text/event-stream"))
            writer.write(chunk("echo", "Hi") + chunk("echo", f"you sent {auth}"))
            error = {"error": {"message": f"invalid header Authorization: {auth}", "type": "invalid_request_error"}}
            writer.write(b"data: " + json.dumps(error).encode() + b"\n\ndata: [DONE]\n\n")
            await writer.drain()
        else:
            message = f"invalid header Authorization: {auth}"
            await self._json(writer, 400, {"error": {"message": message, "type": "invalid_request_error"}})

    async def _fail(self, reader, writer, body, auth) -> None:
        await asyncio.sleep(0.2)
        await self._json(writer, 500, {"error": {"message": "down", "type": "server_error"}})

    async def _slow(self, reader, writer, body, auth) -> None:
        try:
            await asyncio.wait_for(reader.read(1), 30)  # b"" once the client closes
        except asyncio.TimeoutError:
            return
        self.closed_at.setdefault(body["model"], time.monotonic())

    async def _trickle(self, reader, writer, body, auth) -> None:
        if body.get("stream"):
            writer.write(self._head(200, "text/event-stream"))
            writer.write(chunk("trickle", "Hi"))
            rest = chunk("trickle", " there, slowly", "stop") + b"data: [DONE]\n\n"
        else:
            raw = json.dumps(completion("trickle", "Hello " * 20)).encode()
            writer.write(self._head(200, "application/json", f"Content-Length: {len(raw)}\r\n"))
            rest = raw
        for i in range(len(rest)):
            writer.write(rest[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.1)

    async def _cut(self, reader, writer, body, auth) -> None:
        writer.write(self._head(200, "text/event-stream"))
        writer.write(chunk("cut", "Hello") + chunk("cut", " wor"))
        await writer.drain()

    async def _cut_chunked(self, reader, writer, body, auth) -> None:
        writer.write(self._head(200, "text/event-stream", "Transfer-Encoding: chunked\r\n"))
        events = chunk("cut_chunked", "Hello") + chunk("cut_chunked", " wor")
        writer.write(f"{len(events):x}\r\n".encode() + events + b"\r\n")
        writer.write(b'400\r\ndata: {"id"')  # a chunk announced at 1024 bytes, cut short
        await writer.drain()

    async def _busy(self, reader, writer, body, auth) -> None:
        await self._json(writer, 429, {"error": {"message": "slow down", "type": "rate_limit"}})

    async def _no_choices(self, reader, writer, body, auth) -> None:
        await self._json(writer, 200, {**completion("no_choices", ""), "choices": []})

    async def _raw(self, writer, status: int, raw: bytes, content_type: str = "application/json") -> None:
        writer.write(self._head(status, content_type, f"Content-Length: {len(raw)}\r\n") + raw)
        await writer.drain()

    async def _not_json(self, reader, writer, body, auth) -> None:
        await self._raw(writer, 200, b"<html>gateway timeout</html>")

    async def _a_list(self, reader, writer, body, auth) -> None:
        await self._raw(writer, 200, b"[1, 2]")

    async def _too_large(self, reader, writer, body, auth) -> None:
        await self._raw(writer, 413, b"request entity too large", "text/plain")

    async def _verbose(self, reader, writer, body, auth) -> None:
        message = "x" * 600 + f" {auth}"
        await self._json(writer, 422, {"error": {"message": message, "type": "invalid_request_error"}})

    async def _stream(self, writer, raw: bytes) -> None:
        writer.write(self._head(200, "text/event-stream") + raw)
        await writer.drain()

    async def _tight(self, reader, writer, body, auth) -> None:
        events = chunk("tight", "Hel") + chunk("tight", "lo", "stop") + b"data: [DONE]\n\n"
        await self._stream(writer, b": keep-alive\n\n" + events.replace(b"data: ", b"data:"))

    async def _done_only(self, reader, writer, body, auth) -> None:
        await self._stream(writer, b"data: [DONE]\n\n")

    async def _error_first(self, reader, writer, body, auth) -> None:
        error = {"error": {"message": "overloaded", "type": "server_error"}}
        await self._stream(writer, b"data: " + json.dumps(error).encode() + b"\n\ndata: [DONE]\n\n")

    async def _list_first(self, reader, writer, body, auth) -> None:
        await self._stream(writer, b"data: [1]\n\ndata: [DONE]\n\n")

    async def _silent(self, reader, writer, body, auth) -> None:
        await self._stream(writer, b"")

    async def _garbage_first(self, reader, writer, body, auth) -> None:
        await self._stream(writer, b"data: {oops\n\ndata: [DONE]\n\n")

    async def _done_open(self, reader, writer, body, auth) -> None:
        await self._stream(writer, chunk("done_open", "Hi", "stop") + b"data: [DONE]\n\n")
        await self._slow(reader, writer, body, auth)

    async def _stall_body(self, reader, writer, body, auth) -> None:
        raw = json.dumps(completion("stall_body", "Hello world")).encode()
        writer.write(self._head(200, "application/json", f"Content-Length: {len(raw)}\r\n") + raw[:20])
        await writer.drain()
        await self._slow(reader, writer, body, auth)

    async def _cut_body(self, reader, writer, body, auth) -> None:
        raw = json.dumps(completion("cut_body", "Hello world")).encode()
        writer.write(self._head(200, "application/json", f"Content-Length: {len(raw)}\r\n") + raw[:20])
        await writer.drain()

    async def _no_message(self, reader, writer, body, auth) -> None:
        await self._json(writer, 422, {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]})

    async def _echo_ok(self, reader, writer, body, auth) -> None:
        await self._json(writer, 200, completion("echo_ok", f"you sent {auth}"))
