"""The labelling session loop (cascal.pipeline.label.label_session) with a scripted reader and a
stand-in question source; the real router and a real terminal are in test_label_cli.py."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from cascal.data import DataError, ResponseMatrix
from cascal.errors import InvalidParameterError
from cascal.io import load_labels, save_labels
from cascal.pipeline.label import label_session, labels_lock, parse_key


def dataset(n: int = 8, n_options: int = 4) -> ResponseMatrix:
    return ResponseMatrix(
        answers=np.zeros((n, 2), dtype=np.int8),
        n_options=np.full(n, n_options),
        subjects=np.array(["math", "law"] * (n // 2)),
        model_names=["m1", "m2"],
        question_ids=np.array([f"q{i}" for i in range(n)]),
        questions=[f"What is question {i}?" for i in range(n)],
        options=[[f"option {i}.{j}" for j in range(n_options)] for i in range(n)],
    )


class Source:
    """Suggests unlabelled rows in a fixed order (``order``), recording what it was asked."""

    def __init__(self, order: list[int]):
        self.order = order
        self.calls: list[tuple[Optional[list[int]], int]] = []

    def __call__(self, labels: Optional[np.ndarray], n: int) -> np.ndarray:
        self.calls.append((None if labels is None else labels.tolist(), n))
        free = [r for r in self.order if labels is None or labels[r] < 0]
        return np.array(free[:n], dtype=np.int64)


class Typist:
    """Types ``keys`` one per prompt; records each prompt, the labels file as it was when the prompt
    was shown, and everything written. A key may be an exception to raise instead."""

    def __init__(self, keys: list, out: Path, data: ResponseMatrix):
        self.keys = list(keys)
        self.out, self.data = out, data
        self.prompts: list[str] = []
        self.saved: list[list[int]] = []
        self.written: list[str] = []

    def read(self, prompt: str) -> str:
        self.prompts.append(prompt)
        self.saved.append(load_labels(self.out, self.data).tolist() if self.out.exists() else [])
        if not self.keys:
            raise EOFError
        key = self.keys.pop(0)
        if isinstance(key, BaseException):
            raise key
        return key

    def write(self, text: str) -> None:
        self.written.append(text)

    @property
    def shown(self) -> list[str]:
        """The question headers shown, e.g. ``[1/3] math - question q0``."""
        return [t.strip().splitlines()[0] for t in self.written if t.strip().startswith("[")]


def run(data, source, keys, out, n):
    typist = Typist(keys, out, data)
    summary = label_session(data, source, out, n, read=typist.read, write=typist.write)
    return summary, typist


def test_letters_of_either_case_are_saved_after_every_answer(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    summary, typist = run(data, Source([5, 2, 7]), ["b", "D", "a"], out, 3)
    assert load_labels(out, data).tolist() == [-1, -1, 3, -1, -1, 1, -1, 0]
    assert out.read_text() == "question_id,answer\nq2,D\nq5,B\nq7,A\n"
    # when each prompt was shown, every earlier answer was already on disk
    assert [sum(v >= 0 for v in s) for s in typist.saved] == [0, 1, 2]
    assert typist.shown == ["[1/3] law - question q5", "[2/3] math - question q2", "[3/3] law - question q7"]
    assert (summary.answered, summary.skipped, summary.total, summary.stop) == (3, 0, 3, "done")


def test_a_question_is_shown_with_its_text_and_lettered_options(tmp_path):
    data = dataset(n_options=3)
    _, typist = run(data, Source([1]), ["c"], tmp_path / "l.csv", 1)
    block = typist.written[0].strip().splitlines()
    assert block == [
        "[1/1] law - question q1",
        "What is question 1?",
        "  A. option 1.0",
        "  B. option 1.1",
        "  C. option 1.2",
    ]
    assert typist.prompts == ["answer (A-C, s = skip, q = quit): "]


@pytest.mark.parametrize("bad", ["x", "E", "", "  ", "ab", "1", "qq"])
def test_a_bad_key_is_explained_and_asked_again(tmp_path, bad):
    data, out = dataset(), tmp_path / "labels.csv"
    summary, typist = run(data, Source([3]), [bad, "c"], out, 1)
    assert len(typist.prompts) == 2 and typist.shown == ["[1/1] law - question q3"]  # same question again
    message = typist.written[1]
    assert "type a letter A-D, s to skip or q to quit" in message
    if bad.strip():
        assert repr(bad.strip()) in message
    else:
        assert message.startswith("no answer typed")
    assert load_labels(out, data)[3] == 2 and summary.total == 1


def test_skipped_questions_are_not_shown_again_and_do_not_count(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    source = Source([0, 1, 2, 3, 4])
    summary, typist = run(data, source, ["s", "a", "SKIP", "b"], out, 2)
    assert typist.shown == [
        "[1/2] math - question q0",
        "[1/2] law - question q1",
        "[2/2] math - question q2",
        "[2/2] law - question q3",
    ]
    assert load_labels(out, data).tolist() == [-1, 0, -1, 1, -1, -1, -1, -1]
    assert (summary.answered, summary.skipped, summary.stop) == (2, 2, "done")
    # first asked for the 2 missing labels; each time the suggestions ran out, asked again with the
    # labels typed so far, for the missing one plus as many as were skipped (it may offer them again)
    after_one = [-1, 0, -1, -1, -1, -1, -1, -1]
    assert source.calls == [(None, 2), (after_one, 1 + 1), (after_one, 1 + 2)]


def test_q_quits_keeping_what_was_answered(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    summary, typist = run(data, Source([4, 5, 6]), ["d", "Q"], out, 3)
    assert len(typist.prompts) == 2
    assert load_labels(out, data).tolist() == [-1, -1, -1, -1, 3, -1, -1, -1]
    assert (summary.answered, summary.total, summary.target, summary.stop) == (1, 1, 3, "quit")


def test_end_of_input_stops_like_quit(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    summary, _ = run(data, Source([4, 5, 6]), ["d"], out, 3)
    assert load_labels(out, data)[4] == 3
    assert (summary.total, summary.stop) == (1, "end of input")


def test_ctrl_c_stops_with_every_answer_saved(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    summary, _ = run(data, Source([4, 5, 6]), ["d", "a", KeyboardInterrupt()], out, 3)
    assert load_labels(out, data).tolist() == [-1, -1, -1, -1, 3, 0, -1, -1]
    assert (summary.answered, summary.stop) == (2, "interrupted")


def test_ctrl_c_during_a_save_still_saves_the_answer(tmp_path, monkeypatch):
    import cascal.io

    data, out = dataset(), tmp_path / "labels.csv"
    real_save, calls = cascal.io.save_labels, []

    def interrupted_once(*args):
        calls.append(args[2].tolist())
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real_save(*args)

    monkeypatch.setattr(cascal.io, "save_labels", interrupted_once)
    summary, _ = run(data, Source([4, 5]), ["c", "a"], out, 2)
    assert load_labels(out, data).tolist() == [-1, -1, -1, -1, 2, -1, -1, -1]
    assert (summary.answered, summary.total, summary.stop) == (1, 1, "interrupted")


def test_a_rerun_resumes_toward_the_same_total(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    source = Source([6, 1, 3, 0, 2])
    first, _ = run(data, source, ["a", "b", "q"], out, 4)
    assert (first.total, first.stop) == (2, "quit")
    second, typist = run(data, source, ["c", "d"], out, 4)
    # the labels on disk go to the source (never suggested again) and count toward --n 4
    assert source.calls[-1] == ([-1, 1, -1, -1, -1, -1, 0, -1], 2)
    assert typist.shown == ["[3/4] law - question q3", "[4/4] math - question q0"]
    assert "holds 2 labels: asking for 2 more" in typist.written[0]
    assert load_labels(out, data).tolist() == [3, 1, -1, 2, -1, -1, 0, -1]
    assert (second.answered, second.total, second.stop) == (2, 4, "done")


def test_nothing_is_asked_once_the_file_holds_n_labels(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    save_labels(out, data, np.array([0, 1, 2, -1, -1, -1, -1, -1]))
    source = Source(list(range(8)))
    summary, typist = run(data, source, ["a"], out, 3)
    assert typist.prompts == [] and source.calls == []
    assert "already holds 3 labels" in typist.written[0]
    assert (summary.answered, summary.total, summary.stop) == (0, 3, "done")


def test_the_session_ends_when_the_source_runs_out(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    summary, typist = run(data, Source([2, 3]), ["a", "s"], out, 5)
    assert len(typist.prompts) == 2
    assert (summary.total, summary.skipped, summary.stop) == (1, 1, "no more suggestions")


def test_suggested_rows_already_labelled_or_repeated_are_dropped(tmp_path):
    data, out = dataset(), tmp_path / "labels.csv"
    save_labels(out, data, np.array([0, -1, -1, -1, -1, -1, -1, -1]))
    summary, typist = run(data, lambda labels, n: np.array([0, 2, 2, 5]), ["a", "b"], out, 3)
    assert typist.shown == ["[2/3] math - question q2", "[3/3] law - question q5"]


def test_a_source_returning_rows_outside_the_dataset_is_a_bug(tmp_path):
    with pytest.raises(ValueError, match=r"suggest: row 8 is not a row of the dataset \(0\.\.7\)"):
        run(dataset(), lambda labels, n: np.array([8]), ["a"], tmp_path / "l.csv", 1)


def test_an_invalid_labels_file_is_refused_and_left_untouched(tmp_path):
    out = tmp_path / "labels.csv"
    out.write_text("question_id,answer\nq1,Z\n")
    with pytest.raises(DataError, match=r"labels\.csv:2: "):
        run(dataset(), Source([0]), ["a"], out, 2)
    assert out.read_text() == "question_id,answer\nq1,Z\n"


@pytest.mark.parametrize("n", [0, -1, True, 2.0])
def test_n_must_be_a_positive_integer(tmp_path, n):
    with pytest.raises(InvalidParameterError, match="n: must be a positive integer"):
        run(dataset(), Source([0]), [], tmp_path / "l.csv", n)


def test_with_17_options_q_is_an_answer_and_quit_is_a_word(tmp_path):
    data, out = dataset(n_options=17), tmp_path / "labels.csv"
    summary, typist = run(data, Source([0, 1, 2]), ["q", "s", "quit"], out, 3)
    assert typist.prompts[0] == "answer (A-Q, s = skip, quit = quit): "
    assert load_labels(out, data)[0] == 16
    assert (summary.total, summary.skipped, summary.stop) == (1, 1, "quit")


@pytest.mark.parametrize(
    "text, n_options, action, choice",
    [
        ("a", 4, "answer", 0),
        (" D ", 4, "answer", 3),
        ("e", 4, "invalid", -1),
        ("s", 4, "skip", -1),
        ("S", 4, "skip", -1),
        ("Skip", 4, "skip", -1),
        ("q", 4, "quit", -1),
        ("QUIT", 4, "quit", -1),
        ("s", 19, "answer", 18),
        ("skip", 19, "skip", -1),
        ("q", 17, "answer", 16),
        ("t", 20, "answer", 19),
        ("", 4, "invalid", -1),
    ],
)
def test_parse_key(text, n_options, action, choice):
    key = parse_key(text, n_options)
    assert (key.action, key.choice) == (action, choice)


def test_line_reader_splits_lines_and_ends_at_end_of_input():
    import io
    import os

    from cascal.pipeline.label import LineReader

    r, w = os.pipe()
    os.write(w, "a\r\nskip\nq\u00e9\nlast".encode())
    os.close(w)
    shown = io.StringIO()
    reader = LineReader(r, out=shown)
    assert [reader("> "), reader("> "), reader("> "), reader("> ")] == ["a", "skip", "q\u00e9", "last"]
    with pytest.raises(EOFError):
        reader("> ")
    assert shown.getvalue() == "> " * 5
    os.close(r)


def test_line_reader_raises_ctrl_c_caught_by_another_thread():
    """A SIGINT whose handler ran in another thread (as when the kernel hands it to a worker thread)
    still ends the wait at once; a plain blocking read would wait for the next line."""
    import io
    import os
    import signal
    import threading
    import time

    from cascal.pipeline.label import LineReader

    # Python's own SIGINT handler, also when the tests run in a background job (SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    r, w = os.pipe()
    timer = threading.Timer(0.3, signal.raise_signal, args=(signal.SIGINT,))  # handled in the timer's thread
    rescue = threading.Timer(20.0, os.write, args=(w, b"late\n"))  # unblocks a reader that missed it
    timer.start()
    rescue.start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            LineReader(r, out=io.StringIO())("> ")
        assert time.monotonic() - start < 5.0
    finally:
        rescue.cancel()
        os.close(w)
        os.close(r)
        signal.signal(signal.SIGINT, previous)


def test_a_labels_file_held_by_another_session_is_refused_untouched(tmp_path):
    import os

    data, out = dataset(), tmp_path / "labels.csv"
    save_labels(out, data, np.array([0, -1, -1, -1, -1, -1, -1, -1]))
    source = Source([1, 2])
    with labels_lock(out) as lock:
        assert lock == tmp_path / ".labels.csv.lock" and lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(
            DataError, match=rf"labels\.csv: another labelling session \(pid {os.getpid()}\) is writing it"
        ):
            run(data, source, ["b"], out, 2)
    assert source.calls == [] and out.read_text() == "question_id,answer\nq0,A\n"
    summary, _ = run(data, source, ["b"], out, 2)  # released at the end of the block
    assert summary.total == 2
