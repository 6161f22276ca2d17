"""`cascal label` in a real terminal (a pseudo-terminal from the stdlib pty module) on a small
simulated dataset folder and a router trained on it by `cascal train`; then `cascal train --labels`."""

from __future__ import annotations

import codecs
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from simulated_data import simulated_responses

from cascal.cli import main
from cascal.data import LETTERS
from cascal.io import load_dataset, load_labels, save_dataset, save_labels
from cascal.pipeline.embed import embed_dataset
from cascal.pipeline.label import labels_lock
from cascal.router import CascalRouter
from cascal.simulate import SimWorld

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a POSIX pseudo-terminal")

#: The question header of `cascal label`: counter, subject, id.
HEADER = re.compile(r"\[(\d+)/(\d+)\] (\S+) - question (\S+)\r?\n")
PROMPT = re.compile(r"answer \(A-([A-T]), s = skip, q = quit\): ")


#: Terminals started by the current test (killed at its end if still running, e.g. after a failure).
RUNNING: list[Terminal] = []


@pytest.fixture(autouse=True)
def no_stray_terminal():
    yield
    while RUNNING:
        term = RUNNING.pop()
        if term.status is None:
            term.kill()


class Terminal:
    """A `cascal` command run on a pseudo-terminal: what it writes is read from the master side,
    what is typed is written to it (the terminal echoes typed text and turns Ctrl-C into SIGINT)."""

    def __init__(self, *argv: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        pid, fd = pty.fork()
        if pid == 0:  # the child: the terminal is its stdin, stdout, stderr and controlling tty
            try:
                # a command started from a terminal gets Ctrl-C's default action, even when these
                # tests run in a background job (which starts with SIGINT ignored)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execve(sys.executable, [sys.executable, "-m", "cascal", *argv], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        RUNNING.append(self)
        self.text = ""  # everything read so far
        self.seen = 0  # where the next expect starts
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.status: Optional[int] = None

    def expect(self, pattern: re.Pattern, timeout: float = 60.0) -> re.Match:
        """The next match of ``pattern`` in the output after the previous match."""
        deadline = time.monotonic() + timeout
        while True:
            match = pattern.search(self.text, self.seen)
            if match:
                self.seen = match.end()
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no {pattern.pattern!r} in the output:\n{self.text[self.seen :]}")

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child exited and closed the terminal
            data = b""
        self.text += self.decoder.decode(data).replace("\r\n", "\n")
        return bool(data)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 60.0) -> int:
        """The exit status, after reading the rest of the output."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"cascal still running after {timeout} s:\n{self.text}")
            self._read(0.05)
        while self._read(0.05):
            pass
        os.close(self.fd)
        return self.status

    def kill(self) -> None:
        """``kill -9`` the command (and reap it)."""
        os.kill(self.pid, signal.SIGKILL)
        self.status = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        os.close(self.fd)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A 240-question simulated dataset folder (2 subjects, 6 models) and a router trained on it."""
    root = tmp_path_factory.mktemp("label_cli")
    data = simulated_responses(SimWorld(seed=11), 2, 120)
    save_dataset(data, root / "data")
    embed_dataset(root / "data", "hashing-256")
    assert main(["train", str(root / "data"), "--out", str(root / "router.cascal")]) == 0
    return root


def label(folder: Path, out: Path, n: int, *extra: str) -> Terminal:
    return Terminal(
        "label",
        str(folder / "data"),
        "--router",
        str(folder / "router.cascal"),
        "--n",
        str(n),
        "--out",
        str(out),
        *extra,
    )


def suggestions(folder: Path, labels: Optional[np.ndarray], n: int) -> list[str]:
    """The ids the trained router suggests, computed here from the same folder."""
    data = load_dataset(folder / "data")
    router = CascalRouter.load(folder / "router.cascal")
    rows = router.suggest_labels(data.embeddings, data, n, labels=labels)
    return [str(data.question_ids[r]) for r in rows]


def labels_by_id(folder: Path, out: Path) -> dict[str, str]:
    data = load_dataset(folder / "data")
    labels = load_labels(out, data)
    return {str(data.question_ids[r]): LETTERS[labels[r]] for r in np.flatnonzero(labels >= 0)}


