"""The Trio connection: drives the sans-I/O core over a transport.

One :class:`Connection` is one nursery-scoped object. Its background reader
task lives in a nursery owned by the ``async with`` block that opened the
connection (:func:`adieu.connect_tcp`, :func:`adieu.wrap_stream`, a server's
handler task), so it is noticed when a server asks to shut down even while
the application only sends, and it can never outlive the block.

Data paths, and why they are shaped so:

* **Receiving.** The reader feeds transport bytes to the core and appends
  messages to a bounded buffer (``receive_buffer_size`` bytes, default
  1 MiB; each message counts its length plus 64 bytes, so floods of tiny
  messages are bounded too). The reader checks the bound before each read of
  at most 64 KiB, so the buffer can pass it by what one read decodes to.
  When the buffer is full the reader stops reading, so the peer's
  sends block: backpressure, not memory growth. A consequence: a SHUTDOWN
  that arrives behind a full buffer is noticed only as the application reads.
* **Sending.** One queue and one writer role. The first task to send
  writes its frame itself, with no lock round trip. Tasks that send while a
  write is in progress queue their messages; the writing task sends them all
  in one ``send_all`` after its own, so concurrent senders share system
  calls and each message is written whole, never interleaved with another.
  Frames produced where no task can write (SHUTDOWN, a deferred END, replies
  gathered for a pipelining peer) join the same queue, for the connection's
  writer task; the transport's EOF always follows this side's END.
* **Ending.** Every way to end goes through the core, which holds the whole
  lifecycle: the connection tells it what happened (END written, EOF sent,
  closing, a reset) and asks it whether to release the transport and what a
  call raises. The core builds the report (:class:`~adieu.Termination`) the
  moment the ending is decided; the connection keeps no copy of that state.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Final, final

import trio

from ._errors import (
    ConnectionTruncated,
    EndOfMessages,
    MessageTooLarge,
    ProtocolError,
)
from ._frames import encode_preamble
from ._protocol import End, Message, Protocol, ShutdownRequest
from ._state import Role, SideState
from ._termination import Termination
from ._transport import TransportStream, is_reset

if TYPE_CHECKING:
    # (Only a type here: the options module reads this one's defaults.)
    from ._options import ConnectionOptions

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_RECEIVE_BUFFER_SIZE",
    "Connection",
]

logger = logging.getLogger("adieu")

#: Seconds a graceful close may take before the connection is aborted
#: (``TIMED_OUT``): the server's grace period, the client's close timeout.
#: Ten seconds: long enough for a client to finish what it is doing, short
#: enough for a restart. Under a supervisor, keep it below the supervisor's
#: kill timeout (systemd's TimeoutStopSec defaults to 90 s, but ``docker
#: stop`` waits only 10 s: lower the grace period or raise ``--time``).
DEFAULT_GRACE_PERIOD: Final = 10.0

#: Bytes of received messages held for the application before the reader
#: stops reading. 1 MiB: one maximum-size message, or many small ones.
DEFAULT_RECEIVE_BUFFER_SIZE: Final = 1 << 20

#: Each buffered message counts this many bytes on top of its length, so
#: that a flood of empty messages is bounded too. Roughly what CPython spends
#: on a small ``bytes`` object plus a deque slot.
_MESSAGE_OVERHEAD: Final = 64

#: Operations (sends written at once, receives of a message already
#: buffered) allowed between two schedule points. Trio's own streams yield on
#: every call; yielding only when an operation has to wait, and otherwise
#: every 16 calls, saves a task switch per message while keeping a busy
#: connection from starving the other tasks. 16 is arbitrary.
_YIELD_EVERY: Final = 16

#: Bytes of frames gathered for one write while the application answers
#: messages that were already buffered (see ``send``). 64 KiB: a few
#: segments' worth, so a write stays cheap and latency stays bounded.
_GATHER_LIMIT: Final = 65536

#: Bytes asked of the transport per read: arbitrary, large enough that a
#: burst of small frames costs one system call.
_READ_SIZE: Final = 65536


class _Pending:
    """A frame waiting for the writer: a message (encoded when written, so
    that a message withdrawn by cancellation is never counted) or a control
    frame already encoded."""

    __slots__ = ("data", "done", "error", "frame", "taken")

    def __init__(
        self, data: bytes | bytearray | memoryview | None, frame: bytes | None
    ) -> None:
        self.data = data
        self.frame = frame
        self.taken = False
        self.done: trio.Event | None = None
        self.error: BaseException | None = None


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
      :func:`trio.move_on_after`);
    * on a connection that has already ended: nothing.

    Attributes:
        role: :class:`~adieu.Role.CLIENT` or :class:`~adieu.Role.SERVER`.
        grace_period: seconds a graceful close may take before this side
            aborts (``TIMED_OUT``); the default for :meth:`shutdown`.
        options: the :class:`~adieu.ConnectionOptions` this connection runs
            with (the same object for every connection of a server).
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
        "_end_pending",
        "_local_address",
        "_nursery",
        "_proto",
        "_queue",
        "_queued",
        "_reader_done",
        "_reader_parked",
        "_released",
        "_releasing",
        "_remote_address",
        "_shutdown_event",
        "_transport",
        "_unyielded",
        "_writer_lot",
        "_writing",
        "grace_period",
        "options",
        "receive_buffer_size",
        "role",
        "shutdown_deadline",
    )

    def __init__(
        self, transport: TransportStream, role: Role | str, options: ConnectionOptions
    ) -> None:
        # The options were checked when they were made: not again here.
        self.role = _role(role)
        self.options = options
        self.grace_period = options.grace_period
        self.receive_buffer_size = options.receive_buffer_size
        self._transport = transport
        self._proto = Protocol(
            self.role,
            max_message_size=options.max_message_size,
            half_close=transport.supports_half_close,
        )
        self._nursery: trio.Nursery | None = None
        self._reader_done = False  # the reader task has returned
        # receive side
        # Made on the first message: an idle connection does without.
        self._buffer: deque[bytes] | None = None
        self._buffered = 0
        self._reader_parked: trio.lowlevel.ParkingLot | None = None
        # Every waiter parks here: receivers (woken by a message), and the
        # close, handshake and release waits (woken by END, EOF, failure,
        # release). One lot per connection instead of several; each waiter
        # re-checks its own condition when woken.
        self._changed = trio.lowlevel.ParkingLot()
        # send side
        self._writing = False
        self._unyielded = 0
        self._queue: list[bytes | _Pending] = []
        self._queued = 0  # bytes of frames gathered for the writer task
        self._writer_lot: trio.lowlevel.ParkingLot | None = None
        self._end_pending = False
        # ending
        self._released = False  # the transport has been released
        self._releasing = False
        self._shutdown_event: trio.Event | None = None
        self.shutdown_deadline: float | None = None
        # Set by a server: when its cancel scope's deadline passes, an abort
        # is a time-out, whatever Trio version says why it cancelled.
        self._deadline = math.inf
        self._remote_address = _address(transport, "getpeername")
        self._local_address = _address(transport, "getsockname")
        self._deadline_reason = "the grace period expired"

    def __repr__(self) -> str:
        termination = self._proto.termination
        state = termination.kind.name if termination else "open"
        return f"<adieu.Connection {self.role.value} {self.remote_address!r} {state}>"

    # -------------------------------------------------------------- properties

    @property
    def termination(self) -> Termination | None:
        """How the connection ended (:class:`~adieu.Termination`), or
        ``None`` until the ending is decided. It is decided, and this set,
        at once inside the block: when both ENDs are exchanged, this side's
        END is written, and both EOFs are through (the ENDs alone over a
        transport without half-close such as TLS); when the peer breaks the
        connection or this side aborts; or when the transport is released."""
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
        arrives. On a server, set when this side asked
        (:meth:`request_shutdown`, or the server's own shutdown), so a
        handler can watch it and wind down. (Made on first use: an idle
        connection keeps no Event.)"""
        event = self._shutdown_event
        if event is None:
            event = self._shutdown_event = trio.Event()
            if self._proto.shutdown_request is not None:
                event.set()
        return event

    @property
    def shutdown_reason(self) -> str | None:
        """The reason carried by SHUTDOWN (received on a client, sent on a
        server), or ``None``."""
        request = self._proto.shutdown_request
        return None if request is None else request.reason

    @property
    def shutdown_grace_period(self) -> float | None:
        """On a client, the seconds the server granted in its SHUTDOWN; on a
        server, the seconds it granted; else ``None``."""
        request = self._proto.shutdown_request
        return None if request is None else request.grace_period

    def _set_shutdown_requested(self) -> None:
        if self._shutdown_event is not None:
            self._shutdown_event.set()

    @property
    def handshake_complete(self) -> bool:
        """``True`` once the peer's preamble has arrived."""
        return self._proto.handshake_complete

    @property
    def end_received(self) -> bool:
        """``True`` once the peer's END has arrived (the application may
        still have messages to read before it)."""
        return self._proto.end_received

    # ------------------------------------------------------------ lifecycle
    #
    # The seam: the methods below without a leading underscore and marked
    # ``:meta private:`` are what adieu's openers, server and adieu.testing
    # call to drive a connection; nothing outside this module touches the
    # connection's private attributes. They are internal: not in the
    # reference, not part of the compatibility policy.

    async def start(self, nursery: trio.Nursery) -> None:
        """Send the preamble and start the reader in ``nursery`` (the
        nursery of the block that runs the connection).

        A checkpoint. Raises what writing the preamble raises
        (:exc:`trio.BrokenResourceError`, :exc:`trio.ClosedResourceError`);
        the caller then ends the block with :meth:`end_block`.

        :meta private:
        """
        self._nursery = nursery
        nursery.start_soon(self._reader, name=f"adieu {self.role.value} reader")
        if self._proto.our_state is SideState.PREAMBLE:
            await self._write_through(_Pending(None, self._proto.preamble()))
        elif self._queue:  # what greet_now() left: the rest of the preamble
            await self._write_through(_Pending(None, b""))

    def greet_now(self) -> None:
        """Server: send the preamble now, from synchronous code, before the
        connection's task runs, so that a SHUTDOWN can follow it at once
        (a server's shutdown telling connections it took from the listen
        backlog). Does nothing where the transport takes no bytes without a
        task (TLS, memory streams) or the preamble was already produced;
        what the kernel does not take at once is written by :meth:`start`.
        A transport that broke is recorded as such. Synchronous; never
        raises; idempotent.

        :meta private:
        """
        if self._proto.our_state is not SideState.PREAMBLE or self._released:
            return
        preamble = encode_preamble(self.role)
        sent = self._send_at_once(preamble)
        if sent:
            self._proto.preamble()
            if sent < len(preamble):
                self._queue.append(preamble[sent:])

    async def _wait_reader_done(self) -> None:
        while not self._reader_done:
            await self._changed.park()

    async def wait_handshake(self) -> None:
        """Wait until the peer's preamble has arrived or the connection
        ended (then :attr:`handshake_complete` and :attr:`termination` say
        which). Not bounded: the caller's cancel scope bounds it. Raises
        nothing of its own; cancel-safe (it only waits); a checkpoint only
        when it waits.

        :meta private:
        """
        while not (
            self._proto.handshake_complete
            or self._proto.broken
            or self._reader_done
            or self._released
        ):
            await self._changed.park()

    async def _reader(self) -> None:
        """Background task: transport bytes -> core -> buffer, until EOF,
        failure or release."""
        transport = self._transport
        proto = self._proto
        handshaken = False
        reads = 0
        try:
            while True:
                if self._released:
                    return
                if self._buffered >= self.receive_buffer_size and not proto.closing:
                    if self._reader_parked is None:
                        self._reader_parked = trio.lowlevel.ParkingLot()
                    await self._reader_parked.park()
                    continue
                try:
                    # Take what is already there without a schedule
                    # point (one every _YIELD_EVERY reads, so that a
                    # flood cannot starve other tasks); wait otherwise.
                    data: bytes | bytearray | None
                    data = transport.try_receive(_READ_SIZE)
                    if data is None:
                        reads = 0
                        data = await transport.receive_some(_READ_SIZE)
                    else:
                        reads += 1
                        if reads >= _YIELD_EVERY:
                            reads = 0
                            await trio.lowlevel.cancel_shielded_checkpoint()
                except trio.BrokenResourceError as exc:
                    if self._releasing:
                        return  # this side is closing the transport
                    self._fail_broken(exc)
                    # Once settled, nothing was lost: the transport just
                    # ended untidily (a TLS peer that closed without
                    # close_notify), and it is released without a reset.
                    await self._release()
                    return
                except trio.ClosedResourceError:
                    return  # released by this side
                if not data:
                    await self._on_eof()
                    return
                try:
                    events = proto.receive_data(data)
                except ProtocolError as exc:
                    self._deliver(exc.events)
                    self._fail_protocol(exc)
                    return
                if events:
                    self._deliver(events)
                    if proto.may_release:
                        await self._release()
                        return
                if not handshaken and proto.handshake_complete:
                    handshaken = True
                    self._changed.unpark_all()
        finally:
            self._reader_done = True
            self._changed.unpark_all()

    def _deliver(self, events: Any) -> None:
        buffer = self._buffer
        woke = False
        for event in events:
            if type(event) is Message:
                if buffer is None:
                    buffer = self._buffer = deque()
                buffer.append(event.data)
                self._buffered += len(event.data) + _MESSAGE_OVERHEAD
                woke = True
            elif type(event) is ShutdownRequest:
                self.shutdown_deadline = trio.current_time() + event.grace_period
                self._set_shutdown_requested()
            elif type(event) is End:
                woke = True
        if woke:
            self._changed.unpark_all()

    async def _on_eof(self) -> None:
        # The core decides what this EOF means: the peer's truncation, this
        # side's own (aclose() closed first and lingered for it), or the last
        # step of a clean ending; or nothing yet (our END is still queued:
        # _after_end() releases once it is written).
        with contextlib.suppress(ConnectionTruncated):  # recorded in the core
            self._proto.receive_eof()
        self._changed.unpark_all()
        if self._proto.may_release:
            await self._release()

    def _fail_broken(self, exc: trio.BrokenResourceError) -> None:
        """The transport broke under a read or a write: recorded in the core
        (which ignores it once the ending is settled) and, if it counts, the
        transport is reset and released."""
        if self._released:
            return
        cause = exc.__cause__ or exc
        if is_reset(exc):
            detail = f"the peer reset the connection ({cause})"
            self._proto.connection_reset(detail, error=cause)
        else:
            detail = f"the transport broke without the peer's END ({cause})"
            self._proto.transport_broken(detail, error=cause)
        if self._proto.broken:
            self._transport.abort()
            self._set_released()

    def _fail_protocol(self, exc: ProtocolError) -> None:
        logger.debug("protocol error on %r: %s", self, exc)
        self._transport.abort()
        self._set_released()

    def _set_released(self) -> None:
        self._discard_buffer_if_closed()
        self._proto.close()
        self._released = True
        self._changed.unpark_all()
        if self._reader_parked is not None:
            self._reader_parked.unpark_all()
        if self._writer_lot is not None:
            self._writer_lot.unpark_all()  # so that the writer task returns

    def _discard_buffer_if_closed(self) -> None:
        if self._proto.closing and self._buffer:
            self._proto.discard(len(self._buffer))
            self._buffer.clear()
            self._buffered = 0

    async def _release(self) -> None:
        """Release the transport (idempotent): drop readable input without
        blocking (so it cannot cause a reset) and close."""
        if self._releasing or self._released:
            await self._wait_released()
            return
        # Closing the transport wakes the reader, if it is reading, with
        # ClosedResourceError; it then stops (it checks _releasing/_released).
        self._releasing = True
        if self._transport.close_now():
            self._set_released()
            return
        try:
            await self._transport.aclose_now()
        finally:
            if not self._released:
                self._set_released()

    async def _wait_released(self) -> None:
        """Wait until the transport has been released (by the task that
        is releasing or closing it). Not a checkpoint if it was already."""
        while not self._released:
            await self._changed.park()

    # -------------------------------------------------------------- sending
    #
    # One write path. Every frame (messages, SHUTDOWN, END, what the kernel
    # did not take of the preamble) joins one queue, ``_queue``, and is
    # written in order by whichever task holds the writer role
    # (``_writing``): a sender, or the connection's writer task, started the
    # first time it is needed and parked while there is nothing to write.
    # The transport's EOF follows this side's END (``_flush``). An entry is
    # either an encoded frame nobody waits for, or a waiting task's
    # ``_Pending``; such entries exist only while a task holds the role.

    def _send_error(self) -> BaseException:
        """The exception a send raises when this connection cannot send."""
        if self._proto.closing:
            return trio.ClosedResourceError("this connection was closed by this side")
        failure = self._proto.failure()
        if failure is not None:
            return failure
        if self._end_pending or self._proto.end_sent:
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
        if self._end_pending or not self._proto.can_send:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise self._send_error()
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if size > self._proto.max_message_size:
            await trio.lowlevel.checkpoint_if_cancelled()
            raise MessageTooLarge(
                f"message of {size} bytes; the limit is {self._proto.max_message_size}",
                size=size,
                limit=self._proto.max_message_size,
            )
        if type(data) is not bytes:
            data = bytes(data)
        if self._writing:
            await self._write_through(_Pending(data, None))
            return
        await trio.lowlevel.checkpoint_if_cancelled()
        frame = self._proto.send_message(data)
        if self._buffer and self._queued < _GATHER_LIMIT:
            # More received messages are already waiting, so the application
            # is about to come back: gather this frame with the next ones
            # into one write. The writer task writes them as soon as this
            # task next waits or yields, so a reply is never held back
            # behind unrelated work.
            self._queue.append(frame)
            self._queued += len(frame)
            self._wake_writer()
            return
        self._writing = True
        try:
            if self._queue:  # frames gathered before this one go first
                self._queue.append(frame)
                await self._flush()
            else:  # the common case: one frame, no queue round trip
                await self._write(frame)
                if self._queue:
                    await self._flush()
        finally:
            self._writing = False

    def _post(self, frame: bytes) -> None:
        """Send an encoded frame from synchronous code: if nothing else is
        queued or being written, the kernel is offered it now, without a
        task (this is what keeps a server's shutdown of thousands of
        connections cheap); what it does not take is queued for the writer
        task. END is never written at once: the transport's EOF must follow
        it (``_flush``)."""
        if not (
            self._writing or self._queue or self._proto.end_sent or self._proto.broken
        ):
            sent = self._send_at_once(frame)
            if sent is None or sent == len(frame):
                return
            frame = frame[sent:]
        self._queue.append(frame)
        self._wake_writer()

    def _wake_writer(self) -> None:
        """Have the writer task write the queue as soon as the running
        task waits or yields (starting it the first time it is needed)."""
        if self._writer_lot is not None:
            self._writer_lot.unpark()
        elif self._nursery is not None:
            self._writer_lot = trio.lowlevel.ParkingLot()
            self._nursery.start_soon(self._writer_task, self._writer_lot)

    async def _writer_task(self, lot: trio.lowlevel.ParkingLot) -> None:
        """Writes what was queued for it when no other task holds the
        writer role; parked otherwise, and gone once the transport is
        released. A failure is already recorded in the connection's state
        (the application sees it at its next call), so it is only logged."""
        while not self._released:
            if self._queue and not self._writing:
                self._writing = True
                try:
                    await self._flush()
                except Exception:  # already recorded in the connection's state
                    logger.debug("background write failed on %r", self, exc_info=True)
                finally:
                    self._writing = False
            else:
                await lot.park()

    async def _write_through(self, item: _Pending) -> None:
        """Write ``item`` after everything queued before it; return once it
        has been handed to the transport. Raises what the write raised, or
        the connection's error if it could not be written. If cancelled
        before the write took it, ``item`` is withdrawn unwritten; if
        cancelled while it is being written, the connection is aborted."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._queue.append(item)
        if not self._writing:
            self._writing = True
            try:
                await self._flush()
            finally:
                self._writing = False
        else:
            done = item.done = trio.Event()
            try:
                await done.wait()
            except BaseException:
                if not item.taken:
                    self._queue.remove(item)
                    raise
                self._abort_for(
                    timed_out=False,
                    detail="cancelled while its message was being written",
                )
                raise
        if item.error is not None:
            raise item.error

    async def _flush(self) -> None:
        """Write everything queued, in order, several frames per write, then
        the transport's EOF if this side's END is out.

        Called only by the task holding the writer role. Raises what the
        write raised; waiting senders are then failed with the connection's
        error.
        """
        proto = self._proto
        while self._queue:
            batch, self._queue = self._queue, []
            self._queued = 0
            parts: list[bytes] = []
            for item in batch:
                if type(item) is bytes:
                    parts.append(item)
                    continue
                assert isinstance(item, _Pending)
                item.taken = True
                if item.frame is not None:
                    parts.append(item.frame)
                elif not proto.can_send:
                    item.error = self._send_error()
                else:
                    assert item.data is not None
                    parts.append(proto.send_message(item.data))
            try:
                if parts:
                    await self._write(parts[0] if len(parts) == 1 else b"".join(parts))
            except BaseException:
                self._fail_waiting_writers(batch)
                raise
            for item in batch:
                if type(item) is _Pending and item.done is not None:
                    item.done.set()
        if proto.end_sent and not proto.eof_out:
            await self._after_end()

    def _fail_waiting_writers(self, taken: Sequence[bytes | _Pending] = ()) -> None:
        """Wake every task waiting for its write with the connection's
        error (the ``taken`` batch was being written when the write failed),
        and drop what is queued."""
        for item in [*taken, *self._queue]:
            if type(item) is _Pending:
                item.taken = True
                if item.done is not None:
                    item.error = item.error or self._send_error()
                    item.done.set()
        self._queue.clear()
        self._queued = 0

    async def _write(self, data: bytes) -> None:
        try:
            sent = self._transport.try_send(data)
            if sent < len(data):
                await self._transport.send_all(
                    memoryview(data)[sent:] if sent else data
                )
                self._unyielded = 0
                return
        except trio.BrokenResourceError as exc:
            self._fail_broken(exc)
            raise self._send_error() from exc
        except trio.ClosedResourceError as exc:
            raise self._send_error() from exc
        except BaseException as exc:
            # Cancelled (or KeyboardInterrupt) in the middle of a frame.
            self._abort_for(
                timed_out=_is_deadline(exc),
                detail="cancelled in the middle of writing a frame",
            )
            raise
        # Written at once, without waiting: a schedule point only every
        # _YIELD_EVERY operations (it cannot raise: the frame is out).
        self._unyielded += 1
        if self._unyielded >= _YIELD_EVERY:
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()

    def _send_at_once(self, data: bytes) -> int | None:
        """Write what the kernel takes of ``data`` now, without a task;
        return how many bytes, or ``None`` if the transport is closed or
        broke (the failure is recorded)."""
        try:
            return self._transport.try_send(data)
        except trio.BrokenResourceError as exc:
            self._fail_broken(exc)
        except trio.ClosedResourceError:
            pass
        return None

    async def _write_end(self) -> None:
        """Write this side's END, or only the FIN where the core allows no
        END yet (a server closing before the client's END: the server never
        ends first), through the writer: after every frame queued before
        it. The FIN follows the END. Raises what :meth:`_write_through`
        raises."""
        proto = self._proto
        end = proto.send_end() if proto.may_send_end else b""
        await self._write_through(_Pending(None, end))
        if not proto.eof_out:
            await self._after_end()

    async def _after_end(self) -> None:
        """After this side's END went out: half-close the transport, and
        release it if the peer is done too."""
        proto = self._proto
        if proto.end_sent:
            proto.end_written()
        proto.eof_sent()
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._transport.send_eof()
        if proto.may_release:
            await self._release()

    # ------------------------------------------------------------ receiving

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
        yielded = False
        if self._buffer:
            # A message is waiting: take it without a schedule point, but
            # yield every _YIELD_EVERY operations so that a busy connection
            # cannot starve the other tasks. (With nothing waiting, the wait
            # below is the cancel point.)
            await trio.lowlevel.checkpoint_if_cancelled()
            self._unyielded += 1
            if self._unyielded < _YIELD_EVERY:
                return self._take()
            self._unyielded = 0
            await trio.lowlevel.checkpoint()  # before taking: cancel-safe
            yielded = True
        while True:
            if self._buffer:
                return self._take()
            error = self._receive_error()
            if error is not None:
                if not yielded:
                    await trio.lowlevel.checkpoint()
                raise error
            # Nothing yet: the wait is the schedule point, and the message
            # is then taken without a second one.
            self._unyielded = 0
            await self._changed.park()
            yielded = True

    def _take(self) -> bytes:
        assert self._buffer is not None
        data = self._buffer.popleft()
        self._buffered -= len(data) + _MESSAGE_OVERHEAD
        if (
            self._reader_parked is not None
            and self._buffered < self.receive_buffer_size
        ):
            self._reader_parked.unpark()
        return data

    def _receive_error(self) -> BaseException | None:
        """What :meth:`receive` raises once the buffer is empty, if any."""
        proto = self._proto
        if proto.can_receive and not self._reader_done:
            return None  # the common case, asked before every wait: one call
        if proto.closing:
            return trio.ClosedResourceError("this connection was closed by this side")
        if proto.end_received:
            self._send_deferred_end()
            return EndOfMessages("the peer sent END: no more messages")
        failure = proto.failure()
        if failure is not None:
            return failure
        if self._reader_done:
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
        if self._proto.closing:
            await trio.lowlevel.checkpoint()
            raise trio.ClosedResourceError("this connection was closed by this side")
        if self._end_pending or self._proto.end_sent:
            await trio.lowlevel.checkpoint()
            return
        failure = self._proto.failure()
        if failure is not None:
            await trio.lowlevel.checkpoint()
            raise failure
        if self.role is Role.CLIENT:
            await self._write_end()
            return
        self._end_pending = True
        if not self._proto.end_received:
            self._request_shutdown(None, self.grace_period)
        elif not self._buffer:
            self._send_deferred_end()
        await trio.lowlevel.checkpoint()

    def _send_deferred_end(self) -> None:
        """Server: the application has read everything up to the client's
        END and asked for its own END; queue it."""
        if self._end_pending and self._proto.may_send_end:
            self._end_pending = False
            self._post(self._proto.send_end())

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
            or self._released
        ):
            return
        frame = proto.send_shutdown(grace, reason)
        self.shutdown_deadline = trio.current_time() + grace
        self._set_shutdown_requested()
        self._post(frame)

    # ---------------------------------------------------------------- ending

    def abort(self) -> None:
        """End the connection at once, forcefully.

        On TCP the kernel sends RST (``SO_LINGER {1, 0}``, then close): the
        peer sees :exc:`ConnectionReset`. Pending data in both directions is
        discarded; buffered unread messages are counted as discarded.
        :attr:`termination` is set before this returns: ``ABORTED``, unless
        an earlier cause (the peer's reset or truncation) was recorded first,
        or both ENDs had already been exchanged (then it stays ``CLEAN``).

        Synchronous, never blocks, idempotent, and works inside a cancelled
        scope. Later calls on the connection raise
        :exc:`trio.ClosedResourceError`.
        """
        self._abort_for(timed_out=False, detail="aborted by this side")

    def set_deadline(self, deadline: float, reason: str) -> None:
        """From ``deadline`` on (in :func:`trio.current_time`), an abort of
        this connection, by any path, ends it ``TIMED_OUT`` with ``reason``
        as its detail: the one way a server says "this abort was the
        handshake timeout or the end of the grace period", whatever Trio
        version says why a scope was cancelled. ``math.inf``: no deadline.
        Replaces the previous deadline. Synchronous; never raises.

        :meta private:
        """
        self._deadline = deadline
        self._deadline_reason = reason

    def abort_with(self, detail: str) -> None:
        """:meth:`abort`, with ``detail`` as the termination's detail (or
        ``TIMED_OUT`` with the deadline's reason if the deadline of
        :meth:`set_deadline` has passed). Synchronous, never raises,
        idempotent.

        :meta private:
        """
        self._abort_for(timed_out=False, detail=detail)

    def _abort_for(self, *, timed_out: bool, detail: str) -> None:
        if trio.current_time() >= self._deadline:
            timed_out = True
            detail = self._deadline_reason
        proto = self._proto
        # Unread messages are counted before the abort decides the ending.
        proto.begin_close(now=True)
        self._discard_buffer_if_closed()
        if not self._released:
            # Once settled (both ENDs exchanged, ours written) nothing can be
            # lost any more: the core decides CLEAN and the transport closes
            # without a reset where it can, so the peer's experience agrees.
            # An END produced but not yet written counts for nothing: the
            # reset destroys it, and the core records the abort.
            proto.abort(timed_out=timed_out, detail=detail)
            if not (proto.settled and self._transport.close_quietly()):
                self._transport.abort()
            self._set_released()
        self._fail_waiting_writers()

    def reset_transport(self) -> int | None:
        """The wire half of an abort, done ahead of the rest by a server's
        cut so that every reset leaves in one tight loop: reset the transport
        now unless the abort would close it quietly. The termination is
        recorded by the abort that follows (it finds the transport already
        reset: :meth:`TransportStream.abort` is idempotent). Synchronous;
        never raises.

        Returns:
            As :meth:`TransportStream.abort_untold`: a descriptor the caller
            must pass to :func:`trio.lowlevel.notify_closing` before its
            next checkpoint, or ``None``.

        :meta private:
        """
        if not self._released and not self._proto.settled:
            return self._transport.abort_untold()
        return None

    def _begin_close(self) -> None:
        """No more application sends or receives; messages that arrive from
        now on are discarded and counted (by the core)."""
        self._proto.begin_close()
        self._end_pending = False
        self._discard_buffer_if_closed()
        if self._reader_parked is not None:
            self._reader_parked.unpark_all()
        self._changed.unpark_all()

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

        A task blocked in :meth:`send` (a peer that does not read) keeps the
        writer until the linger ends; then the transport is released and
        that task wakes with :exc:`trio.ClosedResourceError`.

        Trio's :class:`~trio.abc.AsyncResource` contract: idempotent; if
        cancelled, the transport is still released (without the linger) and
        the cancellation propagates. A checkpoint. Later calls on the
        connection raise :exc:`trio.ClosedResourceError`. Closes compose: a
        call made while another ``aclose()`` or :meth:`shutdown` is in
        progress waits for that one and shares its outcome, instead of
        cutting it short.
        """
        proto = self._proto
        if proto.closing:
            await self._join_close()
            return
        self._begin_close()
        proto.begin_close(now=True)
        try:
            with trio.move_on_after(self._transport.linger):
                if not proto.broken and not self._released:
                    await self._write_end()
                    await self._wait_reader_done()
        finally:
            await self._release()

    async def _join_close(self) -> None:
        """Another call is closing: wait for its outcome, which is this
        call's too (closes compose). A checkpoint; if cancelled, the
        transport is released at once and the cancellation propagates."""
        try:
            await trio.lowlevel.checkpoint()
            await self._wait_released()
        finally:
            await self._release()

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
        returns its termination; while another ``shutdown()`` or
        :meth:`aclose` is in progress, waits for it and returns the same
        termination. If cancelled, the connection is aborted and the
        cancellation propagates. A checkpoint.
        """
        await trio.lowlevel.checkpoint()
        if not self._released:
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
        normal exit, bounded by ``deadline``."""
        if self._proto.closing:
            await self._join_close()
            return
        if self.role is Role.SERVER and not self._proto.end_received:
            self._request_shutdown(reason, max(0.0, deadline - trio.current_time()))
        self._begin_close()
        # A broken or aborted connection meanwhile (the peer broke it, and
        # the termination records it, or another task aborted it) leaves
        # only the transport to release.
        with (
            trio.move_on_at(deadline) as scope,
            contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
        ):
            await self._exchange_ends()
        if (
            scope.cancelled_caught
            and not self._proto.broken
            and not self._released
            and not self._proto.settled
        ):
            self._abort_for(
                timed_out=True,
                detail=f"the peer did not finish within the grace period "
                f"(deadline passed at {deadline:.3f})",
            )
            return
        await self._release()

    async def _exchange_ends(self) -> None:
        """The graceful close's exchange: a client's END, then the peer's;
        a server's END only after the client's (the server never ends
        first), then the client's EOF, so that the close cannot race a late
        byte into a reset."""
        proto = self._proto
        if self.role is Role.CLIENT and proto.may_send_end:
            await self._write_end()
        while not (proto.end_received or proto.broken or self._reader_done):
            await self._changed.park()
        if self.role is Role.SERVER and proto.may_send_end:
            await self._write_end()
            await self._wait_reader_done()

    async def end_block(self, exc: BaseException | None) -> None:
        """End the connection as its ``async with`` block ends (see the
        class docstring): ``exc`` is the exception leaving the block, or
        ``None`` if it ended normally. With an exception, aborts
        (synchronously; ``TIMED_OUT`` if ``exc`` is a deadline's
        cancellation). Normally, the graceful close bounded by
        :attr:`grace_period`; if that is interrupted, aborts and re-raises.
        Idempotent: on an ended connection, does nothing.

        :meta private:
        """
        if exc is not None:
            self._abort_for(
                timed_out=_is_deadline(exc),
                detail=f"the block exited with {type(exc).__name__}",
            )
            return
        if self._released:
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
