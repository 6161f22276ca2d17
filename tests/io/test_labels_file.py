"""labels.csv (``question_id,answer``): round trips and every malformed file named by file, line and field."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from cascal.data import DataError, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.io import MAX_LABELS_BYTES, load_dataset, load_labels, save_dataset, save_labels


def dataset() -> ResponseMatrix:
    """Four questions: ids of both kinds (one holding a comma and a quote), 4, 3, 2 and 10 options."""
    n_options = np.array([4, 3, 2, 10])
    ids = np.empty(4, dtype=object)
    ids[:] = [7, "007", 'x,"y"', "q4"]
    return ResponseMatrix(
        answers=np.zeros((4, 2), dtype=np.int8),
        n_options=n_options,
        subjects=np.array(["math", "math", "law", "law"]),
        model_names=["m1", "m2"],
        question_ids=ids,
        questions=[f"question {i}" for i in range(4)],
        options=[[f"o{j}" for j in range(k)] for k in n_options],
    )


def write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_load_aligns_answers_with_rows_and_leaves_the_rest_unlabelled(tmp_path):
    path = write(tmp_path, 'question_id,answer\nq4,J\n007,C\n\n"x,""y""",A\n')
    assert load_labels(path, dataset()).tolist() == [-1, 2, 0, 9]


def test_ids_match_by_text_integer_and_string_alike(tmp_path):
    # 7 (an integer id) and "007" (a string id) are different ids as text
    assert load_labels(write(tmp_path, "question_id,answer\n7,D\n"), dataset()).tolist() == [3, -1, -1, -1]


def test_round_trip_writes_labelled_rows_in_row_order(tmp_path):
    data = dataset()
    labels = np.array([1, -1, 1, 4])
    path = save_labels(tmp_path / "sub" / "labels.csv", data, labels)
    assert path.read_text() == 'question_id,answer\n7,B\n"x,""y""",B\nq4,E\n'
    assert load_labels(path, data).tolist() == labels.tolist()
    assert [p.name for p in path.parent.iterdir()] == ["labels.csv"]  # no temporary file left


def test_save_with_no_label_writes_the_header_only(tmp_path):
    path = save_labels(tmp_path / "labels.csv", dataset(), np.full(4, -1))
    assert path.read_text() == "question_id,answer\n"
    assert load_labels(path, dataset()).tolist() == [-1] * 4


