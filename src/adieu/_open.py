"""Opening client connections, and wrapping any Trio stream as a connection.

Every connection is an ``async with`` block that owns a nursery: the
connection's background reader lives there, so it can never outlive the
block. :func:`running` is that block, shared by clients and servers.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from ._compat import BaseExceptionGroup
from ._connection import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_RECEIVE_BUFFER_SIZE,
    Connection,
    check_options,
)
from ._errors import HandshakeTimeout
from ._frames import DEFAULT_MAX_MESSAGE_SIZE
from ._state import Role
from ._transport import DEFAULT_LINGER, TransportStream

__all__ = ["connect_tcp", "connect_unix", "running", "wrap_stream"]

#: Seconds a client waits for the server's preamble: the same bound, for the
#: same reason, as the server's DEFAULT_HANDSHAKE_TIMEOUT (a test checks that
#: they agree).
CLIENT_HANDSHAKE_TIMEOUT: Final = 10.0


def _leaves(exc: BaseException) -> list[BaseException]:
    leaves: list[BaseException] = []
    stack = [exc]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(exc.exceptions)
        else:
            leaves.append(exc)
    return leaves


def only_exception(
    group: BaseExceptionGroup[BaseException], escaping: BaseException | None
) -> bool:
    """Whether ``group`` holds nothing but ``escaping`` (possibly nested):
    then a nursery only wrapped the block's own exception. ``escaping`` may
    itself be an exception group; Trio's cancel scopes may have split it
    into copies on the way, so the exceptions it holds are compared, not
    the group."""
    if escaping is None:
        return False
    own = {id(leaf) for leaf in _leaves(escaping)}
    found = {id(leaf) for leaf in _leaves(group)}
    return bool(found) and found == own


@asynccontextmanager
async def running(conn: Connection) -> AsyncIterator[Connection]:
    """Run ``conn`` for the duration of the block: start its reader in a
    nursery owned by the block, send the preamble, and end the connection
    as :class:`Connection` documents when the block ends. An exception
    leaves the block as itself, not wrapped in an ``ExceptionGroup``."""
    escaping: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await conn._start(nursery)
            except BaseException as exc:
                escaping = exc
                await conn._exit(exc)
                raise
            try:
                yield conn
            except BaseException as exc:
                escaping = exc
                await conn._exit(exc)
                raise
            try:
                await conn._exit(None)
            except BaseException as exc:
                escaping = exc
                raise
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if not only_exception(group, escaping):
            raise
        unwrapped = escaping
    finally:
        if conn.termination is None:
            conn._abort_for(timed_out=False, detail="the connection's block ended")
        # A plain socket is released at once, without a schedule point: after
        # a server's cut, thousands of handlers unwind here, and a cancelled
        # checkpoint each would cost every one of them another trip through
        # the scheduler. Other streams (TLS) are released here.
        if not conn.transport.close_now():
            await trio.aclose_forcefully(conn.transport)
    if unwrapped is not None:
        raise unwrapped


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
        check_options(
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
            grace_period=grace_period,
            linger=linger,
        )
    except ValueError:
        await trio.aclose_forcefully(stream)
        raise
    conn = Connection(
        _transport(stream, linger),
        role,
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        grace_period=grace_period,
    )
    async with running(conn) as running_conn:
        yield running_conn


def _client_options(
    max_message_size: int,
    receive_buffer_size: int,
    close_timeout: float,
    linger: float,
    handshake_timeout: float,
) -> dict[str, Any]:
    """A client's options for :func:`wrap_stream`, checked before anything
    is connected (a client's close timeout is its connection's grace
    period; the handshake timeout is the client's own)."""
    if not handshake_timeout >= 0:  # also refuses NaN
        raise ValueError(f"handshake_timeout must be >= 0, not {handshake_timeout!r}")
    options: dict[str, Any] = {
        "max_message_size": max_message_size,
        "receive_buffer_size": receive_buffer_size,
        "grace_period": close_timeout,
        "linger": linger,
    }
    check_options(**options)
    return options


@asynccontextmanager
async def _client(
    stream: trio.abc.Stream,
    options: dict[str, Any],
    handshake_timeout: float,
    where: str,
) -> AsyncIterator[Connection]:
    """Run a client connection over ``stream``; its block starts once the
    server's preamble has arrived (or the connection has already failed,
    which the block's first call then reports), within
    ``handshake_timeout``."""
    async with wrap_stream(stream, Role.CLIENT, **options) as conn:
        try:
            with trio.fail_after(handshake_timeout):
                await conn._wait_handshake()
        except trio.TooSlowError as exc:
            raise HandshakeTimeout(
                f"{where} sent no adieu preamble within the handshake timeout "
                f"({handshake_timeout:g} s): expected an adieu server there; "
                "is it the right address, and is the server answering?",
                timeout=handshake_timeout,
            ) from exc
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
    handshake_timeout: float = CLIENT_HANDSHAKE_TIMEOUT,
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
        handshake_timeout: seconds the server has to send its preamble once
            the connection (and TLS handshake) is made (default 10); the
            block starts only when it has arrived. A server that says
            nothing (a wrong port, a half-dead proxy) cannot hold the
            client forever.

    Raises:
        ValueError: an option is out of range (checked before connecting).
        OSError: the connection could not be made.
        trio.BrokenResourceError: the TLS handshake failed (its
            ``__cause__`` says why, e.g. :exc:`ssl.SSLCertVerificationError`).
        HandshakeTimeout: the server sent no preamble within
            ``handshake_timeout`` (the connection is aborted).
    """
    options = _client_options(
        max_message_size, receive_buffer_size, close_timeout, linger, handshake_timeout
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
    where = f"the server at {host!r} port {port}"
    async with _client(stream, options, handshake_timeout, where) as conn:
        yield conn


@asynccontextmanager
async def connect_unix(
    path: str | os.PathLike[str],
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    close_timeout: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
    handshake_timeout: float = CLIENT_HANDSHAKE_TIMEOUT,
) -> AsyncIterator[Connection]:
    """Connect to an adieu server on a Unix domain socket at ``path``.

    Everything else is as :func:`connect_tcp`.

    Raises:
        ValueError: an option is out of range (checked before connecting).
        OSError: the connection could not be made.
        RuntimeError: this platform has no Unix domain sockets.
        HandshakeTimeout: the server sent no preamble within
            ``handshake_timeout`` (the connection is aborted).
    """
    options = _client_options(
        max_message_size, receive_buffer_size, close_timeout, linger, handshake_timeout
    )
    stream = await trio.open_unix_socket(os.fspath(path))
    where = f"the server at {os.fspath(path)!r}"
    async with _client(stream, options, handshake_timeout, where) as conn:
        yield conn
