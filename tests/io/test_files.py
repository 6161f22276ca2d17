"""Atomic writes and locks (cascal.io.files), and the writers of the package that rely on them.

An atomic write replaces its target only once the new content is complete: a write that raises or
a writer killed mid-write leaves the old file, the temporary file sits in the target's folder under
a hidden ``.<name>.<random>.tmp`` name, and the new file gets the permissions ``open()`` would give.
A lock refuses a second holder, naming the holder's pid.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cascal.errors import DataError, InvalidParameterError
from cascal.io import LOCK_FILE, atomic_write_text, dataset_lock
from cascal.io.files import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    exclusive_lock,
    labels_lock,
    labels_lock_path,
    new_file_mode,
)


def leftovers(folder: Path, name: str) -> list[str]:
    """Names in ``folder`` other than ``name``."""
    return sorted(p.name for p in folder.iterdir() if p.name != name)


@pytest.fixture
def umask():
    """Set the process's umask for one test (and restore it)."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield lambda mask: os.umask(mask)
    os.umask(saved)


# ----------------------------------------------------------------------------- atomic writes
def test_text_and_bytes_replace_the_target(tmp_path):
    target = tmp_path / "f.csv"
    target.write_text("old\n")
    assert atomic_write_text(target, "a,b\r\nc\n") == target
    assert target.read_bytes() == b"a,b\r\nc\n"  # line endings as given, UTF-8
    atomic_write_text(target, "é")
    assert target.read_bytes() == "é".encode()
    assert atomic_write_bytes(tmp_path / "g.bin", b"\x00\xff") == tmp_path / "g.bin"
    assert (tmp_path / "g.bin").read_bytes() == b"\x00\xff"
    assert leftovers(tmp_path, "f.csv") == ["g.bin"]


@pytest.mark.parametrize("kind", ["text", "bytes", "path"])
def test_an_exception_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, kind):
    target = tmp_path / "data.npy"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        if kind == "path":
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"half")
                raise RuntimeError("disk full")
        else:
            with atomic_open(target, "w" if kind == "text" else "wb") as fh:
                fh.write("half" if kind == "text" else b"half")
                fh.flush()
                raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path, "data.npy") == []


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def broken_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert leftovers(tmp_path, "f.txt") == []


KILLED_WRITER = """
import os, sys
from cascal.io.files import atomic_open
with atomic_open(sys.argv[1], "wb") as fh:
    fh.write(b"new" * 100_000)
    fh.flush()
    os.fsync(fh.fileno())
    print(fh.name, flush=True)
    os._exit(9)  # killed mid-write: no cleanup, no rename
"""


def test_a_killed_writer_leaves_the_old_file_and_only_a_hidden_temporary(tmp_path):
    target = tmp_path / "predictions.csv"
    target.write_bytes(b"old")
    run = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 9, run.stderr
    assert target.read_bytes() == b"old"
    tmp = Path(run.stdout.strip())
    assert tmp.parent == tmp_path and tmp.stat().st_size == 300_000  # the half-written data went there
    assert leftovers(tmp_path, "predictions.csv") == [tmp.name]
    assert tmp.name.startswith(".predictions.csv.") and tmp.name.endswith(".tmp")
    assert list(tmp_path.glob("*.csv")) == [target]


def test_the_temporary_file_is_hidden_in_the_targets_folder(tmp_path):
    target = tmp_path / "sub" / "embeddings_m.npy"
    target.parent.mkdir()
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.exists() and not target.exists()
        assert tmp.name.startswith(".embeddings_m.npy.") and tmp.name.endswith(".tmp")
        assert not list(target.parent.glob("embeddings*.npy"))  # no dataset file pattern sees it
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x" and not tmp.exists()
    with atomic_open(target, "wb") as fh:
        assert Path(fh.name).parent == target.parent and Path(fh.name) != target


