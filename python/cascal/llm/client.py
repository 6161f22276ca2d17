"""Async chat client for one pool model: openai.AsyncOpenAI, bounded concurrency, our own retries, cache.

:class:`ChatClient.complete` sends one chat prompt and returns a :class:`Completion`:

- a cached response is returned without any request;
- otherwise the request is retried with exponential backoff and jitter on HTTP 429 (honouring
  ``Retry-After``, capped), 5xx, timeouts, connection errors, malformed JSON and empty choices;
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
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence

import openai

from cascal.errors import CascalError, EndpointError
from cascal.llm.cache import ResponseCache, cache_key
from cascal.llm.config import ModelConfig, RetryPolicy

Messages = Sequence[Mapping[str, Any]]


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


class ChatClient:
    """Chat completions for one :class:`ModelConfig`, with retries, a concurrency bound and a cache.

    Args:
        model: the endpoint, model id and sampling parameters.
        retry: the retry policy.
        cache: where replies are stored before use; ``None`` disables caching.
        rng: jitter source (seed it for reproducible waits).
        sleep: the coroutine used to wait between attempts (tests may replace it).
    """

    def __init__(
        self,
        model: ModelConfig,
        retry: Optional[RetryPolicy] = None,
        *,
        cache: Optional[ResponseCache] = None,
        rng: Optional[random.Random] = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.model = model
        self.retry = retry or RetryPolicy()
        self.cache = cache
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._openai = openai.AsyncOpenAI(
            base_url=model.base_url, api_key=model.api_key(), max_retries=0, timeout=model.timeout
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
                    return await self._fetch_once(messages)
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
        raise RequestFailed(f"model {self.model.name!r} at {self.model.base_url}: no usable reply after {attempts} attempt(s); last: {last}")

    async def _fetch_once(self, messages: Messages) -> Completion:
        """One request; raises :class:`_Transient` for retryable failures, EndpointError for fatal ones."""
        params = self.model.sampling_params()
        try:
            if self.model.stream:
                return await self._fetch_stream(messages, params)
            return await self._fetch_plain(messages, params)
        except openai.APITimeoutError as exc:
            raise _Transient("timeout", f"no reply within {self.model.timeout:g} s") from exc
        except openai.APIConnectionError as exc:
            kind = "connect" if _is_connect_failure(exc) else "connection"
            raise _Transient(kind, _describe(exc)) from exc
        except openai.RateLimitError as exc:
            raise _Transient("rate_limit", "HTTP 429", retry_after=_retry_after_seconds(exc.response)) from exc
        except openai.APIStatusError as exc:
            status = exc.status_code
            if status >= 500 or status in (408, 409):
                raise _Transient("http_error", f"HTTP {status}") from exc
            raise _endpoint_error(self.model, f"request rejected with HTTP {status}: {_server_message(exc)}") from exc
        except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
            raise _Transient("malformed", f"response is not valid JSON ({exc})") from exc

    async def _fetch_plain(self, messages: Messages, params: dict[str, Any]) -> Completion:
        raw = await self._openai.chat.completions.with_raw_response.create(
            model=self.model.model, messages=list(messages), **params  # type: ignore[arg-type]
        )
        try:
            body = json.loads(raw.http_response.text)
        except ValueError as exc:
            raise _Transient("malformed", f"response is not valid JSON ({exc})") from exc
        return _completion_from_body(body)

    async def _fetch_stream(self, messages: Messages, params: dict[str, Any]) -> Completion:
        stream = await self._openai.chat.completions.create(  # type: ignore[call-overload]
            model=self.model.model,
            messages=list(messages),
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )
        pieces: list[str] = []
        logprobs: list[float] = []
        prompt_tokens = completion_tokens = None
        saw_choice = finished = False
        async for chunk in stream:
            if chunk.usage is not None:
                prompt_tokens = chunk.usage.prompt_tokens
                completion_tokens = chunk.usage.completion_tokens
            if not chunk.choices:
                continue
            saw_choice = True
            choice = chunk.choices[0]
            if choice.delta is not None and choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.logprobs is not None and choice.logprobs.content:
                logprobs.extend(float(t.logprob) for t in choice.logprobs.content if _is_finite_number(t.logprob))
            if choice.finish_reason is not None:
                finished = True
        if not saw_choice:
            raise _Transient("empty", "stream carried no choices")
        if not finished:
            raise _Transient("truncated", "stream ended before a finish_reason")
        mean = float(sum(logprobs) / len(logprobs)) if logprobs else math.nan
        return Completion("".join(pieces), mean, prompt_tokens, completion_tokens)


# ----------------------------------------------------------------------------- response parsing
def _completion_from_body(body: Any) -> Completion:
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
    mean = math.nan
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        raw: list[Any] = [t.get("logprob") for t in logprobs["content"] if isinstance(t, dict)]
        values = [float(v) for v in raw if _is_finite_number(v)]
        if values:
            mean = float(sum(values) / len(values))
    usage = body.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return Completion(text, mean, _int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens")))


def _is_finite_number(value: Any) -> bool:
    """A real, finite number (servers sometimes send -inf or -9999 for impossible tokens; -inf is dropped)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_or_none(value: Any) -> Optional[int]:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


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
    seen = 0
    cause: Optional[BaseException] = exc
    while cause is not None and seen < 10:
        if type(cause).__name__ in ("ConnectError", "ConnectionRefusedError", "gaierror"):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)


def _server_message(exc: openai.APIStatusError) -> str:
    try:
        return exc.response.text[:300]
    except Exception:  # noqa: BLE001 - best effort for an error message
        return str(exc)


__all__ = ["ChatClient", "Completion", "EndpointError", "RequestFailed", "Stopped"]
