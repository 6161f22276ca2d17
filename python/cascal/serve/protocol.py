"""Request bodies decoded once: :func:`parse_chat` and :func:`parse_route` turn the raw bytes of a
request into a frozen :class:`ChatRequest` / :class:`RouteRequest`, or refuse it with a 4xx
:class:`~cascal.serve.errors.APIError` in OpenAI's error form.

Every check of a body lives here, in the order a client meets them: strict JSON (no ``NaN`` or
``Infinity``), nested at most :data:`MAX_DEPTH` levels, no lone UTF-16 surrogate in any string or
key (the body is forwarded upstream, embedded and hashed as UTF-8, which cannot encode one), a JSON
object, ``messages``, ``model``, the ``cascal-vote-K`` size, ``stream`` (a boolean), the text to
route on, the cost weight, and streaming (not with a vote). The handlers work on the parsed object
only, never on the JSON. Fields the gateway does not read itself (``n``, ``max_tokens``,
``stream_options``...) are forwarded as sent: the upstream judges them.

Plain dataclasses rather than a validation library's models: the refusals (status, message,
``param``, ``code``) are part of the gateway's contract, and the chat body is forwarded upstream as
the client sent it, unknown fields included, so it is kept as the dict it came as.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from cascal.serve.errors import APIError
from cascal.serve.settings import ROUTED_MODEL, VOTE_PREFIX, GatewaySettings

__all__ = [
    "COST_WEIGHT_FIELD",
    "MAX_DEPTH",
    "COST_WEIGHT_HEADER",
    "ChatRequest",
    "RouteRequest",
    "message_text",
    "parse_chat",
    "parse_json",
    "parse_route",
    "query_text",
    "vote_size",
]

#: Request body field and header carrying a per-request cost weight (docs/serve.md).
COST_WEIGHT_FIELD = "cascal_cost_weight"
COST_WEIGHT_HEADER = "x-cascal-cost-weight"

#: deepest nesting of arrays and objects a body may have (OpenAI bodies, tool schemas included,
#: stay far below; deeper JSON could exhaust the recursion of the decoder or of a later encoder)
MAX_DEPTH = 64

_VOTE = re.compile(rf"^{re.escape(VOTE_PREFIX)}(?:-([0-9]+))?$")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ChatRequest:
    """A checked ``POST /v1/chat/completions`` body.

    Attributes:
        body: the body to forward upstream: as sent, without :data:`COST_WEIGHT_FIELD`.
        model: the model asked for: ``cascal``, ``cascal-vote[-K]`` or a pool model's name.
        messages: the chat messages (each a dict with a string ``role`` and a ``content``).
        stream: whether the client asked for server-sent events.
        routed: whether the gateway routes (``cascal`` or a vote); ``False`` for a pool model by name.
        text: what routing embeds (:func:`query_text`); ``""`` when not routed.
        cost_weight: the request's cost weight (``None`` = the router's own).
        vote: K of ``cascal-vote-K``, ``None`` for another model.
    """

    body: dict
    model: str
    messages: list
    stream: bool
    routed: bool
    text: str = ""
    cost_weight: Optional[float] = None
    vote: Optional[int] = None


@dataclass(frozen=True)
class RouteRequest:
    """A checked ``POST /v1/route`` body: the texts to route, whether the client sent a list (and
    gets a list back), and the cost weight (``None`` = the router's own)."""

    texts: list
    many: bool
    cost_weight: Optional[float] = None


def parse_chat(
    raw: bytes, headers: Mapping[str, str], *, settings: GatewaySettings, pool: Sequence[str], priced: bool
) -> ChatRequest:
    """Decode and check a chat request body.

    Args:
        raw: the request body.
        headers: the request headers (the cost weight may come as :data:`COST_WEIGHT_HEADER`).
        settings: the gateway's settings (``top_k`` is a bare vote's K; ``whole_conversation``).
        pool: the pool's model names.
        priced: whether the router carries expected costs (a cost weight above 0 needs them).

    Raises:
        APIError: 400 for a body that is not a JSON object (or nested too deeply, or with a lone
            surrogate: :func:`parse_json`), missing or malformed ``messages`` or ``model``, a vote
            K outside the pool, a ``stream`` that is not a boolean, no text to route on, a bad cost
            weight or a streamed vote; 404 for an unknown model.
    """
    body = parse_json(raw)
    messages = _messages(body)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "model: required string", param="model")
    vote = vote_size(model, settings.top_k, len(pool))
    stream = body.get("stream")
    if stream is None:
        stream = False
    elif not isinstance(stream, bool):
        raise APIError(400, f"stream: must be a boolean, got {_shown(stream)}", param="stream")
    if model in pool:  # a pool model by name: no routing
        body.pop(COST_WEIGHT_FIELD, None)
        return ChatRequest(body, model, messages, stream, routed=False)
    if model != ROUTED_MODEL and vote is None:
        raise APIError(
            404,
            f"model {_shown(model, 100)} not found: ask for {ROUTED_MODEL!r}, 'cascal-vote-K' or a pool model ({', '.join(pool)})",
            code="model_not_found",
            param="model",
        )
    text = query_text(messages, settings.whole_conversation)
    weight = _cost_weight(body, headers, priced)
    if vote is not None and stream:
        raise APIError(400, "stream: not supported with cascal-vote (the vote needs whole replies)", param="stream")
    return ChatRequest(body, model, messages, stream, routed=True, text=text, cost_weight=weight, vote=vote)


