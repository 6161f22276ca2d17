"""Models whose predictions are all '?' or empty: listed by the matrix, warned about by training."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from cascal.cli import main
from cascal.data import NO_ANSWER, NOT_ASKED, ResponseMatrix
from cascal.io import save_dataset
from cascal.pipeline.embed import embed_dataset
from cascal.pipeline.train import train_router

N_Q = 60


def matrix(answers: np.ndarray) -> ResponseMatrix:
    n_q, n_m = answers.shape
    return ResponseMatrix(
        answers=answers,
        n_options=np.full(n_q, 4),
        subjects=np.array(["law", "math"] * (n_q // 2)),
        model_names=[f"m{j}" for j in range(n_m)],
        questions=[f"Question {i} on topic {i % 7}" for i in range(n_q)],
        options=[["a", "b", "c", "d"]] * n_q,
    )


def folder_with(tmp_path: Path, silent: dict[int, int]) -> Path:
    """Four models answering 60 questions; column j of ``silent`` holds only the code silent[j]."""
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 4, size=N_Q)
    answers = np.stack([np.where(rng.random(N_Q) < p, gold, (gold + 1) % 4) for p in (0.9, 0.7, 0.5, 0.3)], axis=1)
    for col, code in silent.items():
        answers[:, col] = code
    folder = save_dataset(matrix(answers), tmp_path / "d")
    embed_dataset(folder, "hashing-32")
    return folder


def test_models_without_answers_lists_columns_of_only_unparsable_or_not_asked():
    answers = np.array([[0, -1, -2, -1, 1], [1, -1, -2, -2, -1]])
    rm = ResponseMatrix(
        answers=answers,
        n_options=np.array([2, 2]),
        subjects=np.array(["s", "s"]),
        model_names=["ok", "all?", "blank", "mixed", "one"],
    )
    assert rm.models_without_answers() == ["all?", "blank", "mixed"]
    assert rm.select_models(["ok", "one"]).models_without_answers() == []
    assert rm.subset([1]).models_without_answers() == ["all?", "blank", "mixed", "one"]


def test_training_warns_naming_the_models_without_answers(tmp_path):
    folder = folder_with(tmp_path, {1: NO_ANSWER, 3: NOT_ASKED})
    with pytest.warns(
        UserWarning, match=r"predictions.csv: 2 of 4 models have no usable answer .*: m1, m3; they score 0"
    ):
        router = train_router(folder, tmp_path / "r.cascal")
    assert (tmp_path / "r.cascal").exists()
    assert router.model_names_ == ["m0", "m1", "m2", "m3"]


def test_training_warns_when_no_model_has_a_usable_answer(tmp_path):
    folder = folder_with(tmp_path, {0: NO_ANSWER, 1: NO_ANSWER, 2: NOT_ASKED, 3: NO_ANSWER})
    with pytest.warns(UserWarning, match="no model has a usable answer .* routes uniformly"):
        train_router(folder, tmp_path / "r.cascal")


def test_training_on_usable_answers_does_not_warn(tmp_path):
    folder = folder_with(tmp_path, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_router(folder, tmp_path / "r.cascal")
    assert not [w for w in caught if "usable answer" in str(w.message)]


def test_cli_train_prints_the_warning(tmp_path, capsys):
    folder = folder_with(tmp_path, {2: NO_ANSWER})
    assert main(["train", str(folder), "--out", str(tmp_path / "r.cascal")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if "usable answer" in line]
    assert len(lines) == 1
    assert lines[0].startswith("cascal train: warning: ") and "1 of 4 models have no usable answer" in lines[0]
    assert lines[0].endswith("m2; they score 0 on every question, so the router ranks them last")
    assert "saved router to" in captured.out


def test_training_on_zero_questions_is_a_data_error(tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "questions.jsonl").write_text("")
    (folder / "predictions.csv").write_text("question_id,m1,m2\n")
    np.save(folder / "embeddings_x.npy", np.zeros((0, 4), dtype=np.float32))
    assert main(["train", str(folder), "--out", str(tmp_path / "r.cascal")]) == 2  # one error line, no traceback
    assert capsys.readouterr().err.startswith(f"error: {folder}: questions.jsonl holds no question to train on")


def test_fit_warns_naming_the_models_without_answers():
    # a column of all-'?' or empty answers scores 0 everywhere: fit says so instead of training silently
    from cascal.embedding import HashingEmbedder
    from cascal.router import CascalRouter

    rng = np.random.default_rng(3)
    gold = rng.integers(0, 4, size=N_Q)
    answers = np.stack([np.where(rng.random(N_Q) < p, gold, (gold + 1) % 4) for p in (0.9, 0.7, 0.5, 0.3)], axis=1)
    answers[:, 0] = NO_ANSWER
    answers[:, 2] = NOT_ASKED
    rm = matrix(answers)
    X = HashingEmbedder(32).encode(rm.questions)
    with pytest.warns(UserWarning, match=r"CascalRouter.fit: 2 of 4 models have no usable answer .*: m0, m2; they"):
        CascalRouter().fit(X, rm)
    rm_all = matrix(np.full((N_Q, 4), NO_ANSWER))
    with pytest.warns(UserWarning, match="no model has a usable answer .* routes uniformly"):
        CascalRouter().fit(X, rm_all)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        CascalRouter().fit(X, matrix(np.where(answers < 0, 1, answers)))
    assert not [w for w in caught if "usable answer" in str(w.message)]
