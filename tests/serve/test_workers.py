"""``cascal serve --workers 2``: real worker processes behind one port. Both workers answer; the
metrics of ``/metrics`` add up over them; SIGHUP and ``/admin/reload`` reach every worker; a worker
killed is started again; SIGTERM stops supervisor and workers cleanly; what ``--workers`` cannot do
yet is refused, and a worker that cannot load fails the start with a clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import pool_file
from reload_files import install, sha256, train_second_router, truncated_router

from cascal.bench.gateway_load import _free_port
from cascal.pipeline.answer import build_messages

KEY = "workers-test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
WORKERS = 2


def _serve(router: Path, pool: Path, port: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "WORKERS_TEST_KEY": KEY}
    command = [sys.executable, "-m", "cascal", "serve", str(router), "--pool", str(pool), "--port", str(port)]
    command += ["--workers", str(WORKERS), "--api-key-env", "WORKERS_TEST_KEY", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _get(url: str) -> httpx.Response:
    """One request on a fresh connection (the kernel hands each connection to one worker)."""
    with httpx.Client(headers=AUTH, timeout=30) as client:
        return client.get(url)


def _wait_ready(proc: subprocess.Popen, url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if _get(url + "/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the gateway did not start")


def _workers_state(url: str, tries: int = 200) -> dict:
    """worker index -> the router SHA-256 it serves, from /health on fresh connections until every
    worker has answered."""
    seen: dict = {}
    for _ in range(tries):
        body = _get(url + "/health").json()
        seen[body["worker"]] = body["router"]["sha256"]
        if len(seen) == WORKERS:
            return seen
    raise AssertionError(f"only workers {sorted(seen)} answered in {tries} connections")


def _until(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def _metric(url: str, line_start: str) -> float:
    text = _get(url + "/metrics").text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


def _worker_pids(supervisor: int) -> list[int]:
    """The supervisor's worker processes (its spawned children that are not the resource tracker)."""
    pids = []
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        for child in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                pids.append(int(child))
    return pids


@pytest.fixture(scope="module")
def router_b(world, tmp_path_factory):
    return train_second_router(world, tmp_path_factory.mktemp("workers") / "router_b.cascal")


@pytest.fixture(scope="module")
def served(router_file, world, simulator, tmp_path_factory):
    folder = tmp_path_factory.mktemp("workers_served")
    router, pool = folder / "router.cascal", folder / "pool.yaml"
    install(router_file, router)
    pool_file(pool, [(n, simulator.base_url) for n in world.model_names])
    port = _free_port()
    proc = _serve(router, pool, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url)
        yield {"proc": proc, "url": url, "router": router, "pool": pool, "folder": folder}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_both_workers_answer_and_the_metrics_add_up_over_them(served, router_file, questions):
    url = served["url"]
    assert _workers_state(url) == {i: sha256(router_file) for i in range(WORKERS)}
    before = _metric(url, 'cascal_requests_total{endpoint="route",status="200"}')
    sent = 40
    for q in questions[:sent]:
        with httpx.Client(headers=AUTH, timeout=30) as client:  # a connection each: both workers serve
            assert client.post(url + "/v1/route", json={"input": q.question}).status_code == 200
    assert _metric(url, 'cascal_requests_total{endpoint="route",status="200"}') - before == sent
    # the real openai client through the workers
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="cascal", messages=build_messages(questions[0].question, questions[0].options)
    )
    assert reply.choices[0].message.content


def test_sighup_to_the_supervisor_reloads_every_worker(served, router_b):
    url = served["url"]
    install(router_b, served["router"])
    served["proc"].send_signal(signal.SIGHUP)
    new = sha256(router_b)
    assert _until(lambda: set(_workers_state(url).values()) == {new}), _workers_state(url)


def test_admin_reload_on_one_worker_reloads_the_others(served, router_file):
    url = served["url"]
    install(router_file, served["router"])
    with httpx.Client(headers=AUTH, timeout=60) as client:
        answer = client.post(url + "/admin/reload")
    assert answer.status_code == 200, answer.text
    old = sha256(router_file)
    assert _until(lambda: set(_workers_state(url).values()) == {old}), _workers_state(url)


def test_a_killed_worker_is_started_again(served):
    supervisor = served["proc"].pid
    pids = _worker_pids(supervisor)
    assert len(pids) == WORKERS
    os.kill(pids[0], signal.SIGKILL)
    assert _until(lambda: len(set(_worker_pids(supervisor)) - {pids[0]}) == WORKERS), _worker_pids(supervisor)
    assert _until(lambda: len(_workers_state(served["url"])) == WORKERS)


def test_sigterm_stops_the_supervisor_and_every_worker(served):
    proc = served["proc"]
    pids = _worker_pids(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, proc.stderr.read()
    assert not [
        p
        for p in pids
        if Path(f"/proc/{p}").exists() and b"zombie" not in Path(f"/proc/{p}/status").read_bytes().lower()
    ]
    with pytest.raises(httpx.ConnectError):
        _get(served["url"] + "/health")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--log-decisions", "decisions.jsonl"], "--log-decisions cannot be combined with --workers"),
        (["--ray"], "--workers: Ray Serve"),
    ],
)
def test_what_workers_cannot_do_is_refused(served, extra, message, tmp_path):
    proc = _serve(served["router"], served["pool"], _free_port(), *extra)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert message in err


def test_a_worker_that_cannot_load_fails_the_start(router_file, served, tmp_path):
    broken = truncated_router(router_file, tmp_path / "broken.cascal")
    proc = _serve(broken, served["pool"], _free_port())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "exited with code 1 while loading the gateway" in err
    assert "broken.cascal" in err  # the worker's own error names the file
