"""Reading a gateway's decision log (``cascal serve --log-decisions``) line by line, in bounded memory.

The one reader of decision logs: ``cascal coverage`` analyses them with it, and ``cascal refresh``
reads the logged query texts of its shadow check through it (:mod:`cascal.io.queries`).
:class:`DecisionLogReader` yields every line as a checked dict (the fields are those the gateway's
decision log writes), never holding more than one line:

- **Damage**: the first line that is not a decision (not UTF-8, not a JSON object, no ``endpoint``
  or ``ranking``, a routing field of the wrong type, or a last line cut short by a crash) ends the
  reading. The lines before it are analysed; :attr:`DecisionLogReader.damage` says where it is and
  how many lines after it were left unread, and a :class:`~cascal.errors.DecisionLogWarning`
  names ``file:line``. Damage on the first line leaves nothing to analyse: :class:`DataError`.
- **Another router**: a line whose ``router_sha256`` differs from the router file's SHA-256 is
  refused (:class:`DataError` naming ``file:line``): its subjects and niches are another
  router's. Lines without the field are accepted and counted (:attr:`DecisionLogReader.unverified`).

After the reading, :meth:`DecisionLogReader.warn` issues the warnings of both cases (damage, lines
without a router hash) in one wording for every command.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from cascal.errors import DataError, DecisionLogWarning
from cascal.io.files import PathLike

__all__ = ["Damage", "DecisionLogReader", "file_sha256", "is_decision_line", "ROUTING_FIELDS"]

#: the fields a routed line carries for a coverage analysis
ROUTING_FIELDS = ("subject", "subject_weight", "niche", "nearest_distance", "fallback_weight")

#: lines read between two progress-bar updates
_PROGRESS_EVERY = 4096


def file_sha256(path: PathLike) -> str:
    """The hex SHA-256 of the bytes of ``path`` (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Damage:
    """Where a decision log stopped being readable.

    Attributes:
        line: 1-based number of the first damaged line.
        reason: what is wrong with it.
        lines_after: lines after it, left unread.
    """

    line: int
    reason: str
    lines_after: int

    def to_dict(self) -> dict:
        """A JSON-ready form."""
        return {"line": self.line, "reason": self.reason, "lines_after": self.lines_after}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_decision_line(record: Any) -> bool:
    """Whether ``record`` (a parsed JSON line) looks like a decision line: an object with an
    ``endpoint`` and a ``ranking`` (telling a decision log from other JSON-lines files)."""
    return isinstance(record, dict) and "endpoint" in record and "ranking" in record


def _problem(record: Any) -> Optional[str]:
    """Why ``record`` is not a decision line, or ``None``."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if not isinstance(record.get("endpoint"), str):
        return "no 'endpoint' string"
    if not isinstance(record.get("ranking"), list):
        return "no 'ranking' list"
    if "subject" in record:
        if not (record["subject"] is None or isinstance(record["subject"], str)):
            return "'subject' is not a string"
        for key in ("subject_weight", "nearest_distance", "fallback_weight"):
            if not _number(record.get(key)):
                return f"{key!r} is not a finite number"
        if not 0.0 <= record["fallback_weight"] <= 1.0:
            return f"'fallback_weight' {record['fallback_weight']} is outside [0, 1]"
        niche = record.get("niche")
        if not (niche is None or (isinstance(niche, int) and not isinstance(niche, bool) and niche >= 0)):
            return "'niche' is not a niche index"
    for key in ("text", "id"):
        if key in record and not isinstance(record[key], str):
            return f"{key!r} is not a string"
    if not (record.get("router_sha256") is None or isinstance(record["router_sha256"], str)):
        return "'router_sha256' is not a string"  # null: a gateway that did not know its router's hash
    return None


class DecisionLogReader:
    """Iterate over the decision lines of ``path`` (module docstring: damage and router checks).

    Args:
        path: the decision log (JSON lines).
        router_sha256: the hex SHA-256 of the router file the log must come from (``None``: not
            checked, and no line is counted as unverified).
        router_name: how the router is named in errors.
        progress: show a progress bar over the file's bytes (tqdm).

    After the iteration: :attr:`lines` (decision lines read), :attr:`damage` (or ``None``),
    :attr:`unverified` (lines without ``router_sha256``).
    """

    def __init__(
        self, path: PathLike, router_sha256: Optional[str], *, router_name: str = "the router", progress: bool = False
    ) -> None:
        self.path = Path(path)
        self.router_sha256 = router_sha256
        self.router_name = router_name
        self.progress = progress
        self.lines = 0
        self.unverified = 0
        self.damage: Optional[Damage] = None

    def __iter__(self) -> Iterator[dict]:
        self.lines, self.unverified, self.damage = 0, 0, None
        bar: Any = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=self.path.stat().st_size, unit="B", unit_scale=True, desc=f"read {self.path.name}", leave=False
            )
        pending = 0
        try:
            with open(self.path, "rb") as f:
                for number, raw in enumerate(f, start=1):
                    pending += len(raw)
                    if bar is not None and number % _PROGRESS_EVERY == 0:
                        bar.update(pending)
                        pending = 0
                    record, problem = self._parse(raw)
                    if problem is not None:
                        self.damage = Damage(number, problem, sum(1 for _ in f))
                        break
                    assert record is not None
                    self._check_router(record, number)
                    self.lines += 1
                    yield record
        finally:
            if bar is not None:
                bar.update(pending)
                bar.close()
        if self.damage is not None and self.lines == 0:
            raise DataError(f"{self.path}:{self.damage.line}: not a decision line ({self.damage.reason})")

    @staticmethod
    def _parse(raw: bytes) -> tuple[Optional[dict], Optional[str]]:
        try:
            record = json.loads(raw)
        except UnicodeDecodeError:
            return None, "not UTF-8"
        except ValueError as exc:
            if not raw.endswith(b"\n"):
                return None, "the last line is cut short (a write was interrupted)"
            return None, f"not JSON ({exc})"
        problem = _problem(record)
        return (None, problem) if problem else (record, None)

    def _check_router(self, record: dict, number: int) -> None:
        if self.router_sha256 is None:
            return
        written_by = record.get("router_sha256")
        if written_by is None:
            self.unverified += 1
        elif written_by != self.router_sha256:
            raise DataError(
                f"{self.path}:{number}: router_sha256 {written_by[:16]}... is not the SHA-256 of "
                f"{self.router_name} ({self.router_sha256[:16]}...): the log was written by another router; "
                "analyse it with that router file"
            )

    def warn(self, *, used: str = "analysed", stacklevel: int = 3) -> None:
        """After the reading: a :class:`~cascal.errors.DecisionLogWarning` naming ``file:line`` of
        the damage (``used`` says what was done with the lines before it), and one counting the
        lines that do not record their router."""
        if self.damage is not None:
            d = self.damage
            warnings.warn(
                f"{self.path}:{d.line}: damaged line ({d.reason}); {used} the {self.lines} lines before it, "
                f"left {d.lines_after} after it unread",
                DecisionLogWarning,
                stacklevel=stacklevel,
            )
        if self.unverified:
            warnings.warn(
                f"{self.path}: {self.unverified} of {self.lines} lines do not record router_sha256; "
                f"accepted as written by {self.router_name}",
                DecisionLogWarning,
                stacklevel=stacklevel,
            )
