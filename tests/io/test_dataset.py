"""Dataset folders: round trips, the real MMLU-Pro folder, and every malformed input named precisely."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from cascal.data import NO_ANSWER, NOT_ASKED, DataError, ResponseMatrix
from cascal.io import load_dataset, save_answers, save_dataset


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
        answers=answers,
        n_options=n_opt,
        subjects=np.array(["a", "b", "a", "c", "b", "a", "c"]),
        model_names=["x", "y", "z"],
        gold=np.array([rng.integers(0, k) for k in n_opt]),
        logprobs=logprobs,
        cost=np.abs(logprobs) * 10,
        question_ids=np.arange(100, 100 + n),
        questions=[f'q{i} with, comma and "quotes"' for i in range(n)],
        options=[[f"o{j}" for j in range(k)] for k in n_opt],
        embeddings=rng.normal(size=(n, 4)).astype(np.float32),
        embedding_model="org/model",
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
    assert back.question_ids.tolist() == list(range(100, 100 + n))  # integer ids stay integers


def test_zero_model_dataset_round_trips(tmp_path):
    rm = ResponseMatrix(
        answers=np.zeros((2, 0), dtype=np.int8),
        n_options=np.array([2, 3]),
        subjects=np.array(["s", "t"]),
        model_names=[],
        gold=np.array([0, 2]),
        questions=["a", "b"],
        options=[["x", "y"], ["x", "y", "z"]],
    )
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
    with pytest.raises(
        DataError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")
    ):
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
        (
            json.dumps({"question_id": 3, "category": "x", "question": "q"}),
            "questions.jsonl:3: missing field 'options'",
        ),
        (json.dumps({"question_id": 3, "category": "x", "question": "q", "options": ["a"]}), "2..20 strings, got 1"),
        (
            json.dumps({"question_id": 1, "category": "x", "question": "q", "options": ["a", "b"]}),
            "duplicate question_id 1",
        ),
        (
            json.dumps({"question_id": 3, "category": "x", "question": "q", "options": ["a", "b"], "answer": "C"}),
            "field 'answer' is 'C'",
        ),
    ],
)
def test_malformed_questions_name_file_and_line(tmp_path, line, message):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    with open(folder / "questions.jsonl", "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset(folder)


def test_logprobs_must_match_prediction_columns_and_be_numbers(tmp_path):
    folder = write_folder(
        tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n", **{"logprobs.csv": "question_id,m2\n1,0.1\n2,\n"}
    )
    with pytest.raises(DataError, match="logprobs.csv:1: model columns"):
        load_dataset(folder)
    (folder / "logprobs.csv").write_text("question_id,m1\n1,abc\n2,\n")
    with pytest.raises(DataError, match="logprobs.csv:2: column 'm1': not a number"):
        load_dataset(folder)


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
        answers=np.array([[0, 1], [2, -1]]),
        n_options=n_opt,
        subjects=np.array(["s", "s"]),
        model_names=["a", "b"],
        logprobs=np.zeros((2, 2)),
        cost=np.ones((2, 2)),
        questions=["q1", "q2"],
        options=[["x", "y"], ["x", "y", "z"]],
        embeddings=np.ones((2, 3), dtype=np.float32),
        embedding_model="e",
    )
    folder = save_dataset(answered, tmp_path / "d")
    aligned = np.ones((3, 3), dtype=np.float32)
    fresh = ResponseMatrix(
        answers=np.zeros((3, 0), dtype=np.int8),
        n_options=np.array([2, 2, 2]),
        subjects=np.array(["s"] * 3),
        model_names=[],
        questions=["a", "b", "c"],
        options=[["x", "y"]] * 3,
    )
    np.save(folder / "embeddings_keep.npy", aligned)  # already matches the new 3 questions: a cache, kept
    save_dataset(fresh, folder)
    assert not (folder / "logprobs.csv").exists() and not (folder / "cost.csv").exists()
    assert not (folder / "embeddings_e.npy").exists()
    back = load_dataset(folder)
    assert back.n_questions == 3 and back.n_models == 0 and back.embedding_model == "keep"


# ----------------------------------------------------------------------------- records kept as written
ODD_RECORDS = [
    # ids whose text an int() rewrite would change or merge: "007" and 7, "-0" and 0
    {"question_id": "007", "category": "math", "question": "q1", "options": ["a", "b"], "answer": "A", "src": "s1"},
    {"question_id": 7, "category": "math", "question": "q2", "options": [1, 2.5, None], "answer": None},
    {"category": "law", "question_id": "-0", "question": "q3", "options": [True, "true"], "src": "s3"},
    {
        "question_id": 0,
        "category": 3,
        "question": 4,
        "options": ["x", "y"],
        "answer": "",
        "nested": {"k": [1, {"d": 2}]},
    },
    {
        "question_id": ' id, with "quotes"\r\nand a line break ',
        "category": "law",
        "question": "q5",
        "options": ["é", "\u2028", "😀"],
        "answer": "C",
    },
]


def write_records(folder: Path, records: list[dict], predictions: Optional[str] = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "questions.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    if predictions is not None:
        (folder / "predictions.csv").write_text(predictions, encoding="utf-8")
    return folder


def read_records(folder: Path) -> list[dict]:
    text = (folder / "questions.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def test_ids_options_and_fields_survive_load_save_load(tmp_path):
    src = write_records(tmp_path / "src", ODD_RECORDS)
    rm = load_dataset(src)
    assert rm.question_ids.tolist() == [r["question_id"] for r in ODD_RECORDS]
    assert rm.options[1] == ["1", "2.5", "None"]  # the matrix holds their string forms
    save_dataset(rm, tmp_path / "out")
    written = read_records(tmp_path / "out")
    assert written == ODD_RECORDS
    assert [list(r) for r in written] == [list(r) for r in ODD_RECORDS]  # key order kept too
    assert (tmp_path / "out" / "questions.jsonl").read_bytes() == (src / "questions.jsonl").read_bytes()
    back = load_dataset(tmp_path / "out")  # "007" and 7 stay two ids, not both 7
    assert back.question_ids.tolist() == rm.question_ids.tolist()
    assert [type(q) for q in back.question_ids] == [str, int, str, int, str]


def test_predictions_of_odd_ids_round_trip(tmp_path):
    rows = ['"007",A', "7,?", "-0,", "0,B", '" id, with ""quotes""\r\nand a line break ",C']
    src = write_records(tmp_path / "src", ODD_RECORDS, "question_id,m\n" + "\n".join(rows) + "\n")
    rm = load_dataset(src)
    assert rm.answers[:, 0].tolist() == [0, NO_ANSWER, NOT_ASKED, 1, 2]
    back = load_dataset(save_dataset(rm, tmp_path / "out"))
    np.testing.assert_array_equal(back.answers, rm.answers)
    assert back.question_ids.tolist() == rm.question_ids.tolist()


def test_fields_the_matrix_changed_are_written_from_it(tmp_path):
    rm = load_dataset(write_records(tmp_path / "src", ODD_RECORDS))
    rm.gold = np.array([1, 0, -1, -1, 0], dtype=np.int8)
    rm.questions = ["new q1", *rm.questions[1:]]
    rm.options = [rm.options[0], ["p", "q", "r"], *rm.options[2:]]
    rm.extra["question_fields"][0]["src"] = "edited"
    del rm.extra["question_fields"][2]["src"]
    written = read_records(save_dataset(rm, tmp_path / "out"))
    assert written[0] == {**ODD_RECORDS[0], "question": "new q1", "answer": "B", "src": "edited"}
    assert written[1] == {**ODD_RECORDS[1], "options": ["p", "q", "r"], "answer": "A"}
    assert written[2] == {k: v for k, v in ODD_RECORDS[2].items() if k != "src"}  # no answer field: still none
    assert written[3] == ODD_RECORDS[3] and written[4]["answer"] == "A"


def test_subset_keeps_each_questions_own_fields(tmp_path):
    rm = load_dataset(write_records(tmp_path / "src", ODD_RECORDS))
    sub = rm.subset([2, 0])
    written = read_records(save_dataset(sub, tmp_path / "out"))
    assert written == [ODD_RECORDS[2], ODD_RECORDS[0]]  # each row's own fields, not those of rows 0 and 1
    assert sub.extra["question_fields"] == [{"src": "s3"}, {"src": "s1"}]
    assert len(rm.extra["question_fields"]) == 5


def test_real_mmlu_pro_questions_are_written_back_byte_for_byte(tmp_path, data_dir):
    rm = load_dataset(data_dir, out_of_range="unparsable", embeddings=None)
    save_dataset(rm, tmp_path / "out")
    assert (tmp_path / "out" / "questions.jsonl").read_bytes() == (data_dir / "questions.jsonl").read_bytes()


@pytest.mark.parametrize(
    "ids, message",
    [
        (["7", 7], "question_ids: entries 0 and 1 are both '7'"),
        ([1.0, 2.0], "question_ids: entry 0 is 1.0; ids must be integers or strings"),
        ([True, 2], "question_ids: entry 0 is True"),
    ],
)
def test_saving_refuses_ids_that_would_not_load(tmp_path, ids, message):
    qids = np.empty(2, dtype=object)
    qids[:] = ids
    rm = ResponseMatrix(
        answers=np.zeros((2, 1), dtype=np.int8),
        n_options=np.array([2, 2]),
        subjects=np.array(["s", "s"]),
        model_names=["m"],
        question_ids=qids,
        questions=["a", "b"],
        options=[["x", "y"], ["x", "y"]],
    )
    with pytest.raises(DataError, match=re.escape(message)):
        save_dataset(rm, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_string_ids_of_digits_stay_strings(tmp_path):
    rm = ResponseMatrix(
        answers=np.zeros((2, 1), dtype=np.int8),
        n_options=np.array([2, 2]),
        subjects=np.array(["s", "s"]),
        model_names=["m"],
        question_ids=np.array(["007", "-0"]),
        questions=["a", "b"],
        options=[["x", "y"], ["x", "y"]],
    )
    written = read_records(save_dataset(rm, tmp_path / "out"))
    assert [r["question_id"] for r in written] == ["007", "-0"]  # not 7 and 0


def test_save_answers_writes_answer_files_only(tmp_path):
    src = write_records(tmp_path / "src", ODD_RECORDS)
    before = (src / "questions.jsonl").read_bytes()
    rm = load_dataset(src)
    answered = ResponseMatrix(
        answers=np.array([[0], [1], [-1], [-2], [2]]),
        n_options=rm.n_options,
        subjects=rm.subjects,
        model_names=["m"],
        question_ids=rm.question_ids,
        logprobs=np.full((5, 1), -0.5),
    )
    save_answers(answered, src)
    assert (src / "questions.jsonl").read_bytes() == before
    back = load_dataset(src)
    np.testing.assert_array_equal(back.answers, answered.answers)
    np.testing.assert_array_equal(back.logprobs, answered.logprobs)
    other = ResponseMatrix(
        answers=np.zeros((5, 1), dtype=np.int8),
        n_options=rm.n_options,
        subjects=rm.subjects,
        model_names=["m"],
        question_ids=np.arange(5),
    )
    with pytest.raises(
        DataError, match=r"questions.jsonl: its questions differ .* \(row 0: \('007', 2\) in the file, \('0', 2\)"
    ):
        save_answers(other, src)


def test_answer_stage_leaves_the_questions_file_untouched(tmp_path):
    from cascal.llm.config import ModelConfig, PoolConfig, RetryPolicy
    from cascal.pipeline.answer import answer_dataset
    from cascal.simulate.chat_server import ChatReply, ChatServer

    src = write_records(tmp_path / "src", ODD_RECORDS)
    text = "\ufeff" + (src / "questions.jsonl").read_text(encoding="utf-8").replace("\n", "\r\n")
    (src / "questions.jsonl").write_text(text, encoding="utf-8", newline="")  # a BOM, CRLF: kept as they are
    before = (src / "questions.jsonl").read_bytes()
    with ChatServer(lambda req: ChatReply("The answer is (B).")) as server:
        pool = PoolConfig(
            (ModelConfig(name="m", base_url=server.base_url, model="id-m", timeout=2.0),),
            retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02, jitter=0.0),
        )
        result = answer_dataset(src, pool, progress=False)
    assert (src / "questions.jsonl").read_bytes() == before
    assert result.answers[:, 0].tolist() == [1] * 5
    assert load_dataset(src).question_ids.tolist() == [r["question_id"] for r in ODD_RECORDS]


# ----------------------------------------------------------------------------- bad files are DataErrors
def test_a_huge_csv_cell_is_a_data_error_with_its_line(tmp_path):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2," + "x" * 200_000 + "\n")
    with pytest.raises(DataError, match=r"predictions.csv:3: unreadable CSV \(field larger than field limit"):
        load_dataset(folder)  # not a bare _csv.Error


@pytest.mark.parametrize(
    "line, message",
    [
        ("[" * 100_000, "questions.jsonl:3: JSON nested more than 100 levels deep"),  # not a RecursionError
        (
            '{"question_id": 3, "category": ' + "[" * 150 + "]" * 150 + ', "question": "q", "options": ["a", "b"]}',
            "questions.jsonl:3: JSON nested more than 100 levels deep",
        ),
        ('{"question_id": ' + "9" * 5000 + "}", r"questions.jsonl:3: invalid JSON \(Exceeds the limit"),
        (
            '{"question_id": "\\ud800", "category": "c", "question": "q", "options": ["a", "b"]}',
            "questions.jsonl:3: field 'question_id' holds an unpaired surrogate",
        ),
        (
            '{"question_id": 3, "category": "c", "question": "q", "options": ["a", "\\udfff"]}',
            "questions.jsonl:3: field 'options' holds an unpaired surrogate",
        ),
    ],
)
def test_pathological_question_lines_are_data_errors(tmp_path, line, message):
    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    with open(folder / "questions.jsonl", "a") as fh:
        fh.write(line + "\n")
    with pytest.raises(DataError, match=message):
        load_dataset(folder)


@pytest.mark.parametrize("name, line", [("questions.jsonl", 2), ("predictions.csv", 3), ("logprobs.csv", 2)])
def test_invalid_utf8_names_the_file_and_line(tmp_path, name, line):
    folder = write_folder(
        tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n", **{"logprobs.csv": "question_id,m1\n1,0\n2,0\n"}
    )
    data = (folder / name).read_bytes().split(b"\n")
    data[line - 1] = data[line - 1][:3] + b"\xff\xfe" + data[line - 1][3:]
    (folder / name).write_bytes(b"\n".join(data))
    with pytest.raises(DataError, match=rf"{name}:{line}: not UTF-8 text \(invalid start byte at byte \d+\)"):
        load_dataset(folder)  # the line is named (JSONL too), no UnicodeDecodeError


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    folder = write_folder(
        tmp_path / "d", QUESTIONS, "question_id,m1\r\n1,A\r\n2,B\r\n", **{"cost.csv": "question_id,m1\n1,3\n2,4\n"}
    )
    for name in ("questions.jsonl", "predictions.csv", "cost.csv"):
        (folder / name).write_bytes(b"\xef\xbb\xbf" + (folder / name).read_bytes())
    rm = load_dataset(folder)  # no "Unexpected UTF-8 BOM", no "first column must be 'question_id'"
    assert rm.question_ids.tolist() == [1, 2] and rm.answers[:, 0].tolist() == [0, 1]
    assert rm.cost[:, 0].tolist() == [3.0, 4.0]


def test_other_unchecked_cells(tmp_path):
    folder = write_folder(
        tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n", **{"logprobs.csv": "question_id,m1\n1,1e39\n2,\n"}
    )
    with pytest.raises(DataError, match=r"logprobs.csv:2: column 'm1': '1e39' is beyond the float32 range"):
        load_dataset(folder)  # not stored as inf
    (folder / "logprobs.csv").unlink()
    (folder / "predictions.csv").write_text("question_id,m1,\n1,A,\n2,A,\n")
    with pytest.raises(DataError, match=r"predictions.csv:1: model column 3 has no name"):
        load_dataset(folder)


def test_cli_reports_a_bad_file_as_one_error_line(tmp_path, capsys):
    from cascal.cli import main

    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    np.save(folder / "embeddings_e.npy", np.array([["a"], ["b"]]))
    assert main(["train", str(folder), "--out", str(tmp_path / "r.cascal")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "embeddings_e.npy: dtype <U1 is not numeric" in err and err.count("\n") == 1


def test_the_public_names_of_cascal_io_are_importable_from_it():
    import cascal.io

    before = {  # what `from cascal.io import ...` offered when io was one module
        *("LABELS_HEADER", "LOCK_FILE", "MAX_JSON_DEPTH", "MAX_LABELS_BYTES", "OUT_OF_RANGE_CHOICES"),
        *("QUESTIONS_FILE", "PREDICTIONS_FILE", "LOGPROBS_FILE", "COST_FILE", "RESPONSE_CHARS_FILE"),
        *("QUESTION_FIELDS", "QUESTION_RECORDS", "MMAP_CHECK_ROWS", "OutOfRange", "PathLike"),
        *("dataset_lock", "embedding_files", "embeddings_path", "load_dataset", "load_embeddings_file"),
        *("load_model_table", "load_labels", "save_answers", "save_dataset", "save_labels"),
    }
    assert before <= set(dir(cascal.io))
    assert set(cascal.io.__all__) <= set(dir(cascal.io))
