"""The server: one handler task per connection, and a graceful asymmetric
shutdown bounded by a grace period.

The shutdown is the server's own task, in the server's nursery; callers of
:meth:`Server.shutdown` and :meth:`Server.wait_shut_down` only wait for its
report. Step by step:

1. At once, in one synchronous step (no task runs meanwhile, so nothing can
   connect and be accepted half-way): the accept loops stop; the connections
   the kernel had completed on each socket listener are accepted from its
   listen backlog, without waiting (their number is read first where the
   system says it, so a connect flood cannot extend the drain); every open
   connection is sent SHUTDOWN (the grace period and a reason), a connection
   just taken from the backlog its preamble first (once the grace period has
   ended, one still in the backlog is only told so, and reset); the
   listeners are closed, so a later connect is refused by the kernel.
2. Handlers keep running and keep answering. A connection ends cleanly when
   its client has sent END and its handler has returned (the server's END
   follows the client's, never precedes it).
3. When the grace period ends, one synchronous pass aborts every connection
   still open (``TIMED_OUT``), builds the :class:`ShutdownReport`, then
   cancels the remaining handlers, which unwind afterwards: no handler task
   has to be scheduled for the cut to happen or the report to be built.

A second shutdown request, or :meth:`Server.abort`, at any moment does the
same pass at once (``ABORTED``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import gc
import logging
import math
import os
import socket as stdlib_socket
import ssl
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, TypeVar, final

import outcome
import trio

from ._connection import DEFAULT_GRACE_PERIOD, DEFAULT_RECEIVE_BUFFER_SIZE, Connection
from ._errors import ConnectionReset, ConnectionTruncated, ProtocolError
from ._frames import DEFAULT_MAX_MESSAGE_SIZE, encode_preamble, encode_shutdown
from ._open import block_nursery, running
from ._options import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ServerOptions,
    server_options,
)
from ._state import Role
from ._termination import Initiator, Termination, TerminationKind
from ._transport import DEFAULT_LINGER, LINGER_RST, TransportStream

__all__ = [
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
            handler never ran (no handshake) or was still running when the
            grace period ended or the server aborted: it is cancelled then,
            and a cancelled handler has no result.
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
        duration: seconds from the start of the shutdown to this report:
            the end of the last connection, or the cut at the end of the
            grace period (or by an abort). Handlers still unwinding after a
            cut are not waited for.
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
        """A sentence for a person, which says what each count counts and
        when, e.g. ``shutdown finished in 0.004 s (grace period 5 s): 1
        connection was open when the shutdown began: 1 clean``. When a
        request to abort came but every connection had already ended, it
        says that nothing was cut."""
        total = len(self.connections)
        cut = sum(
            self.counts[kind]
            for kind in (TerminationKind.ABORTED, TerminationKind.TIMED_OUT)
        )
        if not self.aborted:
            how = "finished"
        elif cut:
            how = "aborted"
        else:
            how = "finished (an abort was requested, but it cut no connection)"
        text = (
            f"shutdown {how} in {self.duration:.3f} s "
            f"(grace period {self.grace_period:g} s): "
        )
        if total:
            text += (
                f"{total} connection{' was' if total == 1 else 's were'} open "
                f"when the shutdown began: {_kinds(self.counts)}"
            )
        else:
            text += "no connection was open when the shutdown began"
        before = sum(self.ended_before.values())
        if before:
            text += (
                f"; {before} connection{'' if before == 1 else 's'} had ended "
                f"before: {_kinds(self.ended_before)}"
            )
        discarded = sum(c.termination.messages_discarded for c in self.connections)
        if discarded:
            text += (
                f"; {discarded} unread message{'' if discarded == 1 else 's'} discarded"
            )
        return text


def _kinds(counts: Mapping[TerminationKind, int]) -> str:
    """``1 clean, 2 timed out``: the nonzero counts, in the enum's order."""
    return ", ".join(
        f"{n} {kind.value.replace('_', ' ')}" for kind, n in counts.items() if n
    )


@dataclasses.dataclass(eq=False)
class _Entry:
    conn: Connection
    scope: trio.CancelScope
    outcome: outcome.Outcome[Any] | None = None
    in_shutdown: bool = False
    from_backlog: bool = False


