"""The decision log: one JSON line per routed request, appended to a file.

Each line holds ``time`` (UTC, ISO 8601), ``id`` (unique per line: a random token of the log
writer and a counter), ``endpoint``, ``router_sha256`` (the SHA-256 of the router file the request
was routed with, ``null`` when unknown), ``query_sha256`` (the first 16 hex digits of the SHA-256 of the
embedded text), ``text`` only when the gateway runs with ``--log-text``, ``ranking`` (model names,
best first), ``model`` (the one that answered, ``null`` when none did), ``failovers``, ``status``,
``latency_ms`` and ``prompt_tokens`` / ``completion_tokens`` when the upstream reported them.

A routed request (not a pool model asked by name) adds what a coverage analysis reads
(``cascal coverage``): ``subject`` (the nearest, most weighted subject), ``subject_weight`` (its
weight in the query's subject mixture; 1 under hard assignment), ``niche`` (the index of the
nearest niche centroid among that subject's niches), ``nearest_distance`` (the cosine distance to
it) and ``fallback_weight`` (the share of the ranking that came from the global ranking: the
router's fallback blend ``alpha``, 0 near a niche, 1 far from all).

Then come the record's ``extra`` fields (``vote``, ``stream``, ``stream_error``). With
``embeddings`` (``--log-embeddings``) the query's embedding goes to the sidecar folder under the
line's ``id`` (:mod:`cascal.io.decision_embeddings`), never the text. Keys and request bodies are
never written: the gateway sets :attr:`DecisionLog.redact` to its redactor, which every line passes
through. A :class:`DecisionRecord` is what a handler reports.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

from cascal.io.decision_embeddings import EmbeddingSidecar

if TYPE_CHECKING:
    from cascal.serve.routing import Decision

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
        decision: the routing decision, when the request was routed (its subject, niche,
            distance, fallback weight and embedding are logged).
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
    decision: Optional["Decision"] = None


def query_hash(text: str) -> str:
    """First 16 hex digits of the SHA-256 of ``text`` (UTF-8; a lone surrogate, which the gateway
    refuses before routing, is hashed as its ``surrogatepass`` bytes rather than failing the log)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class DecisionLog:
    """Appends decision records to ``path`` (created with its folder; line-buffered, thread-safe).

    Args:
        log_text: write the embedded text itself.
        embeddings: the sidecar that receives each routed query's embedding, or ``None``.
    """

    def __init__(
        self, path: Union[str, Path], *, log_text: bool = False, embeddings: Optional[EmbeddingSidecar] = None
    ) -> None:
        self.path = Path(path)
        self.log_text = log_text
        self.embeddings = embeddings
        self._token = secrets.token_hex(6)
        self._counter = itertools.count()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a character UTF-8 cannot encode is written as its JSON escape (\\udc00),
        # so a record never fails to be written and the line stays valid JSON
        self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace", buffering=1)
        self._lock = threading.Lock()
        #: applied to every line before it is written (the gateway hides its keys with it)
        self.redact: Callable[[str], str] = lambda line: line

    def write(self, record: DecisionRecord) -> None:
        """Append ``record`` as one JSON line (see the module docstring for the fields), and its
        embedding to the sidecar when there is one."""
        out = self.fields(record)
        line = self.redact(json.dumps(out, ensure_ascii=False)) + "\n"
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line)
        decision = record.decision
        if self.embeddings is not None and decision is not None and decision.embedding is not None:
            self.embeddings.add(out["id"], decision.embedding)

    def fields(self, record: DecisionRecord) -> dict[str, Any]:
        """The JSON object of ``record``'s line, timed now."""
        out: dict[str, Any] = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "id": f"{self._token}-{next(self._counter)}",
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
        d = record.decision
        if d is not None:
            out.update(
                subject=d.subject,
                subject_weight=round(d.subject_weight, 6),
                niche=d.niche,
                nearest_distance=round(d.nearest_distance, 6),
                fallback_weight=round(d.alpha, 6),
            )
        out.update(record.extra)
        return out

    def flush(self) -> None:
        """Write out every line recorded so far, and the sidecar's buffered embeddings as a part
        (a reader of the log while the gateway runs sees all of it)."""
        with self._lock:
            if not self._file.closed:
                self._file.flush()
        if self.embeddings is not None:
            self.embeddings.flush()

    def close(self) -> None:
        """Flush and close the file and the sidecar (idempotent)."""
        with self._lock:
            self._file.close()
        if self.embeddings is not None:
            self.embeddings.close()
