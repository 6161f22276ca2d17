"""Async chat client for one pool model: openai.AsyncOpenAI, bounded concurrency, our own retries, cache.

:class:`ChatClient.complete` sends one chat prompt and returns a :class:`Completion`:

- a cached response is returned without any request;
- otherwise the request is retried with exponential backoff and jitter on HTTP 429 (honouring
  ``Retry-After``, capped), 5xx, timeouts, connection errors (a reset in the middle of the body too),
  and on any reply that cannot be read: not JSON, nested too deep to parse, of the wrong shape,
  without choices, a stream without a finish;
- every request has a total deadline (``ModelConfig.request_deadline``), streamed or not: ``timeout``
  only bounds silences, so a server trickling one byte a second is stopped by the deadline and the
  attempt retried like a timeout;
- a body larger than ``max_body_bytes`` (default :data:`MAX_BODY_BYTES`) is not read past that size:
  the attempt fails and is retried;
- usage numbers that are not token counts (negative, fractional, huge, NaN, strings) and impossible
  token log-probabilities (positive, infinite) are dropped with a :class:`ReplyWarning`; the reply
  itself is kept and cached;
- a successful reply is committed to the cache *before* it is returned;
- :meth:`ChatClient.stop` lets requests in flight finish (and be cached) but sends no new ones;
- when the retries are used up: an endpoint that cannot be reached (connection refused), that keeps
  rate-limiting, or that rejects the request (401, 404, 400 ...) raises :class:`EndpointError` naming
  the endpoint and the model; a reply that stays broken (5xx, malformed, empty) raises
  :class:`RequestFailed`, which callers record as an unparsable answer.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import math
import random
import re
import time
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping, Optional, Sequence

import openai

from cascal.errors import CascalError, EndpointError, InvalidParameterError, exception_chain
from cascal.llm.cache import MAX_TOKEN_COUNT, ReplyWarning, ResponseCache, cache_key, token_count
from cascal.llm.config import ModelConfig, RetryPolicy

Messages = Sequence[Mapping[str, Any]]

#: Largest response body read, in bytes (decoded, and as received). A chat reply of a few thousand
#: tokens with log-probabilities is well under 2 MiB, streamed or not; a larger body is a broken or
#: hostile server, and reading it whole could exhaust memory.
MAX_BODY_BYTES = 16 * 2**20

#: A token log-probability above 0 is impossible; servers computing in low precision may round a
#: certain token up by a hair, so values up to this are read as 0.
_LOGPROB_SLACK = 1e-4

_SURROGATE = re.compile("[\ud800-\udfff]")


def _http_library() -> ModuleType:
    """The HTTP library under the openai client: ``httpx`` (openai 1.x, 2.x) or ``httpx2`` (3.x)."""
    for cls in openai.DefaultAsyncHttpxClient.__mro__:
        root = cls.__module__.partition(".")[0]
        if root not in ("openai", "builtins"):
            return importlib.import_module(root)
    raise ImportError("cannot find the HTTP library of the openai client")  # pragma: no cover


_http = _http_library()


def _endpoint_error(model: ModelConfig, problem: str) -> EndpointError:
    """An :class:`EndpointError` whose message names the endpoint, the model and the problem."""
    return EndpointError(
        f"endpoint {model.base_url} (model {model.name!r}, id {model.model!r}): {problem}",
        model_name=model.name,
        base_url=model.base_url,
    )


class Stopped(CascalError, RuntimeError):
    """The client was stopped (:meth:`ChatClient.stop`) before this prompt's request was sent."""


class RequestFailed(CascalError, RuntimeError):
    """A prompt got no usable reply after every retry (server errors, malformed or empty replies).

    Unlike :class:`~cascal.errors.EndpointError` it concerns one prompt, not the endpoint: the
    pipeline stages record such a prompt as unanswered and go on.
    """


@dataclass(frozen=True)
class Completion:
    """A model's reply to one prompt.

    Attributes:
        text: the reply text ("" when the server sent no content).
        mean_logprob: mean token log-probability, NaN when the server returned none.
        prompt_tokens: prompt tokens reported by the server, or ``None``.
        completion_tokens: completion tokens reported by the server, or ``None``.
        cached: the reply came from the cache (no request was sent).
    """

    text: str
    mean_logprob: float
    prompt_tokens: Optional[int]
    completion_tokens: Optional[int]
    cached: bool = False