def test_answer_skip_bad_key_quit_then_resume_to_the_total(folder, tmp_path):
    out = tmp_path / "labels.csv"
    first_four = suggestions(folder, None, 4)
    term = label(folder, out, 4)
    head = term.expect(HEADER)
    assert head.groups()[:2] == ("1", "4") and head.group(4) == first_four[0]
    last = term.expect(PROMPT).group(1)
    term.type("Z\r")  # not an option: explained, the same question asked again
    term.expect(re.compile(rf"'Z' is not an option of this question: type a letter A-{last}, s to skip or q to quit"))
    term.expect(PROMPT)
    assert not HEADER.search(term.text, head.end())
    term.type("b\r")  # lower case answers too
    head = term.expect(HEADER)
    assert head.groups()[:2] == ("2", "4") and head.group(4) == first_four[1]
    skipped = head.group(4)
    term.expect(PROMPT)
    term.type("s\r")
    head = term.expect(HEADER)
    assert head.groups()[:2] == ("2", "4") and head.group(4) == first_four[2]  # skipping does not count
    term.expect(PROMPT)
    term.type("A\r")
    term.expect(HEADER)
    term.expect(PROMPT)
    term.type("q\r")
    term.expect(re.compile(r"stopped: 2 of 4 labels in .*labels\.csv \(2 new this session, 1 skipped\)"))
    term.expect(re.compile("run the same command again to continue"))
    assert term.wait() == 0
    assert labels_by_id(folder, out) == {first_four[0]: "B", first_four[2]: "A"}
    assert skipped not in labels_by_id(folder, out)

    # the same command again continues toward 4: the two labels are never suggested again
    data = load_dataset(folder / "data")
    known = load_labels(out, data)
    next_two = suggestions(folder, known, 2)
    assert not set(next_two) & set(labels_by_id(folder, out))
    term = label(folder, out, 4)
    term.expect(re.compile(r"labels\.csv holds 2 labels: asking for 2 more \(--n 4 is the total wanted\)"))
    head = term.expect(HEADER)
    assert head.groups()[:2] == ("3", "4") and head.group(4) == next_two[0]
    term.expect(PROMPT)
    term.type("\x04")  # Ctrl-D at the prompt: like q
    term.expect(re.compile(r"end of input: 2 of 4 labels .*\(0 new this session\)"))
    assert term.wait() == 0

    term = label(folder, out, 4)
    for counter in ("3/4", "4/4"):
        assert "/".join(term.expect(HEADER).groups()[:2]) == counter
        term.expect(PROMPT)
        term.type("a\r")
    term.expect(re.compile(r"done: 4 of 4 labels in .*labels\.csv \(2 new this session\)"))
    assert term.wait() == 0
    final = labels_by_id(folder, out)
    assert len(final) == 4 and set(final) >= {first_four[0], first_four[2], next_two[0]}

    term = label(folder, out, 4)  # nothing left to ask
    term.expect(re.compile(r"already holds 4 labels \(--n 4 is the total wanted\): nothing to ask"))
    assert term.wait() == 0
    assert not HEADER.search(term.text)
    assert labels_by_id(folder, out) == final


def test_ctrl_c_saves_and_exits_without_a_traceback(folder, tmp_path):
    out = tmp_path / "labels.csv"
    term = label(folder, out, 5)
    term.expect(HEADER)
    term.expect(PROMPT)
    term.type("c\r")
    head = term.expect(HEADER)
    term.expect(PROMPT)
    term.type("\x03")  # Ctrl-C: the terminal sends SIGINT
    term.expect(re.compile(r"interrupted: 1 of 5 labels .*\(1 new this session\)"))
    assert term.wait() == 130
    assert "Traceback" not in term.text
    assert list(labels_by_id(folder, out).values()) == ["C"]
    assert head.group(4) not in labels_by_id(folder, out)


def test_kill_9_loses_no_answer_already_typed(folder, tmp_path):
    """Once the next question is shown, every answer typed before it is on disk, so a `kill -9`
    at any prompt loses nothing."""
    out = tmp_path / "labels.csv"
    term = label(folder, out, 10)
    typed: dict[str, str] = {}
    head = term.expect(HEADER)
    for letter in "ABCD":
        term.expect(PROMPT)
        term.type(letter.lower() + "\r")
        typed[head.group(4)] = letter
        head = term.expect(HEADER)
    term.expect(PROMPT)
    term.kill()
    assert labels_by_id(folder, out) == typed
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left
    with labels_lock(out):  # the killed session's lock went with it
        pass


