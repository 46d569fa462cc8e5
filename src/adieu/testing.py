"""Test your adieu code the way adieu tests itself: over memory streams, on
pytest-trio's ``autojump_clock``, where a ten-minute grace period costs
milliseconds.

* :func:`open_connection_pair`: a connected client/server
  :class:`~adieu.Connection` pair.
* :func:`open_memory_server` and :func:`connect_memory`: run your handler as
  a server and connect clients to it, all in memory.
* :func:`memory_stream_pair`: the byte streams underneath. Each direction is
  a :class:`MemoryPipe` that a test can hold back, release, cut or reset, so
  that races (a client's END crossing the server's SHUTDOWN) happen in the
  order the test chooses, every time. :func:`memory_stream` gives the
  :class:`MemoryStream` under a connection, typed as such.

Example (with ``pytest-trio``)::

    async def test_goodbye(autojump_clock):
        async with adieu.testing.open_memory_server(echo, grace_period=600) as server:
            async with adieu.testing.connect_memory(server) as conn:
                await conn.send(b"hi")
                assert await conn.receive() == b"hi"
            report = await server.shutdown()
        assert report.ended_before[adieu.TerminationKind.CLEAN] == 1
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import final

import trio

from ._connection import DEFAULT_GRACE_PERIOD, DEFAULT_RECEIVE_BUFFER_SIZE, Connection
from ._frames import DEFAULT_MAX_MESSAGE_SIZE
from ._open import run_stream
from ._options import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionOptions,
    server_options,
)
from ._server import Handler, Server, serving
from ._state import Role
from ._transport import DEFAULT_LINGER

__all__ = [
    "MemoryPipe",
    "MemoryStream",
    "connect_memory",
    "memory_stream",
    "memory_stream_pair",
    "open_connection_pair",
    "open_memory_server",
]

#: Bytes a pipe holds before a sender waits: like a small socket buffer,
#: so that a peer that does not read blocks its sender (backpressure).
DEFAULT_PIPE_CAPACITY = 65536


def _reset_error() -> trio.BrokenResourceError:
    exc = trio.BrokenResourceError("the peer reset the connection")
    exc.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    return exc


@final
class MemoryPipe:
    """One direction of an in-memory connection: bytes written at one end,
    read at the other, with a bounded buffer and test controls.

    Controls (all synchronous):

    * :meth:`hold` / :meth:`release`: bytes written while held stay in
      flight (the reader sees nothing) until released: a slow network on
      demand.
    * :meth:`cut`: the reader sees EOF after what was already delivered;
      bytes still in flight are lost (a connection cut mid-way: the peer
      sees a truncation).
    * :meth:`reset`: both ends see a reset (:exc:`trio.BrokenResourceError`
      caused by :exc:`ConnectionResetError`), as after a TCP RST.

    Attributes:
        capacity: bytes held before the writer waits (default 64 KiB).
        delivered: bytes the reader has taken so far.
    """

    def __init__(self, capacity: int = DEFAULT_PIPE_CAPACITY) -> None:
        self.capacity = capacity
        self.delivered = 0
        self._data = bytearray()
        self._held = False
        self._eof = False
        self._reset = False
        self._reader_closed = False
        self._writer_closed = False
        self._readers = trio.lowlevel.ParkingLot()
        self._writers = trio.lowlevel.ParkingLot()

    @property
    def in_flight(self) -> bytes:
        """The bytes written and not yet read."""
        return bytes(self._data)

    @property
    def held(self) -> bool:
        """``True`` while :meth:`hold` is in effect."""
        return self._held

    def _wake(self) -> None:
        self._readers.unpark_all()
        self._writers.unpark_all()

    def hold(self) -> None:
        """Keep bytes in flight until :meth:`release`."""
        self._held = True

    def release(self) -> None:
        """Deliver what was held, and everything after it."""
        self._held = False
        self._wake()

    def cut(self) -> None:
        """Drop the bytes in flight and end the stream: the reader sees EOF."""
        self._data.clear()
        self._eof = True
        self._held = False
        self._wake()

    def reset(self) -> None:
        """Reset: the reader's and the writer's next calls raise
        :exc:`trio.BrokenResourceError` (caused by a
        :exc:`ConnectionResetError`)."""
        self._data.clear()
        self._reset = True
        self._held = False
        self._wake()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` and wait until the buffer is under capacity.

        Raises:
            trio.ClosedResourceError: the writing end was closed, or EOF was
                already written.
            trio.BrokenResourceError: the pipe was reset or its reading end
                closed (as a write after the peer's reset).

        A checkpoint. If cancelled while waiting for room, ``data`` was
        written all the same.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._writer_closed:
            raise trio.ClosedResourceError("this end is closed")
        if self._reset or self._reader_closed:
            raise _reset_error()
        if self._eof:
            raise trio.ClosedResourceError("EOF was already sent")
        self._data += data
        self._readers.unpark_all()
        while len(self._data) > self.capacity:
            await self._writers.park()
            if self._writer_closed:
                raise trio.ClosedResourceError("this end is closed")
            if self._reset or self._reader_closed:
                raise _reset_error()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_writable(self) -> None:
        """Wait until a write might not block. Raises
        :exc:`trio.ClosedResourceError` if the writing end is (or gets)
        closed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._data) > self.capacity and not (
            self._reset or self._reader_closed or self._writer_closed
        ):
            await self._writers.park()
        await trio.lowlevel.cancel_shielded_checkpoint()
        if self._writer_closed:
            raise trio.ClosedResourceError("this end is closed")

    def write_eof(self) -> None:
        """Signal EOF after what was written."""
        self._eof = True
        self._readers.unpark_all()

    async def read(self, max_bytes: int | None = None) -> bytes:
        """Read up to ``max_bytes``; ``b""`` at EOF.

        Raises:
            trio.ClosedResourceError: the reading end was closed.
            trio.BrokenResourceError: the pipe was reset.

        A checkpoint, and cancel-safe: if cancelled, nothing was taken.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._reader_closed:
                raise trio.ClosedResourceError("this end is closed")
            if self._reset:
                raise _reset_error()
            if self._data and not self._held:
                n = len(self._data) if max_bytes is None else max_bytes
                chunk = bytes(self._data[:n])
                del self._data[:n]
                self.delivered += len(chunk)
                self._writers.unpark_all()
                await trio.lowlevel.cancel_shielded_checkpoint()
                return chunk
            if self._eof and not self._data:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return b""
            await self._readers.park()

    def close_reader(self) -> None:
        """The reading end is closed: later writes fail as after a reset."""
        self._reader_closed = True
        self._data.clear()
        self._wake()

    def close_writer(self) -> None:
        """The writing end is closed: EOF for the reader."""
        self._writer_closed = True
        self._eof = True
        self._wake()


class _Conflict:
    __slots__ = ("_held", "_what")

    def __init__(self, what: str) -> None:
        self._what = what
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(f"another task is {self._what}")
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False


@final
class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of an in-memory connection, made by
    :func:`memory_stream_pair`.

    Attributes:
        outgoing: the :class:`MemoryPipe` carrying this end's bytes to the
            peer.
        incoming: the pipe carrying the peer's bytes to this end.

    ``aclose()`` behaves like closing a socket: the peer reads EOF, and its
    later writes fail as after a reset. ``abort()`` resets both directions at
    once, synchronously (adieu's abort uses it).
    """

    def __init__(self, outgoing: MemoryPipe, incoming: MemoryPipe) -> None:
        self.outgoing = outgoing
        self.incoming = incoming
        self._closed = False
        self._send_conflict = _Conflict("sending")
        self._receive_conflict = _Conflict("receiving")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """See :meth:`trio.abc.SendStream.send_all`."""
        with self._send_conflict:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("this stream is closed")
            await self.outgoing.write(data)

    async def wait_send_all_might_not_block(self) -> None:
        """See :meth:`trio.abc.SendStream.wait_send_all_might_not_block`."""
        with self._send_conflict:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("this stream is closed")
            await self.outgoing.wait_writable()

    async def send_eof(self) -> None:
        """See :meth:`trio.abc.HalfCloseableStream.send_eof`."""
        with self._send_conflict:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("this stream is closed")
            self.outgoing.write_eof()
            await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """See :meth:`trio.abc.ReceiveStream.receive_some`."""
        if max_bytes is not None:
            # A non-integer fails here, not later in a slice (or never, when
            # nothing has arrived yet).
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        with self._receive_conflict:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("this stream is closed")
            return await self.incoming.read(max_bytes)

    def abort(self) -> None:
        """Reset both directions now (the peer sees a reset)."""
        self._closed = True
        self.outgoing.reset()
        self.incoming.reset()
        self.outgoing.close_writer()
        self.incoming.close_reader()

    def close(self) -> None:
        """Close now: the peer reads EOF; unread input is dropped, so the
        peer's later writes fail as after a reset."""
        self._closed = True
        self.outgoing.close_writer()
        self.incoming.close_reader()

    async def aclose(self) -> None:
        """See :meth:`trio.abc.AsyncResource.aclose`."""
        self.close()
        await trio.lowlevel.checkpoint()