def parse_route(raw: bytes, headers: Mapping[str, str], *, settings: GatewaySettings, priced: bool) -> RouteRequest:
    """Decode and check a ``/v1/route`` body.

    ``{"messages": [...]}`` routes one conversation as a chat request would; ``{"input": "text"}``
    one text; ``{"input": ["a", "b"]}`` several.

    Raises:
        APIError: 400 for a body that is not a JSON object, malformed ``messages``, no text or an
            empty ``input``, more than ``settings.max_route_inputs`` texts, or a bad cost weight.
    """
    body = parse_json(raw)
    if "messages" in body:
        texts, many = [query_text(_messages(body), settings.whole_conversation)], False
    else:
        value = body.get("input")
        if isinstance(value, str):
            if not value.strip():
                raise APIError(400, "input: must be a non-empty string", param="input")
            texts, many = [value], False
        elif isinstance(value, list) and len(value) > settings.max_route_inputs:
            raise APIError(
                400,
                f"input: at most {settings.max_route_inputs} texts per request (max_route_inputs), got {len(value)}",
                param="input",
                code="too_many_inputs",
            )
        elif isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
            texts, many = list(value), True
        else:
            raise APIError(
                400,
                "give messages (a chat) or input (a non-empty string or list of strings)",
                param="input",
                code="missing_messages",
            )
    return RouteRequest(texts, many, _cost_weight(body, headers, priced))


