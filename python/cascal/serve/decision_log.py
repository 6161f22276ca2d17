"""The decision log: one JSON line per routed request, appended to a file.

Each line holds ``time`` (UTC, ISO 8601), ``endpoint``, ``query_sha256`` (the first 16 hex digits of
the SHA-256 of the embedded text), ``text`` only when the gateway runs with ``--log-text``,
``ranking`` (model names, best first), ``model`` (the one that answered, ``null`` when none did),
``failovers``, ``status``, ``latency_ms`` and ``prompt_tokens`` / ``completion_tokens`` when the
upstream reported them. Keys and request bodies are never written.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = ["DecisionLog", "query_hash"]


def query_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class DecisionLog:
    """Appends decision records to ``path`` (created with its folder; line-buffered, thread-safe)."""

    def __init__(self, path: Union[str, Path], *, log_text: bool = False) -> None:
        self.path = Path(path)
        self.log_text = log_text
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def write(
        self,
        *,
        endpoint: str,
        text: str,
        ranking: Sequence[str],
        model: Optional[str],
        failovers: int = 0,
        status: int = 200,
        latency_ms: float = 0.0,
        usage: Optional[dict[str, Any]] = None,
        extra: Optional[dict[str, Any]] = None,
    ) -> None:
        """Append one record (see the module docstring for the fields)."""
        record: dict[str, Any] = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "endpoint": endpoint,
            "query_sha256": query_hash(text),
        }
        if self.log_text:
            record["text"] = text
        record.update(
            ranking=list(ranking), model=model, failovers=failovers, status=status, latency_ms=round(latency_ms, 3)
        )
        for key in ("prompt_tokens", "completion_tokens"):
            value = (usage or {}).get(key)
            if isinstance(value, int):
                record[key] = value
        record.update(extra or {})
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock:
            if not self._file.closed:
                self._file.write(line)

    def close(self) -> None:
        """Flush and close the file (idempotent)."""
        with self._lock:
            self._file.close()
