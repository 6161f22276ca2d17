"""Two ``cascal answer`` runs on one folder: the folder lock, atomic writes, no column lost.

Before the lock, two concurrent runs both paid for every prompt and, with different ``--models``,
the last writer dropped the other's column (both wrote through the same temporary file name).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_answer import World, counts, make_dataset, write_pool

from cascal.errors import DataError
from cascal.io import LOCK_FILE, atomic_write_text, dataset_lock, load_dataset
from cascal.simulate.chat_server import ChatServer

N = 16
#: seconds per reply: 16 prompts at concurrency 2 keep the first run busy for about 3 s
DELAY = 0.35


def answer_cmd(folder: Path, pool: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cascal", "answer", str(folder), "--pool", str(pool), "--no-progress", *extra]


def start_and_wait_for_requests(args: list[str], server: ChatServer) -> subprocess.Popen:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not server.request_log and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    assert proc.poll() is None, "the first run finished before the second one started"
    return proc


def test_second_concurrent_run_refuses_and_nothing_is_paid_twice(tmp_path):
    folder = tmp_path / "ds"
    gold, n_opts = make_dataset(folder, n=N)
    with ChatServer(World(gold, n_opts, delay=DELAY)) as server:
        pool = write_pool(tmp_path / "pool.yaml", server, names=("good", "plain"), concurrency=2)
        first = start_and_wait_for_requests(answer_cmd(folder, pool, "--models", "good"), server)
        second = subprocess.run(
            answer_cmd(folder, pool, "--models", "plain"), capture_output=True, text=True, timeout=60
        )
        assert first.poll() is None, "the second run did not stop at once: the runs did not overlap"
        assert first.wait(timeout=120) == 0, first.stderr.read() if first.stderr else ""
        log = list(server.request_log)
    assert second.returncode == 2
    assert f"{folder}: folder is being answered by another run (pid {first.pid})" in second.stderr
    assert {m for m, _ in log} == {"id-good"}
    assert len(log) == N and max(counts(log).values()) == 1
    assert load_dataset(folder, embeddings=None).model_names == ["good"]


def test_second_run_with_wait_waits_then_pays_nothing_and_keeps_both_columns(tmp_path):
    folder = tmp_path / "ds"
    gold, n_opts = make_dataset(folder, n=N)
    with ChatServer(World(gold, n_opts, delay=DELAY)) as server:
        pool = write_pool(tmp_path / "pool.yaml", server, names=("good", "plain"), concurrency=2)
        first = start_and_wait_for_requests(answer_cmd(folder, pool), server)
        second = subprocess.Popen(
            answer_cmd(folder, pool, "--models", "plain", "--wait"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out1, err1 = first.communicate(timeout=120)
        out2, err2 = second.communicate(timeout=120)
        log = list(server.request_log)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    # every prompt was paid once: the waiting run found the first one's replies in the cache
    assert len(log) == 2 * N and max(counts(log).values()) == 1
    assert load_dataset(folder, embeddings=None).model_names == ["good", "plain"]


def test_sequential_runs_with_different_models_keep_both_columns(tmp_path):
    folder = tmp_path / "ds"
    gold, n_opts = make_dataset(folder, n=N)
    with ChatServer(World(gold, n_opts)) as server:
        pool = write_pool(tmp_path / "pool.yaml", server, names=("good", "plain"))
        for model in ("good", "plain", "good"):
            run = subprocess.run(
                answer_cmd(folder, pool, "--models", model), capture_output=True, text=True, timeout=120
            )
            assert run.returncode == 0, run.stderr
        log = list(server.request_log)
    assert len(log) == 2 * N and max(counts(log).values()) == 1
    data = load_dataset(folder, embeddings=None)
    assert data.model_names == ["good", "plain"]
    assert data.logprobs is not None and data.cost is not None
    assert (data.answers >= 0).all()
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


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
    # before: every writer used "<name>.tmp", so one writer's os.replace moved another's file away
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
