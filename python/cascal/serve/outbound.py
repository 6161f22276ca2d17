"""What leaves the gateway, made safe: secrets redacted and header values encoded.

The gateway holds every upstream key (pool.yaml ``api_key_env`` values) and its own key. An upstream
may echo a key back (a 400 whose message quotes the ``Authorization`` header, an error event in a
stream, a reply that repeats what it was sent). :class:`Redactor` is the one place that replaces
those keys with ``[redacted]``; the gateway applies it at every exit: error bodies, stream events,
reply bodies, response headers, the decision log and its error logs (:class:`RedactingFilter`).

:func:`header_value` makes any text a valid HTTP header value: pool model names may be any Unicode,
and an HTTP header carries only visible ASCII. The value is percent-encoded UTF-8 (RFC 3986): every
byte outside the unreserved characters and ``!$&'()*+,;=:@/`` becomes ``%XX``, so an ASCII name
without ``%`` or spaces is sent unchanged and ``urllib.parse.unquote`` gives the name back.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Optional
from urllib.parse import quote

__all__ = ["MASK", "RedactingFilter", "Redactor", "header_value"]

#: what a redacted secret becomes
MASK = "[redacted]"
#: secrets shorter than this are not redacted (they would mangle ordinary text and protect nothing)
MIN_SECRET_LENGTH = 6
#: the placeholder key sent to servers that need none (not a secret)
_NOT_SECRETS = frozenset({"EMPTY"})
#: characters left as they are in a header value besides RFC 3986's unreserved ones
_HEADER_SAFE = "!$&'()*+,;=:@/"


def header_value(text: str) -> str:
    """``text`` as an HTTP header value: percent-encoded UTF-8 (RFC 3986), visible ASCII only."""
    return quote(text, safe=_HEADER_SAFE)


class Redactor:
    """Replaces every given secret (and its JSON-escaped form) with :data:`MASK`.

    Args:
        secrets: the keys to hide; ``None``, the placeholder ``EMPTY`` and strings shorter than
            :data:`MIN_SECRET_LENGTH` are ignored.
    """

    def __init__(self, secrets: Iterable[Optional[str]] = ()) -> None:
        found = set()
        for secret in secrets:
            if not isinstance(secret, str) or secret in _NOT_SECRETS or len(secret) < MIN_SECRET_LENGTH:
                continue
            found.add(secret)
            found.add(json.dumps(secret)[1:-1])  # as it appears inside a JSON string
            found.add(json.dumps(secret, ensure_ascii=False)[1:-1])
        # longest first, so a key containing another key is replaced whole
        self._secrets = sorted(found, key=len, reverse=True)
        self._encoded = [s.encode("utf-8") for s in self._secrets]

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        """``text`` with every secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def bytes(self, data: bytes) -> bytes:
        """``data`` (UTF-8) with every secret replaced."""
        for secret in self._encoded:
            if secret in data:
                data = data.replace(secret, MASK.encode("ascii"))
        return data

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it (keys too) redacted."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts a record's message and traceback text (the record is kept)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logged as it is
            return True
        record.msg, record.args = self.redactor.text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.text(record.stack_info)
        return True
