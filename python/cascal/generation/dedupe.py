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
and against the batch's earlier members, with sparse matrix products, so a run of thousands of
questions stays fast. The first occurrence is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from cascal.generation.parser import ParsedQuestion

SHINGLE_SIZE = 5
DEFAULT_NEAR_THRESHOLD = 0.8
_WHITESPACE = re.compile(r"\s+")
_CHUNK = 512  # questions compared densely with each other at once


def normalise_text(question: ParsedQuestion) -> str:
    """The text duplicates are judged on: stem and options, NFKC, lower case, single spaces."""
    raw = " ".join([question.question, *question.options])
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", raw).lower()).strip()


def shingles(text: str, size: int = SHINGLE_SIZE) -> set[str]:
    """The set of character ``size``-grams of ``text`` (the whole text if it is shorter)."""
    if size < 1:
        raise ValueError(f"size: shingle size must be at least 1, got {size}")
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


class Deduplicator:
    """Incremental exact + near-duplicate filter over everything accepted so far.

    Args:
        threshold: near-duplicate Jaccard threshold in (0, 1]; 1.0 drops, besides exact
            duplicates, only texts with identical shingle sets.
        shingle_size: character n-gram length.
    """

    def __init__(self, threshold: float = DEFAULT_NEAR_THRESHOLD, shingle_size: int = SHINGLE_SIZE) -> None:
        if not (0.0 < float(threshold) <= 1.0):
            raise ValueError(f"threshold: the near-duplicate Jaccard threshold must lie in (0, 1], got {threshold}")
        if int(shingle_size) < 1:
            raise ValueError(f"shingle_size: must be at least 1, got {shingle_size}")
        self.threshold = float(threshold)
        self.shingle_size = int(shingle_size)
        self.report = DedupeReport()
        self._exact: set[str] = set()
        self._vocabulary: dict[str, int] = {}
        self._rows: list[np.ndarray] = []
        self._matrix: Optional[sp.csr_matrix] = None

    def __len__(self) -> int:
        return len(self._rows)

    def _encode(self, text: str) -> np.ndarray:
        ids = [self._vocabulary.setdefault(s, len(self._vocabulary)) for s in shingles(text, self.shingle_size)]
        return np.unique(np.asarray(ids, dtype=np.int64))

    def _as_matrix(self, rows: Sequence[np.ndarray]) -> sp.csr_matrix:
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in rows])
        indices = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
        data = np.ones(len(indices), dtype=np.float64)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), len(self._vocabulary)))

    def _accepted_matrix(self) -> sp.csr_matrix:
        if self._matrix is None or self._matrix.shape[0] != len(self._rows):
            self._matrix = self._as_matrix(self._rows)
        return self._matrix

    def filter(self, questions: Sequence[ParsedQuestion]) -> list[ParsedQuestion]:
        """Accept the questions of ``questions`` that duplicate nothing accepted before (including
        earlier members of this batch); return them in order. Updates :attr:`report`."""
        kept: list[ParsedQuestion] = []
        for start in range(0, len(questions), _CHUNK):
            kept.extend(self._filter_chunk(questions[start : start + _CHUNK]))
        return kept

    def _filter_chunk(self, questions: Sequence[ParsedQuestion]) -> list[ParsedQuestion]:
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

        rows = [self._encode(texts[i]) for i in candidates]
        new = self._as_matrix(rows)
        sizes = np.array([len(r) for r in rows], dtype=np.float64)
        near_old = np.zeros(len(candidates), dtype=bool)
        if self._rows:
            old = self._accepted_matrix()
            old = sp.csr_matrix((old.data, old.indices, old.indptr), shape=(old.shape[0], new.shape[1]))
            old_sizes = np.diff(old.indptr).astype(np.float64)
            inter = (new @ old.T).tocoo()
            sim = inter.data / (sizes[inter.row] + old_sizes[inter.col] - inter.data)
            near_old[inter.row[sim >= self.threshold]] = True
        within = (new @ new.T).toarray()
        within_sim = within / (sizes[:, None] + sizes[None, :] - within)

        kept: list[ParsedQuestion] = []
        kept_local: list[int] = []
        for j, i in enumerate(candidates):
            if near_old[j] or (kept_local and within_sim[j, kept_local].max() >= self.threshold):
                self.report.dropped["near"] += 1
                continue
            kept_local.append(j)
            kept.append(questions[i])
            self._exact.add(texts[i])
            self._rows.append(rows[j])
        self._matrix = None
        self.report.kept += len(kept)
        return kept


def deduplicate(
    questions: Sequence[ParsedQuestion], threshold: float = DEFAULT_NEAR_THRESHOLD
) -> tuple[list[ParsedQuestion], DedupeReport]:
    """One-shot form of :class:`Deduplicator`: the first occurrence of each question, and the counts."""
    dedupe = Deduplicator(threshold)
    kept = dedupe.filter(questions)
    return kept, dedupe.report