def test_two_writers_never_share_a_temporary_file(tmp_path):
    target = tmp_path / "f"
    with atomic_open(target) as a, atomic_open(target) as b:
        assert a.name != b.name
        a.write("a")
        b.write("b")
    assert target.read_text() == "a"  # the last one to finish wins, whole


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_the_new_file_mode_follows_the_umask(tmp_path, umask, mask):
    umask(mask)
    assert new_file_mode() == 0o666 & ~mask
    assert os.umask(mask) == mask  # reading the mode left the umask as it was
    (tmp_path / "plain").write_text("x")  # what open() gives
    expected = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    atomic_write_text(tmp_path / "text", "x")
    atomic_write_bytes(tmp_path / "bytes", b"x")
    with atomic_path(tmp_path / "path") as tmp:
        tmp.write_bytes(b"x")
    for name in ("text", "bytes", "path"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected == 0o666 & ~mask, name


def test_a_symlinked_target_is_replaced_and_what_it_pointed_to_is_kept(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "predictions.csv").write_text("shared\n")
    folder = tmp_path / "d"
    folder.mkdir()
    link = folder / "predictions.csv"
    link.symlink_to(shared / "predictions.csv")
    atomic_write_text(link, "mine\n")
    assert not link.is_symlink() and link.read_text() == "mine\n"
    assert (shared / "predictions.csv").read_text() == "shared\n"
    assert leftovers(folder, "predictions.csv") == [] and leftovers(shared, "predictions.csv") == []


def test_other_modes_are_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="mode: expected 'w' or 'wb', got 'a'"):
        with atomic_open(tmp_path / "f", "a"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_errors_name_the_target_not_its_temporary_file(tmp_path):
    target = tmp_path / "absent" / "f"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write_text(target, "x")
    assert info.value.filename == str(target) and info.value.filename2 is None
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError) as info:  # os.replace cannot put a file over a folder
        atomic_write_text(tmp_path / "dir", "x")
    assert info.value.filename == str(tmp_path / "dir") and info.value.filename2 is None
    assert leftovers(tmp_path, "dir") == []  # no temporary file left behind


# ----------------------------------------------------------------------------- locks
def test_dataset_lock_refuses_a_second_holder_and_is_released(tmp_path):
    with dataset_lock(tmp_path) as lock:
        assert lock == tmp_path / LOCK_FILE
        assert lock.read_text().strip() == str(__import__("os").getpid())
        probe = (
            "import sys; from cascal.io import dataset_lock\n"
            "try:\n    with dataset_lock(sys.argv[1]): pass\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
        )
        out = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert out.stdout.startswith("DataError") and "is being answered by another run (pid" in out.stdout
    with dataset_lock(tmp_path):  # released: taken again at once
        pass
    with pytest.raises(DataError, match="no such dataset folder"):
        with dataset_lock(tmp_path / "absent"):
            pass


def test_atomic_writes_from_threads_never_collide(tmp_path):
    # each writer has its own temporary file: no writer's os.replace moves another one's file away
    target = tmp_path / "predictions.csv"
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for _ in range(50):
                atomic_write_text(target, tag * 1000)
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(c,)) for c in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_text() in {c * 1000 for c in "abcd"}
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.csv"]


def test_a_second_labels_session_is_refused_naming_the_file_and_the_pid(tmp_path):
    out = tmp_path / "new" / "labels.csv"
    with labels_lock(out) as lock:  # creates the folder
        assert lock == labels_lock_path(out) == tmp_path / "new" / ".labels.csv.lock"
        assert lock.read_text() == f"{os.getpid()}\n"
        with pytest.raises(DataError, match=rf"{out}: another labelling session \(pid {os.getpid()}\) is writing it"):
            with labels_lock(out):
                pass
    assert lock.read_text() == ""  # released: the pid is cleared, the file stays
    with labels_lock(out):
        pass


def test_a_lock_without_a_recorded_holder_names_it_unknown(tmp_path):
    lock = tmp_path / "x.lock"

    def refusal(holder: str) -> DataError:
        return DataError(f"held by {holder}")

    with exclusive_lock(lock, refusal):
        lock.write_text("")  # as if the holder had not written its pid yet
        with pytest.raises(DataError, match="held by unknown"):
            with exclusive_lock(lock, refusal):
                pass


