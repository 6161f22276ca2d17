"""Forwarding chat requests to the pool's endpoints through the ``openai`` client, with failover.

Each pool model gets one :class:`Upstream`: an ``openai.AsyncOpenAI`` client on its own base URL,
key (``api_key_env`` of pool.yaml) and timeout, with no retries of its own, and a
:class:`~cascal.serve.breaker.CircuitBreaker`. :class:`UpstreamPool` walks a ranking:

- models whose breaker is open are skipped (the ranking is re-ranked among the healthy ones; when
  no model's breaker is closed the full ranking is tried, best first);
- a model whose breaker is half-open (cool-down over) is probed by one request at a time, in its
  place in the ranking; other requests skip it while the probe is in flight, and a failed probe does
  not count against ``max_tries``: a probe never costs a request one of its healthy candidates;
- a request that fails (connection refused, timeout, deadline, HTTP 5xx/429/401/403/404, malformed
  JSON, no choices) moves on to the next model, for at most ``max_tries`` models;
- a request the upstream refuses as malformed (HTTP 400, 413, 422) is returned to the caller as is:
  another model would refuse it too;
- a stream fails over only before its first event: once bytes went to the caller, an upstream
  failure (an error, an idle gap, a stream that ends without ``data: [DONE]``) ends the stream with
  an OpenAI-style error event ``data: {"error": {...}}`` and no ``[DONE]``, so the client can tell
  the reply was cut.

Deadlines (each pool model's ``request_deadline`` and ``timeout`` of pool.yaml): a whole reply must
arrive within ``request_deadline`` seconds of sending the request; a stream's first event must
arrive within ``request_deadline`` and every later line within ``timeout`` seconds of the one before
(a stream may run as long as it keeps talking; an upstream that trickles a byte a second is cut).
The HTTP client's own ``timeout`` only bounds silences between bytes.

The reply is passed on unchanged except ``model``, which becomes the name of the pool model that
answered (in every event of a stream too), and every pool key or gateway key in it is redacted
(:class:`~cascal.serve.outbound.Redactor`). Failure messages name pool models and error kinds, never
keys or URLs; a refused request carries the upstream's own error message, redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Optional, Sequence, TypeVar

import openai

try:  # the HTTP library the installed openai client is built on (httpx2 in openai >= 3, httpx before)
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx as _http  # type: ignore[no-redef]


from cascal.errors import CascalError, exception_chain
from cascal.llm.config import ModelConfig, PoolConfig
from cascal.serve.breaker import CircuitBreaker
from cascal.serve.errors import APIError, error_body
from cascal.serve.metrics import GatewayMetrics
from cascal.serve.outbound import Redactor, header_value

__all__ = [
    "Attempt",
    "Forwarded",
    "OpenStream",
    "Upstream",
    "UpstreamFailure",
    "UpstreamPool",
    "unless_disconnected",
]


def _http_client() -> Any:
    """The HTTP client of an upstream: the ``openai`` client's aiohttp backend (``openai[aiohttp]``,
    in the ``serve`` extra) when installed, faster per request than its default transport (measured
    in docs/serve.md); otherwise the default."""
    try:
        return openai.DefaultAioHttpClient()
    except (AttributeError, RuntimeError):  # an openai without it, or aiohttp missing
        return None


#: upstream statuses that say the request itself is wrong: returned to the caller, no failover
PASS_THROUGH_STATUS = frozenset({400, 413, 422})


T = TypeVar("T")


class UpstreamFailure(CascalError):
    """One failed upstream request: ``kind`` (``timeout``, ``deadline``, ``connection``,
    ``http_<status>``, ``malformed``, ``empty_choices``, ``empty_stream``, or ``unsent_<exception>``
    with ``unsent`` for a request that could not be built and never left the gateway) and the HTTP
    status when there was one (never for an unsent request)."""

    def __init__(self, kind: str, status: Optional[int] = None, body: Any = None, *, unsent: bool = False) -> None:
        super().__init__(kind)
        self.kind = kind
        self.status = status
        self.body = body
        self.unsent = unsent

    @property
    def retryable(self) -> bool:
        """Whether another model might succeed (everything but a refused request, or one that could
        not even be built)."""
        return self.status not in PASS_THROUGH_STATUS and not self.unsent


def _unsent(exc: BaseException) -> UpstreamFailure:
    """A request that failed before any byte went upstream (its body could not be encoded or
    built): the request's fault, never the upstream's, so it does not feed the circuit breaker."""
    return UpstreamFailure(f"unsent_{type(exc).__name__}", unsent=True)


@dataclass(frozen=True)
class Attempt:
    """One upstream try: the model and what went wrong (``None`` when it answered)."""

    model: str
    error: Optional[str] = None


@dataclass
class Forwarded:
    """A reply obtained from the pool: the JSON body (``model`` already rewritten), who answered and
    the tries it took."""

    body: dict
    model: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def failovers(self) -> int:
        """Models tried before the one that answered."""
        return len(self.attempts) - 1


def _split_body(body: dict) -> tuple[list, dict]:
    """The messages and every other field of a chat request but ``model``, ``messages``, ``stream``."""
    extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream")}
    return body["messages"], extra


def _caused_by_refusal(exc: BaseException) -> bool:
    """Whether a refused or reset connection lies in ``exc``'s cause chain (the aiohttp backend
    reports a refused connection as a connect timeout)."""
    return any(isinstance(cause, ConnectionError) for cause in exception_chain(exc))


def _failure(exc: Exception) -> UpstreamFailure:
    if isinstance(exc, openai.APITimeoutError) and not _caused_by_refusal(exc):
        return UpstreamFailure("timeout")
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamFailure("connection")
    if isinstance(exc, openai.APIStatusError):
        return UpstreamFailure(f"http_{exc.status_code}", exc.status_code, exc.body)
    return UpstreamFailure(type(exc).__name__)


class Upstream:
    """One pool model behind its OpenAI-compatible endpoint.

    Raises:
        cascal.errors.ConfigError: the model's ``api_key_env`` variable is not set.
    """

    def __init__(self, config: ModelConfig, breaker: CircuitBreaker, redactor: Optional[Redactor] = None) -> None:
        self.config = config
        self.name = config.name
        self.breaker = breaker
        self.redactor = redactor or Redactor()
        self.client = openai.AsyncOpenAI(
            base_url=config.base_url,
            api_key=config.api_key(),
            timeout=config.timeout,
            max_retries=0,
            http_client=_http_client(),
        )

    def __repr__(self) -> str:
        return f"Upstream({self.name!r}, model={self.config.model!r})"

    async def complete(self, body: dict) -> dict:
        """The upstream's JSON reply to ``body`` (non-streamed) with ``model`` set to the pool name,
        within the model's ``request_deadline`` (else ``UpstreamFailure("deadline")``)."""
        try:
            return await asyncio.wait_for(self._complete(body), self.config.request_deadline)
        except asyncio.TimeoutError:
            raise UpstreamFailure("deadline") from None

    async def _complete(self, body: dict) -> dict:
        request = {k: v for k, v in body.items() if k != "stream"}
        request["model"] = self.config.model
        try:
            # the client's plain ``post`` with the request as it came: ``chat.completions.create``
            # re-validates and transforms every parameter on every request (docs/serve.md)
            raw = await self.client.post("/chat/completions", body=request, cast_to=_http.Response)
        except openai.OpenAIError as exc:
            raise _failure(exc) from None
        except (ValueError, TypeError, RecursionError) as exc:  # the openai client wraps every network error
            raise _unsent(exc) from None
        try:
            data = json.loads(self.redactor.bytes(await raw.aread()))
        except openai.OpenAIError as exc:
            raise _failure(exc) from None
        except ValueError:
            raise UpstreamFailure("malformed") from None
        if not isinstance(data, dict):
            raise UpstreamFailure("malformed")
        if not data.get("choices"):
            raise UpstreamFailure("empty_choices")
        data["model"] = self.name
        return data

    async def open_stream(self, body: dict) -> "OpenStream":
        """Start a streamed completion and read up to its first event, within the model's
        ``request_deadline`` (failures so far raise :class:`UpstreamFailure`; later ones end the
        stream with an error event)."""
        try:
            return await asyncio.wait_for(self._open_stream(body), self.config.request_deadline)
        except asyncio.TimeoutError:
            raise UpstreamFailure("deadline") from None

    async def _open_stream(self, body: dict) -> "OpenStream":
        messages, extra = _split_body(body)
        stack = contextlib.AsyncExitStack()
        try:
            try:
                response = await stack.enter_async_context(
                    self.client.chat.completions.with_streaming_response.create(
                        model=self.config.model, messages=messages, stream=True, extra_body=extra
                    )
                )
            except (ValueError, TypeError, RecursionError) as exc:  # network errors come as OpenAIError
                raise _unsent(exc) from None
            lines = response.iter_lines().__aiter__()
            head: list[str] = []
            while True:
                line = await lines.__anext__()
                head.append(line)
                if line.startswith("data:"):
                    break
            payload = line[5:].strip()
            if payload != "[DONE]":
                first = json.loads(payload)
                if not isinstance(first, dict) or "error" in first:
                    raise UpstreamFailure("malformed")
        except UpstreamFailure:
            await stack.aclose()
            raise
        except StopAsyncIteration:
            await stack.aclose()
            raise UpstreamFailure("empty_stream") from None
        except openai.OpenAIError as exc:
            await stack.aclose()
            raise _failure(exc) from None
        except ValueError:
            await stack.aclose()
            raise UpstreamFailure("malformed") from None
        except BaseException:
            await stack.aclose()
            raise
        return OpenStream(self.name, stack, head, lines, idle=self.config.timeout, redactor=self.redactor)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.close()


