"""An OpenAI-compatible chat server for tests and simulations, with fault injection (standard library only).

Plug in any Python ``responder`` that maps a :class:`ChatRequest` to a :class:`ChatReply`::

    def responder(req: ChatRequest) -> ChatReply:
        return ChatReply("Reasoning ... The answer is (B).", token_logprobs=[-0.1, -0.3])

    with ChatServer(responder) as server:          # binds 127.0.0.1 on a free port
        client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY")
        ...
        server.request_log                         # [(model, prompt_hash), ...] in arrival order

Serves ``POST /v1/chat/completions`` (plain JSON, or server-sent events when ``stream`` is true) and
``GET /v1/models``. ``faults`` chooses, per request, a :class:`Fault` to inject instead of (or while)
answering: HTTP 500, HTTP 429 with ``Retry-After``, a timeout, a truncated body, malformed JSON, empty
choices, a slow stream, a body trickled byte by byte, a giant body, JSON nested too deep to parse,
replies of the wrong shape, absurd ``usage`` numbers, a connection reset in the middle of the body, or
any body given byte for byte (see :data:`FAULT_KINDS`). It is either a callable
``faults(request) -> Fault | None`` (the request carries ``attempt``, how many times the same model
and prompt were received before) or a sequence of ``Fault | None`` consumed one per request in
arrival order (then no more faults).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from cascal.errors import ArgumentTypeError, InvalidParameterError

PROMPT_HASH_CHARS = 16


def prompt_hash(messages: Sequence[Mapping[str, Any]]) -> str:
    """A short stable hash of chat messages (what :attr:`ChatServer.request_log` records)."""
    blob = json.dumps([dict(m) for m in messages], sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:PROMPT_HASH_CHARS]


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request as received.

    Attributes:
        model: the ``model`` field.
        messages: the ``messages`` list (role/content dicts).
        params: every other field as sent (temperature, max_tokens, seed, logprobs, stream, ...).
        index: arrival number of the request at this server (0-based).
        attempt: how many earlier requests carried the same model and messages.
    """

    model: str
    messages: list[dict]
    params: dict
    index: int = 0
    attempt: int = 0

    @property
    def prompt_hash(self) -> str:
        """:func:`prompt_hash` of the messages."""
        return prompt_hash(self.messages)


@dataclass(frozen=True)
class ChatReply:
    """What the responder answers.

    Attributes:
        text: the assistant message.
        token_logprobs: per-token log-probabilities (returned when the request asks for logprobs).
        tokens: the tokens matching ``token_logprobs`` (whitespace pieces of ``text`` when omitted).
    """

    text: str
    token_logprobs: Optional[list[float]] = None
    tokens: Optional[list[str]] = None

    def __post_init__(self) -> None:
        if not isinstance(self.text, str):
            raise ArgumentTypeError(f"ChatReply.text: expected str, got {type(self.text).__name__}")
        if self.tokens is not None and self.token_logprobs is not None and len(self.tokens) != len(self.token_logprobs):
            raise InvalidParameterError(
                f"ChatReply.tokens: {len(self.tokens)} tokens but {len(self.token_logprobs)} token_logprobs"
            )


FAULT_KINDS = (
    "http_500",
    "rate_limit",
    "timeout",
    "truncated",
    "malformed_json",
    "empty_choices",
    "slow_stream",
    "trickle",
    "giant_body",
    "deep_json",
    "wrong_shape",
    "bad_usage",
    "reset",
    "raw_body",
)


