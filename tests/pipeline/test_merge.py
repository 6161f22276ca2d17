"""Merging an answered dataset folder with new questions: rows appended, models united, ids kept."""

from __future__ import annotations

import numpy as np
import pytest

from cascal.data import NOT_ASKED, ResponseMatrix
from cascal.errors import DataError
from cascal.io import load_dataset, save_dataset
from cascal.pipeline.merge import merge_folders, merge_responses


def matrix(ids, models, subject, dim=4, seed=0, logprobs=True):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return ResponseMatrix(
        answers=rng.integers(0, 4, size=(n, len(models))).astype(np.int8),
        n_options=np.full(n, 4),
        subjects=np.array([subject] * n),
        model_names=list(models),
        gold=rng.integers(0, 4, size=n),
        logprobs=rng.normal(-0.5, 0.1, size=(n, len(models))) if logprobs else None,
        question_ids=np.array(ids, dtype=object),
        questions=[f"question {q}" for q in ids],
        options=[[f"o{k}" for k in range(4)] for _ in ids],
        embeddings=rng.normal(size=(n, dim)).astype(np.float32),
        embedding_model="hashing-4",
    )


def test_folders_merge_rows_and_models_and_keep_id_types(tmp_path):
    old = matrix([1, 2, 3], ["a", "b"], "biology")
    new = matrix(["law-0000", "law-0001"], ["b", "c"], "law", seed=1, logprobs=False)
    save_dataset(old, tmp_path / "old")
    save_dataset(new, tmp_path / "new")
    merged = merge_folders(tmp_path / "old", tmp_path / "new", tmp_path / "out", embeddings="hashing-4")
    back = load_dataset(tmp_path / "out", embeddings="hashing-4")
    assert back.model_names == ["a", "b", "c"]
    assert back.question_ids.tolist() == [1, 2, 3, "law-0000", "law-0001"]
    assert back.subjects.tolist() == ["biology"] * 3 + ["law"] * 2
    np.testing.assert_array_equal(back.answers[:3, :2], old.answers)
    np.testing.assert_array_equal(back.answers[3:, 1:], new.answers)
    assert (back.answers[3:, 0] == NOT_ASKED).all() and (back.answers[:3, 2] == NOT_ASKED).all()
    assert np.isnan(back.logprobs[3:]).all() and np.isfinite(back.logprobs[:3, :2]).all()
    np.testing.assert_allclose(back.embeddings, np.vstack([old.embeddings, new.embeddings]))
    assert merged.n_questions == 5


def test_a_shared_id_or_mismatched_embeddings_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"1 id\(s\) are in both datasets \(e.g. '2'\)"):
        merge_responses(matrix([1, 2], ["a"], "s"), matrix([2, 5], ["a"], "t"))
    with pytest.raises(DataError, match="cannot be stacked"):
        merge_responses(matrix([1], ["a"], "s"), matrix([2], ["a"], "t", dim=5))
    save_dataset(matrix([1], ["a"], "s"), tmp_path / "ds")
    with pytest.raises(DataError, match="is an input folder"):
        merge_folders(tmp_path / "ds", tmp_path / "ds", tmp_path / "ds", embeddings="hashing-4")