def test_a_second_session_on_the_same_file_is_refused(folder, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    term = label(folder, out, 3)
    term.expect(HEADER)
    term.expect(PROMPT)
    term.type("a\r")
    term.expect(HEADER)
    term.expect(PROMPT)
    argv = ["label", str(folder / "data"), "--router", str(folder / "router.cascal"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"error: {out}: another labelling session (pid {term.pid}) is writing it; finish or quit that one first\n"
    )
    term.type("q\r")
    assert term.wait() == 0
    assert len(labels_by_id(folder, out)) == 1  # the refused session wrote nothing


def test_a_session_through_a_symlink_to_the_same_file_is_refused(folder, tmp_path, capsys):
    """The lock is the resolved file's: ``b.csv -> a.csv`` is the same labels file as ``a.csv``."""
    out = tmp_path / "a.csv"
    link = tmp_path / "b.csv"
    link.symlink_to(out)
    term = label(folder, out, 3)
    term.expect(HEADER)
    term.expect(PROMPT)
    argv = ["label", str(folder / "data"), "--router", str(folder / "router.cascal"), "--out", str(link)]
    assert main(argv) == 2
    assert f"error: {link}: another labelling session (pid {term.pid})" in capsys.readouterr().err
    term.type("q\r")
    assert term.wait() == 0


def test_answers_can_be_piped_in(folder, tmp_path):
    """stdin need not be a terminal (scripting): one answer per line; the end of input stops."""
    out = tmp_path / "labels.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    argv = [sys.executable, "-m", "cascal", "label", str(folder / "data"), "--router", str(folder / "router.cascal")]
    done = subprocess.run(
        [*argv, "--n", "5", "--out", str(out)], input="a\ns\nb\n", capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "end of input: 2 of 5 labels" in done.stdout
    first = suggestions(folder, None, 3)
    assert labels_by_id(folder, out) == {first[0]: "A", first[2]: "B"}


def test_default_labels_file_is_in_the_dataset_folder(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # end of input at once
    assert main(["label", str(folder / "data"), "--router", str(folder / "router.cascal"), "--n", "2"]) == 0
    assert "end of input: 0 of 2 labels in " + str(folder / "data" / "labels.csv") in capsys.readouterr().out
    assert not (folder / "data" / "labels.csv").exists()  # nothing answered, nothing written


def test_a_router_of_another_pool_is_refused(folder, tmp_path, capsys):
    data = load_dataset(folder / "data")
    other = data.select_models(data.model_names[:3])
    save_dataset(other, tmp_path / "other")
    embed_dataset(tmp_path / "other", "hashing-256")
    code = main(
        ["label", str(tmp_path / "other"), "--router", str(folder / "router.cascal"), "--out", str(tmp_path / "l.csv")]
    )
    assert code == 2
    assert re.search(
        r"^error: .*other: predictions\.csv's models .* differ from the pool of .*router\.cascal",
        capsys.readouterr().err,
        re.M,
    )


def test_train_with_labels_calibrates_the_router_and_says_how_many(folder, tmp_path, capsys):
    """Every question labelled with the answer of the model the consensus ranks last: the router
    trained with these labels ranks that model first, and is the one fit(labels=...) gives in process."""
    data = load_dataset(folder / "data")
    free = CascalRouter.load(folder / "router.cascal")
    last = int(np.argmin(free.global_scores_))
    keyed = np.where(data.answers[:, last] >= 0, data.answers[:, last], -1)
    out = save_labels(tmp_path / "labels.csv", data, keyed)
    n_labelled = int((keyed >= 0).sum())
    assert n_labelled > 100
    capsys.readouterr()
    assert main(["train", str(folder / "data"), "--out", str(tmp_path / "r.cascal"), "--labels", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"labels: {n_labelled} labelled questions from {out} calibrate the scores" in printed
    labelled = CascalRouter.load(tmp_path / "r.cascal")
    assert int(np.argmax(labelled.global_scores_)) == last != int(np.argmax(free.global_scores_))
    in_process = CascalRouter(embedding_model="hashing-256", random_state=0)
    in_process.fit(data.embeddings, data, labels=load_labels(out, data))
    assert np.array_equal(labelled.route_scores(data.embeddings), in_process.route_scores(data.embeddings))


def test_train_with_an_empty_labels_file_is_the_label_free_fit(folder, tmp_path, capsys):
    data = load_dataset(folder / "data")
    out = save_labels(tmp_path / "labels.csv", data, np.full(data.n_questions, -1))
    capsys.readouterr()
    assert main(["train", str(folder / "data"), "--out", str(tmp_path / "r.cascal"), "--labels", str(out)]) == 0
    assert f"labels: none in {out} (label-free fit)" in capsys.readouterr().out
    fitted, free = CascalRouter.load(tmp_path / "r.cascal"), CascalRouter.load(folder / "router.cascal")
    assert np.array_equal(fitted.global_scores_, free.global_scores_)
    assert np.array_equal(fitted.centroid_scores_, free.centroid_scores_)
    assert np.array_equal(fitted.route_scores(data.embeddings), free.route_scores(data.embeddings))


def test_train_with_a_bad_labels_file_is_one_error_line(folder, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    out.write_text("question_id,answer\nq0,A\nnot-a-question,B\n")
    code = main(["train", str(folder / "data"), "--out", str(tmp_path / "r.cascal"), "--labels", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"error: {out}:3: question_id 'not-a-question' is not in the dataset's questions\n"
    assert not (tmp_path / "r.cascal").exists()