@dataclass(frozen=True)
class Fault:
    """A failure to inject into one response. Build with the class methods.

    Attributes:
        kind: one of :data:`FAULT_KINDS`.
        seconds: ``rate_limit``: the ``Retry-After`` value; ``timeout``: how long to stall before
            answering; ``slow_stream``: pause between chunks; ``trickle``: pause between bytes.
        size: ``giant_body``: bytes of padding in the reply text; ``deep_json``: nesting depth.
        usage: ``bad_usage``: the ``usage`` fields to send instead of the true counts, as
            ``(name, value)`` pairs (any JSON value: ``-1e23``, ``"12"``, ``float("nan")``, ...).
        body: ``raw_body``: the exact bytes to send as the body.
        status: ``raw_body``: the HTTP status to send them with.
    """

    kind: str
    seconds: float = 0.0
    size: int = 0
    usage: tuple[tuple[str, Any], ...] = ()
    body: bytes = b""
    status: int = 200

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise InvalidParameterError(f"Fault.kind: {self.kind!r} is not one of {FAULT_KINDS}")
        if not self.seconds >= 0:
            raise InvalidParameterError(f"Fault.seconds: must be >= 0, got {self.seconds!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 0:
            raise InvalidParameterError(f"Fault.size: must be an integer >= 0, got {self.size!r}")

    @classmethod
    def http_500(cls) -> "Fault":
        """Reply HTTP 500 with an error body."""
        return cls("http_500")

    @classmethod
    def rate_limit(cls, retry_after: float = 1.0) -> "Fault":
        """Reply HTTP 429 with ``Retry-After: <retry_after>``."""
        return cls("rate_limit", retry_after)

    @classmethod
    def timeout(cls, seconds: float = 5.0) -> "Fault":
        """Stall ``seconds`` before answering normally (past a shorter client timeout)."""
        return cls("timeout", seconds)

    @classmethod
    def truncated(cls) -> "Fault":
        """Announce the full ``Content-Length`` but send half the body, then close."""
        return cls("truncated")

    @classmethod
    def malformed_json(cls) -> "Fault":
        """HTTP 200 whose body is not valid JSON."""
        return cls("malformed_json")

    @classmethod
    def empty_choices(cls) -> "Fault":
        """HTTP 200 with ``"choices": []``."""
        return cls("empty_choices")

    @classmethod
    def slow_stream(cls, chunk_delay: float = 0.05) -> "Fault":
        """Send the reply in small pieces with ``chunk_delay`` seconds between them."""
        return cls("slow_stream", chunk_delay)

    @classmethod
    def trickle(cls, byte_delay: float = 1.0) -> "Fault":
        """Send the reply one byte at a time, ``byte_delay`` seconds apart (never idle long enough
        for a client's idle timeout, so only a total deadline ends it)."""
        return cls("trickle", byte_delay)

    @classmethod
    def giant_body(cls, size: int = 50 * 2**20) -> "Fault":
        """A well-formed reply whose text carries ``size`` bytes of padding (a streamed reply sends
        the padding as one chunk)."""
        return cls("giant_body", size=size)

    @classmethod
    def deep_json(cls, depth: int = 200_000) -> "Fault":
        """A reply that is otherwise complete but carries an extra field of ``depth`` nested arrays
        (more than any JSON parser's recursion limit)."""
        return cls("deep_json", size=depth)

    @classmethod
    def wrong_shape(cls) -> "Fault":
        """Valid JSON of the wrong shape: ``choices[0]`` is a string, not an object."""
        return cls("wrong_shape")

    @classmethod
    def bad_usage(cls, **usage: Any) -> "Fault":
        """A clean reply whose ``usage`` reports ``usage`` instead of the true counts, e.g.
        ``Fault.bad_usage(completion_tokens=-1e23)``."""
        return cls("bad_usage", usage=tuple(sorted(usage.items())))

    @classmethod
    def raw_body(cls, body: bytes, status: int = 200) -> "Fault":
        """HTTP ``status`` with exactly ``body`` (JSON content type, or server-sent events when the
        request asked for a stream): any reply a test can think of, well-formed or not."""
        if not isinstance(body, bytes):
            raise ArgumentTypeError(f"Fault.raw_body: expected bytes, got {type(body).__name__}")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise InvalidParameterError(f"Fault.raw_body: status must be an HTTP status 100..599, got {status!r}")
        return cls("raw_body", body=body, status=status)

    @classmethod
    def reset(cls) -> "Fault":
        """Send the headers and half the body, then reset the connection (TCP RST, not a clean close)."""
        return cls("reset")


@dataclass(frozen=True)
class RequestRecord:
    """One received request: model, prompt hash, arrival time (``time.monotonic()``), attempt, fault."""

    model: str
    prompt_hash: str
    received_at: float
    attempt: int
    fault: Optional[str]


Responder = Callable[[ChatRequest], ChatReply]
FaultPlan = Union[Callable[[ChatRequest], Optional[Fault]], Sequence[Optional[Fault]], None]


class ChatServer:
    """A threaded OpenAI-compatible HTTP server on 127.0.0.1 around a Python responder.

    Args:
        responder: called once per non-faulted request (from a server thread; make it thread-safe).
        host: must be a loopback address (``127.0.0.1`` or ``localhost``).
        port: 0 picks a free port.
        faults: a callable or a sequence choosing a :class:`Fault` per request (see the module doc).
        models: ids listed by ``GET /v1/models`` (default: every model seen so far).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        responder: Responder,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan = None,
        models: Optional[Sequence[str]] = None,
    ) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise InvalidParameterError(f"host: the test server binds loopback only (127.0.0.1), got {host!r}")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidParameterError(f"port: must be an integer in 0..65535, got {port!r}")
        if not callable(responder):
            raise ArgumentTypeError("responder: expected a callable ChatRequest -> ChatReply")
        if faults is not None and not callable(faults) and not isinstance(faults, Sequence):
            raise ArgumentTypeError("faults: expected a callable, a sequence of Fault/None, or None")
        self.responder = responder
        self.faults = faults
        self._models = list(models) if models is not None else None
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._seen: dict[tuple[str, str], int] = {}
        self._stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.owner = self
        self._thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifetime
    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what an OpenAI client takes as ``base_url``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "ChatServer":
        """Serve in a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="cascal-chat-server", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake stalled handlers and close the socket (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (for a standalone simulator)."""
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._stopping.set()
            self._httpd.server_close()

    def __enter__(self) -> "ChatServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ logs
    @property
    def request_log(self) -> list[tuple[str, str]]:
        """``(model, prompt_hash)`` of every chat request received, in arrival order (a copy)."""
        with self._lock:
            return [(r.model, r.prompt_hash) for r in self._records]

    @property
    def requests(self) -> list[RequestRecord]:
        """Full records of every chat request received (a copy)."""
        with self._lock:
            return list(self._records)

    def clear_log(self) -> None:
        """Forget the received requests (attempt counters included)."""
        with self._lock:
            self._records.clear()
            self._seen.clear()

    # ------------------------------------------------------------------ internals
    def _register(self, model: str, messages: list[dict], params: dict) -> tuple[ChatRequest, Optional[Fault]]:
        h = prompt_hash(messages)
        with self._lock:
            index = len(self._records)
            attempt = self._seen.get((model, h), 0)
            self._seen[(model, h)] = attempt + 1
            request = ChatRequest(model, messages, params, index=index, attempt=attempt)
            fault = self._choose_fault(request)
            self._records.append(RequestRecord(model, h, time.monotonic(), attempt, fault.kind if fault else None))
        return request, fault

    def _choose_fault(self, request: ChatRequest) -> Optional[Fault]:
        if self.faults is None:
            return None
        if callable(self.faults):
            fault = self.faults(request)
        else:
            fault = self.faults[request.index] if request.index < len(self.faults) else None
        if fault is not None and not isinstance(fault, Fault):
            raise ArgumentTypeError(f"faults: expected a Fault or None, got {type(fault).__name__}")
        return fault

    def _model_ids(self) -> list[str]:
        if self._models is not None:
            return list(self._models)
        with self._lock:
            return sorted({r.model for r in self._records})


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the default backlog of 5 drops connections under concurrent clients
    owner: ChatServer


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # headers and body are separate writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per
    # reply on a kept-alive connection
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr logging
        pass

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "cascal"} for m in self.server.owner._model_ids()
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error("not found", "invalid_request_error"))

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._read_body()
            self._send_json(404, _error("not found", "invalid_request_error"))
            return
        try:
            body = json.loads(self._read_body() or b"null")
        except ValueError:
            self._send_json(400, _error("request body is not valid JSON", "invalid_request_error"))
            return
        problem = _validate_request(body)
        if problem:
            self._send_json(400, _error(problem, "invalid_request_error"))
            return
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        owner = self.server.owner
        request, fault = owner._register(body["model"], body["messages"], params)
        try:
            self._answer(owner, request, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. after its timeout): nothing to do

    # ------------------------------------------------------------------ replies
    def _answer(self, owner: ChatServer, request: ChatRequest, fault: Optional[Fault]) -> None:
        kind = fault.kind if fault else None
        if kind == "http_500":
            self._send_json(500, _error("injected internal server error", "server_error"))
            return
        if kind == "rate_limit":
            assert fault is not None
            self._send_json(
                429, _error("injected rate limit", "rate_limit_error"), {"Retry-After": f"{fault.seconds:g}"}
            )
            return
        if kind == "timeout":
            assert fault is not None
            if owner._stopping.wait(fault.seconds):
                return
        if kind == "malformed_json":
            self._send_raw(
                200, b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "The ans', "application/json"
            )
            return
        if kind == "raw_body":
            assert fault is not None
            content_type = "text/event-stream" if request.params.get("stream") else "application/json"
            self._send_raw(fault.status, fault.body, content_type)
            return
        try:
            reply = owner.responder(request)
        except LookupError as exc:  # an unknown model: 404 like a real server, so clients fail fast
            self._send_json(404, _error(f"model not found: {exc}", "invalid_request_error"))
            return
        except Exception as exc:  # noqa: BLE001 - a responder bug becomes an HTTP 500, visible to the client
            self._send_json(500, _error(f"responder raised {type(exc).__name__}: {exc}", "server_error"))
            return
        want_logprobs = bool(request.params.get("logprobs"))
        if request.params.get("stream"):
            self._send_stream(request, reply, want_logprobs, fault)
            return
        payload = _completion_body(request, reply, want_logprobs)
        if kind == "empty_choices":
            payload["choices"] = []
        elif kind == "wrong_shape":
            payload["choices"] = [reply.text]
        elif kind == "giant_body":
            assert fault is not None
            payload["choices"][0]["message"]["content"] += " " + _PADDING_MARK
            prefix, suffix = json.dumps(payload).encode("utf-8").split(_PADDING_MARK.encode())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(prefix) + fault.size + len(suffix)))
            self.end_headers()
            self._write_padded(prefix, fault.size, suffix)
            return
        elif kind == "bad_usage":
            assert fault is not None
            payload["usage"].update(dict(fault.usage))
        data = json.dumps(payload).encode("utf-8")
        if kind == "deep_json":
            assert fault is not None
            data = data[:-1] + b', "metadata": ' + b"[" * fault.size + b"]" * fault.size + b"}"
        if kind == "truncated":
            self._send_raw(200, data, "application/json", cut=len(data) // 2)
        elif kind == "reset":
            self._send_raw(200, data, "application/json", cut=len(data) // 2, reset=True)
        elif kind == "slow_stream":
            assert fault is not None
            self._send_raw(200, data, "application/json", piece_delay=fault.seconds)
        elif kind == "trickle":
            assert fault is not None
            self._send_raw(200, data, "application/json", byte_delay=fault.seconds)
        else:
            self._send_raw(200, data, "application/json")

    def _send_stream(self, request: ChatRequest, reply: ChatReply, want_logprobs: bool, fault: Optional[Fault]) -> None:
        kind = fault.kind if fault else None
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        delay = fault.seconds if (fault and kind == "slow_stream") else 0.0
        chunks = list(_stream_chunks(request, reply, want_logprobs, empty=(kind == "empty_choices")))
        if fault is not None and kind == "giant_body":
            padding = {"index": 0, "delta": {"content": _PADDING_MARK}, "logprobs": None, "finish_reason": None}
            chunks.insert(2, _with_choice(chunks[1], padding))
        if kind == "wrong_shape":
            chunks[1] = {**chunks[1], "choices": [reply.text]}
        if fault is not None and kind == "bad_usage" and "usage" in chunks[-1]:
            chunks[-1] = {**chunks[-1], "usage": {**chunks[-1]["usage"], **dict(fault.usage)}}
        for i, chunk in enumerate(chunks):
            event = b"data: " + json.dumps(chunk).encode("utf-8") + b"\n\n"
            if kind in ("truncated", "reset") and i == len(chunks) // 2:
                self.wfile.write(event[: len(event) // 2])
                self.wfile.flush()
                if kind == "reset":
                    self._reset()
                return
            if kind == "malformed_json" and i == 1:
                event = b"data: {not json\n\n"
            if fault is not None and kind == "deep_json" and i == 1:
                event = event[:-3] + b', "metadata": ' + b"[" * fault.size + b"]" * fault.size + b"}\n\n"
            if fault is not None and kind == "trickle":
                if self._trickle(event, fault.seconds):
                    return
                continue
            if fault is not None and kind == "giant_body" and _PADDING_MARK.encode() in event:
                prefix, suffix = event.split(_PADDING_MARK.encode())
                self._write_padded(prefix, fault.size, suffix)
                continue
            self.wfile.write(event)
            self.wfile.flush()
            if delay and self.server.owner._stopping.wait(delay):
                return
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def _write_padded(self, prefix: bytes, size: int, suffix: bytes) -> None:
        """Write ``prefix``, ``size`` bytes of ``x`` and ``suffix`` without holding the padding in
        memory (a giant body costs the server nothing, so a test measures the client alone)."""
        block = b"x" * 65536
        self.wfile.write(prefix)
        for start in range(0, size, len(block)):
            self.wfile.write(block[: min(len(block), size - start)])
        self.wfile.write(suffix)
        self.wfile.flush()

    def _trickle(self, data: bytes, byte_delay: float) -> bool:
        """Write ``data`` one byte at a time, ``byte_delay`` apart; True when the server is stopping."""
        for i in range(len(data)):
            self.wfile.write(data[i : i + 1])
            self.wfile.flush()
            if self.server.owner._stopping.wait(byte_delay):
                return True
        return False

    def _reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0) instead of an orderly close."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()  # the socket's descriptor closes only when no file object still uses it
            self.connection.close()
        except OSError:
            pass

    def _send_json(self, status: int, payload: Any, headers: Optional[Mapping[str, str]] = None) -> None:
        self._send_raw(status, json.dumps(payload).encode("utf-8"), "application/json", headers=headers)

    def _send_raw(
        self,
        status: int,
        data: bytes,
        content_type: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        cut: Optional[int] = None,
        reset: bool = False,
        piece_delay: float = 0.0,
        byte_delay: float = 0.0,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if cut is not None:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if cut is not None:
            self.wfile.write(data[:cut])
            self.wfile.flush()
            if reset:
                self._reset()
            return
        if byte_delay > 0:
            self._trickle(data, byte_delay)
            return
        if piece_delay > 0:
            step = max(1, len(data) // 8)
            for start in range(0, len(data), step):
                self.wfile.write(data[start : start + step])
                self.wfile.flush()
                if self.server.owner._stopping.wait(piece_delay):
                    return
            return
        self.wfile.write(data)
        self.wfile.flush()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""


# ----------------------------------------------------------------------------- payloads
def _validate_request(body: Any) -> Optional[str]:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: required string"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: required non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return f"messages[{i}]: needs role and content"
    return None


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _tokens_of(reply: ChatReply) -> list[str]:
    if reply.tokens is not None:
        return list(reply.tokens)
    words = reply.text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if reply.text else []


def _count_prompt_tokens(messages: list[dict]) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in messages)


def _logprob_content(tokens: list[str], logprobs: list[float]) -> list[dict]:
    return [
        {"token": t, "logprob": float(lp), "bytes": list(t.encode("utf-8")), "top_logprobs": []}
        for t, lp in zip(tokens, logprobs)
    ]


def _completion_body(request: ChatRequest, reply: ChatReply, want_logprobs: bool) -> dict:
    tokens = _tokens_of(reply)
    logprobs = None
    if want_logprobs and reply.token_logprobs is not None:
        toks = (
            tokens if len(tokens) == len(reply.token_logprobs) else [f"<{i}>" for i in range(len(reply.token_logprobs))]
        )
        logprobs = {"content": _logprob_content(toks, reply.token_logprobs), "refusal": None}
    n_completion = len(reply.token_logprobs) if reply.token_logprobs is not None else len(tokens)
    n_prompt = _count_prompt_tokens(request.messages)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": n_prompt,
            "completion_tokens": n_completion,
            "total_tokens": n_prompt + n_completion,
        },
    }


#: Stands for the padding of a giant body in the JSON text until it is written out.
_PADDING_MARK = "@@cascal-giant-body-padding@@"


def _with_choice(chunk: dict, choice: dict) -> dict:
    """A copy of stream ``chunk`` carrying ``choice`` as its only choice."""
    return {**chunk, "choices": [choice]}


def _stream_chunks(request: ChatRequest, reply: ChatReply, want_logprobs: bool, empty: bool) -> Iterator[dict]:
    """Server-sent-event payloads: a role chunk, one chunk per token, a finish chunk, a usage chunk."""
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": request.model}
    tokens = _tokens_of(reply)
    lps = reply.token_logprobs
    if lps is not None and len(lps) != len(tokens):
        # logprobs without matching tokens: send the text in one piece and the logprobs with it
        pieces: list[tuple[str, list[float]]] = [(reply.text, list(lps))]
    else:
        pieces = [(t, [lps[i]] if lps is not None else []) for i, t in enumerate(tokens)]
    if empty:
        yield {**base, "choices": []}
    else:
        yield {
            **base,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
            ],
        }
        for text, piece_lps in pieces:
            logprobs = None
            if want_logprobs and lps is not None:
                names = [text] if len(piece_lps) == 1 else [f"<{i}>" for i in range(len(piece_lps))]
                logprobs = {"content": _logprob_content(names, piece_lps), "refusal": None}
            yield {
                **base,
                "choices": [{"index": 0, "delta": {"content": text}, "logprobs": logprobs, "finish_reason": None}],
            }
        yield {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}
    if (request.params.get("stream_options") or {}).get("include_usage"):
        n_completion = len(lps) if lps is not None else len(tokens)
        n_prompt = _count_prompt_tokens(request.messages)
        yield {
            **base,
            "choices": [],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": n_completion,
                "total_tokens": n_prompt + n_completion,
            },
        }


__all__ = [
    "FAULT_KINDS",
    "ChatReply",
    "ChatRequest",
    "ChatServer",
    "Fault",
    "FaultPlan",
    "RequestRecord",
    "Responder",
    "prompt_hash",
]
