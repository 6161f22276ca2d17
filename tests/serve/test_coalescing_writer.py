"""The gateway sends a response's head and body in one write (:class:`CoalescingWriter`): what one
turn of the event loop writes goes out together at its end, later writes go out in their own turn,
a close writes what is held first, and a closed connection gets nothing."""

from __future__ import annotations

import asyncio
import socket

import pytest
from conftest import pool_file

from cascal.serve.connection import CoalescingWriter


class RecordingTransport:
    """The parts of an asyncio transport the writer uses, recording every call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after close"
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close",))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 5)}.get(name, default)


def _writer() -> tuple[RecordingTransport, CoalescingWriter]:
    """A recording transport and the writer over it, on the running loop."""
    transport = RecordingTransport()
    return transport, CoalescingWriter(transport, asyncio.get_running_loop())


async def _turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_writes_of_one_turn_go_out_as_one_write_at_its_end():
    async def scenario():
        transport, writer = _writer()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        writer.write(b"{}")
        assert transport.calls == []  # nothing before the turn ends
        await _turn()
        return transport.calls

    assert asyncio.run(scenario()) == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]


def test_writes_of_later_turns_are_not_held_back():
    async def scenario():
        transport, writer = _writer()
        writer.write(b"head")
        await _turn()
        first = list(transport.calls)
        writer.write(b"chunk 1")
        await _turn()
        writer.write(b"chunk 2")
        writer.write(b"end")
        await _turn()
        return first, transport.calls

    first, calls = asyncio.run(scenario())
    assert first == [("write", b"head")]
    assert calls == [("write", b"head"), ("write", b"chunk 1"), ("write", b"chunk 2end")]


def test_close_writes_what_is_held_first_and_nothing_after():
    async def scenario():
        transport, writer = _writer()
        writer.write(b"head")
        writer.write(b"body")
        writer.close()
        await _turn()  # the flush scheduled by the first write finds nothing left
        return transport.calls

    assert asyncio.run(scenario()) == [("write", b"headbody"), ("close",)]


def test_a_connection_closed_meanwhile_gets_nothing():
    async def scenario():
        transport, writer = _writer()
        writer.write(b"head")
        transport.close()  # the client went away before the turn ended
        await _turn()
        return transport.calls

    assert asyncio.run(scenario()) == [("close",)]


def test_everything_else_is_the_transports():
    async def scenario():
        transport, writer = _writer()
        return writer.get_extra_info("peername"), writer.is_closing()

    assert asyncio.run(scenario()) == (("127.0.0.1", 5), False)


@pytest.fixture
def sim_pool(world, simulator, tmp_path):
    return pool_file(tmp_path / "pool.yaml", [(n, simulator.base_url) for n in world.model_names])


@pytest.mark.parametrize("path", ["/v1/route", "/v1/models"])
def test_a_gateway_response_arrives_in_one_segment(start_gateway, sim_pool, path):
    """Over a real connection: the response's head and body come in one read (with the writes
    separate, the head arrives alone whenever the client reads between them)."""
    gw = start_gateway(sim_pool)
    method = "POST" if path == "/v1/route" else "GET"
    body = b'{"input": "What is the derivative of x squared?"}' if method == "POST" else b""
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
        for _ in range(20):
            sock.sendall(request)
            first = sock.recv(1 << 20)
            head, _, rest = first.partition(b"\r\n\r\n")
            length = int(
                next(
                    v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n")) if k.lower() == b"content-length"
                )
            )
            assert len(rest) == length, first[:200]
