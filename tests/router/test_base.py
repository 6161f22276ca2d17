"""The interface every router shares: input checks, ranking, and the top-k ensemble vote (docs/algorithm.md#ensemble-answer)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascal.data import ResponseMatrix
from cascal.router.base import check_embeddings, check_fit_inputs, ensemble_vote, rank_models


def test_rank_models_breaks_ties_by_lower_index_and_puts_nan_last():
    scores = np.array([[0.2, 0.5, 0.5, np.nan], [np.nan, 0.1, 0.0, 0.1]])
    assert rank_models(scores, 4).tolist() == [[1, 2, 0, 3], [1, 3, 2, 0]]
    assert rank_models(scores, 1).tolist() == [[1], [1]]


def test_vote_majority_wins_over_rank():
    ranked = np.array([[0, 1, 2]])
    answers = np.array([[3, 1, 1]])  # best-ranked model is outvoted by the other two
    assert ensemble_vote(ranked, answers).tolist() == [1]


def test_vote_all_different_goes_to_most_confident_then_best_ranked():
    ranked = np.array([[2, 0, 1], [2, 0, 1], [2, 0, 1]])
    answers = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    confidence = np.array([[0.0, 5.0, 1.0], [np.nan, np.nan, np.nan], [3.0, 3.0, 1.0]])
    # row 0: model 1 most confident -> its answer 1; row 1: no confidence -> best ranked (model 2) -> 2;
    # row 2: models 0 and 1 tie on confidence -> the better ranked of them (model 0) -> 0
    assert ensemble_vote(ranked, answers, confidence).tolist() == [1, 2, 0]
    assert ensemble_vote(ranked, answers).tolist() == [2, 2, 2]


def test_vote_ignores_unparsable_and_not_asked():
    ranked = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2]])
    answers = np.array([[-1, 4, -2], [-1, -2, -1], [-1, 3, 3]])
    assert ensemble_vote(ranked, answers).tolist() == [4, -1, 3]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_vote_returns_an_answer_of_a_chosen_model_with_maximal_support(k, seed):
    rng = np.random.default_rng(seed)
    n, m = 20, 6
    k = min(k, m)
    answers = rng.integers(-2, 4, size=(n, m))
    ranked = np.stack([rng.permutation(m)[:k] for _ in range(n)])
    out = ensemble_vote(ranked, answers)
    for i in range(n):
        chosen = [a for a in answers[i, ranked[i]] if a >= 0]
        if not chosen:
            assert out[i] == -1
            continue
        counts = {a: chosen.count(a) for a in chosen}
        assert out[i] in counts and counts[out[i]] == max(counts.values())


def _responses(n: int) -> ResponseMatrix:
    return ResponseMatrix(
        answers=np.zeros((n, 2), dtype=np.int8),
        n_options=np.full(n, 4),
        subjects=np.array(["s"] * n),
        model_names=["a", "b"],
    )


def test_fit_input_checks_name_the_argument():
    emb = np.ones((3, 4))
    assert check_fit_inputs(emb, _responses(3)).dtype == np.float64
    with pytest.raises(TypeError, match="responses: expected a ResponseMatrix"):
        check_fit_inputs(emb, {"answers": []})
    with pytest.raises(ValueError, match="embeddings: 3 rows but responses has 2 questions"):
        check_fit_inputs(emb, _responses(2))
    with pytest.raises(ValueError, match="embeddings: contains NaN"):
        check_embeddings(np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="2-D"):
        check_embeddings(np.ones(4))
    with pytest.raises(ValueError, match="numeric"):
        check_embeddings(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="no dimensions"):
        check_embeddings(np.ones((3, 0)))
    with pytest.raises(ValueError, match="expected 4 columns"):
        check_embeddings(np.ones((2, 5)), n_features=4)


def test_float64_embeddings_are_not_copied():
    emb = np.ones((5, 3))
    assert check_embeddings(emb) is emb or np.shares_memory(check_embeddings(emb), emb)
