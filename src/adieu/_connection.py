"""The Trio connection: one driver of the sans-I/O core over a transport.

The core (:class:`~adieu.Protocol`) holds the connection's whole state: both
sides' frames, whether this side's END and FIN are out, the peer's EOF,
whether this side is closing, the first failure; it decides when the ending
is decided and when the transport may be released, and builds the
:class:`~adieu.Termination`. :class:`Connection` does the I/O and the
waiting around it, and keeps no copy of any of that.

Data paths, and why they are shaped so:

* **Reading: whoever waits reads.** A task waiting in :meth:`receive` (or in
  a close, or for the handshake) reads the transport itself and feeds the
  core: no hand-over from a reader task, and no extra system call per
  message. A *watcher* task stands only while nobody reads (the application
  sends, computes or waits for something else), so a SHUTDOWN, END or reset
  is still noticed while the application only sends or is idle; when a task
  wants to receive, the watcher hands over after its read in progress and
  parks.
  Messages go to a bounded buffer (``receive_buffer_size`` bytes, default
  1 MiB; each message counts its length plus 64 bytes, so floods of tiny
  messages are bounded too); the watcher checks the bound before each read
  of at most 64 KiB and stops reading when it is reached: backpressure, not
  memory growth. A SHUTDOWN behind a full buffer is noticed only as the
  application reads.
* **Writing: one outbox, one lock.** Every frame (messages, SHUTDOWN, END,
  then the FIN after END) is appended to one outbox, which the holder of
  the one write lock drains, several frames per ``send_all``. So concurrent
  senders never interleave, and replies to a pipelining peer are gathered
  into one write (see :meth:`send`).
* **Ending.** Every way to end goes through the core; the close verbs
  compose: a second ``aclose()`` or ``shutdown()`` waits for the first and
  gives its outcome.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, final

import trio

from ._compat import BaseExceptionGroup
from ._errors import (
    ConnectionTruncated,
    EndOfMessages,
    MessageTooLarge,
    ProtocolError,
)
from ._frames import DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE_LIMIT
from ._protocol import End, Message, Protocol, ShutdownRequest
from ._state import Role, SideState
from ._termination import Termination
from ._transport import DEFAULT_LINGER, TransportStream, is_reset

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_RECEIVE_BUFFER_SIZE",
    "Connection",
    "ConnectionOptions",
    "running",
]

logger = logging.getLogger("adieu")

#: Seconds a graceful close may take before the connection is aborted
#: (``TIMED_OUT``): the server's grace period, the client's close timeout.
#: Ten seconds: long enough for a client to finish what it is doing, short
#: enough for a restart. Under a supervisor, keep it below the supervisor's
#: kill timeout (systemd's TimeoutStopSec defaults to 90 s, but ``docker
#: stop`` waits only 10 s: lower the grace period or raise ``--time``).
DEFAULT_GRACE_PERIOD: Final = 10.0

#: Bytes of received messages held for the application before the watcher
#: stops reading. 1 MiB: one maximum-size message, or many small ones.
DEFAULT_RECEIVE_BUFFER_SIZE: Final = 1 << 20

#: Each buffered message counts this many bytes on top of its length, so
#: that a flood of empty messages is bounded too. Roughly what CPython spends
#: on a small ``bytes`` object plus a deque slot.
_MESSAGE_OVERHEAD: Final = 64

#: Operations (sends written at once, receives of a message already
#: buffered or read without waiting) allowed between two schedule points.
#: Trio's own streams yield on every call; yielding only when an operation
#: has to wait, and otherwise every 16 calls, saves a task switch per message
#: while keeping a busy connection from starving the other tasks. 16 is
#: arbitrary.
_YIELD_EVERY: Final = 16

#: Bytes of frames gathered for one write while the application answers
#: messages that were already buffered (see ``send``). 64 KiB: a few
#: segments' worth, so a write stays cheap and latency stays bounded.
_OUTBOX_LIMIT: Final = 65536

#: Bytes asked of the transport per read: arbitrary, large enough that a
#: burst of small frames costs one system call.
_READ_SIZE: Final = 65536


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionOptions:
    """A connection's options, checked once, when made: the openers and the
    server build one from their keyword arguments (see
    :func:`adieu.wrap_stream` for what each means) and pass it down.

    Raises:
        ValueError: an option is out of range.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE
    grace_period: float = DEFAULT_GRACE_PERIOD
    linger: float = DEFAULT_LINGER

    def __post_init__(self) -> None:
        if not 0 <= self.max_message_size <= MAX_MESSAGE_SIZE_LIMIT:
            raise ValueError(
                f"max_message_size must be between 0 and {MAX_MESSAGE_SIZE_LIMIT}, "
                f"not {self.max_message_size!r}"
            )
        if self.receive_buffer_size < 1:
            raise ValueError("receive_buffer_size must be at least 1 byte")
        if not self.grace_period >= 0:
            raise ValueError(f"grace_period must be >= 0, not {self.grace_period!r}")
        if not self.linger >= 0:
            raise ValueError(f"linger must be >= 0, not {self.linger!r}")


