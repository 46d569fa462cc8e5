"""Opening client connections, and wrapping any Trio stream as a connection.

Every connection is an ``async with`` block that owns a nursery: the
connection's helper tasks live there, so they can never outlive the block.
That block (``running``, in the connection's module) is shared by clients
and servers.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._connection import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_RECEIVE_BUFFER_SIZE,
    Connection,
    ConnectionOptions,
    only_exception,
    running,
)
from ._frames import DEFAULT_MAX_MESSAGE_SIZE
from ._state import Role
from ._transport import DEFAULT_LINGER, TransportStream

__all__ = ["connect_tcp", "connect_unix", "only_exception", "running", "wrap_stream"]


def _transport(stream: trio.abc.Stream, linger: float) -> TransportStream:
    if isinstance(stream, TransportStream):
        return stream
    return TransportStream(stream, linger=linger)


@asynccontextmanager
async def wrap_stream(
    stream: trio.abc.Stream,
    role: Role | str = Role.CLIENT,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[Connection]:
    """Run an adieu connection over an already-connected Trio stream.

    ``async with adieu.wrap_stream(stream, "server") as conn: ...``

    Args:
        stream: any :class:`trio.abc.Stream`: a :class:`trio.SocketStream`, a
            :class:`trio.SSLStream` (handshake done or not), a memory stream
            from :mod:`adieu.testing`. The connection owns it from now on.
        role: ``"client"`` or ``"server"`` (or a :class:`~adieu.Role`): the
            peer must have the other.
        max_message_size: largest message sent or accepted, in bytes
            (inclusive; default 1 MiB).
        receive_buffer_size: bytes of received messages held for the
            application before the reader stops reading (default 1 MiB).
        grace_period: bound of the graceful close at the block's end and of
            :meth:`~Connection.shutdown`, in seconds (default 10).
        linger: bound of :meth:`~Connection.aclose`'s wait for the peer's
            EOF, in seconds (default 2).

    Yields:
        The :class:`Connection`, running for the duration of the block.

    Raises:
        ValueError: an option is out of range (the stream is then closed).

    An exception raised inside the block leaves it as itself (the connection
    is aborted).
    """
    try:
        options = ConnectionOptions(
            max_message_size, receive_buffer_size, grace_period, linger
        )
    except ValueError:
        await trio.aclose_forcefully(stream)
        raise
    async with wrapped(stream, role, options) as conn:
        yield conn


@asynccontextmanager
async def wrapped(
    stream: trio.abc.Stream, role: Role | str, options: ConnectionOptions
) -> AsyncIterator[Connection]:
    """:func:`wrap_stream` with its options checked."""
    async with running(
        Connection(_transport(stream, options.linger), role, options)
    ) as conn:
        yield conn


@asynccontextmanager
async def connect_tcp(
    host: str | bytes,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    close_timeout: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
    happy_eyeballs_delay: float | None = 0.25,
) -> AsyncIterator[Connection]:
    """Connect to an adieu server over TCP (or TLS over TCP).

    ``async with adieu.connect_tcp("127.0.0.1", 8000) as conn: ...``

    Leaving the block normally ends the connection gracefully: END, then the
    server's remaining messages are read (and discarded, counted) until its
    END, within ``close_timeout``; see :class:`Connection`.

    Args:
        host, port: where to connect (as :func:`trio.open_tcp_stream`).
        ssl_context: use TLS with this context; the handshake is done before
            the block starts, so certificate errors are raised here.
        server_hostname: the name to check the certificate against (default
            ``host``).
        max_message_size: largest message sent or accepted, in bytes
            (inclusive; default 1 MiB).
        receive_buffer_size: bytes of received messages held before the
            reader stops reading (default 1 MiB).
        close_timeout: bound, in seconds, of the graceful close at the end of
            the block and of ``shutdown()`` (default 10); when it expires the
            connection is aborted (``TIMED_OUT``). It is the connection's
            :attr:`~Connection.grace_period`.
        linger: bound of ``aclose()``'s wait for the server's EOF (default 2).
        happy_eyeballs_delay: as :func:`trio.open_tcp_stream`.

    Raises:
        ValueError: an option is out of range (checked before connecting).
        OSError: the connection could not be made.
        trio.BrokenResourceError: the TLS handshake failed (its
            ``__cause__`` says why, e.g. :exc:`ssl.SSLCertVerificationError`).
    """
    # (A client's close timeout is its connection's grace period.)
    options = ConnectionOptions(
        max_message_size, receive_buffer_size, close_timeout, linger
    )
    stream: trio.abc.Stream = await trio.open_tcp_stream(
        host, port, happy_eyeballs_delay=happy_eyeballs_delay
    )
    if ssl_context is not None:
        name = server_hostname
        if name is None:
            name = host.decode() if isinstance(host, bytes) else host
        ssl_stream = trio.SSLStream(stream, ssl_context, server_hostname=name)
        try:
            await ssl_stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(ssl_stream)
            raise
        stream = ssl_stream
    async with wrapped(stream, Role.CLIENT, options) as conn:
        yield conn


@asynccontextmanager
async def connect_unix(
    path: str | os.PathLike[str],
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    close_timeout: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[Connection]:
    """Connect to an adieu server on a Unix domain socket at ``path``.

    Everything else is as :func:`connect_tcp`.

    Raises:
        ValueError: an option is out of range (checked before connecting).
        OSError: the connection could not be made.
        RuntimeError: this platform has no Unix domain sockets.
    """
    # (A client's close timeout is its connection's grace period.)
    options = ConnectionOptions(
        max_message_size, receive_buffer_size, close_timeout, linger
    )
    stream = await trio.open_unix_socket(os.fspath(path))
    async with wrapped(stream, Role.CLIENT, options) as conn:
        yield conn
