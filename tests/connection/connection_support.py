"""What the connection tests share, beyond ``tests/shared_support.py`` (the
wire format written out by hand):

* Connected pairs of :class:`adieu.Connection` over memory streams and over
  real loopback TCP, so that one scenario can run on both tiers.
* Raw TCP peers and the kernel's queue sizes, for the tests where the kernel
  matters (resets, lingering closes).
"""

from __future__ import annotations

import fcntl
import ssl
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import trio

import adieu
import adieu.testing
from shared_support import CLIENT_PREAMBLE, SERVER_PREAMBLE

# ------------------------------------------------------------ byte streams


async def receive_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    """Read exactly ``count`` bytes from ``stream``."""
    data = bytearray()
    while len(data) < count:
        chunk = await stream.receive_some(count - len(data))
        if not chunk:
            raise AssertionError(f"EOF after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


async def receive_to_eof(stream: trio.abc.ReceiveStream) -> bytes:
    """Read everything ``stream`` delivers until its EOF."""
    data = bytearray()
    while chunk := await stream.receive_some(65536):
        data += chunk
    return bytes(data)


async def collect(conn: adieu.Connection, into: list[bytes]) -> None:
    """Iterate over ``conn`` to its end, appending each message to ``into``
    (which keeps what arrived if the iteration raises)."""
    async for data in conn:
        into.append(data)


def unread_bytes(sock: Any) -> int:
    """Bytes waiting in the kernel's receive queue of ``sock``."""
    raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int(struct.unpack("i", raw)[0])


# ------------------------------------------------------------ connected pairs

#: :func:`memory_pair` or :func:`tcp_pair`, for a scenario run on both.
Pair = Callable[
    ..., AbstractAsyncContextManager[tuple[adieu.Connection, adieu.Connection]]
]


@asynccontextmanager
async def memory_pair(
    **options: Any,
) -> AsyncIterator[tuple[adieu.Connection, adieu.Connection]]:
    """A connected ``(client, server)`` pair over memory streams
    (:func:`adieu.testing.open_connection_pair`)."""
    async with adieu.testing.open_connection_pair(**options) as pair:
        yield pair


@asynccontextmanager
async def tcp_listener() -> AsyncIterator[trio.SocketListener]:
    """A TCP listener on 127.0.0.1, on a port the kernel picks."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    assert len(listeners) == 1
    async with listeners[0] as listener:
        yield listener


def port_of(listener: trio.SocketListener) -> int:
    return int(listener.socket.getsockname()[1])


@asynccontextmanager
async def connect_to_raw_peer(
    listener: trio.SocketListener, **options: Any
) -> AsyncIterator[tuple[adieu.Connection, trio.SocketStream]]:
    """``adieu.connect_tcp`` to ``listener``, whose accepted socket (the
    raw peer, yielded with the client) has read the client's preamble and
    sent the server's: ``connect_tcp``'s block starts only then."""
    peers: list[trio.SocketStream] = []
    answered = trio.Event()

    async def answer() -> None:
        peer = await listener.accept()
        assert await receive_exactly(peer, len(CLIENT_PREAMBLE)) == CLIENT_PREAMBLE
        await peer.send_all(SERVER_PREAMBLE)
        peers.append(peer)
        answered.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        async with adieu.connect_tcp(
            "127.0.0.1", port_of(listener), **options
        ) as client:
            await answered.wait()
            yield client, peers[0]


@asynccontextmanager
async def tcp_pair(
    *, grace_period: float = adieu.DEFAULT_GRACE_PERIOD, **options: Any
) -> AsyncIterator[tuple[adieu.Connection, adieu.Connection]]:
    """A connected ``(client, server)`` pair over loopback TCP, each made by
    :func:`adieu.wrap_stream` on its socket (``connect_tcp``'s block would
    wait for the server's preamble, which this one task cannot send before
    it has entered the client's block).

    When the block ends normally, both sides shut down gracefully at once;
    on an exception both are aborted and the exception propagates.
    """
    async with tcp_listener() as listener:
        stream = await trio.open_tcp_stream("127.0.0.1", port_of(listener))
        accepted = await listener.accept()
        async with (
            adieu.wrap_stream(
                stream, "client", grace_period=grace_period, **options
            ) as client,
            adieu.wrap_stream(
                accepted, "server", grace_period=grace_period, **options
            ) as server,
        ):
            try:
                yield client, server
            except BaseException:
                client.abort()
                server.abort()
                raise
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.shutdown)
                nursery.start_soon(server.shutdown)


# ------------------------------------------------------------------ servers

Handler = Callable[[adieu.Connection], Awaitable[Any]]


@asynccontextmanager
async def tcp_server(
    handler: Handler, *, ssl_context: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[adieu.Server]:
    """An adieu server on 127.0.0.1, on a port the kernel picks."""
    async with adieu.open_tcp_server(
        handler, "127.0.0.1", 0, ssl_context=ssl_context, **options
    ) as server:
        yield server


class Served:
    """Records what a test server's handlers saw: each connection, and the
    exception (if any) that ended each handler's receiving."""

    def __init__(self) -> None:
        self.connections: list[adieu.Connection] = []
        self.errors: list[BaseException] = []
        self.received: list[bytes] = []
        self.done = trio.Event()

    @property
    def only(self) -> adieu.Connection:
        assert len(self.connections) == 1, self.connections
        return self.connections[0]
