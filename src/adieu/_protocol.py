"""The sans-I/O protocol core: one connection's state, for one role.

No Trio here, no sockets, no clocks: bytes and application calls go in, bytes
and events come out. :class:`Protocol` applies the rules of
:mod:`adieu._state` to frames encoded and decoded by :mod:`adieu._frames`,
counts messages, and builds the :class:`~adieu.Termination` report. Because it
does no I/O it can be tested exhaustively (``tests/model`` explores every
interleaving of two of them).

How an I/O layer drives it::

    proto = Protocol(Role.CLIENT)
    transport.write(proto.preamble())
    transport.write(proto.send_message(b"hello"))
    for event in proto.receive_data(transport.read()):
        ...                                  # Message, ShutdownRequest, End
    transport.write(proto.send_end())
    proto.end_written()                      # END is on the wire, whole
    transport.send_eof(); proto.eof_sent()   # where the transport half-closes
    proto.receive_eof()                      # when the transport reports EOF
    if proto.may_release:                    # the ending is decided
        transport.close()
        termination = proto.close()          # built already: the same report

The core holds the connection's whole lifecycle: both sides' frames (the
table in :mod:`adieu._state`), whether this side's END is written and its EOF
sent, the peer's EOF, whether this side's application is closing, and the
first failure. The I/O layer reports what happened and asks what follows:
whether it may release the transport (:attr:`Protocol.may_release`), what
error a call raises now (:meth:`Protocol.failure`), how the connection ended
(:attr:`Protocol.termination`, built in one place the moment the ending is
decided). It keeps no copy of any of it.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from collections.abc import Set

from ._errors import (
    ConnectionReset,
    ConnectionTruncated,
    LocalProtocolError,
    MessageTooLarge,
    ProtocolError,
)
from ._frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    END,
    MAX_MESSAGE_SIZE_LIMIT,
    MESSAGE,
    SHUTDOWN,
    FrameDecoder,
    decode_end,
    decode_shutdown,
    encode_end,
    encode_preamble,
    encode_shutdown,
)
from ._state import GUARDS, TRANSITIONS, FrameKind, Role, SideState
from ._termination import Initiator, Termination, TerminationKind

__all__ = ["End", "Event", "Message", "Protocol", "ShutdownRequest"]


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    """A message from the peer.

    Attributes:
        data: the message's bytes (possibly empty).
    """

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class End:
    """The peer's END: it will send no more messages.

    Attributes:
        acknowledged: on a server's END, how many of the client's messages
            the server's application received; ``None`` on a client's END.
    """

    acknowledged: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class ShutdownRequest:
    """The server's SHUTDOWN: "I am shutting down, please finish".

    Attributes:
        grace_period: seconds the server grants before it aborts
            (``math.inf`` when it set no bound).
        reason: the server's short reason, or ``None``.
    """

    grace_period: float
    reason: str | None


Event = Message | End | ShutdownRequest

_MESSAGE_HEADER = struct.Struct(">BI").pack  # the hot path's header encoder

_FRAME_KINDS = {
    MESSAGE: FrameKind.MESSAGE,
    END: FrameKind.END,
    SHUTDOWN: FrameKind.SHUTDOWN,
}


def _states_allowing(role: Role, kind: FrameKind) -> Set[SideState]:
    return frozenset(s for s, t in TRANSITIONS[role].items() if kind in t)


class _Closing(enum.Enum):
    """How far this side's application has gone in closing (see
    :meth:`Protocol.begin_close`). Only ever compared by identity: a close in
    one step overrides a graceful one by an explicit rule, not an order."""

    NO = enum.auto()
    GRACEFULLY = enum.auto()
    NOW = enum.auto()


_CLOSED_EARLY = "this side closed before the terminal handshake completed"

# The states in which each role may send a message, read off the table once so
# that the hot path is a set lookup (the table stays the only source).
_MESSAGE_STATES = {role: _states_allowing(role, FrameKind.MESSAGE) for role in Role}


class Protocol:
    """The state of one adieu connection as seen from one side.

    Args:
        role: this side's role; the peer must have the other.
        max_message_size: the largest message, in bytes, that this side sends
            or accepts (inclusive). Default 1 MiB. Checked on the incoming
            side from the frame header, before the payload is buffered.
        half_close: whether the transport carries an EOF after each side's
            END (TCP, Unix sockets, memory streams; the default). ``False``
            over a transport without one (TLS): END alone ends a side, so the
            ending is decided at the two ENDs without waiting for EOFs.

    Raises:
        ValueError: ``max_message_size`` is negative or over 2**32 - 1.

    Nothing here blocks or does I/O; every method returns at once.
    """

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        half_close: bool = True,
    ) -> None:
        if not 0 <= max_message_size <= MAX_MESSAGE_SIZE_LIMIT:
            raise ValueError(
                f"max_message_size must be between 0 and {MAX_MESSAGE_SIZE_LIMIT}"
            )
        self.role = role
        # Read on every state check (end_received, handshake_complete, ...):
        # kept rather than derived from the role each time.
        self._peer = role.peer
        self.max_message_size = max_message_size
        self._states = {
            Role.CLIENT: SideState.PREAMBLE,
            Role.SERVER: SideState.PREAMBLE,
        }
        self._decoder = FrameDecoder(role.peer, max_message_size)
        # Whether this side may send a message now: set from the table by
        # _advance, and cleared for good by _decide once the ending is decided,
        # which every recorded cause decides at once. The one flag the hot
        # path (send_message) reads.
        self._sending = False
        self._their_sending = False
        self._sent = 0
        self._received = 0
        self._discarded = 0
        self._acknowledged: int | None = None
        self._handshake_initiator: Initiator | None = None
        self._eof = False
        self._half_close = half_close
        self._end_out = False
        self._eof_out = False
        self._closing = _Closing.NO
        self._cause: tuple[TerminationKind, Initiator, str] | None = None
        self._error: BaseException | None = None
        self._termination: Termination | None = None
        #: The connection's SHUTDOWN request: on a client, the server's once
        #: it arrived; on a server, the one it sent (with the grace period
        #: and reason as given); else ``None``.
        self.shutdown_request: ShutdownRequest | None = None
        #: ``True`` on a server once it has sent SHUTDOWN.
        self.shutdown_sent = False

    # ------------------------------------------------------------------ state

    @property
    def our_state(self) -> SideState:
        """This side's state."""
        return self._states[self.role]

    @property
    def their_state(self) -> SideState:
        """The peer's state, as far as its frames have arrived."""
        return self._states[self._peer]

    @property
    def handshake_complete(self) -> bool:
        """``True`` once the peer's preamble has arrived and was valid."""
        return self._states[self._peer] is not SideState.PREAMBLE

    @property
    def can_send(self) -> bool:
        """``True`` while this side may send messages: not before its
        preamble, after its END, once the connection ended, or once this
        side's application is closing (:meth:`begin_close`)."""
        return self._sending and self._closing is _Closing.NO

    @property
    def can_receive(self) -> bool:
        """``True`` while messages may still arrive for this side's
        application: the peer's preamble came and it has not sent END,
        nothing ended the connection, and this side is not closing."""
        return (
            self._their_sending and self._cause is None and self._closing is _Closing.NO
        )

    @property
    def end_sent(self) -> bool:
        """``True`` once this side has sent END."""
        return self._states[self.role] is SideState.DONE

    @property
    def end_received(self) -> bool:
        """``True`` once the peer's END has arrived."""
        return self._states[self._peer] is SideState.DONE

    @property
    def may_send_end(self) -> bool:
        """``True`` if :meth:`send_end` would succeed now. On a server this is
        only after the client's END."""
        return self._cause is None and self._allowed(self.role, FrameKind.END)

    @property
    def finished(self) -> bool:
        """``True`` when both ENDs have been exchanged: the terminal
        handshake is complete and the transport can be released cleanly."""
        states = self._states
        return (
            states[self.role] is SideState.DONE and states[self._peer] is SideState.DONE
        )

    @property
    def cause(self) -> TerminationKind | None:
        """The first terminal cause recorded (a reset, a truncation, a
        protocol error, an abort), or ``None``."""
        return None if self._cause is None else self._cause[0]

    @property
    def eof_received(self) -> bool:
        """``True`` once :meth:`receive_eof` was called."""
        return self._eof

    @property
    def end_out(self) -> bool:
        """``True`` once :meth:`end_written` was called: this side's END is
        on the wire, whole."""
        return self._end_out

    @property
    def eof_out(self) -> bool:
        """``True`` once :meth:`eof_sent` was called: this side's transport
        EOF (its FIN) has been sent."""
        return self._eof_out

    @property
    def closing(self) -> bool:
        """``True`` once :meth:`begin_close` was called: this side's
        application takes no more messages (those that arrive are discarded
        and counted here)."""
        return self._closing is not _Closing.NO

    @property
    def broken(self) -> bool:
        """``True`` if the peer or the transport ended the connection badly
        (a reset, a truncation, a protocol error): :meth:`failure` has an
        error to raise."""
        return self._cause is not None and self._cause[1] is Initiator.PEER

    @property
    def settled(self) -> bool:
        """``True`` once both ENDs were exchanged and ours written
        (:meth:`end_written`): nothing either side sent can be lost any more,
        so a later abort, reset or broken transport decides the ending
        ``CLEAN`` instead of counting (an abort may close without a reset)."""
        return self._end_out and self._states[self._peer] is SideState.DONE

    @property
    def decided(self) -> bool:
        """``True`` once the ending is decided and :attr:`termination` is
        built: a terminal cause was recorded; or both ENDs were exchanged,
        ours was written (:meth:`end_written`), and, where the transport
        half-closes, our EOF was sent (:meth:`eof_sent`) and the peer's
        arrived (:meth:`receive_eof`); or :meth:`close` was called. Nothing
        recorded afterwards changes the report."""
        return self._termination is not None

    @property
    def may_release(self) -> bool:
        """``True`` when the I/O layer should release the transport now: the
        ending is decided (:attr:`decided`). Before that, releasing would
        end the connection TRUNCATED by this side (what :meth:`close`
        records), unless an abort comes first."""
        return self._termination is not None

    @property
    def messages_sent(self) -> int:
        """Messages encoded by :meth:`send_message`."""
        return self._sent

    @property
    def messages_received(self) -> int:
        """Messages that arrived whole."""
        return self._received

    @property
    def messages_discarded(self) -> int:
        """Messages reported to :meth:`discard`."""
        return self._discarded

    @property
    def termination(self) -> Termination | None:
        """How the connection ended, built the moment the ending was decided
        (see :attr:`decided`), or ``None`` before."""
        return self._termination

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held by the decoder."""
        return self._decoder.buffered

    def _allowed(self, role: Role, kind: FrameKind) -> bool:
        if kind not in TRANSITIONS[role][self._states[role]]:
            return False
        guard = GUARDS.get((role, kind))
        return guard is None or self._states[guard[0]] is guard[1]

    def _advance(self, role: Role, kind: FrameKind) -> None:
        """Apply one transition of ``role``'s side; the caller checked it.
        Messages never come here: they change no state."""
        state = TRANSITIONS[role][self._states[role]][kind]
        self._states[role] = state
        sending = state in _MESSAGE_STATES[role]
        if role is self.role:
            self._sending = sending
            who = Initiator.LOCAL
        else:
            self._their_sending = sending
            who = Initiator.PEER
        if kind is not FrameKind.PREAMBLE and self._handshake_initiator is None:
            # The first SHUTDOWN or END of either side begins the terminal
            # handshake. A server's END never does: the client's came first.
            self._handshake_initiator = who

    def _check_local(self, kind: FrameKind) -> None:
        if self._cause is not None:
            raise LocalProtocolError(
                f"cannot send {kind.value}: the connection has ended "
                f"({self._cause[0].name}: {self._cause[2]})"
            )
        if self._allowed(self.role, kind):
            return
        state = self.our_state
        if kind in TRANSITIONS[self.role][state]:
            other, need = GUARDS[(self.role, kind)]
            raise LocalProtocolError(
                f"a {self.role.value} may send {kind.value} only after the "
                f"{other.value} has reached {need.name} "
                "(the server never ends first: ask with SHUTDOWN and wait)"
            )
        if state is SideState.DONE:
            raise LocalProtocolError(f"cannot send {kind.value} after END")
        raise LocalProtocolError(
            f"a {self.role.value} in state {state.name} may not send {kind.value}"
        )

    def _remote_error(self, kind: FrameKind) -> ProtocolError:
        peer = self._peer
        state = self._states[peer]
        if kind in TRANSITIONS[peer][state]:
            other, need = GUARDS[(peer, kind)]
            text = (
                f"the {peer.value} sent {kind.value.upper()} before the "
                f"{other.value} reached {need.name}"
            )
        elif state is SideState.DONE:
            text = f"the {peer.value} sent {kind.value.upper()} after its END"
        else:
            text = (
                f"a {peer.value} may not send {kind.value.upper()} "
                f"in state {state.name}"
            )
        return ProtocolError(text)

    # --------------------------------------------------------------- outgoing

    def preamble(self) -> bytes:
        """The preamble: the first bytes this side must send.

        Raises:
            LocalProtocolError: the preamble was already produced.
        """
        self._check_local(FrameKind.PREAMBLE)
        self._advance(self.role, FrameKind.PREAMBLE)
        return encode_preamble(self.role)

    def send_message(self, data: bytes | bytearray | memoryview) -> bytes:
        """Encode one message.

        Returns:
            The frame's bytes, to be written whole and in order.

        Raises:
            MessageTooLarge: ``data`` is longer than ``max_message_size``
                (nothing is counted; the connection stays usable).
            LocalProtocolError: this side may not send messages now (before
                its preamble, after its END, or after the connection ended).
        """
        if not self._sending:
            self._check_local(FrameKind.MESSAGE)
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if size > self.max_message_size:
            raise MessageTooLarge(
                f"message of {size} bytes; the limit is {self.max_message_size}",
                size=size,
                limit=self.max_message_size,
            )
        self._sent += 1
        return _MESSAGE_HEADER(MESSAGE, size) + data

    def send_shutdown(self, grace_period: float, reason: str | None = None) -> bytes:
        """Encode the server's SHUTDOWN request.

        Returns:
            The frame's bytes.

        Raises:
            LocalProtocolError: this side is a client, or already sent
                SHUTDOWN or END.
            ValueError: ``grace_period`` is negative, or ``reason`` is over
                255 bytes of UTF-8.
        """
        self._check_local(FrameKind.SHUTDOWN)
        frame = encode_shutdown(grace_period, reason)
        self._advance(self.role, FrameKind.SHUTDOWN)
        self.shutdown_sent = True
        self.shutdown_request = ShutdownRequest(grace_period, reason)
        return frame

    def send_end(self) -> bytes:
        """Encode this side's END.

        A server's END carries how many client messages reached its
        application: messages received minus those reported to
        :meth:`discard`, so report every message the application will never
        see before calling this.

        Returns:
            The frame's bytes.

        Raises:
            LocalProtocolError: END was already sent, the connection ended,
                or this is a server and the client's END has not arrived.
        """
        self._check_local(FrameKind.END)
        self._advance(self.role, FrameKind.END)
        if self.role is Role.CLIENT:
            return encode_end(None)
        return encode_end(self._received - self._discarded)

    # --------------------------------------------------------------- incoming

    def receive_data(self, data: bytes | bytearray) -> list[Event]:
        """Take bytes from the peer.

        Returns:
            The events they complete, in order (possibly none).

        Raises:
            ProtocolError: the bytes break the protocol (see
                :class:`FrameDecoder` and :mod:`adieu._state`); the cause
                ``PROTOCOL_ERROR`` is recorded. The events decoded in the same
                call before the bad frame are in the exception's ``events``
                attribute: deliver them before the error.
            MessageTooLarge: the peer announced a message over the limit
                (recorded as ``PROTOCOL_ERROR`` too).

        After the connection ended (any recorded cause), data is ignored.
        """
        if self._cause is not None:
            return []
        if self._eof:
            raise self._fail(ProtocolError("data after the transport's EOF"), [])
        events: list[Event] = []
        if type(data) is not bytes:
            data = bytes(data)
        error: ProtocolError | None = None
        try:
            items = self._decoder.feed(data)
        except ProtocolError as exc:
            # The frames these bytes completed before the bad one are still
            # events (in the error's ``events``), then the error is raised.
            items, error = self._decoder.completed, exc
        closing = self.closing
        for ftype, payload in items:
            if ftype == MESSAGE and self._their_sending:
                self._received += 1
                if closing:
                    self._discarded += 1
                else:
                    events.append(Message(payload))
                continue
            try:
                event = self._receive_frame(ftype, payload)
            except ProtocolError as exc:
                raise self._fail(exc, events)  # noqa: B904 (the same exception)
            if event is not None:
                events.append(event)
        if error is not None:
            raise self._fail(error, events)
        return events

    def _receive_frame(self, ftype: int, payload: bytes) -> Event | None:
        peer = self._peer
        if ftype == FrameDecoder.PREAMBLE_ITEM:
            self._advance(peer, FrameKind.PREAMBLE)
            return None
        kind = _FRAME_KINDS[ftype]
        # A MESSAGE reaches here only when the peer may not send one (the
        # loop in receive_data takes the others): this raises.
        if not self._allowed(peer, kind):
            raise self._remote_error(kind)
        event: Event
        if kind is FrameKind.END:
            count = decode_end(payload, peer)
            if count is not None:
                if count > self._sent:
                    raise ProtocolError(
                        f"the server's END acknowledges {count} messages; "
                        f"this client sent {self._sent}"
                    )
                self._acknowledged = count
            event = End(count)
        else:
            event = ShutdownRequest(*decode_shutdown(payload))
            self.shutdown_request = event
        self._advance(peer, kind)
        self._decide()  # the peer's END may decide the ending
        return event

    def _fail(self, exc: ProtocolError, events: list[Event]) -> ProtocolError:
        # Unlike a reset or an abort, a protocol error counts even after both
        # ENDs were exchanged: bytes after the peer's END break the rules (a
        # message among them would be lost), so the end is not CLEAN. No
        # cause can be recorded yet: receive_data, the only caller, ignores
        # data once there is one, and a cause decides the ending at once.
        if self._termination is None:
            self._cause = (TerminationKind.PROTOCOL_ERROR, Initiator.PEER, str(exc))
            self._error = exc
            self._decide()
        exc.events = tuple(events)
        return exc

    def receive_eof(self) -> None:
        """The transport reported end of file (the peer's FIN, or a TLS
        close).

        Raises:
            ConnectionTruncated: the peer's END had not arrived: its messages
                may have stopped anywhere. The cause ``TRUNCATED`` is
                recorded. Not raised if the connection had already ended,
                nor while this side closes in one step
                (``begin_close(now=True)``): then, unless both ENDs were
                produced, the ending is decided ``TRUNCATED`` by this side
                (it sends nothing more).

        Idempotent.
        """
        if self._eof:
            return
        self._eof = True
        if self._closing is _Closing.NOW and not self.finished:
            # Closing in one step, this side sends nothing more: an ending
            # without both ENDs is its own truncation, decided now.
            self._record(TerminationKind.TRUNCATED, Initiator.LOCAL, _CLOSED_EARLY)
            return
        if self._cause is not None or self.end_received:
            self._decide()
            return
        if not self.handshake_complete:
            what = "before the peer's preamble was complete"
        elif self._decoder.at_frame_boundary:
            what = "without the peer's END"
        else:
            what = f"in the middle of a frame ({self._decoder.describe_partial()})"
        detail = f"the transport ended {what}"
        self._record(TerminationKind.TRUNCATED, Initiator.PEER, detail)
        raise ConnectionTruncated(detail)

    def end_written(self) -> None:
        """Record that this side's END has been written to the transport in
        full. Until then an abort or a reset counts even after both ENDs were
        exchanged: it would destroy this END on its way.

        Raises:
            LocalProtocolError: END was not produced (:meth:`send_end`).

        Idempotent.
        """
        if not self.end_sent:
            raise LocalProtocolError("END was not sent: it cannot have been written")
        self._end_out = True
        self._decide()

    def eof_sent(self) -> None:
        """Record that this side's transport EOF (its FIN) is sent (the call
        that sends it was made): after its END, or alone when a server closes
        before it may send END. Only matters where the transport
        half-closes. Idempotent."""
        self._eof_out = True
        self._decide()

    def begin_close(self, *, now: bool = False) -> None:
        """Record that this side's application is closing: it takes no more
        messages, and those that arrive from now on are discarded and counted
        (:attr:`messages_discarded`); report those already taken from the
        transport but unread with :meth:`discard` first.

        ``now`` is a close in one step (``aclose``): it waits only for the
        transport's EOF, which then ends the connection TRUNCATED by this
        side if the peer's END had not arrived. Otherwise the close is
        graceful and an EOF without END is the peer's truncation. A close in
        one step overrides a graceful close in progress, not the reverse.
        Idempotent.
        """
        if now:
            self._closing = _Closing.NOW
        elif self._closing is _Closing.NO:
            self._closing = _Closing.GRACEFULLY

    # ------------------------------------------------------ accounting, ending

    def discard(self, count: int) -> None:
        """Report that the application threw away ``count`` received
        messages without reading them.

        Raises:
            ValueError: ``count`` is negative, or more messages would be
                discarded than were received.
        """
        if count < 0 or self._discarded + count > self._received:
            raise ValueError("cannot discard more messages than were received")
        self._discarded += count

    def connection_reset(
        self,
        detail: str = "the peer reset the connection",
        *,
        error: BaseException | None = None,
    ) -> None:
        """Record that the transport broke under us (a TCP reset); ``error``
        is what broke it (the errors from :meth:`failure` are chained to it).
        Ignored if the ending was decided or an earlier cause recorded; once
        both ENDs were exchanged and ours written, nothing is lost any more,
        and the ending is decided ``CLEAN`` instead."""
        self._record(TerminationKind.RESET, Initiator.PEER, detail, error)

    def transport_broken(
        self, detail: str, *, error: BaseException | None = None
    ) -> None:
        """Record that the transport failed without a reset and without the
        peer's END (a TLS stream cut without ``close_notify``, a timeout of
        the network): ``TRUNCATED`` by the peer. Otherwise like
        :meth:`connection_reset`."""
        self._record(TerminationKind.TRUNCATED, Initiator.PEER, detail, error)

    def abort(self, *, timed_out: bool = False, detail: str | None = None) -> None:
        """Record that this side is aborting the connection; ``timed_out``
        says it is because a grace period or close timeout expired.

        Ignored if the ending was decided or an earlier cause recorded. Once
        both ENDs were exchanged and ours written (:meth:`end_written`), an
        abort destroys nothing and the ending is decided ``CLEAN``; an END
        produced but not yet written does not count, because the abort
        destroys it on its way."""
        kind = TerminationKind.TIMED_OUT if timed_out else TerminationKind.ABORTED
        if detail is None:
            detail = "timed out" if timed_out else "aborted by this side"
        self._record(kind, Initiator.LOCAL, detail)

    def failure(self) -> BaseException | None:
        """The error an application's call raises now that the peer or the
        transport broke the connection (see :attr:`broken`), else ``None``
        (when this side ended it, the I/O layer raises
        :exc:`trio.ClosedResourceError`).

        A new instance on each call (re-raising one would grow its
        traceback), chained (``__cause__``) to what broke it: the error given
        to :meth:`connection_reset` or :meth:`transport_broken`, or the first
        :exc:`ProtocolError`.
        """
        if not self.broken:
            return None
        assert self._cause is not None
        kind, _, detail = self._cause
        cause = self._error
        exc: BaseException
        if kind is TerminationKind.RESET:
            exc = ConnectionReset(detail)
        elif kind is TerminationKind.TRUNCATED:
            exc = ConnectionTruncated(detail)
        elif isinstance(cause, MessageTooLarge):
            exc = MessageTooLarge(detail, size=cause.size, limit=cause.limit)
        else:
            exc = ProtocolError(detail)
        exc.__cause__ = cause
        return exc

    def _record(
        self,
        kind: TerminationKind,
        who: Initiator,
        detail: str,
        error: BaseException | None = None,
    ) -> None:
        """Record a terminal cause, unless one was recorded or nothing can be
        lost any more (:attr:`settled`), and decide the ending: nothing more
        will come."""
        if self._cause is None and not self.settled:
            self._cause = (kind, who, detail)
            self._error = error
        self._decide(final=True)

    def close(self) -> Termination:
        """Record that the transport has been released, deciding the ending
        now if it was not yet, and return the report.

        A connection released before both ENDs were exchanged and this
        side's END written (:meth:`end_written`), with no other cause, is
        ``TRUNCATED`` by this side: an END produced but never written did not
        reach the peer. Idempotent: later calls return the same
        :class:`Termination`.
        """
        self._record(TerminationKind.TRUNCATED, Initiator.LOCAL, _CLOSED_EARLY)
        assert self._termination is not None
        return self._termination

    def _decide(self, *, final: bool = False) -> None:
        """Build the report if the ending is decided: the one place it is
        built. ``final``: nothing more will come (a cause, an abort, the
        release), so both ENDs with ours written are enough for ``CLEAN``."""
        if self._termination is not None:
            return
        if self._cause is not None:
            kind, who, detail = self._cause
        elif self.settled and (
            final or not self._half_close or (self._eof and self._eof_out)
        ):
            kind = TerminationKind.CLEAN
            who = self._handshake_initiator or Initiator.LOCAL
            detail = "both ENDs exchanged"
        else:
            return
        self._sending = False  # whatever the table says: the connection ended
        confirmed: bool | None = None
        if self._acknowledged is not None:
            confirmed = self._acknowledged == self._sent
        self._termination = Termination(
            kind=kind,
            initiator=who,
            messages_sent=self._sent,
            messages_received=self._received,
            messages_discarded=self._discarded,
            confirmed=confirmed,
            acknowledged=self._acknowledged,
            detail=detail,
        )