class OpenStream:
    """A streamed reply whose first event has arrived: iterate :meth:`events` for the SSE bytes.

    Attributes:
        model: the pool model answering.
        usage: the ``usage`` object of the stream, once an event carried one.
        error: the failure that ended the stream early (``idle``, ``truncated``, an HTTP error kind
            or an exception name), or ``None``.
    """

    def __init__(
        self,
        model: str,
        stack: contextlib.AsyncExitStack,
        head: list[str],
        lines: AsyncIterator[str],
        *,
        idle: Optional[float] = None,
        redactor: Optional[Redactor] = None,
    ) -> None:
        self.model = model
        self.usage: Optional[dict] = None
        self.error: Optional[str] = None
        self._stack = stack
        self._head = head
        self._lines = lines
        self._idle = idle
        self._redactor = redactor or Redactor()
        self._done = False
        self.attempts: list[Attempt] = []

    def _rewrite(self, line: str) -> bytes:
        line = self._redactor.text(line)
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload == "[DONE]":
                self._done = True
            elif payload:
                try:
                    chunk = json.loads(payload)
                except ValueError:
                    return (line + "\n").encode("utf-8")
                if isinstance(chunk, dict):
                    chunk["model"] = self.model
                    if isinstance(chunk.get("usage"), dict):
                        self.usage = chunk["usage"]
                    return ("data: " + json.dumps(chunk, ensure_ascii=False, separators=(",", ":")) + "\n").encode(
                        "utf-8"
                    )
        return (line + "\n").encode("utf-8")

    def _error_event(self) -> bytes:
        """The OpenAI-style error event that ends a cut stream (a blank line first closes any event
        the upstream left half-sent)."""
        message = f"the stream from model {self.model!r} was cut ({self.error}); the reply is incomplete"
        body = error_body(self._redactor.text(message), "upstream_error", code="upstream_stream_cut")
        return b"\ndata: " + json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"

    async def _next_line(self) -> str:
        if self._idle is None:
            return await self._lines.__anext__()
        try:
            return await asyncio.wait_for(self._lines.__anext__(), self._idle)
        except asyncio.TimeoutError:
            raise UpstreamFailure("idle") from None

    async def events(self) -> AsyncIterator[bytes]:
        """The stream's lines as they arrive, ``model`` rewritten and keys redacted; a stream cut
        before ``data: [DONE]`` ends with an error event. Closes the upstream at the end."""
        try:
            for line in self._head:
                yield self._rewrite(line)
            while not self._done:
                try:
                    line = await self._next_line()
                except StopAsyncIteration:
                    self.error = "truncated"
                    break
                except UpstreamFailure as failure:
                    self.error = failure.kind
                    break
                except openai.OpenAIError as exc:
                    self.error = _failure(exc).kind
                    break
                except Exception as exc:  # noqa: BLE001 - a broken connection ends the stream
                    self.error = type(exc).__name__
                    break
                yield self._rewrite(line)
            if self._done:  # nothing follows [DONE] but the blank line that ends its event
                yield b"\n"
            if self.error is not None:
                yield self._error_event()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Release the upstream connection (idempotent)."""
        with contextlib.suppress(Exception):
            await self._stack.aclose()


class UpstreamPool:
    """Every pool model's :class:`Upstream`, and failover down a ranking.

    Args:
        pool: the pool (names, endpoints, keys, timeouts).
        metrics: where upstream errors, failovers, answers and breaker states are counted.
        breaker_failures, breaker_cooldown: the circuit breaker of every new model.
        secrets: further keys to redact besides the pool's (the gateway's own key).
        previous: the pool this one replaces (a reload): a model of the same name, endpoint
            (``base_url``) and model id keeps its circuit breaker, and when its whole entry and key
            are unchanged its :class:`Upstream` (client and connections) too; models new to the pool
            start closed. ``previous`` itself is not changed.

    Attributes:
        redactor: hides every pool key and ``secrets`` in what the pool relays.
        header_values: pool model name -> its ``x-cascal-model`` header value, encoded when the pool
            is loaded, before any paid call (:func:`~cascal.serve.outbound.header_value`).
    """

    def __init__(
        self,
        pool: PoolConfig,
        metrics: GatewayMetrics,
        *,
        breaker_failures: int = 3,
        breaker_cooldown: float = 30.0,
        secrets: Sequence[Optional[str]] = (),
        previous: Optional["UpstreamPool"] = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.redactor = Redactor([*(m.api_key() for m in pool.models), *secrets])
        self.upstreams: dict[str, Upstream] = {}
        for m in pool.models:
            before = previous.upstreams.get(m.name) if previous is not None else None
            if before is not None and before.config == m and before.client.api_key == m.api_key():
                before.redactor = self.redactor
                self.upstreams[m.name] = before
            elif before is not None and (before.config.base_url, before.config.model) == (m.base_url, m.model):
                self.upstreams[m.name] = Upstream(m, before.breaker, self.redactor)
            else:
                self.upstreams[m.name] = Upstream(m, CircuitBreaker(breaker_failures, breaker_cooldown), self.redactor)
        self.header_values = {name: header_value(self.redactor.text(name)) for name in self.upstreams}
        for name, upstream in self.upstreams.items():
            metrics.breaker_open.labels(model=name).set(1 if upstream.breaker.state != "closed" else 0)

    def add_secrets(self, secrets: Sequence[Optional[str]]) -> None:
        """Redact ``secrets`` too (the gateway's own key), in this pool and every upstream."""
        self.redactor = Redactor([*(m.api_key() for m in self.pool.models), *secrets])
        for upstream in self.upstreams.values():
            upstream.redactor = self.redactor
        self.header_values = {name: header_value(self.redactor.text(name)) for name in self.upstreams}

    @property
    def names(self) -> list[str]:
        """Pool model names in pool order."""
        return list(self.upstreams)

    def candidates(self, ranking: Sequence[str]) -> list[str]:
        """``ranking`` without the models whose breaker is not closed (all of it when none is
        closed). A vote asks these; it never probes a half-open model."""
        healthy = [name for name in ranking if self.upstreams[name].breaker.state == "closed"]
        return healthy or list(ranking)

    def _failed(self, name: str, failure: UpstreamFailure) -> None:
        if failure.unsent:  # nothing reached the upstream: not its error, not its breaker's
            return
        self.metrics.upstream_errors.labels(model=name, kind=failure.kind).inc()
        if failure.retryable and self.upstreams[name].breaker.record_failure():
            self.metrics.breaker_open.labels(model=name).set(1)

    def _succeeded(self, name: str, started: float) -> None:
        self.upstreams[name].breaker.record_success()
        self.metrics.breaker_open.labels(model=name).set(0)
        self.metrics.upstream_latency.labels(model=name).observe(time.perf_counter() - started)
        self.metrics.answered.labels(model=name).inc()

    async def complete(self, ranking: Sequence[str], body: dict, max_tries: int) -> Forwarded:
        """The first reply down ``ranking`` (healthy models first, at most ``max_tries``).

        Raises:
            APIError: the upstream refused the request (its status), or no model answered (502).
        """
        name, data, attempts = await self._first_answer(ranking, max_tries, lambda upstream: upstream.complete(body))
        return Forwarded(data, name, attempts)

    async def stream(self, ranking: Sequence[str], body: dict, max_tries: int) -> OpenStream:
        """An open stream from the first model down ``ranking`` whose first event arrives."""
        _, opened, attempts = await self._first_answer(ranking, max_tries, lambda upstream: upstream.open_stream(body))
        opened.attempts = attempts
        return opened

    async def _first_answer(
        self, ranking: Sequence[str], max_tries: int, ask: Callable[[Upstream], Awaitable[T]]
    ) -> tuple[str, T, list[Attempt]]:
        """``ask`` the models down ``ranking`` until one answers; returns that model, its answer and
        every try. Closed models are asked; an open one is skipped; a half-open one is asked when
        this request claims its probe (else skipped), and a failed probe is not counted against
        ``max_tries``. When no model of ``ranking`` is closed, every one is asked in order (the
        probe claimed where free), each try counted. Failures feed the circuit breakers and the
        metrics; a failure that is not retryable stops the search."""
        attempts: list[Attempt] = []
        counted = 0
        any_closed = any(self.upstreams[name].breaker.state == "closed" for name in ranking)
        for name in ranking:
            if counted >= max_tries:
                break
            breaker = self.upstreams[name].breaker
            probe = breaker.try_probe()
            if not probe and any_closed and breaker.state != "closed":
                continue  # open, or half-open with another request's probe in flight
            if attempts:
                self.metrics.failovers.inc()
            started = time.perf_counter()
            try:
                answer = await ask(self.upstreams[name])
            except UpstreamFailure as failure:
                self._failed(name, failure)
                attempts.append(Attempt(name, failure.kind))
                if not failure.retryable:
                    raise self._refused(name, failure) from None
                counted += 0 if probe and any_closed else 1
                continue
            finally:
                if probe:  # a probe that ended without a verdict (refused, cancelled) frees the slot
                    breaker.release_probe()
            self._succeeded(name, started)
            attempts.append(Attempt(name))
            return name, answer, attempts
        raise self._exhausted(attempts)

    def _refused(self, name: str, failure: UpstreamFailure) -> APIError:
        if failure.unsent:
            reason = failure.kind.removeprefix("unsent_")
            message = f"the request to model {name!r} could not be built: its body cannot be encoded ({reason})"
            return APIError(400, message, code="invalid_request_body")
        detail = ""
        if isinstance(failure.body, dict):
            inner = failure.body.get("error", failure.body)
            if isinstance(inner, dict) and isinstance(inner.get("message"), str):
                # redacted before it is cut, so a key split by the cut cannot slip through
                detail = ": " + self.redactor.text(inner["message"])[:500]
        message = self.redactor.text(f"model {name!r} refused the request{detail}")
        return APIError(failure.status or 400, message, code="upstream_refused")

    def _exhausted(self, attempts: list[Attempt]) -> APIError:
        tried = "; ".join(f"{a.model}: {a.error}" for a in attempts) or "no model available"
        message = self.redactor.text(f"no pool model could answer ({tried})")
        return APIError(502, message, "upstream_error", code="upstream_unavailable")

    async def aclose(self) -> None:
        """Close every client."""
        for upstream in self.upstreams.values():
            with contextlib.suppress(Exception):
                await upstream.aclose()


async def unless_disconnected(receive: Callable[[], Awaitable[Mapping[str, Any]]], work: Awaitable[T]) -> T:
    """Await ``work`` unless the client leaves first (ASGI ``receive`` reports ``http.disconnect``;
    call it only once the request body was read): then ``work`` is cancelled, which closes its
    upstream connection so a reply nobody will read stops being generated (and paid for), and
    :class:`~cascal.serve.errors.APIError` 499 is raised.
    """
    task = asyncio.ensure_future(work)

    async def watch() -> None:
        while (await receive()).get("type") != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    if task.cancelled() or not task.done():
        raise APIError(499, "the client closed the request", code="client_closed_request")
    return task.result()
