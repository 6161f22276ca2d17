"""The decision log: one JSON line per routed request, appended to a file.

Each line holds ``time`` (UTC, ISO 8601), ``endpoint``, ``router_sha256`` (the SHA-256 of the
router file the request was routed with, ``null`` when unknown), ``query_sha256`` (the first 16 hex
digits of the SHA-256 of the embedded text), ``text`` only when the gateway runs with ``--log-text``,
``ranking`` (model names, best first), ``model`` (the one that answered, ``null`` when none did),
``failovers``, ``status``, ``latency_ms`` and ``prompt_tokens`` / ``completion_tokens`` when the
upstream reported them, then the record's ``extra`` fields (``vote``, ``stream``, ``stream_error``).
Keys and request bodies are never written: the gateway sets :attr:`DecisionLog.redact` to its
redactor, which every line passes through. A :class:`DecisionRecord` is what a handler reports.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

__all__ = ["DecisionLog", "DecisionRecord", "query_hash"]


@dataclass(frozen=True)
class DecisionRecord:
    """One routed request as the decision log writes it.

    Attributes:
        endpoint: ``chat``, ``vote`` or ``route``.
        text: the embedded text (written as its hash, and as itself only with ``log_text``).
        ranking: pool model names, best first (a pool model asked by name: that model alone).
        model: the model that answered, ``None`` when none did (or none was asked).
        failovers: models tried before the one that answered.
        status: the HTTP status answered.
        latency_ms: time from the request's arrival at its handler to the record.
        usage: the upstream's ``usage`` object; its integer token counts are written.
        extra: further fields written as they are.
        router_sha256: the SHA-256 of the router file the request was served with.
    """

    endpoint: str
    text: str
    ranking: Sequence[str]
    model: Optional[str] = None
    failovers: int = 0
    status: int = 200
    latency_ms: float = 0.0
    usage: Optional[Mapping[str, Any]] = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    router_sha256: Optional[str] = None


def query_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text`` (UTF-8; a lone surrogate, which the gateway
    refuses before routing, is hashed as its ``surrogatepass`` bytes rather than failing the log)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class DecisionLog:
    """Appends decision records to ``path`` (created with its folder; line-buffered, thread-safe)."""

    def __init__(self, path: Union[str, Path], *, log_text: bool = False) -> None:
        self.path = Path(path)
        self.log_text = log_text
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a character UTF-8 cannot encode is written as its JSON escape (\\udc00),
        # so a record never fails to be written and the line stays valid JSON
        self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)
        self._lock = threading.Lock()
        #: applied to every line before it is written (the gateway hides its keys with it)
        self.redact: Callable[[str], str] = lambda line: line

    def write(self, record: DecisionRecord) -> None:
        """Append ``record`` as one JSON line (see the module docstring for the fields)."""
        line = self.redact(json.dumps(self.fields(record), ensure_ascii=False)) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)

    def fields(self, record: DecisionRecord) -> dict[str, Any]:
        """The JSON object of ``record``'s line, timed now."""
        out: dict[str, Any] = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "endpoint": record.endpoint,
            "router_sha256": record.router_sha256,
            "query_sha256": query_hash(record.text),
        }
        if self.log_text:
            out["text"] = record.text
        out.update(
            ranking=list(record.ranking),
            model=record.model,
            failovers=record.failovers,
            status=record.status,
            latency_ms=round(record.latency_ms, 3),
        )
        usage = record.usage if isinstance(record.usage, Mapping) else {}
        for key in ("prompt_tokens", "completion_tokens"):
            value = usage.get(key)
            if isinstance(value, int):
                out[key] = value
        out.update(record.extra)
        return out

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        with self._lock:
            self._file.close()
