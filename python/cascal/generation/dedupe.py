"""Remove exact and near-duplicate generated questions.

Generators repeat themselves, within one reply and across batches. Two questions are compared on
their *normalised text*: the stem followed by the options, Unicode NFKC, lower-cased, with every run
of whitespace collapsed to one space (punctuation and LaTeX are kept: ``\\frac{1}{2}`` and
``\\frac{1}{3}`` differ).

* **Exact duplicate**: same normalised text.
* **Near duplicate**: Jaccard similarity of the sets of character 5-grams ("shingles") of the
  normalised texts at or above ``threshold`` (default :data:`DEFAULT_NEAR_THRESHOLD` = 0.8). At 0.8
  a rewording of punctuation, case, an article or a number inside a long stem counts as a
  duplicate, while two questions that share a template but ask about different things (different
  entities, different option sets) stay below it. Texts shorter than 5 characters are one shingle.

:class:`Deduplicator` keeps the questions accepted so far and tests each new batch against them
and against the batch's earlier members; the first occurrence is kept. Shingles are stored as
64-bit hashes (:func:`shingle_keys`; a collision between two distinct shingles has probability
about 2**-64 per pair). Near-duplicate search is exact and avoids comparing all pairs by *prefix
filtering*: order every text's shingles from rarest to most common (document frequency over the
texts of the call); two sets with Jaccard >= t must share a shingle among the first
``|x| - ceil(t |x|) + 1`` of each. Only pairs sharing such a prefix shingle, with compatible sizes
(``min/max >= t``), get their Jaccard computed.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from cascal.errors import InvalidParameterError
from cascal.generation.parser import ParsedQuestion

SHINGLE_SIZE = 5
DEFAULT_NEAR_THRESHOLD = 0.8
_WHITESPACE = re.compile(r"\s+")


def normalise_text(question: ParsedQuestion) -> str:
    """The text duplicates are judged on: stem and options, NFKC, lower case, single spaces."""
    raw = " ".join([question.question, *question.options])
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", raw).lower()).strip()


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[str]:
    """The set of character ``size``-grams of ``text`` (the whole text if it is shorter)."""
    if size < 1:
        raise InvalidParameterError(f"size: shingle size must be at least 1, got {size}")
    if len(text) <= size:
        return {text}
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """``|a & b| / |a | b|`` (1.0 for two empty sets)."""
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


@dataclass
class DedupeReport:
    """Counts of a deduplication run: questions seen, kept, and dropped by kind."""

    seen: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        """A JSON-ready summary."""
        return {"seen": self.seen, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


_SENTINEL = 0x110000  # above every Unicode code point: pads texts shorter than one shingle
_PRIME = np.uint64(0x100000001B3)


def shingle_keys(text: str, size: int = SHINGLE_SIZE) -> np.ndarray:
    """Sorted unique uint64 hashes of the character ``size``-grams of ``text``: one hash per element
    of :func:`shingles` (a text shorter than ``size`` is one shingle)."""
    from cascal.embedding import splitmix64

    if size < 1:
        raise InvalidParameterError(f"size: shingle size must be at least 1, got {size}")
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.uint64)
    if points.size < size:
        points = np.concatenate([np.full(size - points.size, _SENTINEL, dtype=np.uint64), points])
    n = points.size - size + 1
    acc = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(size):
            acc = acc * _PRIME + points[k : k + n]
    return np.unique(splitmix64(acc))


class Deduplicator:
    """Incremental exact + near-duplicate filter over everything accepted so far.

    Args:
        threshold: near-duplicate Jaccard threshold in (0, 1]; 1.0 drops, besides exact
            duplicates, only texts with identical shingle sets.
        shingle_size: character n-gram length.
    """

    def __init__(self, threshold: float = DEFAULT_NEAR_THRESHOLD, shingle_size: int = SHINGLE_SIZE) -> None:
        if not (0.0 < float(threshold) <= 1.0):
            raise InvalidParameterError(
                f"threshold: the near-duplicate Jaccard threshold must lie in (0, 1], got {threshold}"
            )
        if int(shingle_size) < 1:
            raise InvalidParameterError(f"shingle_size: must be at least 1, got {shingle_size}")
        self.threshold = float(threshold)
        self.shingle_size = int(shingle_size)
        self.report = DedupeReport()
        self._exact: set[str] = set()
        self._keys: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._keys)

    def filter(self, questions: Sequence[ParsedQuestion]) -> list[ParsedQuestion]:
        """Accept the questions of ``questions`` that duplicate nothing accepted before (including
        earlier members of this batch); return them in order. Updates :attr:`report`."""
        texts = [normalise_text(q) for q in questions]
        self.report.seen += len(texts)
        candidates: list[int] = []
        batch_exact: set[str] = set()
        for i, text in enumerate(texts):
            if text in self._exact or text in batch_exact:
                self.report.dropped["exact"] += 1
            else:
                batch_exact.add(text)
                candidates.append(i)
        if not candidates:
            return []

        new_keys = [shingle_keys(texts[i], self.shingle_size) for i in candidates]
        n_old = len(self._keys)
        near_old, near_within = self._near_pairs(self._keys + new_keys, n_old)

        kept: list[ParsedQuestion] = []
        kept_local: set[int] = set()
        for j, i in enumerate(candidates):
            if near_old[j] or any(k in kept_local for k in near_within.get(j, ())):
                self.report.dropped["near"] += 1
                continue
            kept_local.add(j)
            kept.append(questions[i])
            self._exact.add(texts[i])
            self._keys.append(new_keys[j])
        self.report.kept += len(kept)
        return kept

    def _near_pairs(self, keys: list[np.ndarray], n_old: int) -> tuple[np.ndarray, dict[int, list[int]]]:
        """For every new text ``j`` (``keys[n_old + j]``): whether it is near an accepted text, and
        the earlier new texts it is near (by local index)."""
        t = self.threshold
        n_all, n_new = len(keys), len(keys) - n_old
        sizes = np.array([k.size for k in keys], dtype=np.int64)
        flat = np.concatenate(keys)
        doc = np.repeat(np.arange(n_all), sizes)
        _, col = np.unique(flat, return_inverse=True)
        col = col.ravel()
        n_cols = int(col.max()) + 1
        freq = np.bincount(col, minlength=n_cols)
        # each text's shingles from rarest to most common (ties by column): a global order
        order = np.lexsort((col, freq[col], doc))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        rank = np.arange(flat.size) - np.repeat(starts, sizes)
        prefix_len = sizes - np.ceil(t * sizes - 1e-9).astype(np.int64) + 1
        in_prefix = rank < prefix_len[doc]
        prefix = sp.csr_matrix(
            (np.ones(int(in_prefix.sum())), (doc[in_prefix], col[order][in_prefix])), shape=(n_all, n_cols)
        )
        shared = (prefix[n_old:] @ prefix.T).tocoo()
        a = shared.row.astype(np.int64) + n_old  # the new text
        b = shared.col.astype(np.int64)  # an accepted text or an earlier new text
        small, large = np.minimum(sizes[a], sizes[b]), np.maximum(sizes[a], sizes[b])
        keep = (b < a) & (small >= t * large - 1e-9)
        a, b = a[keep], b[keep]

        # exact Jaccard of the candidate pairs, one new text at a time: mark its shingles, count
        # the marked shingles of each candidate partner
        cols_of = np.split(col, np.cumsum(sizes)[:-1])
        pair_order = np.argsort(a, kind="stable")
        a, b = a[pair_order], b[pair_order]
        similar = np.zeros(a.size, dtype=bool)
        marked = np.zeros(n_cols, dtype=np.int64)
        bounds = np.flatnonzero(np.diff(a)) + 1
        for lo, hi in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [a.size]])):
            if lo == hi:
                continue
            x = int(a[lo])
            partners = b[lo:hi]
            marked[cols_of[x]] = 1
            gathered = np.concatenate([cols_of[y] for y in partners.tolist()])
            offsets = np.concatenate([[0], np.cumsum(sizes[partners])[:-1]])
            inter = np.add.reduceat(marked[gathered], offsets)
            marked[cols_of[x]] = 0
            similar[lo:hi] = inter / (sizes[x] + sizes[partners] - inter) >= t
        a, b = a[similar] - n_old, b[similar]
        near_old = np.zeros(n_new, dtype=bool)
        near_old[a[b < n_old]] = True
        near_within: dict[int, list[int]] = {}
        for j, k in zip(a[b >= n_old].tolist(), (b[b >= n_old] - n_old).tolist()):
            near_within.setdefault(j, []).append(k)
        return near_old, near_within


def deduplicate(
    questions: Sequence[ParsedQuestion], threshold: float = DEFAULT_NEAR_THRESHOLD
) -> tuple[list[ParsedQuestion], DedupeReport]:
    """One-shot form of :class:`Deduplicator`: the first occurrence of each question, and the counts."""
    dedupe = Deduplicator(threshold)
    kept = dedupe.filter(questions)
    return kept, dedupe.report
