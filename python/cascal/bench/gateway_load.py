"""A load benchmark of the gateway on 127.0.0.1 (``cascal serve-bench``, ``benches/bench_serve.py``).

It trains a small router on the simulated pool, starts the simulator in this process and the
gateway as a separate ``cascal serve`` process (so that the load generator and the server do not
share an interpreter), then measures with a minimal keep-alive HTTP/1.1 client written on asyncio
streams (cheaper than a full client library, so the client machine's cost stays small):

1. ``/v1/route`` at 1, 16 and 64 concurrent clients: routing decisions per second and p50/p99 latency,
   once per embedder given (default ``hashing-256``; e.g. also a ``static:<folder>`` embedder): the
   router is trained with that embedder and a fresh gateway serves it. The queries are the simulated
   questions, or the ``question`` texts of a questions.jsonl file (e.g. the real MMLU-Pro questions);
2. ``/v1/chat/completions`` with ``model="cascal"``, one client: the median latency through the
   gateway minus the median latency of the same requests sent straight to the simulator (the
   gateway's added latency: parsing, embedding, routing and forwarding through the ``openai`` client).

Each /v1/route level also reports the CPU used by the load generator and by the gateway process, as a
share of one core, so that a run where the client competes with the server for the cores shows it;
after an embedder's levels the gateway's resident memory (``VmRSS``) is read, so the embedder's
memory in a served process shows beside its speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from cascal.errors import InvalidParameterError, ServerStartError
from cascal.serve.errors import GatewayError

__all__ = ["run_load_benchmark", "format_results"]


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes, body: bytes) -> int:
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    header = await reader.readuntil(b"\r\n\r\n")
    status = int(header[9:12])
    length = 0
    for line in header.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _load(
    port: int, path: str, bodies: Sequence[bytes], clients: int, seconds: float
) -> tuple[list[float], float]:
    """``clients`` keep-alive connections posting ``bodies`` in turn for ``seconds``; latencies and elapsed time."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ").encode()
    latencies: list[float] = []
    connected = 0
    all_connected = asyncio.Event()
    stop_at = [0.0]

    async def one(offset: int) -> None:
        nonlocal connected
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            await _request(reader, writer, head, bodies[i % len(bodies)])  # connection set up, not timed
            connected += 1
            if connected == clients:
                stop_at[0] = time.perf_counter() + seconds
                all_connected.set()
            await all_connected.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                status = await _request(reader, writer, head, bodies[i % len(bodies)])
                if status != 200:
                    raise GatewayError(f"{path}: HTTP {status}")
                latencies.append(time.perf_counter() - t0)
                i += 1
        finally:
            writer.close()

    await asyncio.gather(*(one(k * 7) for k in range(clients)))
    return latencies, seconds + max(0.0, time.perf_counter() - stop_at[0])


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the worker processes of ``cascal serve --workers``; Linux ``/proc``)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as f:
                    todo.extend(int(child) for child in f.read().split())
        except (OSError, ValueError):
            continue
    return pids


