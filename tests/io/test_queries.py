"""Reading logged traffic for the shadow check: decision logs, texts files, damage and limits."""

from __future__ import annotations

import json
import warnings

import pytest

from cascal.errors import DataError, DecisionLogWarning, InvalidParameterError
from cascal.io.queries import read_queries
from cascal.serve.decision_log import DecisionLog, DecisionRecord

SHA = "ab" * 32


def write_log(path, texts, *, log_text=True, sha=SHA):
    log = DecisionLog(path, log_text=log_text)
    for text in texts:
        log.write(DecisionRecord(endpoint="chat", text=text, ranking=["a", "b"], model="a", router_sha256=sha))
    log.close()
    return path


def test_a_decision_log_with_texts_gives_them_in_order(tmp_path):
    texts = ["What is an allele?", "Déjà vu: a tariff question", "line\nbreak inside"]
    got = read_queries(write_log(tmp_path / "d.jsonl", texts), router_sha256=SHA)
    assert got.texts == texts and got.without_text == 0 and got.damaged_line is None
    assert got.decision_log and got.unverified == 0


def test_a_decision_log_without_texts_says_to_log_them(tmp_path):
    path = write_log(tmp_path / "d.jsonl", ["a", "b"], log_text=False)
    with pytest.raises(DataError, match=r"none of its 2 records holds a query text .* --log-text"):
        read_queries(path)


def test_a_plain_texts_file_and_a_questions_file(tmp_path):
    plain = tmp_path / "q.txt"
    plain.write_text("\ufefffirst query\n\n  second query  \n", encoding="utf-8")
    assert read_queries(plain).texts == ["first query", "second query"]
    questions = tmp_path / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i, "question": f"q{i}"}) + "\n" for i in range(3)))
    assert read_queries(questions).texts == ["q0", "q1", "q2"]


def test_a_damaged_line_ends_the_reading_with_a_warning_naming_it(tmp_path):
    path = write_log(tmp_path / "d.jsonl", ["one", "two", "three"])
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:25]  # a write cut by a crash
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = read_queries(path)
    assert got.texts == ["one", "two"] and got.damaged_line == 3
    assert [w.category for w in caught] == [DecisionLogWarning]
    assert f"{path}:3: damaged line (not JSON" in str(caught[0].message)
    assert "read the 2 lines before it, left 0 after it unread" in str(caught[0].message)
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"question": "q0"}) + "\n{garbled\n" + json.dumps({"question": "q2"}) + "\n")
    with pytest.warns(DecisionLogWarning, match=r"questions\.jsonl:2: damaged line \(not JSON\)"):
        assert read_queries(questions).texts == ["q0"]


def test_a_log_of_another_router_is_refused_naming_its_first_foreign_line(tmp_path):
    path = write_log(tmp_path / "d.jsonl", ["one", "two"])
    write_log(path, ["three"], sha="cd" * 32)  # appended by a gateway serving another router
    with pytest.raises(DataError, match=r"d\.jsonl:3: router_sha256 cdcdcdcd.* another router"):
        read_queries(path, router_sha256=SHA, router_name="r.cascal")
    assert read_queries(path).texts == ["one", "two", "three"]  # no router given: not checked


def test_lines_without_a_router_hash_are_accepted_with_the_coverage_warning(tmp_path):
    path = write_log(tmp_path / "d.jsonl", ["one", "two"], sha=None)
    with pytest.warns(
        DecisionLogWarning, match=r"2 of 2 lines do not record router_sha256; accepted as written by r\.cascal"
    ):
        got = read_queries(path, router_sha256=SHA, router_name="r.cascal")
    assert got.texts == ["one", "two"] and got.unverified == 2


def test_limit_missing_file_and_bad_bytes(tmp_path):
    path = write_log(tmp_path / "d.jsonl", [f"q{i}" for i in range(10)])
    got = read_queries(path, limit=4)
    assert got.texts == ["q0", "q1", "q2", "q3"] and got.truncated
    with pytest.raises(InvalidParameterError, match="limit"):
        read_queries(path, limit=0)
    with pytest.raises(DataError, match="no such queries file"):
        read_queries(tmp_path / "absent.jsonl")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"bad.txt:2: not UTF-8"):
        read_queries(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="holds no query text"):
        read_queries(empty)
