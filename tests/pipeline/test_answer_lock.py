"""Two ``cascal answer`` runs on one folder: the folder lock, atomic writes, no column lost (the lock
and the atomic writes themselves are tested in tests/io/test_files.py).

Without the lock two concurrent runs would both pay for every prompt and, with different
``--models``, the last writer would drop the other's column.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from test_answer import World, counts, make_dataset, write_pool

from cascal.io import load_dataset
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
