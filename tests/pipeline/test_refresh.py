"""`cascal refresh` on the simulator: kill mid-answer and resume pays nothing twice; bad inputs get
clear messages; a gateway that refuses the reload leaves the new router written.

The dataset folder and the old router come from the small drift experiment (``small_drift`` in
tests/conftest.py): a router trained on biology and chemistry; the refresh here covers law.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cascal.cli import main
from cascal.errors import ConfigError, ReloadError
from cascal.llm.cache import ResponseCache
from cascal.pipeline.reload import reload_gateway, reload_url
from cascal.simulate import SimulatedResponder, SimWorld
from cascal.simulate.chat_server import ChatServer, prompt_hash
from cascal.simulate.server import pool_yaml

KEY = "gateway-key-for-tests"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def setup(small_drift, tmp_path):
    """A copy of the drift run's training folder and old router, and a tasks file for law."""
    out, _ = small_drift
    shutil.copytree(out / "train_filtered", tmp_path / "ds", ignore=shutil.ignore_patterns("*.sqlite", ".cascal.lock"))
    shutil.copy(out / "refresh" / "previous.cascal", tmp_path / "router.cascal")
    # the drift run's gateway logged the traffic with the old router, then again after the reload:
    # the old router's lines are the log of the router refreshed here
    old_hash = sha(tmp_path / "router.cascal")
    lines = (out / "decisions.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    mine = [line for line in lines if json.loads(line)["router_sha256"] == old_hash]
    assert len(mine) == len(lines) // 2
    (tmp_path / "decisions.jsonl").write_text("".join(mine), encoding="utf-8")
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "questions_per_subject: 20\nsubjects:\n  law: Bar-exam style law questions on contracts, criminal law and constitutional law.\n",
        encoding="utf-8",
    )
    return tmp_path


class SlowResponder:
    """The simulator, with each pool model's reply delayed (a kill then lands mid-answer)."""

    def __init__(self, delay: float) -> None:
        self.inner = SimulatedResponder(SimWorld(seed=0))
        self.delay = delay

    def __call__(self, request):
        if request.model.startswith("sim-model-"):
            time.sleep(self.delay)
        return self.inner(request)


def serve(responder) -> ChatServer:
    return ChatServer(responder, models=responder.inner.model_names if hasattr(responder, "inner") else None)


def write_pools(folder: Path, server: ChatServer) -> tuple[Path, Path]:
    world = SimWorld(seed=0)
    pool, generators = folder / "pool.yaml", folder / "generators.yaml"
    pool.write_text(pool_yaml(server.base_url, world), encoding="utf-8")
    generators.write_text(pool_yaml(server.base_url, world, generators=True), encoding="utf-8")
    return pool, generators


