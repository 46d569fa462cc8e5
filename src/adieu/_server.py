"""The server: one handler task per connection, and a graceful asymmetric
shutdown bounded by a grace period that cancel scopes enforce.

Shutdown, step by step (:meth:`Server.shutdown`):

1. Stop accepting: the accept loops are cancelled, then every connection the
   kernel had already completed is accepted (so none is reset), then the
   listeners are closed; a connect after that is refused by the kernel.
2. Every open connection is sent SHUTDOWN (the grace period and a reason);
   handlers keep running and keep answering.
3. Each handler task runs in its own cancel scope whose deadline becomes the
   end of the grace period. A connection ends cleanly when its client has
   sent END and its handler has returned (the server's END follows the
   client's, never precedes it). At the deadline the scope cancels whatever
   is left, handler and blocked sends included, and the connection is
   aborted (``TIMED_OUT``).
4. The :class:`ShutdownReport` tells how each connection ended.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import math
import os
import select
import socket as stdlib_socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, TypeVar, final

import outcome
import trio

from ._compat import BaseExceptionGroup
from ._connection import (
    DEFAULT_GRACE_PERIOD,
    DEFAULT_RECEIVE_BUFFER_SIZE,
    Connection,
    ConnectionOptions,
)
from ._errors import ConnectionReset, ConnectionTruncated, ProtocolError
from ._frames import DEFAULT_MAX_MESSAGE_SIZE, encode_shutdown
from ._open import only_exception, running
from ._state import Role
from ._termination import Initiator, Termination, TerminationKind
from ._transport import DEFAULT_LINGER, TransportStream

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "ConnectionReport",
    "Server",
    "ShutdownReport",
    "open_server",
    "open_tcp_server",
    "open_unix_server",
    "serve_tcp",
]

logger = logging.getLogger("adieu")

T = TypeVar("T")
Handler = Callable[[Connection], Awaitable[Any]]

#: Connections served at once. Past it the server stops accepting, so new
#: connections wait in the kernel's listen backlog instead of being dropped.
#: 1000 stays under the common soft limit of 1024 file descriptors.
DEFAULT_MAX_CONNECTIONS: Final = 1000

#: Seconds a new connection has to send its preamble before it is aborted:
#: long enough for a TLS handshake over a slow link, short enough that idle
#: port scanners cannot hold connection slots.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0

#: Bound of one accept of a connection the kernel reported ready while
#: draining the backlog at shutdown: arbitrary, only the rare race of a
#: connection reset between the readiness check and the accept waits on it.
_DRAIN_ACCEPT_TIMEOUT: Final = 0.05

#: The SHUTDOWN reason sent when none is given.
DEFAULT_SHUTDOWN_REASON: Final = "the server is shutting down"

# Accept errors that mean "out of resources for now": log, wait, retry (as
# trio.serve_listeners does), rather than crash the server.
_ACCEPT_CAPACITY_ERRNOS = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
#: Pause after such an error: arbitrary, the value trio.serve_listeners uses.
_ACCEPT_CAPACITY_SLEEP = 0.1


@dataclasses.dataclass(frozen=True)
class ConnectionReport(Generic[T]):
    """How one connection that was open when the shutdown began ended.

    Attributes:
        termination: the connection's :class:`~adieu.Termination`.
        outcome: the handler's result as an :class:`outcome.Outcome`
            (``outcome.Value`` or ``outcome.Error``), or ``None`` if the
            handler never ran (no handshake) or was cancelled at the grace
            deadline or by an abort: a cancelled handler has no result.
        remote_address: the peer's address, or ``None`` (memory streams).
    """

    termination: Termination
    outcome: outcome.Outcome[T] | None
    remote_address: Any


@dataclasses.dataclass(frozen=True)
class ShutdownReport:
    """What a server's shutdown achieved.

    Attributes:
        connections: one :class:`ConnectionReport` for every connection open
            when the shutdown began (including those accepted from the
            kernel's backlog as the server stopped accepting), in the order
            they were accepted.
        counts: how many of those ended each way, for every
            :class:`~adieu.TerminationKind` (zeros included).
        ended_before: connections that ended before the shutdown began,
            counted by kind (a long-running server may have served millions;
            only the counts are kept).
        grace_period: the grace period granted, in seconds.
        duration: seconds from the start of the shutdown to the end of the
            last connection.
        aborted: ``True`` if the shutdown was cut short (a second shutdown
            request, :meth:`Server.abort`, or the server's scope cancelled).
    """

    connections: tuple[ConnectionReport[Any], ...]
    counts: Mapping[TerminationKind, int]
    ended_before: Mapping[TerminationKind, int]
    grace_period: float
    duration: float
    aborted: bool

    @property
    def clean(self) -> int:
        """Connections (of those open at the start) that ended ``CLEAN``."""
        return self.counts[TerminationKind.CLEAN]

    @property
    def lossless(self) -> bool:
        """``True`` if every connection open at the start ended lossless
        (see :attr:`Termination.lossless`)."""
        return all(c.termination.lossless for c in self.connections)

    def __str__(self) -> str:
        total = len(self.connections)
        kinds = ", ".join(
            f"{n} {kind.value.replace('_', ' ')}"
            for kind, n in self.counts.items()
            if n
        )
        text = (
            f"shutdown {'aborted' if self.aborted else 'finished'} in "
            f"{self.duration:.3f} s (grace period {self.grace_period:g} s): "
            f"{total} connection{'s' if total != 1 else ''} open"
        )
        if kinds:
            text += f": {kinds}"
        discarded = sum(c.termination.messages_discarded for c in self.connections)
        if discarded:
            text += f"; {discarded} unread messages discarded"
        return text


@dataclasses.dataclass(eq=False)
class _Entry:
    scope: trio.CancelScope
    conn: Connection | None = None
    outcome: outcome.Outcome[Any] | None = None
    in_shutdown: bool = False


def _zero_counts() -> dict[TerminationKind, int]:
    return dict.fromkeys(TerminationKind, 0)


@final
class Server:
    """A running adieu server. Made by :func:`open_tcp_server`,
    :func:`open_unix_server`, :func:`open_server` or :func:`serve_tcp`.

    Attributes:
        listeners: the :class:`trio.abc.Listener` objects being served.
        grace_period: the default grace period of :meth:`shutdown` and of
            each connection's graceful close, in seconds.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Iterable[trio.abc.Listener[trio.abc.Stream]],
        nursery: trio.Nursery,
        options: _ServerOptions,
    ) -> None:
        self.listeners = list(listeners)
        self.grace_period = options.connection.grace_period
        self._handler = handler
        self._nursery = nursery
        self._connection_options = options.connection
        self._handshake_timeout = options.handshake_timeout
        self._ssl_context = options.ssl_context
        self._slots = trio.Semaphore(options.max_connections)
        self._entries: dict[_Entry, None] = {}  # live, in accept order
        self._ended_before = _zero_counts()
        self._accept_scopes: list[trio.CancelScope] = []
        self._accepting_done = trio.Event()
        self._accept_loops = 0
        self._shutdown_started = False
        self._shutdown_deadline = math.inf
        self._shutdown_reason = DEFAULT_SHUTDOWN_REASON
        self._shutdown_entries: list[_Entry] = []
        self._reports: dict[_Entry, ConnectionReport[Any]] = {}
        self._aborted = False
        self._idle = trio.Event()
        self._idle.set()
        self._report: ShutdownReport | None = None
        self._done = trio.Event()

    def __repr__(self) -> str:
        return f"<adieu.Server {self.addresses!r} {len(self._entries)} connections>"

    # ---------------------------------------------------------- inspection

    @property
    def connections(self) -> list[Connection]:
        """The connections being served now, in the order they were
        accepted."""
        return [e.conn for e in self._entries if e.conn is not None]

    @property
    def addresses(self) -> list[Any]:
        """The socket addresses the listeners are bound to."""
        out = []
        for listener in self.listeners:
            sock = getattr(listener, "socket", None)
            if sock is not None and sock.fileno() >= 0:
                out.append(sock.getsockname())
        return out

    @property
    def port(self) -> int:
        """The TCP port the server listens on (useful with ``port=0``).

        Raises:
            RuntimeError: the server has no TCP listener.
        """
        for address in self.addresses:
            if isinstance(address, tuple):
                return int(address[1])
        raise RuntimeError("this server has no TCP listener")

    @property
    def shutting_down(self) -> bool:
        """``True`` once :meth:`shutdown` (or an abort) has begun."""
        return self._shutdown_started

    @property
    def report(self) -> ShutdownReport | None:
        """The :class:`ShutdownReport` once the shutdown finished, else
        ``None``."""
        return self._report

    async def wait_shut_down(self) -> ShutdownReport:
        """Wait until the shutdown has finished; return its report. A
        checkpoint; cancel-safe."""
        await self._done.wait()
        assert self._report is not None
        return self._report

    # -------------------------------------------------------------- serving

    def _start(self) -> None:
        for listener in self.listeners:
            scope = trio.CancelScope()
            self._accept_scopes.append(scope)
            self._accept_loops += 1
            self._nursery.start_soon(self._accept_loop, listener, scope)
        if not self.listeners:
            self._accepting_done.set()

    async def _accept_loop(
        self, listener: trio.abc.Listener[trio.abc.Stream], scope: trio.CancelScope
    ) -> None:
        try:
            with scope:
                while True:
                    await self._slots.acquire()
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        self._slots.release()
                        if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                            raise
                        logger.error(  # noqa: TRY400 (no traceback: expected)
                            "accept failed (%s); retrying in %s s",
                            os.strerror(exc.errno),
                            _ACCEPT_CAPACITY_SLEEP,
                        )
                        await trio.sleep(_ACCEPT_CAPACITY_SLEEP)
                        continue
                    except BaseException:
                        self._slots.release()
                        raise
                    self._spawn(stream, holds_slot=True)
        finally:
            self._accept_loops -= 1
            if self._accept_loops == 0:
                self._accepting_done.set()

    def serve_stream(self, stream: trio.abc.Stream) -> None:
        """Serve an already-accepted stream as one more connection (a
        memory stream in tests, a socket accepted elsewhere). It does not
        count against ``max_connections``.

        Raises:
            trio.ClosedResourceError: the server is shutting down or shut
                down (the stream is closed).

        Synchronous: the connection's task starts at the next checkpoint.
        """
        if self._shutdown_started:
            _close_now(stream)
            raise trio.ClosedResourceError("the server is shutting down")
        self._spawn(stream, holds_slot=False)

    def _spawn(self, stream: trio.abc.Stream, *, holds_slot: bool) -> None:
        entry = _Entry(trio.CancelScope(deadline=self._shutdown_deadline))
        self._entries[entry] = None
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        if self._shutdown_started:
            entry.in_shutdown = True
            self._shutdown_entries.append(entry)
        self._nursery.start_soon(self._serve_connection, stream, entry, holds_slot)

    async def _serve_connection(
        self, stream: trio.abc.Stream, entry: _Entry, holds_slot: bool
    ) -> None:
        ran = False
        try:
            with entry.scope:
                # Until the client's preamble arrives (and the TLS handshake,
                # which happens as the server's preamble is sent), the scope's
                # deadline is the handshake timeout.
                handshake_deadline = trio.current_time() + self._handshake_timeout
                entry.scope.deadline = min(self._shutdown_deadline, handshake_deadline)
                if self._aborted:
                    _close_now(stream)
                    return
                if self._ssl_context is not None:
                    stream = trio.SSLStream(stream, self._ssl_context, server_side=True)
                options = self._connection_options
                if options.grace_period != self.grace_period:  # set since
                    options = dataclasses.replace(
                        options, grace_period=self.grace_period
                    )
                conn = Connection(
                    TransportStream(stream, linger=options.linger), Role.SERVER, options
                )
                entry.conn = conn
                conn.set_deadline(
                    entry.scope.deadline,
                    f"no preamble within the handshake timeout "
                    f"({self._handshake_timeout:g} s)",
                )
                ask = functools.partial(self._ask_to_finish, entry)
                async with running(conn, handshake=True, started=ask):
                    if not conn.handshake_complete or conn.termination is not None:
                        return
                    entry.scope.deadline = self._shutdown_deadline
                    conn.set_deadline(
                        self._shutdown_deadline,
                        "the grace period of the server's shutdown expired",
                    )
                    ran = True
                    await self._run_handler(conn, entry)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # The TLS handshake failed, or the peer vanished while the
            # server's preamble was being sent.
            logger.info("connection failed before its handler ran: %s", exc)
        finally:
            if holds_slot:
                self._slots.release()
            if (
                not ran
                and entry.conn is not None
                and entry.conn.termination is not None
            ):
                logger.info(
                    "connection from %s ended before its handler ran: %s",
                    entry.conn.remote_address,
                    entry.conn.termination,
                )
            self._finish(entry)

    async def _run_handler(self, conn: Connection, entry: _Entry) -> None:
        try:
            result = await self._handler(conn)
        except Exception as exc:
            entry.outcome = outcome.Error(exc)
            ended = conn.termination is not None
            conn.abort()
            peer_caused = (ConnectionReset, ConnectionTruncated, ProtocolError)
            if isinstance(exc, peer_caused) or (
                isinstance(exc, trio.ClosedResourceError) and ended
            ):
                # The peer went away, or this side ended the connection (an
                # abort): not a bug in the handler.
                logger.info(
                    "handler for %s ended with %s: %s",
                    conn.remote_address,
                    type(exc).__name__,
                    exc,
                )
            else:
                logger.error(  # noqa: TRY400 (exc_info is the handler's exception)
                    "handler for %s raised %s; its connection was aborted",
                    conn.remote_address,
                    type(exc).__name__,
                    exc_info=exc,
                )
        else:
            entry.outcome = outcome.Value(result)

    def _finish(self, entry: _Entry) -> None:
        del self._entries[entry]
        conn = entry.conn
        termination = conn.termination if conn is not None else None
        if termination is None:
            # The task ended before a connection existed (aborted server).
            termination = Termination(
                kind=TerminationKind.ABORTED,
                initiator=Initiator.LOCAL,
                messages_sent=0,
                messages_received=0,
                messages_discarded=0,
                confirmed=None,
                acknowledged=None,
                detail="the server aborted before the connection started",
            )
        if entry.in_shutdown:
            self._reports[entry] = ConnectionReport(
                termination,
                entry.outcome,
                conn.remote_address if conn is not None else None,
            )
        else:
            self._ended_before[termination.kind] += 1
        logger.debug("connection ended: %s", termination)
        if not self._entries:
            self._idle.set()

    def _ask_to_finish(self, entry: _Entry) -> None:
        if not entry.in_shutdown:
            return
        entry.scope.deadline = min(entry.scope.deadline, self._shutdown_deadline)
        conn = entry.conn
        if conn is not None:
            if self._shutdown_deadline == entry.scope.deadline:
                # The grace period ends first (before the handshake timeout
                # of a connection still waiting for its preamble).
                conn.set_deadline(
                    entry.scope.deadline,
                    "the grace period of the server's shutdown expired",
                )
            conn.request_shutdown(
                self._shutdown_reason,
                grace_period=max(0.0, self._shutdown_deadline - trio.current_time()),
            )

    # ------------------------------------------------------------- shutdown

    async def shutdown(
        self, grace_period: float | None = None, *, reason: str | None = None
    ) -> ShutdownReport:
        """Shut down gracefully: stop accepting, ask every client to finish,
        let handlers run on until each connection has ended or the grace
        period expires, then abort the rest.

        Args:
            grace_period: seconds granted (default :attr:`grace_period`);
                it is the deadline of every handler's cancel scope. At the
                deadline remaining handlers are cancelled (they have no
                result) and their connections are aborted (``TIMED_OUT``),
                even if they are blocked sending to a peer that does not read.
            reason: the short reason sent with SHUTDOWN (default "the server
                is shutting down"; at most 255 bytes of UTF-8).

        Returns:
            The :class:`ShutdownReport`.

        Raises:
            ValueError: ``grace_period`` is negative, or ``reason`` is over
                255 bytes of UTF-8.

        Called again after it finished, returns the same report. Called
        while a shutdown is running, aborts every connection still open and
        returns the report once they are gone. If cancelled, the shutdown
        goes on in the server's own nursery (and ends when the server's
        block does). A checkpoint.
        """
        if self._report is not None:
            await trio.lowlevel.checkpoint()
            return self._report
        if self._shutdown_started:
            self.abort()
            return await self.wait_shut_down()
        grace = self.grace_period if grace_period is None else grace_period
        if not grace >= 0:
            raise ValueError(f"grace_period must be >= 0, not {grace!r}")
        if reason is not None:
            encode_shutdown(grace, reason)  # refuse a reason over 255 bytes now
            self._shutdown_reason = reason
        start = trio.current_time()
        self._begin_shutdown(start + grace, ask=True)
        await self._stop_accepting()
        await self._idle.wait()
        return self._build_report(start, grace)

    def _begin_shutdown(self, deadline: float, *, ask: bool) -> None:
        self._shutdown_started = True
        self._shutdown_deadline = deadline
        for scope in self._accept_scopes:
            scope.cancel()
        for entry in self._entries:
            entry.in_shutdown = True
            self._shutdown_entries.append(entry)
            if ask:
                # SHUTDOWN goes out now, before the listeners are drained and
                # closed; connections accepted from the backlog ask for
                # themselves as they start.
                self._ask_to_finish(entry)

    async def _stop_accepting(self) -> None:
        """Cancel the accept loops, accept what the kernel had completed,
        then close the listeners."""
        await self._accepting_done.wait()
        for listener in self.listeners:
            for stream in await _accept_pending(listener):
                self._spawn(stream, holds_slot=False)
            await trio.aclose_forcefully(listener)

    def _build_report(self, start: float, grace: float) -> ShutdownReport:
        reports = tuple(
            self._reports[e] for e in self._shutdown_entries if e in self._reports
        )
        counts = _zero_counts()
        for report in reports:
            counts[report.termination.kind] += 1
        self._report = ShutdownReport(
            connections=reports,
            counts=counts,
            ended_before=dict(self._ended_before),
            grace_period=grace,
            duration=trio.current_time() - start,
            aborted=self._aborted,
        )
        self._done.set()
        logger.info("%s", self._report)
        return self._report

    def abort(self) -> None:
        """Abort now: stop accepting and close the listeners, cancel every
        handler and abort every connection (peers see a reset).

        If no shutdown was running, the report then built lists every
        connection that was open. Synchronous, idempotent.
        """
        self._aborted = True
        if not self._shutdown_started:
            self._begin_shutdown(trio.current_time(), ask=False)
            self._nursery.start_soon(self._finish_abort, trio.current_time())
        for scope in self._accept_scopes:
            scope.cancel()
        for listener in self.listeners:
            sock = getattr(listener, "socket", None)
            if sock is not None:
                sock.close()
        for entry in list(self._entries):
            entry.scope.cancel()
            if entry.conn is not None:
                entry.conn.abort()

    async def _finish_abort(self, start: float) -> None:
        # Shielded: when the abort comes from the server's scope being
        # cancelled, this task starts in a cancelled nursery, and the report
        # must still be built. Every task it waits for is cancelled, so the
        # wait is short.
        with trio.CancelScope(shield=True):
            await self._accepting_done.wait()
            for listener in self.listeners:
                await trio.aclose_forcefully(listener)
            await self._idle.wait()
            if self._report is None:
                self._build_report(start, 0.0)


@dataclasses.dataclass(frozen=True)
class _ServerOptions:
    """A server's options, checked once, before anything is bound or
    served (see :func:`open_server` for what each means): its own, and the
    options of every connection it serves."""

    connection: ConnectionOptions
    max_connections: int
    handshake_timeout: float
    ssl_context: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(
                f"max_connections must be at least 1, not {self.max_connections!r}"
            )
        if not self.handshake_timeout >= 0:
            raise ValueError(
                f"handshake_timeout must be >= 0, not {self.handshake_timeout!r}"
            )


def _close_now(stream: trio.abc.Stream) -> None:
    transport = TransportStream(stream)
    transport.abort()


async def _accept_pending(
    listener: trio.abc.Listener[trio.abc.Stream],
) -> list[trio.abc.Stream]:
    """Accept the connections the kernel has already completed on a
    socket listener, without waiting for more."""
    sock = getattr(listener, "socket", None)
    accepted: list[trio.abc.Stream] = []
    if sock is None or sock.fileno() < 0:
        return accepted
    while True:
        readable, _, _ = select.select([sock.fileno()], [], [], 0)
        if not readable:
            return accepted
        # The connection may have been reset between select() and accept();
        # a socket listener then silently waits for the next one, so bound
        # the wait.
        with trio.move_on_after(_DRAIN_ACCEPT_TIMEOUT):
            try:
                accepted.append(await listener.accept())
            except OSError:
                return accepted
            continue
        return accepted


@asynccontextmanager
async def open_server(
    handler: Handler,
    listeners: Iterable[trio.abc.Listener[trio.abc.Stream]] = (),
    *,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    linger: float = DEFAULT_LINGER,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """Serve ``handler`` on any Trio listeners (or none: then feed it
    streams with :meth:`Server.serve_stream`).

    Leaving the block normally shuts the server down gracefully
    (:meth:`Server.shutdown` with the default grace period). An exception or
    a cancellation of the surrounding scope aborts every connection at once
    (their peers see a reset), and the exception propagates as itself.

    Args:
        handler: ``async def handler(conn: adieu.Connection)``. Runs in its
            own task, one per connection, once the client's preamble has
            arrived. When it returns, the connection ends gracefully (see
            :class:`Connection`). If it raises, its connection is aborted,
            the exception is logged on the ``adieu`` logger (a peer's reset
            or truncation at INFO without a traceback, anything else at ERROR
            with one) and reported; the server and the other connections
            carry on.
        listeners: what to accept connections from.
        grace_period: seconds granted to clients in a shutdown, and the bound
            of each connection's graceful close (default 10).
        max_message_size: largest message, in bytes (inclusive; default
            1 MiB).
        max_connections: connections served at once (default 1000); past
            it, connections wait in the kernel's backlog.
        handshake_timeout: seconds a new connection has to send its
            preamble (default 10).
        receive_buffer_size: bytes of received messages held per connection
            before its reader stops reading (default 1 MiB).
        linger: bound of ``aclose()``'s wait for the peer's EOF (default 2).
        ssl_context: serve TLS with this context (server side).

    Yields:
        The running :class:`Server`.

    Raises:
        ValueError: an option is out of range (checked before anything is
            served).
    """
    options = _ServerOptions(
        ConnectionOptions(max_message_size, receive_buffer_size, grace_period, linger),
        max_connections,
        handshake_timeout,
        ssl_context,
    )
    async with _serve(handler, listeners, options) as server:
        yield server


@asynccontextmanager
async def _serve(
    handler: Handler,
    listeners: Iterable[trio.abc.Listener[trio.abc.Stream]],
    options: _ServerOptions,
) -> AsyncIterator[Server]:
    """:func:`open_server` with its options checked."""
    escaping: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            server = Server(handler, listeners, nursery, options)
            server._start()
            try:
                yield server
            except BaseException as exc:
                escaping = exc
                server.abort()
                raise
            try:
                await server.shutdown()
            except BaseException as exc:
                escaping = exc
                server.abort()
                raise
    except BaseExceptionGroup as group:
        if not only_exception(group, escaping):
            raise
        unwrapped = escaping
    if unwrapped is not None:
        raise unwrapped


@asynccontextmanager
async def open_tcp_server(
    handler: Handler,
    host: str | bytes | None = None,
    port: int = 0,
    *,
    backlog: int | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    linger: float = DEFAULT_LINGER,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """Serve ``handler`` over TCP (TLS with ``ssl_context``).

    ``async with adieu.open_tcp_server(handler, "127.0.0.1", 0) as server:``

    Args:
        host: the address to bind; ``None`` (the default) binds every
            interface, as :func:`trio.open_tcp_listeners` does.
        port: the port; 0 picks a free one (see :attr:`Server.port`).
        backlog: the listen backlog (default: Trio's, the system maximum).

    The other arguments are as for :func:`open_server`.

    Raises:
        ValueError: an option is out of range (checked before binding).
        OSError: the address could not be bound.
    """
    options = _ServerOptions(
        ConnectionOptions(max_message_size, receive_buffer_size, grace_period, linger),
        max_connections,
        handshake_timeout,
        ssl_context,
    )
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    async with _serve(handler, listeners, options) as server:
        yield server


@asynccontextmanager
async def open_unix_server(
    handler: Handler,
    path: str | os.PathLike[str],
    *,
    backlog: int = 128,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    linger: float = DEFAULT_LINGER,
) -> AsyncIterator[Server]:
    """Serve ``handler`` on a Unix domain socket bound at ``path``.

    The socket file is created (it must not exist) and removed when the
    server's block ends.

    Args:
        path: where to bind.
        backlog: the listen backlog (default 128).

    The other arguments are as for :func:`open_server`.

    Raises:
        ValueError: an option is out of range (checked before binding).
        OSError: ``path`` exists or cannot be bound.
    """
    options = _ServerOptions(
        ConnectionOptions(max_message_size, receive_buffer_size, grace_period, linger),
        max_connections,
        handshake_timeout,
    )
    fspath = os.fspath(path)
    sock = trio.socket.socket(stdlib_socket.AF_UNIX, stdlib_socket.SOCK_STREAM)
    try:
        await sock.bind(fspath)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    try:
        async with _serve(handler, [trio.SocketListener(sock)], options) as server:
            yield server
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(fspath)


async def serve_tcp(
    handler: Handler,
    port: int,
    *,
    host: str | bytes | None = None,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    backlog: int | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE,
    linger: float = DEFAULT_LINGER,
    ssl_context: ssl.SSLContext | None = None,
) -> ShutdownReport:
    """Serve ``handler`` over TCP until the server is shut down; for
    ``nursery.start``::

        server = await nursery.start(adieu.serve_tcp, handler, 0)
        ...
        report = await server.shutdown()

    Unlike :func:`trio.serve_tcp`, which hands back its listeners,
    ``nursery.start`` here returns the :class:`Server` (its
    :attr:`~Server.listeners` are those listeners), because a graceful
    shutdown needs the server. Cancelling the task aborts every connection.

    Args:
        handler, port, host: as :func:`open_tcp_server`.

    The other keyword arguments are as for :func:`open_tcp_server`.

    Returns:
        The :class:`ShutdownReport`, once the server has shut down.

    Raises:
        ValueError: an option is out of range.
        OSError: the address could not be bound.
    """
    async with open_tcp_server(
        handler,
        host,
        port,
        backlog=backlog,
        grace_period=grace_period,
        max_message_size=max_message_size,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        receive_buffer_size=receive_buffer_size,
        linger=linger,
        ssl_context=ssl_context,
    ) as server:
        task_status.started(server)
        return await server.wait_shut_down()
    raise AssertionError("unreachable")  # pragma: no cover