def _role(role: Role | str) -> Role:
    return role if isinstance(role, Role) else Role(role)


@final
class Connection:
    """One adieu connection: messages in both directions, and four ways to
    end it.

    Do not construct it directly: use :func:`adieu.connect_tcp`,
    :func:`adieu.connect_unix`, :func:`adieu.wrap_stream`, or a server, which
    hand one to a handler. The connection lives inside the ``async with``
    block (or handler) that opened it.

    Ending the block:

    * normally, on a client: ``send_eof()`` if not yet, then read until the
      server's END (bounded by :attr:`grace_period`), then close. Messages
      read there are discarded and counted;
    * normally, on a server (the handler returned): if the client has not
      sent END, ask with SHUTDOWN and wait for it (bounded by the grace
      period), discarding what the handler left unread; then END and close;
    * by an exception or a cancellation: :meth:`abort`, and the exception
      propagates as itself (the termination is ``ABORTED``, or ``TIMED_OUT``
      when the cancellation came from a deadline such as
      :func:`trio.move_on_after`, or after :meth:`set_deadline`);
    * on a connection that has already ended: nothing.

    Attributes:
        role: :class:`~adieu.Role.CLIENT` or :class:`~adieu.Role.SERVER`.
        grace_period: seconds a graceful close may take before this side
            aborts (``TIMED_OUT``); the default for :meth:`shutdown`.
        shutdown_reason: the reason carried by SHUTDOWN, or ``None``.
        shutdown_grace_period: on a client, the seconds the server granted
            in its SHUTDOWN; on a server, the seconds it granted; else
            ``None``.
        shutdown_deadline: the :func:`trio.current_time` at which the grace
            period granted by SHUTDOWN ends (``math.inf`` if unbounded), else
            ``None``. A client can ``with trio.move_on_at(...)`` on it.
    """

    # Slots: a server may hold thousands of these; no per-instance dict.
    __slots__ = (
        "_buffer",
        "_buffered",
        "_changed",
        "_deadline",
        "_deadline_reason",
        "_flusher",
        "_local_address",
        "_lock",
        "_nursery",
        "_outbox",
        "_outbox_bytes",
        "_proto",
        "_reading",
        "_released",
        "_remote_address",
        "_shutdown_event",
        "_transport",
        "_unyielded",
        "_waiting",
        "_watcher",
        "grace_period",
        "receive_buffer_size",
        "role",
        "shutdown_deadline",
        "shutdown_grace_period",
        "shutdown_reason",
    )

    def __init__(
        self,
        transport: TransportStream,
        role: Role | str,
        options: ConnectionOptions = ConnectionOptions(),
    ) -> None:
        self.role = _role(role)
        self.grace_period = options.grace_period
        self.receive_buffer_size = options.receive_buffer_size
        self._transport = transport
        self._proto = Protocol(
            self.role,
            max_message_size=options.max_message_size,
            half_close=transport.supports_half_close,
        )
        self._nursery: trio.Nursery | None = None
        # Every waiter parks here (receivers, closers, the handshake wait,
        # the watcher when it steps back) and re-checks its own condition
        # when woken.
        self._changed = trio.lowlevel.ParkingLot()
        # Receiving. The buffer is made on the first message: an idle
        # connection does without.
        self._buffer: deque[bytes] | None = None
        self._buffered = 0
        self._reading = False  # a task is in a read of the transport
        self._waiting = 0  # tasks waiting for news from the peer
        self._watcher: trio.lowlevel.ParkingLot | None = None
        # Writing.
        self._lock = trio.StrictFIFOLock()
        self._outbox: list[bytes] = []
        self._outbox_bytes = 0
        self._flusher: trio.lowlevel.ParkingLot | None = None
        self._unyielded = 0
        # Ending: set while the transport is being released, then set.
        self._released: trio.Event | None = None
        self._shutdown_event: trio.Event | None = None
        self.shutdown_reason: str | None = None
        self.shutdown_grace_period: float | None = None
        self.shutdown_deadline: float | None = None
        self._deadline = math.inf
        self._deadline_reason = "the deadline passed"
        self._remote_address = _address(transport, "getpeername")
        self._local_address = _address(transport, "getsockname")

    def __repr__(self) -> str:
        termination = self._proto.termination
        state = termination.kind.name if termination else "open"
        return f"<adieu.Connection {self.role.value} {self.remote_address!r} {state}>"

    # -------------------------------------------------------------- properties

    @property
    def termination(self) -> Termination | None:
        """How the connection ended (:class:`~adieu.Termination`), or
        ``None`` while that is not decided. It is set as soon as both ENDs
        are exchanged, this side's is out and the application has taken
        every message before the peer's END; or when the connection fails,
        is aborted or closed. It never changes afterwards."""
        return self._proto.termination

    @property
    def max_message_size(self) -> int:
        """The largest message, in bytes, this connection sends or accepts
        (inclusive)."""
        return self._proto.max_message_size

    @property
    def transport(self) -> TransportStream:
        """The :class:`~adieu.TransportStream` underneath. Reading from or
        writing to it directly breaks the connection's framing."""
        return self._transport

    @property
    def remote_address(self) -> Any:
        """The peer's socket address (as ``getpeername()`` gave it when the
        connection was made), or ``None`` where the transport has no socket
        (memory streams)."""
        return self._remote_address

    @property
    def local_address(self) -> Any:
        """This side's socket address, or ``None`` without a socket."""
        return self._local_address

    @property
    def shutdown_requested(self) -> trio.Event:
        """A :class:`trio.Event`. On a client, set when the server's SHUTDOWN
        arrives. On a server, set when this side asked (:meth:`request_shutdown`, or the
        server's own shutdown), so a handler can watch it and wind down.
        (Made on first use: an idle connection keeps no Event.)"""
        event = self._shutdown_event
        if event is None:
            event = self._shutdown_event = trio.Event()
            if self._proto.shutdown_sent or self._proto.shutdown_request:
                event.set()
        return event

    @property
    def handshake_complete(self) -> bool:
        """``True`` once the peer's preamble has arrived."""
        return self._proto.handshake_complete

    @property
    def end_received(self) -> bool:
        """``True`` once the peer's END has arrived (the application may
        still have messages to read before it)."""
        return self._proto.end_received

    def set_deadline(self, deadline: float, reason: str) -> None:
        """Say when this side's patience ends: an abort at or after
        ``deadline`` (a :func:`trio.current_time` value) ends ``TIMED_OUT``
        with ``reason`` as its detail, whatever caused it (typically a
        cancel scope with the same deadline). A server sets it on each of
        its connections (the handshake timeout, then its grace period).

        Synchronous; a later call replaces the earlier one.
        """
        self._deadline = deadline
        self._deadline_reason = reason

    # ---------------------------------------------------------------- reading

    def _watch(self) -> None:
        """Let the watcher stand if nobody reads (started the first time):
        it reads into the buffer until a task waits for news itself, then
        hands over after its read in progress and parks."""
        lot = self._watcher
        if lot is not None:
            lot.unpark()
        elif self._nursery is not None and self._can_read():
            lot = self._watcher = trio.lowlevel.ParkingLot()
            self._nursery.start_soon(self._watch_loop, lot)

    async def _watch_loop(self, lot: trio.lowlevel.ParkingLot) -> None:
        while self._can_read():
            if (
                self._waiting == 0
                and not self._reading
                and self._buffered < self.receive_buffer_size
            ):
                await self._read()
            else:
                await lot.park()  # someone reads, or backpressure

    def _can_read(self) -> bool:
        proto = self._proto
        return not (
            self._released is not None or proto.eof_received or proto.cause is not None
        )

    async def _wait_until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()``, reading the transport in this task whenever
        nobody else is. Not bounded: the caller's cancel scope bounds it."""
        self._waiting += 1
        try:
            while not done():
                if not self._reading and self._can_read():
                    await self._read()
                else:
                    await self._changed.park()
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                self._watch()

    async def _read(self) -> None:
        """Read once from the transport, feed the core, and act on what
        follows. The caller checked that nobody else is reading."""
        transport = self._transport
        self._reading = True
        try:
            # What is already there is taken without a schedule point.
            data: bytes | bytearray | None = transport.try_receive(_READ_SIZE)
            if data is None:
                data = await transport.receive_some(_READ_SIZE)
        except trio.BrokenResourceError as exc:
            self._broken(exc)
            return
        except trio.ClosedResourceError:
            return  # released by this side meanwhile
        finally:
            self._reading = False
            self._changed.unpark_all()
        if not data:
            with contextlib.suppress(ConnectionTruncated):  # recorded in the core
                self._proto.receive_eof()
        else:
            try:
                events = self._proto.receive_data(data)
            except ProtocolError as exc:
                self._deliver(exc.events)
                logger.debug("protocol error on %r: %s", self, exc)
                self._release_now(reset=True)
                return
            if events:
                self._deliver(events)
                if type(events[-1]) is Message and not self._proto.end_received:
                    return  # messages alone change nothing else (the hot path)
        await self._step()

    def _deliver(self, events: Sequence[object]) -> None:
        for event in events:
            if type(event) is Message:
                if self._proto.closing:
                    self._proto.discard(1)
                    continue
                buffer = self._buffer
                if buffer is None:
                    buffer = self._buffer = deque()
                buffer.append(event.data)
                self._buffered += len(event.data) + _MESSAGE_OVERHEAD
            elif type(event) is ShutdownRequest:
                self.shutdown_reason = event.reason
                self.shutdown_grace_period = event.grace_period
                self.shutdown_deadline = trio.current_time() + event.grace_period
                if self._shutdown_event is not None:
                    self._shutdown_event.set()
            else:
                assert type(event) is End
        self._changed.unpark_all()

    def _broken(self, exc: trio.BrokenResourceError) -> None:
        """The transport broke under a read or a write."""
        cause = exc.__cause__ or exc
        if is_reset(exc):
            detail = f"the peer reset the connection ({cause})"
            self._proto.connection_reset(detail, error=cause)
        else:
            detail = f"the transport broke without the peer's END ({cause})"
            self._proto.transport_broken(detail, error=cause)
        # Decided already (a TLS peer that closed without close_notify after
        # both ENDs): nothing was lost, so no reset.
        self._release_now(reset=self._proto.cause is not None)

    async def _step(self) -> None:
        """Act on the core's state after a change: queue a due END, build
        the termination once it is decided, release the transport when the
        core allows it."""
        self._settle()
        if self._proto.may_release and self._released is None:
            await self._release()

    def _settle(self) -> None:
        """Queue END once it is due (asked for, allowed, and the application
        has taken what came before the peer's END), and build the
        termination once the ending is decided and nothing is left unread."""
        if self._end_due():
            self._write_soon(self._proto.send_end())
        self._conclude()

    def _end_due(self) -> bool:
        proto = self._proto
        return (
            proto.end_requested
            and not proto.end_sent
            and proto.may_send_end
            # A server's END counts what its application received: it waits
            # for the messages before the client's END to be taken.
            and (self.role is Role.CLIENT or not self._buffer)
        )

    def _conclude(self) -> None:
        proto = self._proto
        if proto.termination is None and proto.decided and not self._buffer:
            proto.close()
            self._changed.unpark_all()

    async def receive(self) -> bytes:
        """Receive the next message.

        Returns:
            The message's bytes (possibly empty).

        Raises:
            EndOfMessages: the peer sent END and every message before it has
                been delivered (a :exc:`trio.EndOfChannel`). Raised again on
                every later call.
            trio.ClosedResourceError: this side closed or aborted the
                connection.
            ConnectionReset: the peer reset the connection.
            ConnectionTruncated: the transport ended without the peer's END.
            ProtocolError: the peer broke the protocol (including
                :exc:`MessageTooLarge`).

        Messages that arrived before an error are delivered before the
        error is raised. Several tasks may wait at once; each message goes
        to one of them.

        Always a cancel point, and cancel-safe: if cancelled, no message was
        taken. A schedule point when it has to wait; a message that is
        already buffered is taken without one, except on every 16th call (so
        that a busy connection cannot starve other tasks): one task switch
        less per message than a Trio stream's ``receive_some``.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._buffer:
            # A message is waiting: take it without a schedule point, but
            # yield every _YIELD_EVERY operations so that a busy connection
            # cannot starve the other tasks.
            self._unyielded += 1
            if self._unyielded < _YIELD_EVERY:
                return self._take()
            self._unyielded = 0
            await trio.lowlevel.checkpoint()  # before taking: cancel-safe
        elif self._outbox and not self._lock.locked():
            await self._write()  # gathered replies go before this task waits
        while not self._buffer:
            error = self._receive_error()
            if error is not None:
                await trio.lowlevel.cancel_shielded_checkpoint()
                raise error
            # Nothing yet: read (or wait for the task that reads); the wait
            # is the schedule point.
            self._unyielded = 0
            await self._wait_until(self._news)
        return self._take()

    def _news(self) -> bool:
        return bool(self._buffer) or self._receive_error() is not None

    def _take(self) -> bytes:
        assert self._buffer is not None
        data = self._buffer.popleft()
        full = self._buffered >= self.receive_buffer_size
        self._buffered -= len(data) + _MESSAGE_OVERHEAD
        if not self._buffer and self._proto.end_received:
            self._settle()  # a server's END may be due, the ending decided
        if full and self._watcher is not None:
            self._watcher.unpark()
        return data

    def _receive_error(self) -> BaseException | None:
        """What :meth:`receive` raises once the buffer is empty, if any."""
        proto = self._proto
        if proto.closing:
            return trio.ClosedResourceError("this connection was closed by this side")
        if proto.end_received:
            return EndOfMessages("the peer sent END: no more messages")
        failure = proto.failure()
        if failure is not None:
            return failure
        if not self._can_read():
            return trio.ClosedResourceError("this connection has ended")
        return None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        """The next message; the iteration stops at the peer's END.

        Raises the same errors as :meth:`receive`, except
        :exc:`EndOfMessages`, which ends the iteration.
        """
        try:
            return await self.receive()
        except EndOfMessages:
            raise StopAsyncIteration from None

    # ---------------------------------------------------------------- writing

    def _send_error(self) -> BaseException:
        """The exception a send raises when this connection cannot send."""
        proto = self._proto
        if proto.closing:
            return trio.ClosedResourceError("this connection was closed by this side")
        failure = proto.failure()
        if failure is not None:
            return failure
        if proto.end_requested or proto.end_sent:
            return trio.ClosedResourceError("send_eof() was called: no more sends")
        return trio.ClosedResourceError("this connection has ended")

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send one message.

        Args:
            data: the message, any bytes-like object (copied before this
                returns; empty messages are allowed).

        Raises:
            MessageTooLarge: ``data`` is longer than :attr:`max_message_size`
                (also a :exc:`ValueError`). Raised before anything is written;
                the connection stays usable.
            trio.ClosedResourceError: this side closed, aborted or
                half-closed (``send_eof()``) the connection.
            ConnectionReset: the peer reset the connection.
            ConnectionTruncated: the transport ended without the peer's END.
            ProtocolError: the peer broke the protocol earlier.

        Safe to call from several tasks at once: each message is written
        whole, in the order the calls queued, never interleaved.

        Always a cancel point. A schedule point when the write has to wait
        (or queue behind another writer); a write the kernel takes at once
        yields only on every 16th call. While received messages are already
        waiting to be read (a pipelining peer), the frame is gathered with
        the following ones, up to 64 KiB, and written in one go as soon as
        this task next waits or yields.

        Cancellation: if cancelled before its message was
        handed to the transport, nothing was sent and the connection is
        unharmed; if cancelled while its message is being written (a peer
        that does not read can hold a write indefinitely), the connection is
        aborted, because half a frame cannot be taken back.
        """
        proto = self._proto
        if not proto.can_send or proto.closing or proto.end_requested:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise self._send_error()
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if size > proto.max_message_size:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise MessageTooLarge(
                f"message of {size} bytes; the limit is {proto.max_message_size}",
                size=size,
                limit=proto.max_message_size,
            )
        if type(data) is not bytes:
            data = bytes(data)
        if self._lock.locked():
            await self._lock.acquire()  # cancelled here: nothing was sent
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
            self._lock.acquire_nowait()
        try:
            if not proto.can_send or proto.closing:
                raise self._send_error()
            frame = proto.send_message(data)
            if self._buffer and self._outbox_bytes < _OUTBOX_LIMIT:
                # More received messages are already waiting, so the
                # application is about to come back: gather this frame with
                # the next ones into one write, made by its last reply, or
                # before this task waits in receive, or by the flusher as
                # soon as this task yields, whichever comes first.
                self._outbox.append(frame)
                self._outbox_bytes += len(frame)
                self._wake_flusher()
                return
            await self._drain(frame)
        finally:
            self._lock.release()

    async def _write(self, encode: Callable[[], bytes] | None = None) -> None:
        """Take the lock, then write the outbox and the frame ``encode()``
        returns (encoded under the lock, so that it goes after every frame
        queued before)."""
        async with self._lock:
            await self._drain(b"" if encode is None else encode())

    def _due_end(self) -> bytes:
        """This side's END if it is due (see :meth:`_end_due`), else
        nothing."""
        return self._proto.send_end() if self._end_due() else b""

    async def _drain(self, frame: bytes) -> None:
        """Write the outbox and ``frame``, then the FIN if END went out.
        Called with the lock held: the one place that writes."""
        transport = self._transport
        outbox = self._outbox
        if outbox:
            outbox.append(frame)
        try:
            while frame or outbox:
                if outbox:
                    frame = outbox[0] if len(outbox) == 1 else b"".join(outbox)
                    outbox.clear()
                    self._outbox_bytes = 0
                sent = transport.try_send(frame)
                if sent < len(frame):
                    await transport.send_all(
                        memoryview(frame)[sent:] if sent else frame
                    )
                    self._unyielded = 0
                else:
                    # Written at once, without waiting: a schedule point only
                    # every _YIELD_EVERY operations (it cannot raise).
                    self._unyielded += 1
                    if self._unyielded >= _YIELD_EVERY:
                        self._unyielded = 0
                        await trio.lowlevel.cancel_shielded_checkpoint()
                frame = b""
            proto = self._proto
            if proto.end_sent and not proto.end_out and proto.cause is None:
                with contextlib.suppress(trio.ClosedResourceError):
                    await transport.send_eof()
                proto.end_written()
                self._changed.unpark_all()
                await self._step()
        except trio.BrokenResourceError as exc:
            self._broken(exc)
            raise self._send_error() from exc
        except trio.ClosedResourceError as exc:
            raise self._send_error() from exc
        except BaseException as exc:
            # Cancelled (or KeyboardInterrupt) in the middle of a frame: half
            # a frame cannot be taken back.
            self._abort_for(
                timed_out=_is_deadline(exc),
                detail="cancelled in the middle of writing a frame",
            )
            raise

    def _write_soon(self, frame: bytes) -> None:
        """Send a control frame from synchronous code: at once if the lock
        is free and the kernel takes it whole (no task needed: this is what
        keeps a server's shutdown of thousands of connections cheap);
        otherwise the lock's holder writes it after its own, or a task in
        the connection's nursery does. END always goes through a task: the
        FIN after it needs one."""
        if not self._lock.locked() and not self._outbox and not self._proto.end_sent:
            try:
                sent = self._transport.try_send(frame)
            except trio.BrokenResourceError as exc:
                self._broken(exc)
                return
            except trio.ClosedResourceError:
                return
            frame = frame[sent:]
            if not frame:
                return
        self._outbox.append(frame)
        self._outbox_bytes += len(frame)
        if not self._lock.locked() and self._nursery is not None:
            self._nursery.start_soon(self._write_in_background)

    def _wake_flusher(self) -> None:
        lot = self._flusher
        if lot is not None:
            lot.unpark()
        elif self._nursery is not None:
            lot = self._flusher = trio.lowlevel.ParkingLot()
            self._nursery.start_soon(self._flush_loop, lot)

    async def _flush_loop(self, lot: trio.lowlevel.ParkingLot) -> None:
        """Writes gathered frames once the application's task yields
        (started the first time a frame is gathered; parked otherwise)."""
        while True:
            if self._outbox and not self._lock.locked():
                await self._write_in_background()
            await lot.park()

    async def _write_in_background(self) -> None:
        """Write what is queued. A failure is already recorded in the core
        (the application sees it at its next call), so it is only logged."""
        try:
            await self._write()
        except Exception:  # already recorded in the connection's state
            logger.debug("background write failed on %r", self, exc_info=True)

    # ------------------------------------------------------------- half-close

    async def send_eof(self) -> None:
        """Half-close: send END, after which this side sends nothing more;
        receiving goes on.

        On a client: END goes out after any message already being written,
        then the transport's own EOF where it has one.

        On a server, END may not come before the client's END (the server
        never ends first: that is what keeps the last answers from being
        lost). Before the client's END, this sends SHUTDOWN (as
        :meth:`request_shutdown`) and returns; END then goes out by itself
        once the application has received every client message up to the
        client's END (when :meth:`receive` reaches :exc:`EndOfMessages`), or
        when the connection is closed, whichever comes first. A call that
        blocked until the client's END could deadlock a handler that reads in
        the same task once its bounded receive buffer filled; this shape
        cannot, and the wait stays bounded by the grace period of the close.

        Raises:
            trio.ClosedResourceError: the connection was closed or aborted by
                this side.
            ConnectionReset, ConnectionTruncated, ProtocolError: the
                connection broke before END could be sent.

        Idempotent. A checkpoint. If cancelled while END is being written,
        the connection is aborted.
        """
        proto = self._proto
        if proto.closing:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("this connection was closed by this side")
        if proto.end_requested:
            await trio.lowlevel.checkpoint()
            return
        failure = proto.failure()
        if failure is not None:
            await trio.lowlevel.checkpoint()
            raise failure
        proto.request_end()
        if self.role is Role.SERVER and not proto.end_received:
            self._request_shutdown(None, self.grace_period)
        elif self._end_due():
            await self._write(self._due_end)
            return
        else:
            self._settle()  # a server's END waits for its messages to be read
        await trio.lowlevel.checkpoint()

    def request_shutdown(
        self, reason: str | None = None, *, grace_period: float | None = None
    ) -> None:
        """Server side: ask the client to finish (send SHUTDOWN).

        The client is told the grace period and the ``reason``; the handler
        keeps running and can keep sending and receiving. SHUTDOWN is queued
        behind any frame already being written. This is the first step of the
        server's graceful shutdown alone; the server's own shutdown calls it
        on every connection.

        Args:
            reason: a short human sentence, at most 255 bytes of UTF-8.
            grace_period: the seconds to announce (default this connection's
                :attr:`grace_period`). Announcing is all it does: the bound is
                enforced by whoever closes the connection.

        Raises:
            RuntimeError: called on a client.
            ValueError: ``reason`` is too long or ``grace_period`` negative.

        Synchronous, returns at once, idempotent (only the first call sends
        anything). Does nothing if the client already sent END or the
        connection has ended.
        """
        if self.role is not Role.SERVER:
            raise RuntimeError(
                "only a server can request shutdown; a client ends with send_eof()"
            )
        if self._proto.closing:
            return
        self._request_shutdown(
            reason, self.grace_period if grace_period is None else grace_period
        )

    def _request_shutdown(self, reason: str | None, grace: float) -> None:
        proto = self._proto
        if (
            proto.shutdown_sent
            or proto.end_received
            or proto.cause is not None
            or proto.our_state is not SideState.OPEN
            or self._released is not None
        ):
            return
        frame = proto.send_shutdown(grace, reason)
        self.shutdown_reason = reason
        self.shutdown_grace_period = grace
        self.shutdown_deadline = trio.current_time() + grace
        if self._shutdown_event is not None:
            self._shutdown_event.set()
        self._write_soon(frame)

    # ----------------------------------------------------------------- ending

    def abort(self) -> None:
        """End the connection at once, forcefully.

        On TCP the kernel sends RST (``SO_LINGER {1, 0}``, then close): the
        peer sees :exc:`ConnectionReset`. Pending data in both directions is
        discarded; buffered unread messages are counted as discarded.
        :attr:`termination` is set before this returns: ``ABORTED``, unless
        an earlier cause (the peer's reset or truncation) was recorded first,
        or both ENDs had already been exchanged with ours written out (then
        it stays ``CLEAN``: the transport is closed without a reset).

        Synchronous, never blocks, idempotent, and works inside a cancelled
        scope. Later calls on the connection raise
        :exc:`trio.ClosedResourceError`.
        """
        self._abort_for(timed_out=False, detail="aborted by this side")

    def _abort_for(self, *, timed_out: bool, detail: str) -> None:
        """The one abort: ``abort()``, an exception or a cancellation in the
        block, a close cut short. An abort at or after the deadline given to
        :meth:`set_deadline` is that deadline's time-out."""
        if trio.current_time() >= self._deadline:
            timed_out = True
            detail = self._deadline_reason
        proto = self._proto
        proto.begin_close(now=True)
        if self._released is not None and self._released.is_set():
            return
        if proto.decided and proto.cause is None:
            # Both ENDs were exchanged and ours is out: nothing can be lost
            # any more, so close without a reset where the stream allows it
            # (the report stays CLEAN, and the peer's experience agrees).
            self._release_now(reset=False)
        else:
            proto.abort(timed_out=timed_out, detail=detail)
            self._release_now(reset=True)

    def _release_now(self, *, reset: bool) -> None:
        """Release the transport without waiting: a reset, or a close that
        drops unread input (an asynchronous one for TLS, whose goodbye
        cannot wait: it is then sent by the block's end)."""
        transport = self._transport
        if reset or not transport.close_quietly():
            transport.abort()
        self._released_done()

    def _released_done(self) -> None:
        proto = self._proto
        if proto.closing and self._buffer:
            proto.discard(len(self._buffer))
            self._buffer.clear()
            self._buffered = 0
        self._outbox.clear()
        self._outbox_bytes = 0
        if proto.termination is None:
            proto.close()
        if self._released is None:
            self._released = trio.Event()
        self._released.set()
        self._changed.unpark_all()

    async def _release(self) -> None:
        """Release the transport (idempotent; a second caller waits for the
        first): drop readable input without blocking, so that it cannot
        cause a reset, and close."""
        if self._released is not None:
            await self._released.wait()
            return
        self._released = trio.Event()
        try:
            if not self._transport.close_now():
                await self._transport.aclose_now()
        finally:
            self._released_done()

    async def aclose(self) -> None:
        """Close now, in one step, without losing the peer's data to a reset.

        A client sends END first (its server then sees a clean end of the
        client's messages). A server sends END only if the client's END has
        arrived; before that it cannot (the server never ends first), so its
        client will see :exc:`ConnectionTruncated`, which is the truth. For a
        graceful end that waits for the peer, use :meth:`shutdown`.

        Then the transport is half-closed, and the peer's input is read and
        discarded for a bounded linger (the transport's ``linger``, default
        2 s) until its EOF, so that unread input cannot turn the close into a
        reset that would destroy data already sent. Messages discarded so
        are counted in :attr:`termination`.

        If another task is blocked in :meth:`send` (a peer that does not
        read), END cannot follow its half-written frame: the transport is
        closed at once, that task gets :exc:`trio.ClosedResourceError`, and
        the ending is ``TRUNCATED`` by this side.

        Trio's :class:`~trio.abc.AsyncResource` contract: idempotent; if
        cancelled, the transport is still released (without the linger) and
        the cancellation propagates. A checkpoint. Later calls on the
        connection raise :exc:`trio.ClosedResourceError`. Calls at once
        compose: a second ``aclose()`` (or :meth:`shutdown`) waits for the
        first and gives its outcome; an ``aclose()`` during a
        :meth:`shutdown` in another task turns it into this close.
        """
        proto = self._proto
        if proto.closing == "now" or self._released is not None:
            await trio.lowlevel.checkpoint()
            await self._wait_released()
            return
        # (A graceful close in progress in another task ends with this one.)
        proto.begin_close(now=True)
        self._discard_unread()
        try:
            # With another task blocked writing (a peer that does not read),
            # END cannot go after its half-written frame: the release below
            # wakes that task with ClosedResourceError.
            if (
                not self._lock.locked()
                and self._released is None
                and proto.cause is None
            ):
                with (
                    trio.move_on_after(self._transport.linger),
                    contextlib.suppress(
                        trio.BrokenResourceError, trio.ClosedResourceError
                    ),
                ):
                    async with self._lock:
                        if proto.may_send_end:
                            proto.request_end()
                            await self._drain(proto.send_end())
                        elif not proto.end_sent:  # no END allowed: FIN alone
                            await self._drain(b"")
                            await self._transport.send_eof()
                            proto.fin_written()
                    await self._wait_until(self._release_allowed)
        finally:
            await self._release()

    def _release_allowed(self) -> bool:
        return self._proto.may_release or self._released is not None

    async def _wait_released(self) -> None:
        """A second close: wait for the first one's release; if cancelled,
        release now (Trio's ``AsyncResource`` contract)."""
        try:
            await self._wait_until(self._is_released)
        except BaseException:
            if not self._is_released():
                self._release_now(reset=False)
            raise

    def _is_released(self) -> bool:
        return self._released is not None and self._released.is_set()

    def _discard_unread(self) -> None:
        """The application closes: what it left unread is discarded and
        counted."""
        if self._buffer:
            self._proto.discard(len(self._buffer))
            self._buffer.clear()
            self._buffered = 0

    async def shutdown(self, grace_period: float | None = None) -> Termination:
        """The graceful asymmetric close for this side's role.

        On a client: ``send_eof()`` (END), then read until the server's END
        (messages read here are discarded and counted), then close.

        On a server: SHUTDOWN, then discard and count the client's messages
        until its END, then END (carrying how many client messages the
        application received) and close. A server that wants to keep
        *answering* while the client finishes calls :meth:`request_shutdown`
        and keeps iterating instead.

        Args:
            grace_period: the bound, in seconds (default
                :attr:`grace_period`). When it expires the connection is
                aborted and ends ``TIMED_OUT``.

        Returns:
            The connection's :class:`~adieu.Termination`.

        Nothing sent by either side is lost without the side that lost it
        being told (through ``confirmed``, ``messages_discarded`` or a
        non-clean ``kind``). Idempotent: on a connection that has ended,
        returns its termination. If cancelled, the connection is aborted and
        the cancellation propagates. A checkpoint.
        """
        await trio.lowlevel.checkpoint()
        if not self._is_released():
            grace = self.grace_period if grace_period is None else grace_period
            try:
                await self._graceful(trio.current_time() + grace, reason=None)
            except BaseException as exc:
                self._abort_for(
                    timed_out=_is_deadline(exc),
                    detail=f"{type(exc).__name__} during a graceful shutdown",
                )
                raise
        termination = self._proto.termination
        assert termination is not None
        return termination

    async def _graceful(self, deadline: float, reason: str | None) -> None:
        """The graceful close shared by :meth:`shutdown` and the block's
        normal exit, bounded by ``deadline``. A second one, or one after
        ``aclose()``, waits for the first."""
        proto = self._proto
        if proto.closing is not None:
            await self._wait_released()
            return
        if self.role is Role.SERVER and not proto.end_received:
            self._request_shutdown(reason, max(0.0, deadline - trio.current_time()))
        proto.begin_close()
        proto.request_end()
        self._discard_unread()
        with trio.move_on_at(deadline) as scope:
            try:
                if self._end_due():
                    await self._write(self._due_end)
                await self._step()
                await self._wait_until(self._release_allowed)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The peer broke the connection meanwhile (the core records
                # it), or another task aborted it: all that is left is to
                # release the transport.
                pass
        if scope.cancelled_caught and not proto.decided:
            self._abort_for(
                timed_out=True,
                detail=f"the peer did not finish within the grace period "
                f"(deadline passed at {deadline:.3f})",
            )
            return
        await self._release()

    async def _exit(self, exc: BaseException | None) -> None:
        """How the ``async with`` block ends (see the class docstring)."""
        if exc is not None:
            self._abort_for(
                timed_out=_is_deadline(exc),
                detail=f"the block exited with {type(exc).__name__}",
            )
            return
        if self._is_released():
            return
        try:
            await self._graceful(
                trio.current_time() + self.grace_period, reason="the handler finished"
            )
        except BaseException as inner:
            self._abort_for(
                timed_out=_is_deadline(inner),
                detail=f"{type(inner).__name__} during the graceful close",
            )
            raise


@asynccontextmanager
async def running(
    conn: Connection,
    *,
    handshake: bool = False,
    started: Callable[[], None] | None = None,
) -> AsyncIterator[Connection]:
    """Run ``conn`` for the duration of the block: a nursery owned by the
    block for its helper tasks, the preamble sent (then ``started()`` is
    called), and the connection ended as :class:`Connection` documents when
    the block ends. With ``handshake``, the block starts once the peer's
    preamble has arrived or the connection has ended. An exception leaves
    the block as itself, not wrapped in an ``ExceptionGroup``."""
    escaping: BaseException | None = None
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                conn._nursery = nursery
                await conn._write(conn._proto.preamble)
                if started is not None:
                    started()
                conn._watch()
                if handshake:
                    await conn._wait_until(
                        lambda: conn.handshake_complete or not conn._can_read()
                    )
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
        if not conn._is_released():
            conn._abort_for(timed_out=False, detail="the connection's block ended")
        # Streams without a synchronous close are released here.
        await trio.aclose_forcefully(conn.transport)
    if unwrapped is not None:
        raise unwrapped


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


def _address(transport: TransportStream, method: str) -> Any:
    sock = transport.socket
    if sock is None:
        return None
    try:
        return getattr(sock, method)()
    except OSError:
        return None


def _is_deadline(exc: BaseException) -> bool:
    """Whether ``exc`` is a cancellation caused by a deadline (Trio >= 0.30
    says why a scope was cancelled; older Trio counts as not a deadline)."""
    return (
        isinstance(exc, trio.Cancelled) and getattr(exc, "source", None) == "deadline"
    )
