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
    proto.receive_eof()                      # when the transport reports EOF
    termination = proto.close()              # when the transport is released
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Set

from ._errors import (
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

    Raises:
        ValueError: ``max_message_size`` is negative or over 2**32 - 1.

    Nothing here blocks or does I/O; every method returns at once.
    """

    def __init__(
        self, role: Role, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
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
        self._sending = False
        self._their_sending = False
        self._sent = 0
        self._received = 0
        self._discarded = 0
        self._acknowledged: int | None = None
        self._handshake_initiator: Initiator | None = None
        self._eof = False
        self._cause: tuple[TerminationKind, Initiator, str] | None = None
        self._termination: Termination | None = None
        #: Set on a client when the server's SHUTDOWN arrives.
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
        """``True`` while this side may send messages."""
        return self._sending and self._cause is None

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
        """The report built by :meth:`close`, or ``None`` before it."""
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
        """Apply one transition of ``role``'s side; the caller checked it."""
        state = TRANSITIONS[role][self._states[role]][kind]
        self._states[role] = state
        sending = state in _MESSAGE_STATES[role]
        if role is self.role:
            self._sending = sending
        else:
            self._their_sending = sending

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
        peer = self.role.peer
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
        if not self._sending or self._cause is not None:
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
        if self._handshake_initiator is None:
            self._handshake_initiator = Initiator.LOCAL
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
            if self._handshake_initiator is None:
                self._handshake_initiator = Initiator.LOCAL
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
        for ftype, payload in items:
            if ftype == MESSAGE and self._their_sending:
                self._received += 1
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
        peer = self.role.peer
        if ftype == FrameDecoder.PREAMBLE_ITEM:
            self._advance(peer, FrameKind.PREAMBLE)
            return None
        kind = _FRAME_KINDS[ftype]
        if not self._allowed(peer, kind):
            raise self._remote_error(kind)
        event: Event
        if kind is FrameKind.MESSAGE:
            self._received += 1
            event = Message(payload)
        elif kind is FrameKind.END:
            count = decode_end(payload, peer)
            if count is not None:
                if count > self._sent:
                    raise ProtocolError(
                        f"the server's END acknowledges {count} messages; "
                        f"this client sent {self._sent}"
                    )
                self._acknowledged = count
            elif self._handshake_initiator is None:
                self._handshake_initiator = Initiator.PEER
            event = End(count)
        else:
            grace, reason = decode_shutdown(payload)
            event = ShutdownRequest(grace, reason)
            self.shutdown_request = event
            if self._handshake_initiator is None:
                self._handshake_initiator = Initiator.PEER
        self._advance(peer, kind)
        return event

    def _fail(self, exc: ProtocolError, events: list[Event]) -> ProtocolError:
        # Unlike a reset or an abort, a protocol error counts even after both
        # ENDs were exchanged: bytes after the peer's END break the rules (a
        # message among them would be lost), so the end is not CLEAN.
        if self._cause is None and self._termination is None:
            self._cause = (TerminationKind.PROTOCOL_ERROR, Initiator.PEER, str(exc))
            self._sending = False
        exc.events = tuple(events)
        return exc

    def receive_eof(self) -> None:
        """The transport reported end of file (the peer's FIN, or a TLS
        close).

        Raises:
            ConnectionTruncated: the peer's END had not arrived: its messages
                may have stopped anywhere. The cause ``TRUNCATED`` is
                recorded. Not raised if the connection had already ended.
        """
        if self._eof:
            return
        self._eof = True
        if self._cause is not None or self.end_received:
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

    def connection_reset(self, detail: str = "the peer reset the connection") -> None:
        """Record that the transport broke under us (a TCP reset). Ignored if
        an earlier cause was recorded or both ENDs were already exchanged."""
        self._record(TerminationKind.RESET, Initiator.PEER, detail)

    def transport_broken(self, detail: str) -> None:
        """Record that the transport failed without a reset and without the
        peer's END (a TLS stream cut without ``close_notify``, a timeout of
        the network): ``TRUNCATED`` by the peer. Ignored like
        :meth:`connection_reset`."""
        self._record(TerminationKind.TRUNCATED, Initiator.PEER, detail)

    def abort(
        self,
        *,
        timed_out: bool = False,
        detail: str | None = None,
        end_written: bool = True,
    ) -> None:
        """Record that this side is aborting the connection; ``timed_out``
        says it is because a grace period or close timeout expired. Ignored
        if an earlier cause was recorded or both ENDs were exchanged.

        ``end_written=False`` says this side's END, though produced by
        :meth:`send_end`, never reached the transport whole (its write was
        cut, or it was still queued): the abort then counts even after both
        ENDs, because the peer never got this side's END."""
        kind = TerminationKind.TIMED_OUT if timed_out else TerminationKind.ABORTED
        if detail is None:
            detail = "timed out" if timed_out else "aborted by this side"
        if not end_written and self.end_sent and self._cause is None:
            self._cause = (kind, Initiator.LOCAL, detail)
            self._sending = False
            return
        self._record(kind, Initiator.LOCAL, detail)

    def _record(self, kind: TerminationKind, who: Initiator, detail: str) -> None:
        if self._cause is None and not self.finished:
            self._cause = (kind, who, detail)
            self._sending = False

    def close(self) -> Termination:
        """Record that the transport has been released and build the report.

        Idempotent: later calls return the same :class:`Termination`. A
        connection closed before its terminal handshake completed, with no
        other cause, is ``TRUNCATED`` by this side.
        """
        if self._termination is not None:
            return self._termination
        if self._cause is not None:
            kind, who, detail = self._cause
        elif self.finished:
            kind = TerminationKind.CLEAN
            who = self._handshake_initiator or Initiator.LOCAL
            detail = "both ENDs exchanged"
        else:
            kind, who = TerminationKind.TRUNCATED, Initiator.LOCAL
            detail = "this side closed before the terminal handshake completed"
            self._cause = (kind, who, detail)
        self._sending = False
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
        return self._termination
