"""Exact and near-duplicate removal of generated questions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.generation.dedupe import (
    DEFAULT_NEAR_THRESHOLD,
    Deduplicator,
    deduplicate,
    jaccard,
    normalise_text,
    shingle_keys,
    shingles,
)
from cascal.generation.parser import ParsedQuestion as Q

CAPITALS = ("Paris", "London", "Berlin", "Madrid")


def test_shingles_and_jaccard_by_hand() -> None:
    assert shingles("abcdef", 5) == {"abcde", "bcdef"}
    assert shingles("abc", 5) == {"abc"}
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 1.0
    with pytest.raises(ValueError, match="size"):
        shingles("abc", 0)


def test_normalisation_ignores_case_whitespace_and_unicode_width() -> None:
    a = Q("What is  the CAPITAL\nof France?", CAPITALS, 0)
    b = Q("what is the capital of france?", CAPITALS, 0)
    c = Q("What is the capital of France？", CAPITALS, 0)  # full-width question mark (NFKC)
    assert normalise_text(a) == normalise_text(b) == normalise_text(c)


def test_exact_duplicates_keep_first() -> None:
    a = Q("What is the capital of France?", CAPITALS, 0)
    b = Q("WHAT IS THE CAPITAL  OF FRANCE?", CAPITALS, 0)
    other = Q("Which planet is largest?", ("Mars", "Jupiter", "Venus", "Earth"), 1)
    kept, report = deduplicate([a, other, b, a])
    assert kept == [a, other]
    assert report.to_dict() == {"seen": 4, "kept": 2, "dropped": {"exact": 2}}


def test_near_duplicates_dropped() -> None:
    base = Q("A ball of mass 2 kg moves at 3 m/s. What is its kinetic energy?", ("9 J", "6 J", "3 J", "18 J"), 0)
    reworded = Q("A ball of mass 2 kg moves at 3 m/s. What is the kinetic energy?", ("9 J", "6 J", "3 J", "18 J"), 0)
    punctuated = Q("What is the capital of France ?", ("Paris", "London", "Berlin", "Madrid."), 0)
    capital = Q("What is the capital of France?", CAPITALS, 0)
    sim = jaccard(shingles(normalise_text(base)), shingles(normalise_text(reworded)))
    assert sim >= DEFAULT_NEAR_THRESHOLD
    kept, report = deduplicate([base, capital, reworded, punctuated])
    assert kept == [base, capital]
    assert report.dropped == {"near": 2}


def test_distinct_but_similar_questions_kept() -> None:
    questions = [
        Q("What is the capital of France?", CAPITALS, 0),
        Q("What is the capital of Spain?", CAPITALS, 3),
        Q("What is the capital of Germany?", ("Bonn", "Berlin", "Hamburg", "Munich"), 1),
        Q("A ball of mass 2 kg moves at 3 m/s. What is its kinetic energy?", ("9 J", "6 J", "3 J", "18 J"), 0),
        Q("A ball of mass 4 kg moves at 3 m/s. What is its kinetic energy?", ("18 J", "12 J", "36 J", "9 J"), 0),
        Q(r"Compute $\frac{1}{2} + \frac{1}{3}$.", (r"$\frac{5}{6}$", r"$\frac{2}{5}$"), 0),
        Q(r"Compute $\frac{1}{2} \cdot \frac{1}{3}$.", (r"$\frac{1}{6}$", r"$\frac{2}{5}$"), 0),
    ]
    kept, report = deduplicate(questions)
    assert kept == questions and report.dropped == {}


def test_incremental_batches_match_one_shot_and_within_batch() -> None:
    rng = np.random.default_rng(7)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma", "kappa", "theta", "lambda", "zeta"]
    pool = []
    for i in range(120):
        stem = " ".join(rng.choice(words, size=8)) + f" item {i % 40}"
        pool.append(Q(stem, ("yes", "no"), int(i % 2)))
    one_shot, _ = deduplicate(pool)
    inc = Deduplicator()
    got = []
    for start in range(0, len(pool), 17):
        got.extend(inc.filter(pool[start : start + 17]))
    assert got == one_shot
    assert inc.report.seen == len(pool) and inc.report.kept == len(one_shot) == len(inc)


def _brute_force(questions: list[Q], threshold: float) -> list[Q]:
    kept: list[Q] = []
    texts: set[str] = set()
    sets: list[set[str]] = []
    for q in questions:
        t = normalise_text(q)
        s = shingles(t)
        if t in texts or any(jaccard(s, k) >= threshold for k in sets):
            continue
        texts.add(t)
        sets.append(s)
        kept.append(q)
    return kept


@settings(max_examples=60, deadline=None)
@given(
    stems=st.lists(st.text(alphabet="abc de", min_size=0, max_size=14), min_size=1, max_size=25),
    threshold=st.sampled_from([0.3, 0.5, 0.8, 1.0]),
)
def test_matches_brute_force_jaccard(stems: list[str], threshold: float) -> None:
    questions = [Q(s, ("x", "y"), 0) for s in stems]
    kept, report = deduplicate(questions, threshold)
    assert kept == _brute_force(questions, threshold)
    assert report.seen == len(questions) and report.kept + sum(report.dropped.values()) == len(questions)


def test_bad_arguments() -> None:
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            Deduplicator(bad)
    with pytest.raises(ValueError, match="shingle_size"):
        Deduplicator(0.8, shingle_size=0)


def test_many_questions_chunked() -> None:
    """More questions than one dense chunk: pairs across chunks are still compared."""
    questions = [Q(f"Question number {i} about topic {i * 7919 % 1000}?", ("a", "b"), 0) for i in range(700)]
    questions += [questions[5], Q(questions[650].question.upper() + " ", ("a", "b."), 0)]
    kept, report = deduplicate(questions)
    assert kept == _brute_force(questions, DEFAULT_NEAR_THRESHOLD)
    assert report.dropped["exact"] == 1 and questions[-1] not in kept
    assert list(itertools.islice(kept, 3)) == questions[:3]


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=40), size=st.integers(1, 6))
def test_shingle_keys_one_hash_per_shingle(text: str, size: int) -> None:
    keys = shingle_keys(text, size)
    assert keys.dtype == np.uint64
    assert np.all(keys[1:] > keys[:-1])  # sorted and unique
    assert keys.size == len(shingles(text, size))


def test_shingle_keys_distinguish_short_texts_from_padded_ones() -> None:
    assert not np.array_equal(shingle_keys("abc"), shingle_keys("\x00\x00abc"))
    assert np.array_equal(shingle_keys("abc"), shingle_keys("abc"))
    assert shingle_keys("😀 emoji 𝔘").size == len(shingles("😀 emoji 𝔘"))


def test_similarity_exactly_at_threshold_is_a_duplicate() -> None:
    # character 1-grams: {a, b, ' ', x, y} vs {a, c, ' ', x, y}: Jaccard 4/6
    first, second = Q("ab", ("x", "y"), 0), Q("ac", ("x", "y"), 0)
    kept = Deduplicator(threshold=4 / 6, shingle_size=1).filter([first, second])
    assert kept == [first]
    kept = Deduplicator(threshold=4 / 6 + 1e-9, shingle_size=1).filter([first, second])
    assert kept == [first, second]
