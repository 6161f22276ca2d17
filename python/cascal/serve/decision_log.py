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

**Off the event loop.** :meth:`DecisionLog.write` only stamps the record with its time and id and
puts it on a bounded queue (``max_pending`` lines); a writer thread builds the line's fields,
serialises, redacts and appends them,
everything queued at once in one write, then flushes. When the queue is full the line is dropped,
never waited for (a handler must not stall on a slow disk) and never kept (memory stays bounded):
:attr:`DecisionLog.dropped` counts the dropped lines (and those a failed write lost), and the
gateway exports it as ``cascal_decision_log_dropped``. :meth:`DecisionLog.flush` waits until every
line written so far is in the file; :meth:`DecisionLog.close` flushes and stops the thread.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence, Union

from cascal.io.decision_embeddings import EmbeddingSidecar

if TYPE_CHECKING:
    from cascal.serve.routing import Decision

__all__ = ["DecisionLog", "DecisionRecord", "MAX_PENDING", "query_hash"]

#: lines queued for the writer thread, at most (beyond: dropped and counted)
MAX_PENDING = 8192

#: what the writer thread is handed to stop
_STOP = object()

_logger = logging.getLogger("cascal.serve.decision_log")


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
    """Appends decision records to ``path`` (created with its folder) from a writer thread
    (module docstring); thread-safe.

    Args:
        log_text: write the embedded text itself.
        embeddings: the sidecar that receives each routed query's embedding, or ``None``.
        max_pending: lines queued for the writer thread at most; a line beyond is dropped and counted.
        on_drop: called with the number of lines dropped, from the thread that dropped them.
    """

    def __init__(
        self,
        path: Union[str, Path],
        *,
        log_text: bool = False,
        embeddings: Optional[EmbeddingSidecar] = None,
        max_pending: int = MAX_PENDING,
        on_drop: Optional[Callable[[int], None]] = None,
    ) -> None:
        self.path = Path(path)
        self.log_text = log_text
        self.embeddings = embeddings
        self._token = secrets.token_hex(6)
        self._counter = itertools.count()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a character UTF-8 cannot encode is written as its JSON escape (\\udc00),
        # so a record never fails to be written and the line stays valid JSON
        self._file = open(self.path, "a", encoding="utf-8", errors="backslashreplace")
        self._lock = threading.Lock()
        self._queue: "queue.Queue[Any]" = queue.Queue(maxsize=max(1, int(max_pending)))
        self._closed = False
        #: lines dropped: the queue was full, or a write failed
        self.dropped = 0
        self.on_drop = on_drop
        #: applied to every line before it is written (the gateway hides its keys with it)
        self.redact: Callable[[str], str] = lambda line: line
        self._thread = threading.Thread(target=self._run, name="cascal-decision-log", daemon=True)
        self._thread.start()

    def write(self, record: DecisionRecord) -> None:
        """Queue ``record`` as one JSON line (see the module docstring for the fields and for a full
        queue), and add its embedding to the sidecar when there is one."""
        if self._closed:
            return
        line_id = f"{self._token}-{next(self._counter)}"
        try:  # the line's time and id now; its fields, JSON and redaction in the writer thread
            self._queue.put_nowait((record, time.time(), line_id))
        except queue.Full:
            self._count_dropped(1)
            return
        decision = record.decision
        if self.embeddings is not None and decision is not None and decision.embedding is not None:
            self.embeddings.add(line_id, decision.embedding)

    def _count_dropped(self, n: int) -> None:
        with self._lock:
            self.dropped += n
        if self.on_drop is not None:
            self.on_drop(n)

    def _run(self) -> None:
        """The writer thread: take every queued line, write them in one call, flush; until stopped."""
        stop = False
        while not stop:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is _STOP for item in batch)
            lines = [
                self.redact(json.dumps(self.fields(*item), ensure_ascii=False)) + "\n"
                for item in batch
                if item is not _STOP
            ]
            try:
                if lines:
                    self._file.write("".join(lines))
                self._file.flush()
            except (OSError, ValueError) as exc:  # a full disk, or the file closed under it
                self._count_dropped(len(lines))
                _logger.error("decision log %s: %d line(s) lost: %s", self.path, len(lines), exc)
            finally:
                for _ in batch:
                    self._queue.task_done()

    def flush(self) -> None:
        """Wait until every line written so far is in the file, and write the sidecar's buffered
        embeddings as a part (a reader of the log while the gateway runs sees all of it)."""
        if self._thread.is_alive():
            self._queue.join()
        if self.embeddings is not None:
            self.embeddings.flush()

    def fields(
        self, record: DecisionRecord, at: Optional[float] = None, line_id: Optional[str] = None
    ) -> dict[str, Any]:
        """The JSON object of ``record``'s line, timed ``at`` (Unix time; default now), with the id
        ``line_id`` (default the writer's next)."""
        when = datetime.datetime.fromtimestamp(time.time() if at is None else at, datetime.timezone.utc)
        out: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds"),
            "id": line_id if line_id is not None else f"{self._token}-{next(self._counter)}",
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

    def close(self) -> None:
        """Write every queued line, stop the writer thread, close the file and the sidecar (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)  # waits for room: the thread is draining the queue
        self._thread.join()
        self._file.close()
        if self.embeddings is not None:
            self.embeddings.close()