def memory_stream_pair(
    capacity: int = DEFAULT_PIPE_CAPACITY,
) -> tuple[MemoryStream, MemoryStream]:
    """Two connected :class:`MemoryStream` ends (call them client and
    server).

    Args:
        capacity: bytes each direction holds before its writer waits.
    """
    to_server = MemoryPipe(capacity)
    to_client = MemoryPipe(capacity)
    return MemoryStream(to_server, to_client), MemoryStream(to_client, to_server)


def memory_stream(conn: Connection) -> MemoryStream:
    """The :class:`MemoryStream` under ``conn``, a connection made by this
    module: ``memory_stream(conn).outgoing`` is the pipe that carries its
    bytes to the peer, ``memory_stream(conn).incoming`` the one that brings
    the peer's.

    ``conn.transport.stream`` is the same object, typed as any
    :class:`trio.abc.Stream`; this function narrows it for type checkers.

    Raises:
        TypeError: ``conn`` does not run over a :class:`MemoryStream`.
    """
    stream = conn.transport.stream
    if not isinstance(stream, MemoryStream):
        raise TypeError(
            f"the connection runs over {type(stream).__name__}, not a MemoryStream"
        )
    return stream


@asynccontextmanager
async def open_connection_pair(
    *,
    capacity: int = DEFAULT_PIPE_CAPACITY,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[tuple[Connection, Connection]]:
    """A connected ``(client, server)`` pair of running connections.

    When the block ends normally both sides end gracefully, concurrently (the
    client's END and the server's, in the protocol's order); on an exception
    both are aborted and the exception propagates as itself.

    Args:
        capacity: bytes each direction holds in flight before its writer
            waits (default 64 KiB).

    The other keyword arguments are those of :func:`adieu.wrap_stream`, with
    the same defaults, for both sides (which share one
    :class:`~adieu.ConnectionOptions`).

    Raises:
        ValueError: an option is out of range.
        TypeError: an option is not of the right type.

    Each connection runs over a :class:`MemoryStream` (see
    :func:`memory_stream`), whose ``outgoing`` pipe a test can hold, release,
    cut or reset.

    Entering sends both preambles (a checkpoint). If the block is cancelled,
    both connections are aborted and the cancellation propagates.
    """
    options = ConnectionOptions(
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        grace_period=grace_period,
        linger=linger,
    )
    client_stream, server_stream = memory_stream_pair(capacity)
    async with (
        run_stream(client_stream, Role.CLIENT, options) as client,
        run_stream(server_stream, Role.SERVER, options) as server,
    ):
        try:
            yield client, server
        except BaseException:
            client.abort()
            server.abort()
            raise
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.end_block, None)
            nursery.start_soon(server.end_block, None)