def parse_json(raw: bytes) -> dict:
    """The request body as a JSON object; 400 when it is not one.

    Refused with 400 as well: ``NaN``/``Infinity`` (not JSON, though Python's decoder takes them),
    nesting deeper than :data:`MAX_DEPTH`, and a lone UTF-16 surrogate (``"\\udc00"``) in any string
    or key, named by its place (``messages[0].content``): UTF-8 cannot encode one, so such a body
    could be neither embedded, hashed for the decision log, nor forwarded upstream.
    """
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise APIError(400, f"the request body is nested deeper than {MAX_DEPTH} levels", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    _check_strings(body)
    return body


def _refuse_constant(name: str) -> Any:
    """``parse_constant`` of :func:`json.loads`: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON."""
    raise APIError(400, f"the request body is not valid JSON ({name} is not a JSON number)", code="invalid_json")


def _check_strings(body: dict) -> None:
    """400 for nesting deeper than :data:`MAX_DEPTH` or a lone surrogate in a string or key of
    ``body``, naming where (iterative: no recursion however the body is shaped)."""
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                _refuse_surrogate(where)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise APIError(400, f"the request body is nested deeper than {MAX_DEPTH} levels", code="invalid_json")
            if isinstance(value, dict):
                for key, item in value.items():
                    if _SURROGATE.search(key):
                        _refuse_surrogate(f"{where}.{key!a}" if where else ascii(key))
                    stack.append((item, f"{where}.{key}" if where else key, depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))


def _refuse_surrogate(where: str) -> None:
    """400: a lone surrogate at ``where``."""
    raise APIError(
        400,
        f"{where}: contains a lone UTF-16 surrogate (such as \\udc00), which is not valid Unicode text",
        param=where,
        code="invalid_text",
    )


def _shown(value: Any, limit: int = 40) -> str:
    """``value`` for an error message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _messages(body: Mapping[str, Any]) -> list:
    """The ``messages`` of a request; 400 when missing or malformed."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(
            400, "messages: required, a non-empty list of chat messages", param="messages", code="missing_messages"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise APIError(400, f"messages[{i}]: each message needs a string role and a content", param="messages")
    return messages


def vote_size(model: str, default: int, pool_size: int) -> Optional[int]:
    """K of a ``cascal-vote[-K]`` model name (``default`` without a number, capped at the pool),
    ``None`` for another name; 400 when K is outside ``1..pool_size``."""
    match = _VOTE.match(model)
    if match is None:
        return None
    digits = match.group(1)
    if digits and len(digits.lstrip("0")) > 6:  # more models than any pool; int() of 5,000 digits fails
        raise APIError(400, f"model: {_shown(model)} asks more models than the pool has ({pool_size})", param="model")
    k = int(digits.lstrip("0") or "0") if digits else min(default, pool_size)
    if not 1 <= k <= pool_size:
        raise APIError(400, f"model: {_shown(model)} asks {k} models; the pool has {pool_size}", param="model")
    return k


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def query_text(messages: Sequence[Mapping[str, Any]], whole_conversation: bool = False) -> str:
    """What the gateway embeds: the last user message's text, or with ``whole_conversation`` every
    message's text joined by newlines. 400 when that text is empty."""
    if whole_conversation:
        text = "\n".join(message_text(m.get("content")) for m in messages)
    else:
        users = [m for m in messages if m.get("role") == "user"]
        text = message_text(users[-1].get("content")) if users else ""
    if not text.strip():
        what = "the conversation" if whole_conversation else "the last user message"
        raise APIError(400, f"messages: {what} has no text to route on", param="messages")
    return text


def _cost_weight(body: dict, headers: Mapping[str, str], priced: bool) -> Optional[float]:
    """The request's cost weight: the body field :data:`COST_WEIGHT_FIELD` (removed from ``body``, so
    it is never forwarded upstream), else the header :data:`COST_WEIGHT_HEADER`, else ``None`` (the
    router's own). 400 naming the field or header when it is not a finite number >= 0, or is above
    0 for a router without expected costs."""
    if COST_WEIGHT_FIELD in body:
        value, name = body.pop(COST_WEIGHT_FIELD), COST_WEIGHT_FIELD
    elif COST_WEIGHT_HEADER in headers:
        raw = headers[COST_WEIGHT_HEADER]
        name = COST_WEIGHT_HEADER
        try:
            value = float(raw)
        except ValueError:
            value = raw
    else:
        return None
    weight = _finite(value)
    if weight is None or weight < 0:
        raise APIError(400, f"{name}: must be a finite number >= 0, got {_shown(value)}", param=name)
    if weight and not priced:
        raise APIError(400, f"{name}: the router has no expected costs (train it with --prices)", param=name)
    return weight


def _finite(value: Any) -> Optional[float]:
    """``value`` as a finite float; ``None`` for a bool, a non-number, or a number that is not finite
    or too large for a float (a JSON integer may have thousands of digits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