def test_a_waiting_lock_is_taken_when_the_holder_releases_it(tmp_path):
    held, released = threading.Event(), []

    def holder() -> None:
        with dataset_lock(tmp_path):
            held.set()
            time.sleep(0.3)
            released.append(time.monotonic())

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(10)
    with pytest.raises(DataError, match="is being filtered by another run"):
        with dataset_lock(tmp_path, purpose="filtered"):
            pass
    with dataset_lock(tmp_path, wait=True):
        taken = time.monotonic()
    thread.join()
    assert released and taken >= released[0]


def test_a_killed_holder_leaves_the_lock_free(tmp_path):
    probe = "import os, sys\nfrom cascal.io import dataset_lock\nwith dataset_lock(sys.argv[1]):\n    os._exit(3)\n"
    run = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 3, run.stderr
    assert (tmp_path / LOCK_FILE).read_text().strip().isdigit()  # its pid is left behind ...
    with dataset_lock(tmp_path):  # ... but the kernel dropped the lock with the process
        pass


# ----------------------------------------------------------------------------- the package's writers
def _fail_on_second_call(monkeypatch, owner, name: str) -> None:
    """Make ``owner.name`` write its first call through and raise on the second (a failure mid-write)."""
    real, calls = getattr(owner, name), []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)


def test_a_failed_router_save_keeps_the_old_router_file(tmp_path, monkeypatch):
    import zipfile

    from simulated_data import simulated_responses

    from cascal.router import CascalRouter
    from cascal.simulate import SimWorld

    data = simulated_responses(SimWorld(seed=0), n_subjects=3, per_subject=20)
    emb = np.random.default_rng(1).normal(size=(data.n_questions, 8)).astype(np.float32)
    router = CascalRouter().fit(emb, data)
    path = tmp_path / "r.cascal"
    router.save(path)
    before = path.read_bytes()
    _fail_on_second_call(monkeypatch, zipfile.ZipFile, "writestr")
    with pytest.raises(OSError, match="disk full"):
        router.save(path)
    assert path.read_bytes() == before  # not truncated and half written in place
    assert leftovers(tmp_path, "r.cascal") == []
    monkeypatch.undo()
    assert CascalRouter.load(path).model_names_ == router.model_names_


def test_a_failed_parquet_write_keeps_the_old_output(tmp_path):
    pa = pytest.importorskip("pyarrow")
    from cascal.pipeline.route_batch import write_parquet_atomic

    out = tmp_path / "routes.parquet"
    table = pa.table({"x": [1, 2, 3]})
    with write_parquet_atomic(out) as write:
        write(table)
        write(table)
    assert pa.parquet.read_table(out).num_rows == 6
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="stopped"):
        with write_parquet_atomic(out) as write:
            write(table)
            raise RuntimeError("stopped")
    with pytest.raises(DataError, match="nothing was routed"):
        with write_parquet_atomic(out):
            pass
    assert out.read_bytes() == before and leftovers(tmp_path, "routes.parquet") == []


def test_a_failed_embeddings_write_keeps_the_old_file(tmp_path, monkeypatch):
    from test_dataset import QUESTIONS, write_folder

    from cascal.io import embeddings_path, load_dataset
    from cascal.pipeline import embed as embed_module

    folder = write_folder(tmp_path / "d", QUESTIONS, "question_id,m1\n1,A\n2,A\n")
    first = embed_module.embed_dataset(folder, "hashing-32")
    target = embeddings_path(folder, "hashing-32")
    before = target.read_bytes()

    def half_save(fh, arr, **kwargs):
        fh.write(before[:40])
        raise OSError("disk full")

    monkeypatch.setattr(embed_module.np, "save", half_save)
    with pytest.raises(OSError, match="disk full"):
        embed_module.embed_dataset(folder, "hashing-32", force=True)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
    np.testing.assert_array_equal(load_dataset(folder).embeddings, first)
