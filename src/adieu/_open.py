"""Opening client connections, and wrapping any Trio stream as a connection.

Every connection is an ``async with`` block that owns a nursery: the
connection's background reader lives there, so it can never outlive the
block. :func:`running` is that block, shared by clients and servers.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import trio

from ._compat import BaseExceptionGroup
from ._connection import DEFAULT_GRACE_PERIOD, DEFAULT_RECEIVE_BUFFER_SIZE, Connection
from ._errors import HandshakeTimeout
from ._frames import DEFAULT_MAX_MESSAGE_SIZE
from ._options import DEFAULT_HANDSHAKE_TIMEOUT, ConnectionOptions
from ._state import Role
from ._transport import DEFAULT_LINGER, TransportStream

__all__ = [
    "block_nursery",
    "connect_tcp",
    "connect_unix",
    "run_stream",
    "running",
    "wrap_stream",
]


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
async def block_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a block that promises its exceptions leave as
    themselves (a connection's, a server's): an exception raised in the
    block, which the nursery wraps in an ``ExceptionGroup``, is unwrapped
    again, unless a task of the nursery failed too (then the group, which
    holds both, propagates). The one place adieu unwraps a group."""
    escaping: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield nursery
            except BaseException as exc:
                escaping = exc
                raise
    except BaseExceptionGroup as group:
        if not only_exception(group, escaping):
            raise
        unwrapped = escaping
    if unwrapped is not None:
        # Raised outside the except clause, so that the group does not
        # become its __context__.
        raise unwrapped


@asynccontextmanager
async def running(conn: Connection) -> AsyncIterator[Connection]:
    """Run ``conn`` for the duration of the block: start its reader in a
    nursery owned by the block, send the preamble, and end the connection
    as :class:`Connection` documents when the block ends. An exception
    leaves the block as itself, not wrapped in an ``ExceptionGroup``."""
    try:
        async with block_nursery() as nursery:
            try:
                await conn.start(nursery)
            except BaseException as exc:
                await conn.end_block(exc)
                raise
            try:
                yield conn
            except BaseException as exc:
                await conn.end_block(exc)
                raise
            try:
                await conn.end_block(None)
            finally:
                # Only if a task is left (a reader still reading, a writer
                # task of a connection not released): a cancel costs Trio a
                # report of who cancelled, and after a graceful close both
                # are usually done already.
                if nursery.child_tasks:
                    nursery.cancel_scope.cancel()
    finally:
        if conn.termination is None:
            conn.abort_with("the connection's block ended")
        # A plain socket is released at once, without a schedule point: after
        # a server's cut, thousands of handlers unwind here, and a cancelled
        # checkpoint each would cost every one of them another trip through
        # the scheduler. Other streams (TLS) are released here.
        if not conn.transport.close_now():
            await trio.aclose_forcefully(conn.transport)


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
        TypeError: an option is not a number of the right kind (sizes are
            ``int``, seconds ``int`` or ``float``; the stream is then
            closed).

    An exception raised inside the block leaves it as itself (the connection
    is aborted).
    """
    try:
        options = ConnectionOptions(
            max_message_size=max_message_size,
            receive_buffer_size=receive_buffer_size,
            grace_period=grace_period,
            linger=linger,
        )
    except (TypeError, ValueError):
        await trio.aclose_forcefully(stream)
        raise
    async with run_stream(stream, role, options) as conn:
        yield conn


def run_stream(
    stream: trio.abc.Stream, role: Role | str, options: ConnectionOptions
) -> AbstractAsyncContextManager[Connection]:
    """:func:`wrap_stream` with its options already made (and so checked):
    for the openers, the server and :mod:`adieu.testing`."""
    return running(Connection(_transport(stream, options.linger), role, options))


@asynccontextmanager
async def _client(
    stream: trio.abc.Stream, options: ConnectionOptions, where: str
) -> AsyncIterator[Connection]:
    """Run a client connection over ``stream``; its block starts once the
    server's preamble has arrived (or the connection has already failed,
    which the block's first call then reports), within the options'
    ``handshake_timeout``."""
    handshake_timeout = options.handshake_timeout
    async with run_stream(stream, Role.CLIENT, options) as conn:
        try:
            with trio.fail_after(handshake_timeout):
                await conn.wait_handshake()
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
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
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
        TypeError: an option is not a number of the right kind (checked
            before connecting).
        OSError: the connection could not be made.
        trio.BrokenResourceError: the TLS handshake failed (its
            ``__cause__`` says why, e.g. :exc:`ssl.SSLCertVerificationError`).
        HandshakeTimeout: the server sent no preamble within
            ``handshake_timeout`` (the connection is aborted).
    """
    options = ConnectionOptions(  # (checked before connecting)
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        grace_period=close_timeout,
        linger=linger,
        handshake_timeout=handshake_timeout,
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
    async with _client(stream, options, where) as conn:
        yield conn


@asynccontextmanager
async def connect_unix(
    path: str | os.PathLike[str],
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    close_timeout: float = DEFAULT_GRACE_PERIOD,
    linger: float = DEFAULT_LINGER,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> AsyncIterator[Connection]:
    """Connect to an adieu server on a Unix domain socket at ``path``.

    Everything else is as :func:`connect_tcp`.

    Raises:
        ValueError: an option is out of range (checked before connecting).
        TypeError: an option is not a number of the right kind (checked
            before connecting).
        OSError: the connection could not be made.
        RuntimeError: this platform has no Unix domain sockets.
        HandshakeTimeout: the server sent no preamble within
            ``handshake_timeout`` (the connection is aborted).
    """
    options = ConnectionOptions(  # (checked before connecting)
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        grace_period=close_timeout,
        linger=linger,
        handshake_timeout=handshake_timeout,
    )
    stream = await trio.open_unix_socket(os.fspath(path))
    where = f"the server at {os.fspath(path)!r}"
    async with _client(stream, options, where) as conn:
        yield conn
