"""The OpenAI wire format as the gateway needs it: error bodies, request checks, the text to embed.

Every refusal is an :class:`APIError` rendered as OpenAI's error JSON
``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping, Optional, Sequence

__all__ = [
    "APIError",
    "error_body",
    "parse_json",
    "check_messages",
    "cost_weight",
    "route_inputs",
    "query_text",
    "message_text",
]


class APIError(Exception):
    """A request the gateway refuses or cannot serve, with its HTTP status and OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        code: Optional[str] = None,
        param: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict:
        """The OpenAI-style error JSON."""
        return error_body(self.message, self.kind, code=self.code, param=self.param)


def error_body(message: str, kind: str, *, code: Optional[str] = None, param: Optional[str] = None) -> dict:
    """``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def parse_json(raw: bytes) -> dict:
    """The request body as a JSON object; 400 when it is not one."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the ``text`` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def check_messages(body: Mapping[str, Any]) -> list[dict]:
    """The ``messages`` of a chat request; 400 when missing or malformed."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(
            400, "messages: required, a non-empty list of chat messages", param="messages", code="missing_messages"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise APIError(400, f"messages[{i}]: each message needs a string role and a content", param="messages")
    return messages


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


#: Request body field and header carrying a per-request cost weight (docs/serve.md).
COST_WEIGHT_FIELD = "cascal_cost_weight"
COST_WEIGHT_HEADER = "x-cascal-cost-weight"


def cost_weight(body: dict, headers: Mapping[str, str]) -> Optional[float]:
    """The request's cost weight: the body field :data:`COST_WEIGHT_FIELD` (removed from ``body``, so
    it is never forwarded upstream), else the header :data:`COST_WEIGHT_HEADER`, else ``None`` (the
    router's own). Raises a 400 :class:`APIError` naming the field or header when it is not a
    finite number >= 0."""
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise APIError(400, f"{name}: must be a finite number >= 0, got {value!r}", param=name)
    return float(value)


def route_inputs(body: Mapping[str, Any], whole_conversation: bool = False) -> tuple[list[str], bool]:
    """The texts of a ``/v1/route`` request and whether it asked for a list.

    ``{"messages": [...]}`` routes one conversation as a chat request would; ``{"input": "text"}``
    one text; ``{"input": ["a", "b"]}`` several.
    """
    if "messages" in body:
        return [query_text(check_messages(body), whole_conversation)], False
    value = body.get("input")
    if isinstance(value, str):
        if not value.strip():
            raise APIError(400, "input: must be a non-empty string", param="input")
        return [value], False
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return list(value), True
    raise APIError(
        400,
        "give messages (a chat) or input (a non-empty string or list of strings)",
        param="input",
        code="missing_messages",
    )