def _process_cpu(pid: int) -> Optional[float]:
    """CPU seconds (user + system) used so far by process ``pid`` (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _tree_cpu(pid: int) -> Optional[float]:
    """CPU seconds used so far by process ``pid`` and its descendants (``None`` where unknown)."""
    times = [_process_cpu(member) for member in _process_tree(pid)]
    return None if any(t is None for t in times) else float(sum(t for t in times if t is not None))


def _process_rss_mib(pid: int) -> Optional[float]:
    """Resident memory (``VmRSS``) of process ``pid`` in MiB (Linux ``/proc``; ``None`` elsewhere)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def _tree_rss_mib(pid: int) -> Optional[float]:
    """Resident memory of process ``pid`` and its descendants in MiB (``None`` where unknown)."""
    sizes = [_process_rss_mib(member) for member in _process_tree(pid)]
    return None if any(size is None for size in sizes) else float(sum(size for size in sizes if size is not None))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = proc.stderr.read().decode("utf-8", "replace").strip()[-2000:] if proc.stderr else ""
            raise ServerStartError(f"cascal serve exited with status {proc.returncode}: {said}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise ServerStartError("cascal serve did not become ready")


def _train(folder: Path, world: object, embedder_name: str) -> tuple[Path, list]:
    """A CASCAL router fitted on the simulated pool's answers to generated questions embedded by
    ``embedder_name``, and the questions."""
    from cascal.data import ResponseMatrix
    from cascal.embedding import load_embedder
    from cascal.generation.parser import parse_questions
    from cascal.generation.prompt import build_messages as generation_messages
    from cascal.llm.extract import extract_answer
    from cascal.pipeline.answer import build_messages
    from cascal.router import CascalRouter
    from cascal.simulate import SUBJECTS, SimulatedResponder

    responder = SimulatedResponder(world)  # type: ignore[arg-type]
    questions, subjects = [], []
    for subject in SUBJECTS[:3]:
        for batch in range(4):
            reply = responder.reply(
                "sim-generator-strong", generation_messages(subject.key, subject.description, 20, attempt=batch)
            )
            parsed = parse_questions(reply.text)[0]
            questions += parsed
            subjects += [subject.key] * len(parsed)
    names = list(world.model_names)  # type: ignore[attr-defined]
    answers = np.array(
        [
            [
                extract_answer(responder.reply(m, build_messages(q.question, q.options)).text, len(q.options))
                for m in names
            ]
            for q in questions
        ],
        dtype=np.int8,
    )
    data = ResponseMatrix(
        answers=answers,
        n_options=np.array([len(q.options) for q in questions]),
        subjects=np.array(subjects),
        model_names=names,
        question_ids=np.array([f"q{i}" for i in range(len(questions))]),
        questions=[q.question for q in questions],
        options=[list(q.options) for q in questions],
    )
    embedder = load_embedder(embedder_name)
    X = embedder.encode([q.question for q in questions])
    path = folder / f"router-{len(list(folder.glob('router-*')))}.cascal"
    router = CascalRouter(embedding_model=embedder.name, embedding_sha256=embedder.content_hash, random_state=0)
    router.fit(X, data).save(path)
    return path, questions


def _question_texts(path: Path, limit: int = 4096) -> list[str]:
    """The first ``limit`` ``question`` texts of a questions.jsonl file."""
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                texts.append(json.loads(line)["question"])
            if len(texts) >= limit:
                break
    return texts


def _start_gateway(
    folder: Path, router: Path, decision_log: str = "off", workers: int = 1
) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-m", "cascal", "serve", str(router), "--pool", str(folder / "pool.yaml")]
    command += _log_args(decision_log, folder) + (["--workers", str(workers)] if workers > 1 else [])
    proc = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _wait_ready(port, proc)
    return proc, port


def _wait_workers(port: int, workers: int, tries: int = 400) -> None:
    """Until each of the gateway's ``workers`` processes has answered ``/health`` (one connection per
    request; the kernel hands each connection to one worker)."""
    if workers <= 1:
        return
    seen = set()
    for _ in range(tries):
        seen.add(json.loads(_get(port, "/health")).get("worker"))
        if len(seen) >= workers:
            return
        time.sleep(0.05)
    raise ServerStartError(f"only {len(seen)} of {workers} gateway workers answered /health")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _route_levels(port: int, pid: int, bodies: Sequence[bytes], concurrency: Sequence[int], seconds: float) -> dict:
    """``/v1/route`` at each concurrency level: decisions/s, p50/p99 and the CPU of both sides."""
    out: dict = {}
    asyncio.run(_load(port, "/v1/route", bodies, 8, 1.0))  # warm-up
    for clients in concurrency:
        wall, client_cpu, server_cpu = time.perf_counter(), time.process_time(), _tree_cpu(pid)
        lat, elapsed = asyncio.run(_load(port, "/v1/route", bodies, clients, seconds))
        wall = time.perf_counter() - wall
        server_after = _tree_cpu(pid)
        out[clients] = {
            "decisions_per_s": len(lat) / elapsed,
            "p50_ms": float(np.percentile(lat, 50) * 1e3),
            "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "requests": len(lat),
            # share of one core: the load generator (this process) and the gateway process
            "client_cpu": (time.process_time() - client_cpu) / wall,
            "server_cpu": None if server_cpu is None or server_after is None else (server_after - server_cpu) / wall,
        }
    return out


def run_load_benchmark(
    concurrency: Sequence[int] = (1, 16, 64),
    seconds: float = 3.0,
    chat_requests: int = 300,
    workdir: Optional[str] = None,
    embedders: Sequence[str] = ("hashing-256",),
    questions_file: Optional[Path] = None,
    decision_log: str = "off",
    workers: int = 1,
) -> dict:
    """Measure the gateway (see the module docstring); returns the numbers as a dict:
    ``route`` maps each embedder's name to its levels, ``chat`` is measured with the first embedder.

    ``decision_log``: ``"off"``, ``"lines"`` (the gateway writes a decision log) or
    ``"embeddings"`` (and its embedding sidecar), to measure what logging costs. ``workers``: the
    gateway's worker processes (``cascal serve --workers``; its CPU and memory are the sum over
    supervisor and workers).
    """
    if decision_log not in DECISION_LOG_MODES:
        raise InvalidParameterError(f"decision_log: expected one of {DECISION_LOG_MODES}, got {decision_log!r}")
    if workers < 1 or (workers > 1 and decision_log != "off"):
        raise InvalidParameterError(f"workers: expected 1, or more without a decision log, got {workers}")
    from cascal.pipeline.answer import build_messages
    from cascal.simulate import SimWorld, serve_simulator
    from cascal.simulate.server import pool_yaml

    world = SimWorld(seed=3)
    texts = _question_texts(questions_file) if questions_file is not None else None
    results: dict = {
        "route": {},
        "cpu_count": os.cpu_count(),
        "queries": str(questions_file or "simulated"),
        "workers": workers,
    }
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, serve_simulator(world) as simulator:
        folder = Path(tmp)
        (folder / "pool.yaml").write_text(pool_yaml(simulator.base_url, world), encoding="utf-8")
        for index, embedder in enumerate(embedders):
            router, questions = _train(folder, world, embedder)
            route_texts = texts if texts is not None else [q.question for q in questions]
            proc, port = _start_gateway(folder, router, decision_log, workers)
            try:
                _wait_workers(port, workers)
                bodies = [json.dumps({"input": t}).encode() for t in route_texts]
                name = json.loads(_get(port, "/health"))["embedder"]
                results["route"][name] = _route_levels(port, proc.pid, bodies, concurrency, seconds)
                results.setdefault("gateway_rss_mib", {})[name] = _tree_rss_mib(proc.pid)
                if index == 0:
                    results["chat"] = _chat_latency(port, simulator.port, questions, chat_requests, build_messages)
            finally:
                _stop(proc)
    return results


#: what :func:`run_load_benchmark` may have the gateway log
DECISION_LOG_MODES = ("off", "lines", "embeddings")


def _log_args(mode: str, folder: Path) -> list[str]:
    """The ``cascal serve`` options of a decision-log mode."""
    if mode == "off":
        return []
    args = ["--log-decisions", str(folder / "decisions.jsonl")]
    return args + ["--log-embeddings"] if mode == "embeddings" else args


def _get(port: int, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return bytes(r.read())


def _chat_latency(port: int, sim_port: int, questions: list, chat_requests: int, build_messages: Any) -> dict:
    """Median latency of chat completions through the gateway minus straight to the simulator."""
    chat = [
        json.dumps({"model": "cascal", "messages": build_messages(q.question, q.options)}).encode() for q in questions
    ]
    top = [
        json.dumps({"model": m, "messages": build_messages(q.question, q.options)}).encode()
        for q, m in zip(questions, _top_models(port, questions))
    ]
    per = max(1, chat_requests // 3)
    via: list[float] = []
    direct: list[float] = []
    for _ in range(3):  # interleaved rounds, so drift hits both sides alike
        direct += _sequential(sim_port, "/v1/chat/completions", top, per)
        via += _sequential(port, "/v1/chat/completions", chat, per)
    return {
        "gateway_p50_ms": float(np.median(via) * 1e3),
        "direct_p50_ms": float(np.median(direct) * 1e3),
        "added_p50_ms": float((np.median(via) - np.median(direct)) * 1e3),
        "requests": len(via),
    }


def _top_models(port: int, questions: list) -> list[str]:
    import urllib.request

    body = json.dumps({"input": [q.question for q in questions]}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/route", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return [d["models"][0] for d in json.loads(r.read())["data"]]


def _sequential(port: int, path: str, bodies: Sequence[bytes], n: int) -> list[float]:
    async def run() -> list[float]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
        ).encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = []
        try:
            for i in range(n):
                t0 = time.perf_counter()
                status = await _request(reader, writer, head, bodies[i % len(bodies)])
                if status != 200:
                    raise GatewayError(f"{path} on port {port}: HTTP {status}")
                out.append(time.perf_counter() - t0)
        finally:
            writer.close()
        return out

    return asyncio.run(run())


def format_results(results: dict) -> str:
    """A Markdown table of :func:`run_load_benchmark`'s numbers, one row per embedder and level."""
    workers = results.get("workers", 1)
    lines = [
        f"/v1/route queries: {results.get('queries', 'simulated')}"
        + (f"; the gateway runs {workers} worker processes (CPU and memory summed over them)" if workers > 1 else ""),
        "",
        "| embedder | /v1/route clients | decisions/s | p50 ms | p99 ms | client CPU | gateway CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def share(x: Optional[float]) -> str:
        return "n/a" if x is None else f"{x * 100:.0f}%"

    for embedder, levels in results["route"].items():
        for clients, r in levels.items():
            lines.append(
                f"| {embedder} | {clients} | {r['decisions_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                f"| {share(r.get('client_cpu'))} | {share(r.get('server_cpu'))} |"
            )
    rss = {k: v for k, v in results.get("gateway_rss_mib", {}).items() if v is not None}
    if rss:
        shown = ", ".join(f"{name} {mib:.0f} MiB" for name, mib in rss.items())
        lines += ["", f"gateway resident memory (VmRSS) after its /v1/route levels: {shown}"]
    c = results["chat"]
    lines += [
        "",
        f"/v1/chat/completions, 1 client, {c['requests']} requests: through the gateway p50 "
        f"{c['gateway_p50_ms']:.2f} ms, straight to the upstream p50 {c['direct_p50_ms']:.2f} ms, "
        f"added p50 {c['added_p50_ms']:.2f} ms",
    ]
    return "\n".join(lines)