def refresh_args(folder: Path, pool: Path, generators: Path, *extra: str) -> list[str]:
    return [
        "refresh",
        str(folder / "ds"),
        "--router",
        str(folder / "router.cascal"),
        "--tasks",
        str(folder / "tasks.yaml"),
        "--pool",
        str(pool),
        "--generator",
        "sim-generator-strong",
        "--generator-pool",
        str(generators),
        "--work",
        str(folder / "work"),
        "--concurrency",
        "2",
        "--no-progress",
        *extra,
    ]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_kill_mid_answer_then_rerun_pays_nothing_twice_and_a_refused_reload_leaves_the_router_written(
    setup, capsys, monkeypatch
):
    old_router = sha(setup / "router.cascal")
    with serve(SlowResponder(delay=0.1)) as server:
        pool, generators = write_pools(setup, server)
        args = [sys.executable, "-m", "cascal", *refresh_args(setup, pool, generators)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if sum(model.startswith("sim-model-") for model, _ in server.request_log) >= 30:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "the run ended first"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        first = server.request_log
        with ResponseCache(setup / "work" / "answer_cache.sqlite") as cache:
            cached = {(req["model"], prompt_hash(req["messages"])) for _, req in cache.requests()}
        assert 0 < len(cached) < 6 * 20, "the kill did not land mid-answer"
        assert sha(setup / "router.cascal") == old_router  # nothing written yet

        # the rerun also asks a gateway that is not there to reload: refused, router written all the same
        monkeypatch.setenv("CASCAL_TEST_KEY", KEY)
        reload = ["--reload-url", f"http://127.0.0.1:{free_port()}", "--key-env", "CASCAL_TEST_KEY"]
        shadow = ["--decisions", str(setup / "decisions.jsonl"), "--report", str(setup / "report.json")]
        status, stdout, stderr = run_cli(capsys, *refresh_args(setup, pool, generators, *shadow, *reload))
        second = server.request_log[len(first) :]

    assert status == 2
    assert "cannot connect" in stderr and "the new router is written to" in stderr, stderr
    assert sha(setup / "router.cascal") != old_router
    assert sha(setup / "work" / "previous.cascal") == old_router
    # the rerun sent no request whose reply was cached, none twice, and no generator request (kept)
    assert not set(second) & cached
    assert len(set(second)) == len(second)
    assert not any(model.startswith("sim-generator-") for model, _ in second)
    answers = [r for r in first + second if r[0].startswith("sim-model-")]
    generated = json.loads((setup / "work" / "refresh.json").read_text())["summary"]["generated"]
    assert len(set(answers)) == 6 * generated
    # only the requests in flight at the kill (6 models x 2 at a time) were paid twice
    assert len(answers) - 6 * generated <= 12
    assert "answering the new questions:" in stdout and "shadow check on 90 logged queries" in stdout
    report = json.loads((setup / "report.json").read_text())
    assert report["subjects"] == ["law"] and report["shadow"]["traffic"][-1]["queries"] == 90


def test_a_tasks_file_naming_only_subjects_the_dataset_has_is_refused(setup, capsys):
    (setup / "tasks.yaml").write_text("subjects:\n  biology: Undergraduate biology.\n", encoding="utf-8")
    with serve(SlowResponder(delay=0.0)) as server:
        pool, generators = write_pools(setup, server)
        status, _, stderr = run_cli(capsys, *refresh_args(setup, pool, generators))
        assert server.request_log == []
    assert status == 2
    assert "tasks.yaml: every subject it names (biology) is already in" in stderr and "nothing to refresh" in stderr
    assert not (setup / "work").exists()


def test_a_decision_log_of_another_router_is_refused_before_anything_is_paid(setup, capsys):
    log = setup / "decisions.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    foreign = json.loads(lines[4])
    foreign["router_sha256"] = "0" * 64
    log.write_text("".join(lines[:4]) + json.dumps(foreign) + "\n" + "".join(lines[5:]), encoding="utf-8")
    with serve(SlowResponder(delay=0.0)) as server:
        pool, generators = write_pools(setup, server)
        status, _, stderr = run_cli(capsys, *refresh_args(setup, pool, generators, "--decisions", str(log)))
        assert server.request_log == []
    assert status == 2
    assert "decisions.jsonl:5: router_sha256 0000000000000000..." in stderr and "another router" in stderr, stderr
    assert not (setup / "work").exists()


def test_a_missing_tasks_file_is_named(setup, capsys):
    (setup / "tasks.yaml").unlink()
    status, _, stderr = run_cli(capsys, *refresh_args(setup, setup / "pool.yaml", setup / "generators.yaml"))
    assert status == 2 and "tasks.yaml" in stderr, stderr


def test_reload_url_without_a_key_is_refused_before_anything_runs(setup, capsys, monkeypatch):
    status, _, stderr = run_cli(
        capsys, *refresh_args(setup, setup / "p.yaml", setup / "g.yaml", "--reload-url", "http://127.0.0.1:9")
    )
    assert status == 2 and "--reload-url: needs --key-env" in stderr
    monkeypatch.delenv("CASCAL_UNSET_KEY", raising=False)
    status, _, stderr = run_cli(
        capsys,
        *refresh_args(
            setup,
            setup / "p.yaml",
            setup / "g.yaml",
            "--reload-url",
            "http://127.0.0.1:9",
            "--key-env",
            "CASCAL_UNSET_KEY",
        ),
    )
    assert status == 2 and "CASCAL_UNSET_KEY is not set" in stderr
    assert not (setup / "work").exists()


# ---------------------------------------------------------------------------- the reload client
class _Gateway(http.server.BaseHTTPRequestHandler):
    """Answers POST /admin/reload as the gateway does: 200 with the key, 401 without; 404 when it has no key."""

    key: str | None = KEY

    def log_message(self, format, *args):  # noqa: A002 - silence the test server
        pass

    def do_POST(self):  # noqa: N802
        if self.key is None or self.path != "/admin/reload":
            status, body = 404, {"error": "not found"}
        elif self.headers.get("Authorization") != f"Bearer {self.key}":
            status, body = 401, {"error": "bad key"}
        else:
            status, body = 200, {"router_sha256": "abc123"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def gateway():
    def start(key):
        handler = type("Handler", (_Gateway,), {"key": key})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    servers: list = []
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_reload_with_the_key_returns_the_gateways_answer(gateway):
    url = gateway(KEY)
    assert reload_gateway(url, KEY) == {"router_sha256": "abc123"}
    assert reload_gateway(url + "/admin/reload/", KEY) == {"router_sha256": "abc123"}


def test_reload_errors_say_what_went_wrong(gateway):
    with pytest.raises(ReloadError, match=r"refused the key \(401\)"):
        reload_gateway(gateway(KEY), "wrong")
    with pytest.raises(ReloadError, match="404, the gateway has no reload endpoint: it runs without a key"):
        reload_gateway(gateway(None), KEY)
    with pytest.raises(ReloadError, match="cannot connect"):
        reload_gateway(f"http://127.0.0.1:{free_port()}", KEY)
    with pytest.raises(ConfigError, match="http:// or https://"):
        reload_url("127.0.0.1:8000")
    with pytest.raises(ConfigError, match="empty"):
        reload_gateway("http://127.0.0.1:9", " ")


def test_subjects_the_dataset_has_are_skipped_and_the_others_kept_with_their_counts():
    from cascal.llm.config import TasksConfig
    from cascal.pipeline.refresh import new_subjects

    tasks = TasksConfig(
        subjects={"biology": "Bio.", "law": "Law.", "physics": "Physics."},
        questions={"biology": 5, "law": 7, "physics": 9},
        source="new_tasks.yaml",
    )
    fresh = new_subjects(tasks, ["biology", "chemistry"], "data/train")
    assert fresh.names == ["law", "physics"] and fresh.questions == {"law": 7, "physics": 9}
    with pytest.raises(ConfigError, match=r"new_tasks.yaml: every subject it names \(biology, law, physics\)"):
        new_subjects(tasks, ["biology", "law", "physics"], "data/train")