def test_bom_crlf_and_spaces_around_the_letter_are_accepted(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbfquestion_id,answer\r\n7, A \r\n")
    assert load_labels(path, dataset()).tolist() == [0, -1, -1, -1]


def test_a_repeated_line_with_the_same_answer_counts_once(tmp_path):
    path = write(tmp_path, "question_id,answer\n7,B\n007,A\n7,B\n")
    assert load_labels(path, dataset()).tolist() == [1, 0, -1, -1]


def test_works_on_a_folder_loaded_from_disk(tmp_path):
    folder = save_dataset(dataset(), tmp_path / "d")
    data = load_dataset(folder)
    path = save_labels(tmp_path / "labels.csv", data, np.array([-1, 2, -1, 0]))
    assert load_labels(path, data).tolist() == [-1, 2, -1, 0]


@pytest.mark.parametrize(
    "text, message",
    [
        ("", r"labels\.csv: empty file \(expected the header question_id,answer\)"),
        ("id,answer\n7,A\n", r"labels\.csv:1: header must be question_id,answer, got 'id,answer'"),
        ("question_id\n7\n", r"labels\.csv:1: header must be question_id,answer, got 'question_id'"),
        ("question_id,answer,note\n", r"labels\.csv:1: header must be question_id,answer"),
        ("question_id,answer\n7,A,extra\n", r"labels\.csv:2: 3 cells, expected 2 \(question_id,answer\)"),
        ("question_id,answer\n7,A\n\n8\n", r"labels\.csv:4: 1 cells, expected 2"),
        ("question_id,answer\n7,A\nq9,B\n", r"labels\.csv:3: question_id 'q9' is not in the dataset's questions"),
        ("question_id,answer\n 7,A\n", r"labels\.csv:2: question_id ' 7' is not in the dataset's questions"),
        ("question_id,answer\n7,\n", r"labels\.csv:2: column 'answer' of question_id '7': empty \(delete the line"),
        ("question_id,answer\n7,a\n", r"labels\.csv:2: column 'answer' of question_id '7': 'a' is not an upper-case"),
        ("question_id,answer\n7,AB\n", r"labels\.csv:2: column 'answer' of question_id '7': 'AB' is not an upper-case"),
        ("question_id,answer\n7,?\n", r"labels\.csv:2: column 'answer' of question_id '7': '\?' is not an upper-case"),
        (
            "question_id,answer\n7,A\n007,D\n",
            r"labels\.csv:3: column 'answer' of question_id '007': 'D' is beyond the question's 3 options \(A-C\)",
        ),
        ("question_id,answer\nq4,K\n", r"labels\.csv:2: .*'K' is beyond the question's 10 options \(A-J\)"),
        (
            "question_id,answer\n7,A\n007,B\n7,C\n",
            r"labels\.csv:4: column 'answer' of question_id '7': 'C' contradicts 'A' on line 2",
        ),
        ("question_id,answer\n7," + "A" * 200_000 + "\n", r"labels\.csv:2: unreadable CSV \(field larger than"),
    ],
)
def test_malformed_files_are_refused_naming_file_line_and_field(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_labels(write(tmp_path, text), dataset())


def test_line_numbers_count_quoted_line_breaks(tmp_path):
    # the quoted id of the last record spans lines 4 and 5; the record is reported at the line it ends on
    path = write(tmp_path, 'question_id,answer\n"x,""y""",A\n7,B\n"a\nb",C\n')
    with pytest.raises(DataError, match=r"labels\.csv:5: question_id 'a\\nb' is not in"):
        load_labels(path, dataset())


def test_not_utf8_is_refused_with_its_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"question_id,answer\n7,A\n\xff\xfe,B\n")
    with pytest.raises(DataError, match=r"labels\.csv:3: not UTF-8 text"):
        load_labels(path, dataset())


def test_an_oversized_file_is_refused_after_a_bounded_read(tmp_path, monkeypatch):
    path = tmp_path / "labels.csv"
    with open(path, "wb") as fh:  # sparse: the size is there without writing the bytes
        fh.truncate(MAX_LABELS_BYTES + 10)
    sizes = []
    real_open = open

    class Spy:
        def __init__(self, fh):
            self.fh = fh

        def read(self, n=-1):
            sizes.append(n)
            return self.fh.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def spy_open(file, mode="r", *args, **kwargs):
        fh = real_open(file, mode, *args, **kwargs)
        return Spy(fh) if Path(file) == path else fh

    monkeypatch.setattr("builtins.open", spy_open)
    with pytest.raises(DataError, match=rf"labels\.csv: larger than {MAX_LABELS_BYTES} bytes; refused"):
        load_labels(path, dataset())
    assert sizes == [MAX_LABELS_BYTES + 1]


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_labels(tmp_path / "nope.csv", dataset())


@pytest.mark.parametrize(
    "labels, error, message",
    [
        (np.array([0, 0, 0]), InvalidParameterError, r"labels: expected an integer array of shape \(4,\)"),
        (np.array([0.0, 1.0, 0.0, 0.0]), InvalidParameterError, r"labels: expected an integer array"),
        (np.array([True, False, True, False]), InvalidParameterError, r"labels: expected an integer array"),
        (np.array([0, 3, 0, 0]), DataError, r"labels: row 1 is 3, not -1 or an option of its 3"),
        (np.array([0, -2, 0, 0]), DataError, r"labels: row 1 is -2"),
    ],
)
def test_save_refuses_labels_that_do_not_fit_the_questions(tmp_path, labels, error, message):
    with pytest.raises(error, match=message):
        save_labels(tmp_path / "labels.csv", dataset(), labels)
    assert not (tmp_path / "labels.csv").exists()


def test_a_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = save_labels(tmp_path / "labels.csv", dataset(), np.array([0, -1, -1, -1]))

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_labels(path, dataset(), np.array([0, 1, 1, 1]))
    assert path.read_text() == "question_id,answer\n7,A\n"
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]


def test_error_messages_start_with_the_file(tmp_path):
    path = write(tmp_path, "question_id,answer\nzz,A\n")
    with pytest.raises(DataError) as info:
        load_labels(path, dataset())
    assert re.match(re.escape(str(path)) + r":2: ", str(info.value))