class _Transient(Exception):
    """One failed attempt worth retrying; ``kind`` says what went wrong."""

    def __init__(self, kind: str, detail: str, retry_after: Optional[float] = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.retry_after = retry_after


class _BodyTooLarge(Exception):
    """A response body went past the client's ``max_body_bytes``."""

    def __init__(self, limit: int, announced: Optional[int] = None) -> None:
        said = f" (Content-Length {announced})" if announced is not None else ""
        super().__init__(f"response body larger than {limit} bytes{said}")


class _CappedStream(_http.AsyncByteStream):  # type: ignore[name-defined]
    """A response body stream that raises :class:`_BodyTooLarge` once more than ``limit`` bytes
    arrived, so no body (error replies included, which the openai client reads itself) is read whole."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self._inner:
            seen += len(chunk)
            if seen > self._limit:
                raise _BodyTooLarge(self._limit)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _body_cap_hook(limit: int) -> Callable[[Any], Awaitable[None]]:
    """An HTTP response hook refusing an announced ``Content-Length`` above ``limit`` and capping the
    bytes read from the body at ``limit``."""

    async def cap(response: Any) -> None:
        announced = response.headers.get("content-length", "")
        if announced.strip().isdigit() and int(announced) > limit:
            raise _BodyTooLarge(limit, int(announced))
        response.stream = _CappedStream(response.stream, limit)

    return cap


class ChatClient:
    """Chat completions for one :class:`ModelConfig`, with retries, a concurrency bound and a cache.

    Args:
        model: the endpoint, model id and sampling parameters.
        retry: the retry policy.
        cache: where replies are stored before use; ``None`` disables caching.
        rng: jitter source (seed it for reproducible waits).
        sleep: the coroutine used to wait between attempts (tests may replace it).
        max_body_bytes: largest response body read (default :data:`MAX_BODY_BYTES`); a larger one
            fails the attempt, which is retried.
    """

    def __init__(
        self,
        model: ModelConfig,
        retry: Optional[RetryPolicy] = None,
        *,
        cache: Optional[ResponseCache] = None,
        rng: Optional[random.Random] = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 1:
            raise InvalidParameterError(f"max_body_bytes: must be an integer >= 1, got {max_body_bytes!r}")
        self.model = model
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self.max_body_bytes = max_body_bytes
        self._rng = rng or random.Random()
        self._sleep = sleep
        http_client = openai.DefaultAsyncHttpxClient(event_hooks={"response": [_body_cap_hook(max_body_bytes)]})
        self._openai = openai.AsyncOpenAI(
            base_url=model.base_url,
            api_key=model.api_key(),
            max_retries=0,
            timeout=model.timeout,
            http_client=http_client,
        )
        self._semaphore: Optional[asyncio.Semaphore] = None  # created inside the running loop
        #: Requests actually sent (cache hits excluded), for progress and tests.
        self.requests_sent = 0
        self._stopped = False

    # ------------------------------------------------------------------ public
    def key(self, messages: Messages, variant: int = 0) -> str:
        """The cache key of ``messages`` for this model (see :func:`cascal.llm.cache.cache_key`)."""
        return cache_key(self.model.name, self.model.model, messages, self.model.sampling_params(), variant)

    async def complete(self, messages: Messages, *, variant: int = 0) -> Completion:
        """The model's reply to ``messages`` (cached, or fetched with retries and then cached).

        Args:
            messages: chat messages (``role``/``content`` dicts).
            variant: 0 for the first ask; re-asks of the same prompt use 1, 2, ... so that each is
                cached separately.

        Raises:
            EndpointError: unreachable endpoint, rate limit past the retries, or a rejected request.
            RequestFailed: no usable reply after every retry.
        """
        key = self.key(messages, variant)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return Completion(hit.text, hit.mean_logprob, hit.prompt_tokens, hit.completion_tokens, cached=True)
        reply = await self._fetch_with_retries(messages)
        if self.cache is not None:
            request = {
                "name": self.model.name,
                "model": self.model.model,
                "base_url": self.model.base_url,
                "messages": [dict(m) for m in messages],
                "params": self.model.sampling_params(),
                "variant": variant,
            }
            self.cache.put(
                key,
                model=self.model.model,
                base_url=self.model.base_url,
                request=request,
                text=reply.text,
                mean_logprob=reply.mean_logprob,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens,
            )
        return reply

    def stop(self) -> None:
        """Send no further requests: prompts not yet sent raise :class:`Stopped`; requests already in
        flight finish and are cached (so nothing already paid for is thrown away)."""
        self._stopped = True

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self._openai.close()

    async def __aenter__(self) -> "ChatClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ retries
    async def _fetch_with_retries(self, messages: Messages) -> Completion:
        last: Optional[_Transient] = None
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.model.max_concurrency)
        for attempt in range(self.retry.max_attempts):
            try:
                async with self._semaphore:
                    if self._stopped:
                        raise Stopped(f"model {self.model.name!r}: client stopped before the request was sent")
                    self.requests_sent += 1
                    return await self._fetch_within_deadline(messages)
            except _Transient as exc:
                last = exc
            if attempt + 1 == self.retry.max_attempts:
                break
            if last.retry_after is not None:
                wait = self.retry.retry_after(last.retry_after)
            else:
                wait = self.retry.backoff(attempt, self._rng.uniform(-1.0, 1.0))
            await self._sleep(wait)
        assert last is not None
        attempts = self.retry.max_attempts
        if last.kind == "connect":
            raise _endpoint_error(self.model, f"unreachable after {attempts} attempt(s) ({last})")
        if last.kind == "rate_limit":
            raise _endpoint_error(self.model, f"still rate-limited (HTTP 429) after {attempts} attempt(s)")
        raise RequestFailed(
            f"model {self.model.name!r} at {self.model.base_url}: no usable reply after {attempts} attempt(s); last: {last}"
        )

    async def _fetch_within_deadline(self, messages: Messages) -> Completion:
        """:meth:`_fetch_once` bounded by ``request_deadline`` seconds in all (a deadline hit is a
        retryable failure, like a timeout)."""
        deadline = self.model.request_deadline
        try:
            return await asyncio.wait_for(self._fetch_once(messages), deadline)
        except asyncio.TimeoutError as exc:
            raise _Transient("deadline", f"the request took longer than its deadline of {deadline:g} s") from exc

    async def _fetch_once(self, messages: Messages) -> Completion:
        """One request; raises :class:`_Transient` for retryable failures, EndpointError for fatal ones."""
        params = self.model.sampling_params()
        try:
            if self.model.stream:
                return await self._fetch_stream(messages, params)
            return await self._fetch_plain(messages, params)
        except _BodyTooLarge as exc:
            raise _Transient("too_large", str(exc)) from exc
        except openai.APITimeoutError as exc:
            raise _Transient("timeout", f"no reply within {self.model.timeout:g} s") from exc
        except openai.APIConnectionError as exc:
            too_large = _cause_of_type(exc, _BodyTooLarge)
            if too_large is not None:
                raise _Transient("too_large", str(too_large)) from exc
            kind = "connect" if _is_connect_failure(exc) else "connection"
            raise _Transient(kind, _describe(exc)) from exc
        except openai.RateLimitError as exc:
            raise _Transient("rate_limit", "HTTP 429", retry_after=_retry_after_seconds(exc.response)) from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status >= 500 or status in (408, 409):
                raise _Transient("http_error", f"HTTP {status}") from exc
            raise _endpoint_error(self.model, f"request rejected with HTTP {status}: {_server_message(exc)}") from exc
        # the body is read here, outside the openai client: the HTTP library's own errors
        except _http.TimeoutException as exc:
            raise _Transient("timeout", f"the reply paused for more than {self.model.timeout:g} s") from exc
        except _http.RequestError as exc:
            raise _Transient("connection", f"{type(exc).__name__}: {exc}") from exc

    async def _fetch_plain(self, messages: Messages, params: dict[str, Any]) -> Completion:
        async with self._openai.chat.completions.with_streaming_response.create(
            model=self.model.model,
            messages=list(messages),  # type: ignore[arg-type]
            **params,
        ) as response:
            data = bytearray()
            async for piece in response.iter_bytes():
                data += piece
                if len(data) > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
        body = _parse_json(bytes(data), "response")
        return _completion_from_body(body, self.model)

    async def _fetch_stream(self, messages: Messages, params: dict[str, Any]) -> Completion:
        async with self._openai.chat.completions.with_streaming_response.create(  # type: ignore[call-overload]
            model=self.model.model,
            messages=list(messages),
            stream=True,
            stream_options={"include_usage": True},
            **params,
        ) as response:
            reader = _StreamReader(self.model)
            async for data in _sse_data(response.iter_bytes(), self.max_body_bytes):
                if data == b"[DONE]":
                    break
                reader.add(_parse_json(data, "stream event"))
        return reader.completion()


# ----------------------------------------------------------------------------- response parsing
def _parse_json(data: bytes, what: str) -> Any:
    """``data`` parsed as JSON; anything unreadable (bad UTF-8 or JSON, nesting too deep for the
    parser) is a :class:`_Transient` failure, never an exception of its own."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = "nested too deep to parse" if isinstance(exc, RecursionError) else f"not valid JSON ({exc})"
        raise _Transient("malformed", f"{what} is {problem}") from None


async def _sse_data(pieces: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """The ``data`` of each server-sent event read from ``pieces`` (multi-line data joined with
    newlines; comments and other fields skipped), reading at most ``limit`` bytes in all."""
    buffer = bytearray()
    data: list[bytes] = []
    seen = 0
    async for piece in pieces:
        seen += len(piece)
        if seen > limit:
            raise _BodyTooLarge(limit)
        buffer += piece
        if b"\n" not in piece:  # a long line grows in place: linear time, however it is cut up
            continue
        *lines, rest = bytes(buffer).split(b"\n")
        buffer = bytearray(rest)
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if data:
                    yield b"\n".join(data)
                    data = []
                continue
            name, _, value = line.partition(b":")
            if name == b"data":
                data.append(value[1:] if value.startswith(b" ") else value)
    last = bytes(buffer).rstrip(b"\r")
    if last.startswith(b"data:"):
        value = last[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield b"\n".join(data)


class _StreamReader:
    """Accumulates the chunks of a streamed chat completion, checking the shape of each."""

    def __init__(self, model: ModelConfig) -> None:
        self.model = model
        self.pieces: list[str] = []
        self.logprobs: list[Any] = []
        self.usage: Any = None
        self.saw_choice = False
        self.finished = False

    def add(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            raise _Transient("malformed", f"stream event is a JSON {type(chunk).__name__}, not an object")
        if chunk.get("error"):  # as the openai client reads it: a present, non-empty error
            raise _Transient("stream_error", f"the server reported an error mid-stream: {_short(chunk['error'])}")
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if choices is None:
            return
        if not isinstance(choices, list):
            raise _Transient("malformed", "stream chunk: choices is not a list")
        if not choices:
            return
        choice = choices[0]
        if not isinstance(choice, dict):
            raise _Transient("malformed", "stream chunk: choices[0] is not an object")
        self.saw_choice = True
        delta = choice.get("delta")
        if delta is not None:
            if not isinstance(delta, dict):
                raise _Transient("malformed", "stream chunk: choices[0].delta is not an object")
            content = delta.get("content")
            if content is not None and not isinstance(content, str):
                raise _Transient("malformed", "stream chunk: choices[0].delta.content is not a string")
            if content:
                self.pieces.append(content)
        self.logprobs.extend(_token_logprobs(choice.get("logprobs")))
        if choice.get("finish_reason") is not None:
            self.finished = True

    def completion(self) -> Completion:
        if not self.saw_choice:
            raise _Transient("empty", "stream carried no choices")
        if not self.finished:
            raise _Transient("truncated", "stream ended before a finish_reason")
        prompt_tokens, completion_tokens = _usage_counts(self.usage, self.model)
        text = _clean_text("".join(self.pieces))
        return Completion(text, _mean_logprob(self.logprobs, self.model), prompt_tokens, completion_tokens)


def _completion_from_body(body: Any, model: ModelConfig) -> Completion:
    """A :class:`Completion` from an OpenAI chat-completion JSON body; malformed -> :class:`_Transient`."""
    if not isinstance(body, dict):
        raise _Transient("malformed", f"expected a JSON object, got {type(body).__name__}")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise _Transient("empty", "reply has no choices")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise _Transient("malformed", "choices[0].message missing")
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise _Transient("malformed", "choices[0].message.content is not a string")
    mean = _mean_logprob(_token_logprobs(choice.get("logprobs")), model)
    prompt_tokens, completion_tokens = _usage_counts(body.get("usage"), model)
    return Completion(_clean_text(text), mean, prompt_tokens, completion_tokens)


def _token_logprobs(logprobs: Any) -> list[Any]:
    """The raw ``logprob`` values of a choice's ``logprobs.content`` list (empty when absent or odd)."""
    if not isinstance(logprobs, dict) or not isinstance(logprobs.get("content"), list):
        return []
    return [t.get("logprob") for t in logprobs["content"] if isinstance(t, dict)]


def _mean_logprob(values: list[Any], model: ModelConfig) -> float:
    """The mean of the usable token log-probabilities, NaN when none is.

    ``None`` (not reported) and ``-inf`` (an impossible token, as some servers send) are left out
    silently; anything else that is not a log-probability (a positive number, NaN, ``+inf``, a
    string) is left out with a :class:`ReplyWarning`, so that it cannot skew the confidence."""
    usable: list[float] = []
    bad: list[Any] = []
    for v in values:
        if v is None or (isinstance(v, float) and v == -math.inf):
            continue
        logprob = _as_logprob(v)
        if logprob is None:
            bad.append(v)
        else:
            usable.append(logprob)
    if bad:
        _warn(model, f"dropped {len(bad)} values that are not token log-probabilities (first: {_short(bad[0])})")
    if not usable:
        return math.nan
    n = len(usable)
    return float(sum(v / n for v in usable))  # divided first: no overflow for any finite values


def _usage_counts(usage: Any, model: ModelConfig) -> tuple[Optional[int], Optional[int]]:
    """``(prompt_tokens, completion_tokens)`` of a ``usage`` object; a value that is not a token count
    (see :func:`cascal.llm.cache.token_count`) becomes ``None`` with a :class:`ReplyWarning`."""
    if usage is None:
        return None, None
    if not isinstance(usage, dict):
        _warn(model, f"dropped usage {_short(usage)}: not an object")
        return None, None
    counts: list[Optional[int]] = []
    for name in ("prompt_tokens", "completion_tokens"):
        value = usage.get(name)
        count = token_count(value)
        if value is not None and count is None:
            _warn(model, f"dropped usage.{name} = {_short(value)}: not a token count in 0..{MAX_TOKEN_COUNT}")
        counts.append(count)
    return counts[0], counts[1]


def _clean_text(text: str) -> str:
    """``text`` with lone surrogates (valid JSON escapes, but not encodable text) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _warn(model: ModelConfig, problem: str) -> None:
    warnings.warn(f"model {model.name!r} at {model.base_url}: {problem}", ReplyWarning, stacklevel=3)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_logprob(value: Any) -> Optional[float]:
    """``value`` as a finite log-probability (at most 0, tiny positive rounding read as 0), or ``None``
    (a bool, a string, NaN, an infinity, a positive number, an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int) and not -(10**300) <= value <= 0:  # float() of a huge int overflows
        return None
    number = float(value)
    if not math.isfinite(number) or number > _LOGPROB_SLACK:
        return None
    return min(number, 0.0)


def _cause_of_type(exc: BaseException, kind: type) -> Optional[BaseException]:
    """The first exception of type ``kind`` in the cause/context chain of ``exc``, or ``None``."""
    return next((cause for cause in exception_chain(exc) if isinstance(cause, kind)), None)


def _retry_after_seconds(response: Any) -> Optional[float]:
    """Seconds from ``Retry-After`` (or ``retry-after-ms``) of an HTTP response, or ``None``."""
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000.0
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _is_connect_failure(exc: BaseException) -> bool:
    """True when the connection itself could not be opened (refused, DNS, unreachable host)."""
    connect_failures = ("ConnectError", "ConnectionRefusedError", "gaierror")
    return any(type(cause).__name__ in connect_failures for cause in exception_chain(exc))


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)


def _server_message(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text[:300]
    except Exception:  # noqa: BLE001 - best effort for an error message
        return str(exc)


__all__ = ["MAX_BODY_BYTES", "ChatClient", "Completion", "EndpointError", "ReplyWarning", "RequestFailed", "Stopped"]
