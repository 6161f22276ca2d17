"""Per-connection limits of the gateway's HTTP server (uvicorn's httptools protocol, extended).

uvicorn bounds neither the size of a request's headers under httptools (an unfinished header line is
buffered whole, before any authentication), nor the time a client may take to send its headers or
its body (a connection that never sends a byte is held until the client goes away), and its
``limit_concurrency`` only answers 503 once a request's headers have arrived, so idle connections
beyond it still hold a file descriptor each. :class:`LimitedHttpToolsProtocol` adds:

- **header size**: bytes received while a request's headers are incomplete are counted; past
  ``max_header_bytes`` the request is answered 431 and the connection closed;
- **header timeout**: a connection that has not completed a request's headers ``header_timeout``
  seconds after it opened (or after the first byte of a keep-alive request) is closed (408 when it
  sent something);
- **body timeout**: a request body that stalls (no byte for ``body_timeout`` seconds, while the
  gateway is reading) closes the connection;
- **connections**: a connection opened while ``max_connections`` are already open is answered 503
  (``connection: close``) at once and closed shortly after, without waiting for its request, so
  a flood of idle connections cannot exhaust the process's file descriptors.

It also sends each response in as few writes as it can: uvicorn writes a response's head and its
body with one ``transport.write`` each, which on an idle socket is one ``send`` system call (and one
TCP segment, and one wake-up of the client) each. A connection's writes go through a
:class:`CoalescingWriter`, which joins everything written in one turn of the event loop into one
write at the end of that turn (in order, and before a close): a JSON response, whose head and body uvicorn writes back to back, goes
out in one call; the chunks of a stream still go out as they come.

The limits travel on the uvicorn config as ``config.connection_limits`` (:func:`attach_limits`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingWriter", "ConnectionLimits", "LimitedHttpToolsProtocol", "attach_limits"]

#: seconds an over-limit connection is kept open after its 503 so that the client reads the answer
#: (closing at once, with the client's request unread, would reset the connection)
OVER_LIMIT_LINGER = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may take (see the module docstring); timeouts in seconds."""

    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1024


def attach_limits(config: Any, limits: ConnectionLimits) -> None:
    """Give a uvicorn config the limits :class:`LimitedHttpToolsProtocol` enforces."""
    config.connection_limits = limits


def _response(status: bytes, message: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: "
        + str(len(message)).encode("ascii")
        + b"\r\nconnection: close\r\n"
        + extra
        + b"\r\n"
        + message
    )


_TOO_LARGE = _response(b"431 Request Header Fields Too Large", b"Request Header Fields Too Large")
_TIMEOUT = _response(b"408 Request Timeout", b"Request Timeout")
_OVER_LIMIT = _response(b"503 Service Unavailable", b"Service Unavailable", b"retry-after: 1\r\n")


class CoalescingWriter:
    """The transport as one request's response sees it: bytes written during one turn of the event
    loop are held and written together when the turn ends (or before a close); everything else is
    the transport's own."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Hold ``data`` until the end of this turn of the event loop."""
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)

    def flush(self) -> None:
        """Write what is held, in one write (dropped if the connection is closing: nobody reads it)."""
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        """Write what is held, then close the transport."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header size, header/body read timeouts and a connection cap."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", None) or ConnectionLimits()
        self._in_headers = True  # reading a request's headers (or waiting for the next request)
        self._header_bytes = 0
        self._received = False  # any byte since the header timer was armed
        self._header_timer: Optional[asyncio.TimerHandle] = None
        self._body_timer: Optional[asyncio.TimerHandle] = None
        self._refused = False

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refused = True
            self.connections.discard(self)  # it no longer counts against the limit
            transport.write(_OVER_LIMIT)
            self.loop.call_later(OVER_LIMIT_LINGER, transport.close)
            return
        # every write of the connection, the protocol's own (400, 431, 408) and its responses',
        # through one writer: they keep their order, and a close writes what is held first
        self.transport = CoalescingWriter(transport, self.loop)  # type: ignore[assignment]
        self._arm_header_timer()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered 503 already; the request is read and dropped until the close
        if not self._in_headers:
            self._arm_body_timer()
            super().data_received(data)
            return
        if self._header_timer is None:  # first byte of a keep-alive request
            self._arm_header_timer()
        self._received = True
        room = self.limits.max_header_bytes - self._header_bytes
        if len(data) <= room:
            self._header_bytes += len(data)
            super().data_received(data)
            return
        # feed only what the limit allows; the headers must be complete within it
        self._header_bytes += room
        super().data_received(data[:room])
        if self._in_headers:
            if not self.transport.is_closing():
                self.logger.warning("Request headers larger than %d bytes refused.", self.limits.max_header_bytes)
                self._close_with(_TOO_LARGE)
            return
        if not self.transport.is_closing() and self.parser is not None:
            self.data_received(data[room:])

    # ------------------------------------------------------------------ parser callbacks
    def on_headers_complete(self) -> None:
        self._in_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True
        self._header_bytes = 0
        self._received = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # ------------------------------------------------------------------ timers
    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timed_out)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if not self._in_headers or self.transport.is_closing():
            return
        busy = self.cycle is not None and not self.cycle.response_complete
        if busy and not self._received:
            return  # a request is being answered; the keep-alive timer takes over after it
        if self._received:
            self._close_with(_TIMEOUT)
        else:
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self._in_headers or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the gateway, not the client, is behind: wait again
            self._arm_body_timer()
            return
        self.logger.warning("Request body stalled for %.3g s; connection closed.", self.limits.body_timeout)
        self.transport.close()

    def _close_with(self, response: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(response)
        self.transport.close()