def _zero_counts() -> dict[TerminationKind, int]:
    return dict.fromkeys(TerminationKind, 0)


@final
class Server:
    """A running adieu server. Made by :func:`open_tcp_server`,
    :func:`open_unix_server`, :func:`open_server` or :func:`serve_tcp`.

    Attributes:
        listeners: the :class:`trio.abc.Listener` objects being served.
        options: the :class:`~adieu.ServerOptions` it runs with; every
            connection it serves shares their ``connection`` options.
    """

    def __init__(
        self,
        handler: Handler,
        listeners: Iterable[trio.abc.Listener[trio.abc.Stream]],
        nursery: trio.Nursery,
        options: ServerOptions,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        """Serve ``handler`` on ``listeners`` in ``nursery``: the accept
        loops start at the nursery's next checkpoint."""
        # The options were checked when they were made: not again here.
        self.listeners = list(listeners)
        self.options = options
        self._handler = handler
        self._nursery = nursery
        self._connection_options = options.connection
        handshake_timeout = options.connection.handshake_timeout
        self._handshake_timeout = handshake_timeout
        # Every connection's, made once rather than at every accept.
        self._handshake_reason = (
            f"no preamble within the handshake timeout ({handshake_timeout:g} s)"
        )
        self._ssl_context = ssl_context
        self._slots = trio.Semaphore(options.max_connections)
        self._entries: dict[_Entry, None] = {}  # live, in accept order
        self._ended_before = _zero_counts()
        self._accept_scopes: list[trio.CancelScope] = []
        self._shutdown_started = False
        # From the start of the shutdown until the report is built and no
        # handler is left, or the block exits (see _FullCollectionsDeferral).
        self._deferring_full_collections = False
        self._shutdown_start = 0.0
        self._shutdown_grace = 0.0
        self._shutdown_deadline = math.inf
        self._shutdown_reason = DEFAULT_SHUTDOWN_REASON
        self._shutdown_entries: list[_Entry] = []
        self._details: dict[tuple[int, bool], str] = {}
        self._told_frames = b""
        self._told_reports: list[ConnectionReport[Any]] = []
        self._reports: dict[_Entry, ConnectionReport[Any]] = {}
        self._aborted = False
        self._idle = trio.Event()
        self._idle.set()
        self._report: ShutdownReport | None = None
        self._done = trio.Event()
        # The shutdown task's wait for the connections, bounded by the
        # grace period; an abort cancels it.
        self._wait_scope = trio.CancelScope()
        self._watch: _DeadlineWatch | None = None
        for listener in self.listeners:
            scope = trio.CancelScope()
            self._accept_scopes.append(scope)
            nursery.start_soon(self._accept_loop, listener, scope)

    def __repr__(self) -> str:
        return f"<adieu.Server {self.addresses!r} {len(self._entries)} connections>"

    # ---------------------------------------------------------- inspection

    @property
    def grace_period(self) -> float:
        """The default grace period of :meth:`shutdown` and of each
        connection's graceful close, in seconds: the ``grace_period`` of the
        server's connection options (read-only: the options are fixed when
        the server is made)."""
        return self.options.connection.grace_period

    @property
    def connections(self) -> list[Connection]:
        """The connections being served now, in the order they were
        accepted."""
        return [e.conn for e in self._entries]

    @property
    def addresses(self) -> list[Any]:
        """The socket addresses the listeners are bound to (none once the
        shutdown has begun: the listeners are closed)."""
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
            RuntimeError: the server has no TCP listener (or no longer:
                the shutdown closed it).
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
        """Wait until the shutdown has finished; return its report (the
        same object to every caller).

        It does not start a shutdown. A checkpoint; cancel-safe: cancelling
        it cancels only this wait, never the shutdown.
        """
        await self._done.wait()
        assert self._report is not None
        return self._report

    # -------------------------------------------------------------- serving

    async def _accept_loop(
        self, listener: trio.abc.Listener[trio.abc.Stream], scope: trio.CancelScope
    ) -> None:
        with scope:
            while True:
                await self._slots.acquire()
                try:
                    stream = await listener.accept()
                except (OSError, trio.ClosedResourceError) as exc:
                    self._slots.release()
                    if self._shutdown_started:
                        # The shutdown closed the listener under an accept
                        # that had already been woken.
                        return
                    if (
                        not isinstance(exc, OSError)
                        or exc.errno not in _ACCEPT_CAPACITY_ERRNOS
                    ):
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
            TransportStream(stream).abort()
            raise trio.ClosedResourceError("the server is shutting down")
        self._spawn(stream, holds_slot=False)

    def _spawn(
        self,
        stream: trio.abc.Stream,
        *,
        holds_slot: bool,
        from_backlog: bool = False,
    ) -> None:
        if self._ssl_context is not None:
            stream = trio.SSLStream(stream, self._ssl_context, server_side=True)
        options = self._connection_options
        conn = Connection(
            TransportStream(stream, linger=options.linger), Role.SERVER, options
        )
        # Until the client's preamble arrives (and the TLS handshake, which
        # happens as the server's preamble is sent), the connection's scope
        # has the handshake timeout as its deadline.
        handshake_deadline = trio.current_time() + self._handshake_timeout
        conn.set_deadline(handshake_deadline, self._handshake_reason)
        entry = _Entry(conn, trio.CancelScope(deadline=handshake_deadline))
        entry.from_backlog = from_backlog
        self._entries[entry] = None
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        if self._shutdown_started:
            self._enlist(entry, ask=True)
        self._nursery.start_soon(self._serve_connection, entry, holds_slot)

    async def _serve_connection(self, entry: _Entry, holds_slot: bool) -> None:
        conn = entry.conn
        ran = False
        try:
            with entry.scope:
                if conn.termination is not None:
                    return  # cut or aborted before this task ran
                async with running(conn):
                    if entry.in_shutdown:
                        self._ask_to_finish(entry)
                    await conn.wait_handshake()
                    if not conn.handshake_complete or conn.termination is not None:
                        return
                    entry.scope.deadline = math.inf
                    if entry.in_shutdown:
                        conn.set_deadline(
                            self._shutdown_deadline, self._expired_detail(entry)
                        )
                    else:  # a shutdown that begins later sets its own
                        conn.set_deadline(math.inf, "")
                    ran = True
                    await self._run_handler(conn, entry)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # The TLS handshake failed, or the peer vanished while the
            # server's preamble was being sent.
            logger.info("connection failed before its handler ran: %s", exc)
        finally:
            if holds_slot:
                self._slots.release()
            if not ran and conn.termination is not None:
                logger.info(
                    "connection from %s ended before its handler ran: %s",
                    conn.remote_address,
                    conn.termination,
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
        termination = conn.termination
        if termination is None:  # pragma: no cover (every path above ends it)
            conn.abort()
            termination = conn.termination
            assert termination is not None
        if entry.in_shutdown:
            self._reports[entry] = ConnectionReport(
                termination, entry.outcome, conn.remote_address
            )
        else:
            self._ended_before[termination.kind] += 1
        if not self._entries:
            self._idle.set()
            if self._report is not None:
                self.restore_full_collections()  # the last handler is done
        # Last: the bookkeeping above must be done even if a logging handler
        # raises, or a shutdown would wait for this connection forever.
        logger.debug("connection ended: %s", termination)

    # ------------------------------------------------------------- shutdown

    async def shutdown(
        self, grace_period: float | None = None, *, reason: str | None = None
    ) -> ShutdownReport:
        """Shut down gracefully: stop accepting, ask every client to finish,
        let handlers run on until each connection has ended or the grace
        period expires, then abort the rest.

        The shutdown runs in the server's own nursery; this call starts it
        and waits for its report. Step by step:

        1. At once, in one synchronous step: the accept loops stop; every
           connection the kernel had completed on a socket listener by then
           is accepted from the listen backlog (see :ref:`which connections
           a shutdown serves <shutdown-scope>`); every open connection is
           sent SHUTDOWN (the grace period left, and ``reason``); the
           listeners are closed, so later connects are refused.
        2. Handlers keep running. A connection ends cleanly when its client
           has sent END and its handler has returned.
        3. When the grace period ends, every connection still open is
           aborted in one synchronous sweep (``TIMED_OUT``; its handler is
           cancelled and has no result), and the report is built at once:
           handlers unwinding after the cut do not delay it.

        Args:
            grace_period: seconds granted (default :attr:`grace_period`).
                0 sends SHUTDOWN and then aborts every connection at once.
            reason: the short reason sent with SHUTDOWN (default "the server
                is shutting down"; at most 255 bytes of UTF-8).

        Returns:
            The :class:`ShutdownReport`: the same object for every caller,
            of this method and of :meth:`wait_shut_down`.

        Raises:
            ValueError: ``grace_period`` is negative, or ``reason`` is over
                255 bytes of UTF-8 (nothing is started).

        Called again after it finished, returns the same report. Called
        while a shutdown is running (from any task, at any moment), aborts
        as :meth:`abort` does and returns the report. Cancel-safe: if the
        caller is cancelled, only its wait is; the shutdown goes on, and
        :meth:`wait_shut_down` and the server's block still finish. A
        checkpoint.
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
        self._begin_shutdown(grace, graceful=True)
        self._wait_scope.deadline = self._shutdown_deadline
        self._watch = _DeadlineWatch(self)
        trio.lowlevel.add_instrument(self._watch)
        self._nursery.start_soon(self._run_shutdown, name="adieu server shutdown")
        return await self.wait_shut_down()

    def _begin_shutdown(self, grace: float, *, graceful: bool) -> None:
        """Step 1 of the shutdown, synchronous: no connection can complete
        in the kernel and be accepted while it runs."""
        self._shutdown_started = True
        self._deferring_full_collections = True
        _full_collections.defer()
        self._shutdown_start = trio.current_time()
        self._shutdown_grace = grace
        self._shutdown_deadline = self._shutdown_start + grace
        self._details.clear()
        self._told_frames = encode_preamble(Role.SERVER) + encode_shutdown(
            0.0, self._shutdown_reason
        )
        for scope in self._accept_scopes:
            scope.cancel()
        for entry in self._entries:
            self._enlist(entry, ask=graceful)
        for listener in self.listeners:
            if graceful:
                for new in _accept_backlog(listener):
                    if (
                        trio.current_time() < self._shutdown_deadline
                        or self._ssl_context is not None
                    ):
                        stream = trio.SocketStream(trio.socket.from_stdlib_socket(new))
                        self._spawn(stream, holds_slot=False, from_backlog=True)
                    else:
                        self._tell_and_cut(new)
            sock = getattr(listener, "socket", None)
            if isinstance(sock, trio.socket.SocketType):
                sock.close()  # wakes nothing: the accept loops are cancelled
            else:
                self._nursery.start_soon(_close_listener, listener)

    def _tell_and_cut(self, sock: stdlib_socket.socket) -> None:
        """A connection taken from the backlog once the grace period has
        ended (a grace period of 0, or a drain longer than it): no time is
        left to serve it, so it is only told, with the server's preamble and
        SHUTDOWN (0 s left), then reset at once, and reported ``TIMED_OUT``.
        A quarter of what serving it would cost, and no task: the drain of a
        long backlog stays short."""
        try:
            address = sock.getpeername()
        except OSError:
            address = None
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            # A few dozen bytes on a socket just accepted: taken whole.
            sock.send(self._told_frames)
        with contextlib.suppress(OSError):
            sock.setsockopt(
                stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, LINGER_RST
            )
        sock.close()
        termination = Termination(
            kind=TerminationKind.TIMED_OUT,
            initiator=Initiator.LOCAL,
            messages_sent=0,
            messages_received=0,
            messages_discarded=0,
            confirmed=None,
            acknowledged=None,
            detail=(
                f"accepted from the listen backlog as the shutdown began, after "
                f"its grace period ({self._shutdown_grace:g} s) had ended: told to "
                f"finish (the server's preamble and SHUTDOWN), then reset"
            ),
        )
        self._told_reports.append(ConnectionReport(termination, None, address))

    def _enlist(self, entry: _Entry, *, ask: bool) -> None:
        entry.in_shutdown = True
        self._shutdown_entries.append(entry)
        if ask:
            self._ask_to_finish(entry)

    def _ask_to_finish(self, entry: _Entry) -> None:
        conn = entry.conn
        if conn.termination is not None:
            return
        # Until the handshake, the entry's scope carries the connection's
        # deadline, the handshake timeout; after it, the scope has none.
        if self._shutdown_deadline <= entry.scope.deadline:
            # The grace period ends first (before the handshake timeout of a
            # connection still waiting for its preamble).
            conn.set_deadline(self._shutdown_deadline, self._expired_detail(entry))
        # A connection whose task has not run yet (just taken from the
        # backlog) gets its preamble now, so that SHUTDOWN can follow it
        # even if the grace period ends before the task runs.
        conn.greet_now()
        conn.request_shutdown(
            self._shutdown_reason,
            grace_period=max(0.0, self._shutdown_deadline - trio.current_time()),
        )

    def _expired_detail(self, entry: _Entry) -> str:
        """What a connection cut at the end of the grace period is told it
        ended by (its :attr:`Termination.detail`)."""
        conn = entry.conn
        if conn.end_received:
            stage = 2
        elif conn.handshake_complete:
            stage = 1
        else:
            stage = 0
        key = (stage, entry.from_backlog)
        text = self._details.get(key)
        if text is None:  # made once per kind: the cut may need thousands
            text = (
                f"the grace period of the server's shutdown "
                f"({self._shutdown_grace:g} s) expired {_STAGES[stage]}"
            )
            if entry.from_backlog:
                text += "; accepted from the listen backlog as the shutdown began"
            self._details[key] = text
        return text

    async def _run_shutdown(self) -> None:
        """Steps 2 and 3: wait for the connections until the deadline, then
        sweep. The report is built here, or by :meth:`abort`."""
        try:
            with self._wait_scope:
                await self._idle.wait()
        finally:
            if self._report is None:
                if self._entries and trio.current_time() < self._shutdown_deadline:
                    # Cancelled from outside (the server's scope): abort.
                    self.abort()
                else:
                    self._cut(timed_out=True)

    def _cut(self, *, timed_out: bool) -> None:
        """End the shutdown in one synchronous pass: abort every connection
        still open (first every transport is reset, in one loop; then each
        termination is recorded: ``TIMED_OUT`` at the deadline, ``ABORTED``
        by an abort), build the report, then cancel the handlers. The cut
        waits for no task: handlers unwind afterwards, in their own time,
        and their unwinding cannot delay the report."""
        # The pass allocates a little for each of possibly thousands of
        # connections: a full collection of everything they hold could land
        # inside it and take longer than the pass itself, so it waits.
        if self._watch is not None:
            # (Already gone if Trio disabled it after it raised.)
            with contextlib.suppress(KeyError):
                trio.lowlevel.remove_instrument(self._watch)
            self._watch = None
        collecting = gc.isenabled()
        gc.disable()
        # Descriptors closed under a waiting reader or writer: Trio is told
        # (and the task woken) only once the report is built. No checkpoint
        # comes in between, which is what Trio asks of a late notice.
        untold: list[int] = []
        try:
            # The wire first: every reset leaves in one tight loop, before
            # any bookkeeping, so the last peer is cut as early as it can be.
            entries = [e for e in self._entries if e.conn.termination is None]
            for entry in entries:
                fd = entry.conn.reset_transport()
                if fd is not None:
                    untold.append(fd)
            now = trio.current_time()
            for entry in entries:
                conn = entry.conn
                if timed_out:
                    # An abort at or past the connection's deadline is
                    # TIMED_OUT, with the deadline's reason.
                    conn.set_deadline(now, self._expired_detail(entry))
                    conn.abort()
                else:
                    conn.abort_with(_ABORT_DETAIL)
            self._build_report()
        finally:
            notify_closing = trio.lowlevel.notify_closing
            for fd in untold:
                notify_closing(fd)
            for entry in self._entries:
                entry.scope.cancel()
            if collecting:
                gc.enable()

    def _build_report(self) -> ShutdownReport:
        reports = []
        for entry in self._shutdown_entries:
            report = self._reports.get(entry)
            if report is None:  # still unwinding after the sweep
                termination = entry.conn.termination
                assert termination is not None
                report = ConnectionReport(
                    termination, entry.outcome, entry.conn.remote_address
                )
            reports.append(report)
        reports.extend(self._told_reports)
        counts = _zero_counts()
        for report in reports:
            counts[report.termination.kind] += 1
        self._report = ShutdownReport(
            connections=tuple(reports),
            counts=counts,
            ended_before=dict(self._ended_before),
            grace_period=self._shutdown_grace,
            duration=trio.current_time() - self._shutdown_start,
            aborted=self._aborted,
        )
        self._done.set()
        if not self._entries:
            self.restore_full_collections()  # no handler left to unwind
        logger.info("%s", self._report)
        return self._report

    def restore_full_collections(self) -> None:
        """End this server's deferral of full collections (idempotent): once
        the report is built and no handler is left to unwind, or at the
        latest when the server's block exits.

        :meta private:
        """
        if self._deferring_full_collections:
            self._deferring_full_collections = False
            _full_collections.restore()

    def abort(self) -> None:
        """Abort now: stop accepting and close the listeners, cancel every
        handler and abort every connection (peers see a reset), and build
        the report.

        Works at any moment, including while a graceful shutdown runs (it
        then ends at once, reported as aborted). If no shutdown was running,
        the report lists every connection that was open. Connections waiting
        in the listen backlog are not accepted: the kernel resets them as
        the listener closes.

        Synchronous and idempotent; never raises. When it returns the report
        is built (:attr:`report`, :meth:`wait_shut_down`); handler tasks
        unwind afterwards.
        """
        if self._report is not None:
            return
        self._aborted = True
        if not self._shutdown_started:
            self._begin_shutdown(0.0, graceful=False)
        self._cut(timed_out=False)
        self._wait_scope.cancel()


class _DeadlineWatch(trio.abc.Instrument):
    """Cuts a shutdown at the first task step past its deadline.

    Trio wakes the shutdown task when the deadline passes, but runs it only
    in the batch after the one under way, and on a busy server (thousands of
    handlers answering) a batch can take long. Checked before every task
    step, the deadline is acted on within one step instead. Installed only
    while a shutdown waits for its deadline; it costs a clock read per step.
    """

    def __init__(self, server: Server) -> None:
        self.server = server

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        # (A helper of the server's, in its module: it reads the server's
        # state directly, once per task step.)
        server = self.server
        if (
            server._report is None  # noqa: SLF001
            and trio.current_time() >= server._shutdown_deadline  # noqa: SLF001
        ):
            server._cut(timed_out=True)  # noqa: SLF001


#: Where a connection cut at the end of the grace period was, by stage: no
#: preamble read yet (it may be in the kernel's buffer, unread: say only what
#: this side knows), open, or the client's END received.
_STAGES: Final = (
    "before the client's preamble was read",
    "before the client's END",
    "after the client's END, before the server's END was written",
)

#: The detail of a connection aborted by Server.abort().
_ABORT_DETAIL: Final = (
    "the server aborted (Server.abort(), a second shutdown request, or the "
    "server's scope was cancelled)"
)


async def _close_listener(listener: trio.abc.Listener[trio.abc.Stream]) -> None:
    with trio.CancelScope(shield=True):
        await trio.aclose_forcefully(listener)


def _accept_backlog(
    listener: trio.abc.Listener[trio.abc.Stream],
) -> list[stdlib_socket.socket]:
    """Accept, without waiting, the connections the kernel has completed on
    a socket listener: the shutdown serves those (see the module's
    docstring). Synchronous: nothing can connect and be accepted meanwhile.

    On a Linux TCP listener the count is read first (``TCP_INFO`` gives a
    listening socket's accept-queue length) and exactly that many are
    accepted, the oldest first: connections completing meanwhile are left
    to the kernel, which resets them as the listener closes. Elsewhere
    (Unix sockets, other systems) accepts go on until the queue is empty,
    at most :data:`_DRAIN_LIMIT`. Other listeners are not drained.
    """
    sock = getattr(listener, "socket", None)
    if not isinstance(sock, trio.socket.SocketType) or sock.fileno() < 0:
        return []
    count = _accept_queue_length(sock)
    limit = _DRAIN_LIMIT if count is None else count
    accepted: list[stdlib_socket.socket] = []
    if limit == 0:
        return accepted
    try:
        # A duplicate of the listening socket, for plain non-blocking
        # accept() calls: Trio's accept() is async. (The socket is already
        # non-blocking: the flag belongs to the open file both share.)
        raw = stdlib_socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
    except OSError as exc:
        logger.warning("could not drain the listen backlog: %s", exc)
        return accepted
    with raw:
        raw.setblocking(False)
        for _ in range(limit):  # each try takes one entry of the queue
            try:
                new, _ = raw.accept()
            except BlockingIOError:
                break
            except ConnectionAbortedError:
                continue  # reset while it waited in the queue: gone
            except OSError as exc:
                # Out of file descriptors (or memory): what is left in the
                # queue is reset as the listener closes.
                logger.warning("stopped draining the listen backlog: %s", exc)
                break
            accepted.append(new)
    return accepted


#: Connections a drain of the listen backlog takes at most where the queue's
#: length cannot be read: 4096 is Linux's default ``somaxconn`` (since 5.4),
#: the longest accept queue an unconfigured system keeps. Bounds the drain
#: under a connect flood that refills the queue as fast as it is emptied.
_DRAIN_LIMIT: Final = 4096

#: ``tcpi_state`` of a listening socket (Linux's ``TCP_LISTEN``).
_TCP_LISTEN: Final = 10
#: On a listening socket, Linux's ``struct tcp_info`` carries the accept
#: queue's length in ``tcpi_unacked``: a u32 at offset 24, after eight u8
#: fields and four u32 ones. (Its maximum, the backlog, is ``tcpi_sacked``.)
_TCPI_UNACKED: Final = struct.Struct("=I")
_TCPI_UNACKED_OFFSET: Final = 24


def _accept_queue_length(sock: trio.socket.SocketType) -> int | None:
    """How many completed connections wait in a listening TCP socket's
    accept queue (Linux), or ``None`` where that cannot be read."""
    tcp_info = getattr(stdlib_socket, "TCP_INFO", None)
    if (
        tcp_info is None
        or sys.platform != "linux"
        or sock.family not in (stdlib_socket.AF_INET, stdlib_socket.AF_INET6)
    ):
        return None
    try:
        info = sock.getsockopt(stdlib_socket.IPPROTO_TCP, tcp_info, 32)
    except OSError:
        return None
    if len(info) < _TCPI_UNACKED_OFFSET + 4 or info[0] != _TCP_LISTEN:
        return None
    (count,) = _TCPI_UNACKED.unpack_from(info, _TCPI_UNACKED_OFFSET)
    return int(count)


#: The collector's third threshold while full collections are deferred: the
#: number of generation-1 collections a full one waits for (CPython's own
#: default is 10). 2**30 of them, each after about 7,000 allocations, are
#: never reached: full collections simply wait until it is restored.
_DEFERRED_FULL_THRESHOLD: Final = 1 << 30


class _FullCollectionsDeferral:
    """Defers CPython's full (generation 2) cyclic collections while any
    server's shutdown runs, process-wide: from the start of a shutdown until
    its report is built and its last handler has returned (or its block has
    exited, whichever comes first), counted over servers.

    Why: a server with thousands of connections holds a million objects or
    more, and one full collection of them takes 0.1-1 s, during which nothing
    else runs. In a shutdown its handlers allocate a lot (closing frames,
    cancellations), so full collections came one after the other, one could
    be running when the grace period ended (the cut then came as late), and
    more ran while the handlers unwound after the cut. The young generations
    are still collected, so short-lived cycles are still freed; only the
    scan of everything long-lived waits, until the connections are gone and
    it is cheap.

    How: by raising the collector's third threshold (:func:`gc.set_threshold`),
    never by :func:`gc.freeze` (unfreezing afterwards would also release
    objects the application froze) nor :func:`gc.disable`. The application's
    thresholds are put back as they were, unless it changed them meanwhile
    (then its own setting stands). Where automatic collection is off
    (threshold 0), nothing is changed.
    """

    def __init__(self) -> None:
        self._holders = 0
        self._saved: tuple[int, int, int] | None = None
        self._deferred: tuple[int, int, int] | None = None

    def defer(self) -> None:
        self._holders += 1
        if self._holders > 1:
            return
        saved = gc.get_threshold()
        if saved[0] == 0:
            return
        self._saved = saved
        self._deferred = (saved[0], saved[1], _DEFERRED_FULL_THRESHOLD)
        gc.set_threshold(*self._deferred)

    def restore(self) -> None:
        self._holders -= 1
        if self._holders > 0 or self._saved is None:
            return
        if gc.get_threshold() == self._deferred:
            gc.set_threshold(*self._saved)
        self._saved = self._deferred = None


_full_collections = _FullCollectionsDeferral()


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
        TypeError: an option is not of the right type (checked likewise).
    """
    options = server_options(
        grace_period=grace_period,
        max_message_size=max_message_size,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        receive_buffer_size=receive_buffer_size,
        linger=linger,
    )
    async with serving(handler, listeners, options, ssl_context) as server:
        yield server


@asynccontextmanager
async def serving(
    handler: Handler,
    listeners: Iterable[trio.abc.Listener[trio.abc.Stream]],
    options: ServerOptions,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    """:func:`open_server` with its options already made (and so checked):
    for the servers and :mod:`adieu.testing`."""
    server: Server | None = None
    try:
        async with block_nursery() as nursery:
            server = Server(handler, listeners, nursery, options, ssl_context)
            try:
                yield server
            except BaseException:
                server.abort()
                raise
            try:
                # A shutdown already running (its caller may have been
                # cancelled) is waited for, not escalated to an abort.
                if server.shutting_down:
                    await server.wait_shut_down()
                else:
                    await server.shutdown()
            except BaseException:
                server.abort()
                raise
    finally:
        if server is not None:
            # Every handler has unwound (if the report's builder or the
            # last handler did not already end the deferral).
            server.restore_full_collections()


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
        TypeError: an option is not of the right type (checked likewise).
        OSError: the address could not be bound.
    """
    options = server_options(
        grace_period=grace_period,
        max_message_size=max_message_size,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        receive_buffer_size=receive_buffer_size,
        linger=linger,
    )
    tcp = _tcp_server(handler, host, port, backlog, options, ssl_context)
    async with tcp as server:
        yield server


@asynccontextmanager
async def _tcp_server(
    handler: Handler,
    host: str | bytes | None,
    port: int,
    backlog: int | None,
    options: ServerOptions,
    ssl_context: ssl.SSLContext | None,
) -> AsyncIterator[Server]:
    """:func:`open_tcp_server` with its options made."""
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    async with serving(handler, listeners, options, ssl_context) as server:
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
        TypeError: an option is not of the right type (checked likewise).
        OSError: ``path`` exists or cannot be bound.
    """
    options = server_options(
        grace_period=grace_period,
        max_message_size=max_message_size,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        receive_buffer_size=receive_buffer_size,
        linger=linger,
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
        async with serving(handler, [trio.SocketListener(sock)], options) as server:
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

    The other keyword arguments are those of :func:`open_tcp_server`, with
    the same defaults.

    Returns:
        The :class:`ShutdownReport`, once the server has shut down.

    Raises:
        ValueError: an option is out of range (checked before binding).
        TypeError: an option is not of the right type (checked likewise).
        OSError: the address could not be bound.
    """
    options = server_options(
        grace_period=grace_period,
        max_message_size=max_message_size,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        receive_buffer_size=receive_buffer_size,
        linger=linger,
    )
    tcp = _tcp_server(handler, host, port, backlog, options, ssl_context)
    async with tcp as server:
        task_status.started(server)
        return await server.wait_shut_down()
    raise AssertionError("unreachable")  # pragma: no cover
