"""Swapping the router of a real ``cascal serve`` process under load: 64 clients on ``/v1/route`` and
chat completions (a quarter of them streamed) while router and pool are swapped ten times between
two router files and a pool that gains and loses a model, half of the reloads by SIGHUP and half by
``POST /admin/reload``. No request may fail, and every decision must be the one the router whose
hash it reports gives offline."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import pool_file
from reload_files import EXTRA, install, offline_ranking, sha256, train_second_router

from cascal.pipeline.answer import build_messages

KEY = "reload-load-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
CLIENTS = 64
SWAPS = 10
#: seconds between swaps: ten swaps take about 15 s of load (longer on a busy machine: a reload waits
#: for the gateway's event loop, which the 64 clients keep busy)
SWAP_EVERY = 1.2

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="SIGHUP is POSIX only")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(router: Path, pool: Path, log: Path, stderr: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "RELOAD_TEST_KEY": KEY}
    cmd = [sys.executable, "-m", "cascal", "serve", str(router), "--pool", str(pool), "--port", str(port)]
    cmd += ["--api-key-env", "RELOAD_TEST_KEY", "--log-decisions", str(log)]
    # a long keep-alive: the client pool may leave a connection idle past the default 5 s and reuse it
    # just as the server closes it (a reset unrelated to reloads, which only a retrying client absorbs)
    cmd += ["--keepalive-timeout", "120"]
    with open(stderr, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"cascal serve exited: {stderr.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", headers=AUTH, timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("cascal serve did not become ready")


async def _drive(port: int, texts: list[list[dict]], configs: list[tuple[Path, Path]], served: dict, pid: int):
    """Run the clients and the swaps; returns (records, failures, reload triggers)."""
    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers=AUTH,
        timeout=60,
        limits=httpx.Limits(max_connections=CLIENTS + 8, max_keepalive_connections=CLIENTS + 8),
    )
    chat = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0, timeout=60)
    records: list[tuple[str, int, str, list[str]]] = []  # kind, text index, router hash, ranking (chat: top-3)
    failures: list[str] = []
    stop = asyncio.Event()

    async def one_client(k: int) -> None:
        i = k
        while not stop.is_set():
            t, kind = i % len(texts), ("route", "route", "chat", "stream")[i % 4]
            messages = texts[t]
            try:
                if kind == "route":
                    response = await http.post("/v1/route", json={"messages": messages})
                    if response.status_code != 200:
                        raise AssertionError(f"/v1/route {response.status_code}: {response.text}")
                    body = response.json()
                    records.append((kind, t, body["router_sha256"], body["models"]))
                elif kind == "chat":
                    raw = await chat.chat.completions.with_raw_response.create(model="cascal", messages=messages)
                    reply = raw.parse()
                    top = json.loads(raw.headers["x-cascal-route"])
                    assert reply.model == top[0] and reply.choices[0].message.content
                    records.append((kind, t, raw.headers["x-cascal-router"], top))
                else:
                    async with chat.chat.completions.with_streaming_response.create(
                        model="cascal", messages=messages, stream=True
                    ) as streamed:
                        lines = [line async for line in streamed.iter_lines() if line]
                    assert lines and lines[-1] == "data: [DONE]", lines[-3:]
                    assert not any('"error"' in line for line in lines), lines
                    top = json.loads(streamed.headers["x-cascal-route"])
                    records.append((kind, t, streamed.headers["x-cascal-router"], top))
            except Exception as exc:  # noqa: BLE001 - every failure is collected and reported
                failures.append(f"{kind}: {type(exc).__name__}: {exc!r} (cause {exc.__cause__!r})")
            i += 1

    async def swapper() -> list[str]:
        triggers = []
        for n in range(SWAPS):
            await asyncio.sleep(SWAP_EVERY)
            router, pool = configs[n % len(configs)]
            install(router, served["router"])
            install(pool, served["pool"])
            if n % 2 == 0:
                triggers.append("SIGHUP")
                os.kill(pid, signal.SIGHUP)
                await _until_serving(http, sha256(router), pool)
            else:
                triggers.append("POST")
                response = await http.post("/admin/reload")
                assert response.status_code == 200, response.text
        await asyncio.sleep(0.5)
        stop.set()
        return triggers

    tasks = [asyncio.create_task(one_client(k)) for k in range(CLIENTS)]
    try:
        triggers = await swapper()
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await http.aclose()
        await chat.close()
    return records, failures, triggers


async def _until_serving(http: httpx.AsyncClient, sha: str, pool: Path, timeout: float = 30.0) -> None:
    """Wait until ``/health`` names router ``sha`` over the models of ``pool`` (a SIGHUP reload)."""
    names = [line.split(":", 1)[1].strip() for line in pool.read_text().splitlines() if "- name:" in line]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = (await http.get("/health")).json()
        assert body["last_reload_error"] is None, body["last_reload_error"]
        if body["router"]["sha256"] == sha and body["pool"] == names:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"SIGHUP did not swap in router {sha[:12]} over {names}")


def test_swaps_under_load_lose_no_request_and_route_as_the_reported_router(
    world, simulator, router_file, questions, tmp_path
):
    router_a, router_b = router_file, train_second_router(world, tmp_path / "router_b.cascal")
    p6 = pool_file(tmp_path / "p6.yaml", [(n, simulator.base_url) for n in world.model_names])
    p5 = pool_file(tmp_path / "p5.yaml", [(n, simulator.base_url) for n in world.model_names if n != EXTRA])
    served = {"router": tmp_path / "served" / "router.cascal", "pool": tmp_path / "served" / "pool.yaml"}
    served["router"].parent.mkdir()
    install(router_a, served["router"])
    install(p6, served["pool"])
    # every consecutive pair differs: B over five models, A over six, A with EXTRA dropped, B with EXTRA unused
    configs = [(router_b, p5), (router_a, p6), (router_a, p5), (router_b, p6)]
    texts = [build_messages(q.question, q.options) for q in questions]
    log = tmp_path / "decisions.jsonl"
    proc, port = _start(served["router"], served["pool"], log, tmp_path / "serve.stderr")
    try:
        started = time.monotonic()
        records, failures, triggers = asyncio.run(_drive(port, texts, configs, served, proc.pid))
        elapsed = time.monotonic() - started
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=AUTH, timeout=10).text
    finally:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        proc.send_signal(signal.SIGHUP)  # during the graceful shutdown: ignored, not fatal
        returncode = proc.wait(30)
    # uvicorn re-raises the SIGTERM it drained on: the process ends by SIGTERM, not by the SIGHUP
    assert returncode == -signal.SIGTERM, (returncode, (tmp_path / "serve.stderr").read_text()[-300:])
    assert failures == [], (failures[:5], (tmp_path / "serve.stderr").read_text()[-3000:])
    assert triggers.count("SIGHUP") == triggers.count("POST") == SWAPS // 2
    assert 'cascal_reloads_total{outcome="success"} 10.0' in metrics
    assert 'cascal_reloads_total{outcome="failure"} 0.0' in metrics
    assert len(records) >= 200, (len(records), elapsed)

    files = {sha256(router_a): router_a, sha256(router_b): router_b}
    models = {sha256(router_a): set(world.model_names), sha256(router_b): set(world.model_names) - {EXTRA}}
    seen = set()
    for kind, t, sha, ranking in records:
        assert sha in files, sha
        text = texts[t][-1]["content"]
        seen.add((kind, sha))
        if kind == "route":  # the whole ranking: the dropped models are the file's models it lacks
            dropped = tuple(sorted(models[sha] - set(ranking)))
            assert dropped in ((), (EXTRA,)), dropped
            assert tuple(ranking) == offline_ranking(str(files[sha]), dropped, text), (sha[:12], dropped, text)
        else:  # the top 3: the router of that hash over either pool
            pools = [(), (EXTRA,)] if EXTRA in models[sha] else [()]
            options = [offline_ranking(str(files[sha]), dropped, text)[:3] for dropped in pools]
            assert tuple(ranking) in options, (sha[:12], ranking, options)
    assert {kind for kind, _ in seen} == {"route", "chat", "stream"} and len(seen) == 6  # both routers, every kind
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == len(records) and {line["router_sha256"] for line in lines} == set(files)
