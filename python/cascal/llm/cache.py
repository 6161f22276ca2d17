"""On-disk response cache: SQLite in WAL mode, one row per paid LLM response.

A response is written and committed *before* the caller uses it, so a run killed at any moment and
started again never pays twice for a prompt it already got an answer to, and loses none.

The key is :func:`cache_key`: sha256 over the pool member's name, the model id, the prompt messages,
the sampling parameters and a ``variant`` number (0 for the first ask, 1, 2, ... for re-asks after an
unparsable reply, so each re-ask is cached on its own and a resumed run replays the same sequence).
The endpoint URL is deliberately *not* part of the key: a local server restarted on another port (or
a model moved to another host) keeps its cached replies. Two members that share a model id at
different endpoints never collide because member names are unique within a pool.

Only the raw reply is stored, never the option extracted from it: callers extract it again on every
use, so a better extractor re-reads the cached replies without paying for them again.

Token counts are stored only when they are counts (:func:`token_count`): a server's absurd ``usage``
number (negative, fractional, beyond :data:`MAX_TOKEN_COUNT`, NaN, a string) is stored as ``NULL``
with a :class:`ReplyWarning`, so that it can neither stop the reply from being cached (SQLite refuses
integers beyond 64 bits) nor reach the cost columns; the same holds for rows read back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

from cascal.errors import ClosedError, DataError, InvalidParameterError, ReplyWarning

PathLike = Union[str, "os.PathLike[str]"]

#: The largest token count believed: no model reads or writes a billion tokens in one request.
MAX_TOKEN_COUNT = 10**9


def token_count(value: Any) -> Optional[int]:
    """``value`` as a token count, or ``None`` when it is not one: an integer (or a float with an
    integral value) in ``0..MAX_TOKEN_COUNT``; booleans, strings, NaN, fractions and anything
    negative or larger are not."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_TOKEN_COUNT else None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and 0 <= value <= MAX_TOKEN_COUNT:
        return int(value)
    return None


def _stored_count(value: Any, what: str, where: str) -> Optional[int]:
    """:func:`token_count` of ``value``, warning when a value that was there is dropped."""
    count = token_count(value)
    if value is not None and count is None:
        message = f"{where}: {what} {value!r:.60} is not a token count; stored as unknown"
        warnings.warn(message, ReplyWarning, stacklevel=3)
    return count


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    base_url TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    mean_logprob REAL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    created REAL NOT NULL
)
"""


@dataclass(frozen=True)
class CachedResponse:
    """One stored response.

    Attributes:
        text: the reply text.
        mean_logprob: mean token log-probability, NaN when the server returned none.
        prompt_tokens: prompt tokens reported by the server (``None`` if not reported).
        completion_tokens: completion tokens reported by the server (``None`` if not reported).
        created: unix time the response was stored.
    """

    text: str
    mean_logprob: float
    prompt_tokens: Optional[int]
    completion_tokens: Optional[int]
    created: float


def cache_key(
    name: str,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    variant: int = 0,
) -> str:
    """The hex sha256 identifying one request: member name, model id, messages, sampling params, variant."""
    payload = {
        "name": name,
        "model": model,
        "messages": [dict(m) for m in messages],
        "params": dict(params),
        "variant": int(variant),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A SQLite response cache, safe to share between the tasks of one event loop and between threads.

    One connection per cache object, guarded by a lock; every :meth:`put` commits before returning.
    Several processes may open the same file (WAL mode); the first committed response for a key wins.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidParameterError(f"cache path {self.path}: is a directory, expected a file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn: Optional[sqlite3.Connection] = sqlite3.connect(
                str(self.path), timeout=30.0, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives any process crash (SIGKILL included); only an OS crash or
            # power loss may drop the last transactions.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"cache path {self.path}: not a usable SQLite cache ({exc})") from exc

    # ------------------------------------------------------------------ access
    def get(self, key: str) -> Optional[CachedResponse]:
        """The stored response for ``key``, or ``None``."""
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT text, mean_logprob, prompt_tokens, completion_tokens, created FROM responses WHERE key = ?",
                    (key,),
                )
                .fetchone()
            )
        if row is None:
            return None
        text, lp, pt, ct, created = row
        where = f"cache {self.path}, key {key[:12]}"
        lp = float(lp) if isinstance(lp, (int, float)) and math.isfinite(lp) else math.nan
        pt, ct = _stored_count(pt, "prompt_tokens", where), _stored_count(ct, "completion_tokens", where)
        return CachedResponse(text, lp, pt, ct, float(created))

    def put(
        self,
        key: str,
        *,
        model: str,
        base_url: str,
        request: Mapping[str, Any],
        text: str,
        mean_logprob: float,
        prompt_tokens: Optional[int],
        completion_tokens: Optional[int],
    ) -> CachedResponse:
        """Store a response and commit; returns what is stored (an earlier row for ``key`` is kept).

        A token count that is not one (:func:`token_count`) is stored as ``NULL`` with a
        :class:`ReplyWarning`, and a non-finite ``mean_logprob`` as ``NULL`` (read back as NaN): the
        reply itself is always stored."""
        lp = float(mean_logprob) if isinstance(mean_logprob, (int, float)) and math.isfinite(mean_logprob) else None
        where = f"cache {self.path}, model {model!r}"
        prompt_tokens = _stored_count(prompt_tokens, "prompt_tokens", where)
        completion_tokens = _stored_count(completion_tokens, "completion_tokens", where)
        created = time.time()
        blob = json.dumps(dict(request), sort_keys=True, ensure_ascii=False)
        with self._lock:
            conn = self._connection()
            conn.execute(
                "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, model, base_url, blob, text, lp, prompt_tokens, completion_tokens, created),
            )
        stored = self.get(key)
        assert stored is not None
        return stored

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        with self._lock:
            row = self._connection().execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone()
        return row is not None

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(n)

    def requests(self) -> Iterator[tuple[str, dict]]:
        """Every stored ``(key, request)`` pair; ``request`` holds name, model, base_url, messages, params, variant."""
        with self._lock:
            rows = self._connection().execute("SELECT key, request FROM responses ORDER BY created").fetchall()
        for key, blob in rows:
            yield key, json.loads(blob)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "ResponseCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise ClosedError(f"cache {self.path}: already closed")
        return self._conn


__all__ = ["MAX_TOKEN_COUNT", "CachedResponse", "ReplyWarning", "ResponseCache", "cache_key", "token_count"]
