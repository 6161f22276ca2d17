"""Dataset folders: round trips, the real MMLU-Pro folder, and every malformed input named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascal.data import NO_ANSWER, NOT_ASKED, DataError, ResponseMatrix
from cascal.io import load_dataset, save_dataset


def write_folder(folder: Path, questions: list[dict], predictions: str, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (folder / "predictions.csv").write_text(predictions)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


QUESTIONS = [
    {"question_id": 1, "category": "math", "question": "1+1?", "options": ["1", "2", "3"], "answer": "B"},
    {"question_id": 2, "category": "law", "question": "Tort?", "options": ["x", "y"], "answer": None},
]


def test_codes_for_letters_unparsable_and_not_asked(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1,m2\n2,A,\n1,?,C\n")
    rm = load_dataset(folder)
    assert rm.model_names == ["m1", "m2"]
    # rows follow questions.jsonl, not the CSV order
    assert rm.answers.tolist() == [[NO_ANSWER, 2], [0, NOT_ASKED]]
    assert rm.gold.tolist() == [1, NO_ANSWER]
    assert rm.n_options.tolist() == [3, 2]
    assert rm.subjects.tolist() == ["math", "law"]
    assert rm.logprobs is None and rm.embeddings is None


def test_round_trip_keeps_everything(tmp_path, rng):
    n, m = 7, 3
    n_opt = rng.integers(2, 6, size=n)
    answers = np.stack([rng.integers(-2, k, size=m) for k in n_opt])
    logprobs = rng.normal(size=(n, m)).astype(np.float32)
    logprobs[0, 1] = np.nan
    rm = ResponseMatrix(
        answers=answers, n_options=n_opt, subjects=np.array(["a", "b", "a", "c", "b", "a", "c"]),
        model_names=["x", "y", "z"], gold=np.array([rng.integers(0, k) for k in n_opt]),
        logprobs=logprobs, cost=np.abs(logprobs) * 10, question_ids=np.arange(100, 100 + n),
        questions=[f"q{i} with, comma and \"quotes\"" for i in range(n)],
        options=[[f"o{j}" for j in range(k)] for k in n_opt],
        embeddings=rng.normal(size=(n, 4)).astype(np.float32), embedding_model="org/model",
    )
    back = load_dataset(save_dataset(rm, tmp_path / "rt"))
    np.testing.assert_array_equal(back.answers, rm.answers)
    np.testing.assert_array_equal(back.gold, rm.gold)
    np.testing.assert_array_equal(back.n_options, rm.n_options)
    np.testing.assert_array_equal(back.logprobs, rm.logprobs)
    np.testing.assert_allclose(back.cost, rm.cost)
    np.testing.assert_array_equal(back.embeddings, rm.embeddings)
    assert back.embedding_model == "org__model"
    assert back.questions == rm.questions and back.options == rm.options
    assert back.question_ids.tolist() == [str(i) for i in range(100, 100 + n)]


def test_zero_model_dataset_round_trips(tmp_path):
    rm = ResponseMatrix(answers=np.zeros((2, 0), dtype=np.int8), n_options=np.array([2, 3]),
                        subjects=np.array(["s", "t"]), model_names=[], gold=np.array([0, 2]),
                        questions=["a", "b"], options=[["x", "y"], ["x", "y", "z"]])
    back = load_dataset(save_dataset(rm, tmp_path / "z"))
    assert back.n_models == 0 and back.gold.tolist() == [0, 2]


@pytest.mark.parametrize(
    "predictions, message",
    [
        ("question_id,m1\n1,A,B\n2,A\n", "predictions.csv:2: 3 cells, the header has 2"),
        ("question_id,m1\n1,Z9\n2,A\n", "predictions.csv:2: column 'm1': unknown answer 'Z9'"),
        ("question_id,m1\n1,D\n2,A\n", "predictions.csv:2: column 'm1': answer 'D' is beyond the question's 3 options"),
        ("question_id,m1\n1,A\n3,A\n", "predictions.csv:3: question_id '3' is not in questions.jsonl"),
        ("question_id,m1\n1,A\n1,B\n", "predictions.csv:3: duplicate question_id '1'"),
        ("question_id,m1\n1,A\n", "predictions.csv: 1 question(s) of questions.jsonl have no row"),
        ("qid,m1\n1,A\n2,A\n", "predictions.csv:1: first column must be 'question_id'"),
        ("question_id,m1,m1\n1,A,A\n2,A,A\n", "duplicate model column(s) ['m1']"),
    ],
)
def test_malformed_predictions_name_file_line_and_column(tmp_path, predictions, message):
    folder = write_folder(tmp_path / "d", QUESTIONS, predictions)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        load_dataset(folder)


def test_out_of_range_letters_can_be_counted_as_unparsable(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,D\n2,A\n")
    rm = load_dataset(folder, out_of_range="unparsable")
    assert rm.answers[0, 0] == NO_ANSWER
    assert rm.extra["out_of_range"] == {"m1": 1}


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "questions.jsonl:3: invalid JSON"),
        (json.dumps({"question_id": 3, "category": "x", "question": "q"}), "questions.jsonl:3: missing field 'options'"),
        (json.dumps({"question_id": 3, "category": "x", "question": "q", "options": ["a"]}), "2..20 strings, got 1"),
        (json.dumps({"question_id": 1, "category": "x", "question": "q", "options": ["a", "b"]}), "duplicate question_id 1"),
        (json.dumps({"question_id": 3, "category": "x", "question": "q", "options": ["a", "b"], "answer": "C"}),
         "field 'answer' is 'C'"),
    ],
)
def test_malformed_questions_name_file_and_line(tmp_path, line, message):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    with open(folder / "questions.jsonl", "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset(folder)


def test_logprobs_must_match_prediction_columns_and_be_numbers(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n", **{"logprobs.csv": "question_id,m2\n1,0.1\n2,\n"})
    with pytest.raises(DataError, match="logprobs.csv:1: model columns"):
        load_dataset(folder)
    (folder / "logprobs.csv").write_text("question_id,m1\n1,abc\n2,\n")
    with pytest.raises(DataError, match="logprobs.csv:2: column 'm1': not a number"):
        load_dataset(folder)


def test_embeddings_with_wrong_rows_or_ambiguous_files(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    np.save(folder / "embeddings_a.npy", np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"embeddings_a.npy: expected 2 rows"):
        load_dataset(folder)
    np.save(folder / "embeddings_a.npy", np.ones((2, 4), dtype=np.float32))
    np.save(folder / "embeddings_b.npy", np.ones((2, 4), dtype=np.float32))
    with pytest.raises(DataError, match="several embedding files"):
        load_dataset(folder)
    assert load_dataset(folder, embeddings="b").embedding_model == "b"
    with pytest.raises(DataError, match="no embeddings for model 'c'"):
        load_dataset(folder, embeddings="c")


def test_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError, match="not a dataset folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="questions.jsonl: missing"):
        load_dataset(tmp_path / "empty")


def test_real_mmlu_pro_folder(data_dir):
    with pytest.raises(DataError, match="beyond the question's"):
        load_dataset(data_dir)
    rm = load_dataset(data_dir, out_of_range="unparsable")
    assert rm.answers.shape == (12032, 34)
    assert rm.embeddings.shape == (12032, 384) and rm.embedding_model == "all-MiniLM-L6-v2"
    assert len(set(rm.subjects)) == 14
    # PROVENANCE.md: DeepSeek-Coder-V2 has 10,351 rows, everyone else (nearly) all 12,032
    asked = (rm.answers != NOT_ASKED).sum(axis=0)
    assert asked[rm.model_names.index("DeepSeek-Coder-V2_5shots")] == 10351
    # PROVENANCE.md: gemini-3.1-pro is the best single model at ~0.857 on its own gold
    acc = np.nanmean(rm.correctness(), axis=0)
    assert rm.model_names[int(np.argmax(acc))] == "gemini-3.1-pro_5shots"
    assert 0.84 < acc.max() < 0.87


def test_saving_over_an_answered_folder_removes_stale_files(tmp_path):
    n_opt = np.array([2, 3])
    answered = ResponseMatrix(
        answers=np.array([[0, 1], [2, -1]]), n_options=n_opt, subjects=np.array(["s", "s"]),
        model_names=["a", "b"], logprobs=np.zeros((2, 2)), cost=np.ones((2, 2)),
        questions=["q1", "q2"], options=[["x", "y"], ["x", "y", "z"]],
        embeddings=np.ones((2, 3), dtype=np.float32), embedding_model="e",
    )
    folder = save_dataset(answered, tmp_path / "d")
    aligned = np.ones((3, 3), dtype=np.float32)
    fresh = ResponseMatrix(
        answers=np.zeros((3, 0), dtype=np.int8), n_options=np.array([2, 2, 2]), subjects=np.array(["s"] * 3),
        model_names=[], questions=["a", "b", "c"], options=[["x", "y"]] * 3,
    )
    np.save(folder / "embeddings_keep.npy", aligned)  # already matches the new 3 questions: a cache, kept
    save_dataset(fresh, folder)
    assert not (folder / "logprobs.csv").exists() and not (folder / "cost.csv").exists()
    assert not (folder / "embeddings_e.npy").exists()
    back = load_dataset(folder)
    assert back.n_questions == 3 and back.n_models == 0 and back.embedding_model == "keep"
