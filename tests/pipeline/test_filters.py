"""Generator-quality statistics (self-answer, spread) and the filter, on a matrix worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.cli import main as cli_main
from cascal.data import DataError, ResponseMatrix
from cascal.io import load_dataset, save_dataset
from cascal.pipeline.embed import embed_dataset
from cascal.pipeline.filter import (
    _consensus_kernel,
    _option_counts,
    _plurality_mask_numpy,
    filter_dataset,
    filter_responses,
    quality_flags,
)

# 4 models; comments give (self-answer, spread) worked out by hand
ANSWERS = np.array(
    [
        [0, 0, 0, 0],  # q0 key 0: unanimous                       -> (yes, no)
        [0, 0, 1, 2],  # q1 key 0: unique plurality {0}             -> (yes, yes)
        [0, 0, 1, 1],  # q2 key 1: tie {0, 1}, key in the tie       -> (yes, no)
        [2, 2, 1, -1],  # q3 key 1: plurality {2}                   -> (no, yes)
        [-1, -1, -2, -2],  # q4 key 0: nobody answered              -> (no, no)
        [1, -1, -2, -2],  # q5 key 1: one valid answer = unanimous  -> (yes, no)
        [3, 1, 1, 0],  # q6 key unknown: plurality {1}              -> (no, yes)
    ]
)
GOLD = np.array([0, 0, 1, 1, 0, 1, -1])
SUBJECTS = np.array(["s1", "s1", "s1", "s2", "s2", "s2", "s2"])
SELF = [True, True, True, False, False, True, False]
SPREAD = [False, True, False, True, False, False, True]


def hand_matrix(**extra) -> ResponseMatrix:
    return ResponseMatrix(
        answers=ANSWERS,
        n_options=np.full(7, 4),
        subjects=SUBJECTS,
        model_names=["m1", "m2", "m3", "m4"],
        gold=GOLD,
        questions=[f"Question {i} about {s}?" for i, s in enumerate(SUBJECTS)],
        options=[["a", "b", "c", "d"]] * 7,
        **extra,
    )


def test_flags_by_hand() -> None:
    flags = quality_flags(hand_matrix())
    assert flags.self_answer.tolist() == SELF
    assert flags.spread.tolist() == SPREAD
    assert flags.answered.tolist() == [4, 4, 4, 3, 0, 1, 4]


def test_statistics_and_default_rule_by_hand() -> None:
    report = filter_responses(hand_matrix())
    s1, s2 = report.subjects
    assert (s1.subject, s1.n_questions, s1.self_answer, s1.spread, s1.kept) == ("s1", 3, 1.0, pytest.approx(1 / 3), 3)
    assert (s2.subject, s2.n_questions, s2.self_answer, s2.spread, s2.kept) == ("s2", 4, 0.25, 0.5, 1)
    assert report.overall.self_answer == pytest.approx(4 / 7)
    assert report.overall.spread == pytest.approx(3 / 7)
    assert report.keep.tolist() == SELF  # default: key must be a plurality answer
    table = report.table()
    assert "s2" in table and "25.0%" in table and "overall" in table and "57.1%" in table


@pytest.mark.parametrize(
    "kwargs, kept",
    [
        (dict(require_spread=True), [1]),
        (dict(min_self_answer=0.5), [0, 1, 2]),
        (dict(require_self_answer=False, require_spread=True), [1, 3, 6]),
        (dict(require_self_answer=False), [0, 1, 2, 3, 4, 5, 6]),
        (dict(require_self_answer=False, min_self_answer=0.3), [0, 1, 2]),
        (dict(min_self_answer=1.0, require_spread=True), [1]),
    ],
)
def test_rule_variants_by_hand(kwargs: dict, kept: list[int]) -> None:
    report = filter_responses(hand_matrix(), **kwargs)
    assert np.flatnonzero(report.keep).tolist() == kept
    assert report.overall.kept == len(kept)
    if kwargs.get("min_self_answer", 0) > 0.25:
        assert report.dropped_subjects == ["s2"]


def test_bad_arguments() -> None:
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="min_self_answer"):
            filter_responses(hand_matrix(), min_self_answer=bad)  # type: ignore[arg-type]
    unanswered = ResponseMatrix(
        answers=np.zeros((2, 0), dtype=np.int8), n_options=np.full(2, 4), subjects=np.array(["a", "a"]), model_names=[]
    )
    with pytest.raises(DataError, match="cascal answer"):
        filter_responses(unanswered)


def brute_plurality(answers: np.ndarray) -> np.ndarray:
    out = np.zeros(answers.shape, dtype=bool)
    for q, row in enumerate(answers):
        valid = [a for a in row if a >= 0]
        if not valid:
            continue
        counts = {c: valid.count(c) for c in set(valid)}
        top = max(counts.values())
        out[q] = [a >= 0 and counts[a] == top for a in row]
    return out


@settings(max_examples=80, deadline=None)
@given(
    data=st.data(),
    n_q=st.integers(1, 30),
    n_m=st.integers(1, 9),
)
def test_plurality_mask_matches_brute_force(data: st.DataObject, n_q: int, n_m: int) -> None:
    n_options = np.array(data.draw(st.lists(st.integers(2, 20), min_size=n_q, max_size=n_q)))
    answers = np.array([[data.draw(st.integers(-2, int(k) - 1)) for _ in range(n_m)] for k in n_options], dtype=np.int8)
    got = _plurality_mask_numpy(answers, _option_counts(answers))
    assert np.array_equal(got, brute_plurality(answers))


def test_kernel_and_numpy_plurality_agree(rng: np.random.Generator) -> None:
    kernel = _consensus_kernel()
    if kernel is None:
        pytest.skip("cascal.kernels.consensus_scores is not built into this extension yet")
    n_options = rng.integers(2, 21, size=500)
    answers = (rng.random((500, 12)) * n_options[:, None]).astype(np.int8)
    answers[rng.random(answers.shape) < 0.1] = -1
    answers[rng.random(answers.shape) < 0.05] = -2
    answers[:5] = -1
    mine = _plurality_mask_numpy(answers, _option_counts(answers))
    theirs = np.asarray(kernel(answers, n_options).plurality, dtype=bool)
    assert np.array_equal(mine, theirs)


# ------------------------------------------------------------------------------------------ folders
def test_filter_dataset_writes_subset_with_embeddings_and_report(tmp_path: Path) -> None:
    logprobs = np.linspace(-3, -0.1, 28, dtype=np.float32).reshape(7, 4)
    source = save_dataset(hand_matrix(logprobs=logprobs, cost=np.ones((7, 4))), tmp_path / "answered")
    emb = embed_dataset(source, "hashing-32")
    report = filter_dataset(source, tmp_path / "filtered", require_spread=True, require_self_answer=False)
    kept = [1, 3, 6]
    out = load_dataset(tmp_path / "filtered")
    assert out.questions == [f"Question {i} about {SUBJECTS[i]}?" for i in kept]
    np.testing.assert_array_equal(out.answers, ANSWERS[kept])
    np.testing.assert_array_equal(out.gold, GOLD[kept])
    np.testing.assert_allclose(out.logprobs, logprobs[kept])
    np.testing.assert_array_equal(out.embeddings, emb[kept])
    assert out.embedding_model == "hashing-32"
    saved = json.loads((tmp_path / "filtered" / "filter_report.json").read_text())
    assert saved == report.to_dict()
    assert saved["overall"]["kept"] == 3 and saved["rule"]["require_spread"] is True
    # the subset's embeddings are recognised as current: embedding again reuses them
    again = embed_dataset(tmp_path / "filtered", "hashing-32")
    np.testing.assert_array_equal(again, emb[kept])


def test_filter_dataset_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    source = save_dataset(hand_matrix(), tmp_path / "answered")
    with pytest.raises(ValueError, match="out_dir"):
        filter_dataset(source, source)


def test_cli_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = save_dataset(hand_matrix(), tmp_path / "answered")
    code = cli_main(["filter", str(source), "--out", str(tmp_path / "f"), "--min-self-answer", "0.5"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dropped subjects" in printed and "s2" in printed and "kept 3 of 7" in printed
    assert load_dataset(tmp_path / "f").n_questions == 3
    with pytest.raises(SystemExit):
        cli_main(["filter", str(source), "--out", str(tmp_path / "g"), "--min-self-answer", "2"])
    assert cli_main(["filter", str(tmp_path / "nope"), "--out", str(tmp_path / "g")]) == 2


def test_filter_refuses_an_unusable_embeddings_file_and_skips_an_unreadable_record(tmp_path: Path) -> None:
    source = save_dataset(hand_matrix(), tmp_path / "answered")
    embed_dataset(source, "hashing-8")
    (source / "embeddings_hashing-8.json").write_bytes(b"\xff not json")  # skipped, not a UnicodeDecodeError
    filter_dataset(source, tmp_path / "f1")
    assert (tmp_path / "f1" / "embeddings_hashing-8.npy").exists()
    assert not (tmp_path / "f1" / "embeddings_hashing-8.json").exists()  # `cascal embed` recomputes there
    np.save(source / "embeddings_hashing-8.npy", np.array([["x"]] * 7))  # refused, not copied
    with pytest.raises(DataError, match=r"embeddings_hashing-8.npy: dtype <U1 is not numeric"):
        filter_dataset(source, tmp_path / "f2")
