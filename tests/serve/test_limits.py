"""The gateway's limits against slow, idle, oversized and greedy clients: header size, header and
body read timeouts, keep-alive, the connection cap, inputs per ``/v1/route`` request and the
fairness of routing big lists; plus the warning of a gateway exposed without a key. Every socket
goes to a gateway the test starts on 127.0.0.1, every loop is bounded."""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time

import httpx
import pytest
from conftest import pool_file

from cascal.serve import server as server_mod
from cascal.serve.server import build_gateway
from cascal.serve.settings import GatewaySettings


@pytest.fixture
def sim_pool(world, simulator, tmp_path):
    return pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])


def connect(gw, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=timeout)
    return sock


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took;
    raises ``socket.timeout`` when it is still open after ``limit`` seconds."""
    start = time.monotonic()
    sock.settimeout(limit)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if time.monotonic() - start > limit:
            raise socket.timeout("still open")
    return data, time.monotonic() - start


def get_health(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    data, _ = read_until_closed(sock, 5.0)
    return data


# ------------------------------------------------------------------------------------ header size
def test_oversized_header_is_refused_with_431_before_it_is_buffered(start_gateway, sim_pool):
    gw = start_gateway(sim_pool, max_header_bytes=8192)
    with connect(gw) as ok:  # a head under the limit is served
        ok.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 6000 + b"\r\nConnection: close\r\n\r\n")
        assert read_until_closed(ok, 5.0)[0].startswith(b"HTTP/1.1 200")
    with connect(gw) as sock:  # one unfinished header line, far past the limit
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: ")
        sent = 0
        try:
            for _ in range(64):  # 4 MiB at most
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, _ = read_until_closed(sock, 5.0)
    assert data.startswith(b"HTTP/1.1 431"), data[:100]
    assert sent < 4 << 20  # refused early: the rest was never read


def test_default_header_limit_is_64_kib(start_gateway, sim_pool):
    gw = start_gateway(sim_pool)
    with connect(gw) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\n\r\n")
        data, _ = read_until_closed(sock, 5.0)
    assert data.startswith(b"HTTP/1.1 431")


# -------------------------------------------------------------------------------- slow clients
def test_idle_and_half_sent_connections_are_closed_within_the_timeouts(start_gateway, sim_pool):
    header_timeout, body_timeout, slack = 0.6, 0.9, 1.5
    gw = start_gateway(sim_pool, header_timeout=header_timeout, body_timeout=body_timeout, keepalive_timeout=0.6)
    idle = [connect(gw) for _ in range(3)]  # never send a byte
    half_head = connect(gw)
    half_head.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n")  # headers never finished
    half_body = connect(gw)
    half_body.sendall(
        b'POST /v1/route HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"input": '
    )
    kept_alive = connect(gw)
    kept_alive.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")  # answered, then left idle
    results: dict[str, tuple[bytes, float]] = {}
    try:
        for i, sock in enumerate(idle):
            results[f"idle{i}"] = read_until_closed(sock, header_timeout + slack)
        results["half_head"] = read_until_closed(half_head, header_timeout + slack)
        results["half_body"] = read_until_closed(half_body, body_timeout + slack)
        results["kept_alive"] = read_until_closed(kept_alive, 0.6 + slack)
    finally:
        for sock in [*idle, half_head, half_body, kept_alive]:
            sock.close()
    for i in range(3):
        assert results[f"idle{i}"][0] == b""  # closed without an answer
    assert results["half_head"][0].startswith(b"HTTP/1.1 408")
    assert results["kept_alive"][0].startswith(b"HTTP/1.1 200")
    # the body stalled while the endpoint waited for it: closed, not answered
    assert b"HTTP/1.1 2" not in results["half_body"][0]
    # the gateway still serves
    with connect(gw) as sock:
        assert get_health(sock).startswith(b"HTTP/1.1 200")


def test_a_slow_but_steady_body_is_not_cut(start_gateway, sim_pool):
    gw = start_gateway(sim_pool, body_timeout=0.8)
    body = b'{"input": "what is the boiling point of water at sea level"}'
    with connect(gw) as sock:
        sock.sendall(
            b"POST /v1/route HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for i in range(0, len(body), 20):  # ~1.2 s in all, never 0.8 s without a byte
            sock.sendall(body[i : i + 20])
            time.sleep(0.4)
        data, _ = read_until_closed(sock, 5.0)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]


def test_connection_limit_answers_503_instead_of_resetting(start_gateway, sim_pool):
    gw = start_gateway(sim_pool, max_connections=8)
    held = [connect(gw) for _ in range(8)]
    try:
        time.sleep(0.2)  # let the server accept them all
        with connect(gw) as extra:
            data = get_health(extra)
        assert data.startswith(b"HTTP/1.1 503"), data[:100]
        assert b"retry-after" in data.lower()
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # the freed slots serve again
        with connect(gw) as sock:
            data = get_health(sock)
        if data.startswith(b"HTTP/1.1 200") or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert data.startswith(b"HTTP/1.1 200")


# ---------------------------------------------------------------------------------- /v1/route
def test_route_refuses_more_inputs_than_max_route_inputs(start_gateway, sim_pool):
    gw = start_gateway(sim_pool, max_route_inputs=16)
    ok = httpx.post(gw.base_url + "/route", json={"input": [f"question {i}" for i in range(16)]}, timeout=20)
    assert ok.status_code == 200 and len(ok.json()["data"]) == 16
    r = httpx.post(gw.base_url + "/route", json={"input": [f"question {i}" for i in range(17)]}, timeout=20)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "input" and "16" in error["message"] and "max_route_inputs" in error["message"]


def test_a_big_route_list_does_not_hold_single_requests(start_gateway, sim_pool):
    gw = start_gateway(sim_pool, max_route_inputs=20_000)
    url = gw.base_url + "/route"

    def single_latencies(client: httpx.Client, n: int) -> list[float]:
        out = []
        for i in range(n):
            start = time.perf_counter()
            r = client.post(url, json={"input": f"a single question number {i}"})
            out.append(time.perf_counter() - start)
            assert r.status_code == 200
        return out

    big = {"input": [f"bulk question {i} about chemistry and history" for i in range(20_000)]}
    with httpx.Client(timeout=60) as client:
        single_latencies(client, 3)  # warm up
        baseline = statistics.median(single_latencies(client, 10))
        start = time.perf_counter()
        assert client.post(url, json=big).status_code == 200
        big_seconds = time.perf_counter() - start
    stop = threading.Event()

    def flood() -> None:
        with httpx.Client(timeout=60) as c:
            for _ in range(20):  # bounded
                if stop.is_set():
                    break
                c.post(url, json=big)

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # the big list is being routed
        with httpx.Client(timeout=60) as client:
            under_load = single_latencies(client, 10)
    finally:
        stop.set()
        thread.join(120)
    # a single request waits for a slice of the big list, not for the whole of it
    assert max(under_load) < max(20 * baseline, 0.25 * big_seconds), (baseline, big_seconds, under_load)


# ------------------------------------------------------------------------------ exposure warning
def test_exposure_warning_only_for_a_non_loopback_host_without_key():
    assert server_mod.exposure_warning(GatewaySettings(host="127.0.0.1")) is None
    assert server_mod.exposure_warning(GatewaySettings(host="::1")) is None
    assert server_mod.exposure_warning(GatewaySettings(host="localhost")) is None
    assert server_mod.exposure_warning(GatewaySettings(host="0.0.0.0", api_key="k")) is None
    for host in ("0.0.0.0", "::", "192.168.1.20", "gateway.example.org"):
        message = server_mod.exposure_warning(GatewaySettings(host=host))
        assert message is not None and "no key" in message and "--api-key-env" in message


def test_run_gateway_warns_on_stderr_and_in_the_log_and_still_starts(
    router_file, sim_pool, monkeypatch, capsys, caplog
):
    gateway = build_gateway(router_file, sim_pool, GatewaySettings(host="0.0.0.0", port=0))
    ran = []
    monkeypatch.setattr(server_mod.GatewayServer, "run", lambda self, *a, **k: ran.append(self))
    with caplog.at_level(logging.WARNING, logger="cascal.serve"):
        server_mod.run_gateway(gateway)
    assert ran, "the gateway must still start"
    assert "requires no key" in capsys.readouterr().err
    assert any("requires no key" in r.getMessage() for r in caplog.records)