@asynccontextmanager
async def open_memory_server(
    handler: Handler,
    *,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[Server]:
    """Run ``handler`` as an adieu server with no listener; connect to it
    with :func:`connect_memory`.

    Args:
        handler: the handler, as for :func:`adieu.open_tcp_server`.

    The other keyword arguments are those of :func:`adieu.open_server`, with
    the same defaults.

    Yields:
        The running :class:`~adieu.Server`. Leaving the block shuts it down
        gracefully, as with a TCP server; a cancellation aborts it.

    Raises:
        ValueError: an option is out of range.
        TypeError: an option is not of the right type.
    """
    options = server_options(
        grace_period=grace_period,
        max_message_size=max_message_size,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        receive_buffer_size=receive_buffer_size,
        linger=linger,
    )
    async with serving(handler, (), options) as server:
        yield server


@asynccontextmanager
async def connect_memory(
    server: Server,
    *,
    capacity: int = DEFAULT_PIPE_CAPACITY,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[Connection]:
    """Connect a client to ``server`` over memory streams.

    Args:
        server: a running server (usually from :func:`open_memory_server`).
        capacity: bytes each direction holds in flight.

    The other keyword arguments are those of :func:`adieu.wrap_stream`, with
    the same defaults, for the client.

    Raises:
        trio.ClosedResourceError: the server is shutting down (as a refused
            connection).
        ValueError: an option is out of range (checked before the server
            is told of the connection).
        TypeError: an option is not of the right type (likewise).

    The connection is the client side of :func:`adieu.wrap_stream`: the
    same ending rules, the same cancellation behaviour.
    """
    options = ConnectionOptions(
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        grace_period=grace_period,
        linger=linger,
    )
    client_stream, server_stream = memory_stream_pair(capacity)
    server.serve_stream(server_stream)
    async with run_stream(client_stream, Role.CLIENT, options) as conn:
        yield conn
