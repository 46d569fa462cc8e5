"""Property tests of the sans-I/O core, with Hypothesis.

Three kinds:

* a state machine per role: a pair of real :class:`adieu.Protocol` objects
  joined by two byte queues. The side under test tries every local action at
  any moment, legal or not; its peer behaves. Bytes move in chunks of random
  size, either transport may end or be cut, either side may abort, discard or
  close. After every step both protocols must agree with a model that moves
  only along the tables of :mod:`adieu._state`;
* the frame decoder and the protocol fed arbitrary bytes in arbitrary chunks
  raise nothing but the documented errors and keep their buffer bounded;
* valid frame streams split at arbitrary points decode to the same events as
  unsplit.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import hypothesis.strategies as st
from hypothesis import given, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from adieu import (
    ConnectionTruncated,
    End,
    Event,
    Initiator,
    LocalProtocolError,
    Message,
    MessageTooLarge,
    Protocol,
    ProtocolError,
    Role,
    ShutdownRequest,
    SideState,
    Termination,
    TerminationKind,
)
from adieu._frames import (
    END,
    FRAME_HEADER,
    MAX_REASON_BYTES,
    MESSAGE,
    PREAMBLE_SIZE,
    SHUTDOWN,
    FrameDecoder,
    decode_shutdown,
    encode_end,
    encode_message_header,
    encode_preamble,
    encode_shutdown,
)
from adieu._state import GUARDS, TRANSITIONS, FrameKind

CLIENT, SERVER = Role.CLIENT, Role.SERVER
#: The largest control-frame payload: a SHUTDOWN with the longest reason.
MAX_CONTROL_PAYLOAD = 4 + MAX_REASON_BYTES
#: Small, so that oversized messages are common.
MACHINE_MAX_MESSAGE_SIZE = 16

View = dict[Role, SideState]
E = TypeVar("E", bound=BaseException)


def raised(error: type[E], call: Callable[[], object]) -> E:
    """The ``error`` that ``call`` raises; fails the test if it returns."""
    try:
        call()
    except error as exc:
        return exc
    raise AssertionError(f"{error.__name__} was not raised")


def legal(role: Role, kind: FrameKind, view: View) -> bool:
    """The tables' verdict on a side of ``role`` sending ``kind``."""
    if kind not in TRANSITIONS[role].get(view[role], {}):
        return False
    guard = GUARDS.get((role, kind))
    return guard is None or view[guard[0]] is guard[1]


# ------------------------------------------------------------ the machine


@dataclass
class Wire:
    """One direction of the byte stream, with the frames in flight on it."""

    pending: bytearray = field(default_factory=bytearray)
    #: ``(bytes of pending up to this frame's end, kind, event it makes)``
    frames: deque[tuple[int, FrameKind, Event | None]] = field(default_factory=deque)
    #: The transport of this direction ended: nothing more arrives.
    ended: bool = False

    def put(self, data: bytes, kind: FrameKind, event: Event | None) -> None:
        if self.ended:
            return
        self.pending += data
        self.frames.append((len(self.pending), kind, event))

    def take(self, size: int) -> tuple[bytes, list[tuple[FrameKind, Event | None]]]:
        """The next ``size`` bytes and the frames they complete."""
        chunk = bytes(self.pending[:size])
        del self.pending[:size]
        done = []
        while self.frames and self.frames[0][0] <= len(chunk):
            _, kind, event = self.frames.popleft()
            done.append((kind, event))
        self.frames = deque(
            (end - len(chunk), kind, event) for end, kind, event in self.frames
        )
        return chunk, done

    def drop(self) -> None:
        self.pending.clear()
        self.frames.clear()


@dataclass
class Side:
    """The model of one endpoint: what its Protocol must report."""

    role: Role
    view: View = field(
        default_factory=lambda: {CLIENT: SideState.PREAMBLE, SERVER: SideState.PREAMBLE}
    )
    sent: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    discarded: int = 0
    ended: tuple[TerminationKind, Initiator] | None = None
    eof: bool = False
    closed: Termination | None = None
    handshake_initiator: Initiator | None = None
    acknowledged: int | None = None

    @property
    def finished(self) -> bool:
        return all(state is SideState.DONE for state in self.view.values())

    def end(self, kind: TerminationKind, initiator: Initiator) -> None:
        if self.ended is None and not self.finished:
            self.ended = (kind, initiator)


grace_periods = st.one_of(
    st.just(0.0),
    st.floats(min_value=0, max_value=1e7, allow_nan=False),
    st.just(math.inf),
)
reasons = st.one_of(st.none(), st.text(max_size=12))
payloads = st.binary(max_size=MACHINE_MAX_MESSAGE_SIZE + 4)


class _PairMachine(RuleBasedStateMachine):
    """Both endpoints of one connection; ``SUBJECT`` tries anything."""

    SUBJECT: Role

    def __init__(self) -> None:
        super().__init__()
        self.protos = {
            role: Protocol(role, max_message_size=MACHINE_MAX_MESSAGE_SIZE)
            for role in Role
        }
        self.sides = {role: Side(role) for role in Role}
        #: ``wires[sender]`` carries the bytes ``sender`` wrote.
        self.wires = {role: Wire() for role in Role}

    # ------------------------------------------------------------- sending

    def _expected_send(self, role: Role, kind: FrameKind) -> bool:
        side = self.sides[role]
        return side.ended is None and legal(role, kind, side.view)

    def _send(
        self, role: Role, kind: FrameKind, data: bytes, grace: float, reason: str | None
    ) -> None:
        proto, side = self.protos[role], self.sides[role]
        expected = self._expected_send(role, kind)
        if (
            expected
            and kind is FrameKind.MESSAGE
            and len(data) > proto.max_message_size
        ):
            too_large = raised(MessageTooLarge, lambda: proto.send_message(data))
            assert (too_large.size, too_large.limit) == (
                len(data),
                MACHINE_MAX_MESSAGE_SIZE,
            )
            return
        if not expected:
            refused = raised(
                LocalProtocolError, lambda: self._call(proto, kind, data, grace, reason)
            )
            assert kind.value in str(refused)  # says what was refused
            return
        # What a server's END must carry: the client messages its
        # application received.
        delivered = len(side.received) - side.discarded
        frame = self._call(proto, kind, data, grace, reason)
        if kind is FrameKind.END:
            # Putting the frame on the model's wire is its write.
            proto.end_written()
        side.view[role] = TRANSITIONS[role][side.view[role]][kind]
        event: Event | None = None
        if kind is FrameKind.MESSAGE:
            side.sent.append(data)
            event = Message(data)
        elif kind is FrameKind.SHUTDOWN:
            event = ShutdownRequest(*decode_shutdown(frame[FRAME_HEADER:]))
            if side.handshake_initiator is None:
                side.handshake_initiator = Initiator.LOCAL
        elif kind is FrameKind.END:
            event = End(delivered if role is SERVER else None)
            if role is CLIENT and side.handshake_initiator is None:
                side.handshake_initiator = Initiator.LOCAL
        self.wires[role].put(frame, kind, event)

    @staticmethod
    def _call(
        proto: Protocol, kind: FrameKind, data: bytes, grace: float, reason: str | None
    ) -> bytes:
        if kind is FrameKind.PREAMBLE:
            return proto.preamble()
        if kind is FrameKind.MESSAGE:
            return proto.send_message(data)
        if kind is FrameKind.SHUTDOWN:
            return proto.send_shutdown(grace, reason)
        return proto.send_end()

    @initialize(subject_opens=st.sampled_from([True, True, True, False]))
    def preambles(self, subject_opens: bool) -> None:
        """The peer always opens; the subject mostly, else it is left to."""
        peer = self.SUBJECT.peer
        if subject_opens:
            self._send(self.SUBJECT, FrameKind.PREAMBLE, b"", 0.0, None)
        self._send(peer, FrameKind.PREAMBLE, b"", 0.0, None)

    @rule(
        kind=st.sampled_from(FrameKind),
        data=payloads,
        grace=grace_periods,
        reason=reasons,
    )
    def subject_sends(
        self, kind: FrameKind, data: bytes, grace: float, reason: str | None
    ) -> None:
        self._send(self.SUBJECT, kind, data, grace, reason)

    # The peer keeps to the rules: it only does what the tables allow.

    def _peer_may(self, kind: FrameKind) -> bool:
        return self._expected_send(self.SUBJECT.peer, kind)

    @precondition(lambda self: self._peer_may(FrameKind.MESSAGE))
    @rule(data=st.binary(max_size=MACHINE_MAX_MESSAGE_SIZE))
    def peer_sends_message(self, data: bytes) -> None:
        self._send(self.SUBJECT.peer, FrameKind.MESSAGE, data, 0.0, None)

    @precondition(lambda self: self._peer_may(FrameKind.SHUTDOWN))
    @rule(grace=grace_periods, reason=reasons)
    def peer_sends_shutdown(self, grace: float, reason: str | None) -> None:
        self._send(self.SUBJECT.peer, FrameKind.SHUTDOWN, b"", grace, reason)

    @precondition(lambda self: self._peer_may(FrameKind.END))
    @rule()
    def peer_sends_end(self) -> None:
        self._send(self.SUBJECT.peer, FrameKind.END, b"", 0.0, None)

    # ------------------------------------------------------------ receiving

    @rule(sender=st.sampled_from(Role), size=st.integers(1, 40))
    def deliver(self, sender: Role, size: int) -> None:
        receiver = sender.peer
        proto, side, wire = (
            self.protos[receiver],
            self.sides[receiver],
            self.wires[sender],
        )
        if side.eof:
            wire.drop()
            return
        chunk, done = wire.take(size)
        events = proto.receive_data(chunk)  # an honest peer: nothing raised
        if side.ended is not None:
            assert events == []  # a connection that ended ignores data
            return
        expected: list[Event] = []
        for kind, event in done:
            assert legal(sender, kind, side.view), (sender, kind, side.view)
            side.view[sender] = TRANSITIONS[sender][side.view[sender]][kind]
            if event is None:
                continue
            expected.append(event)
            if isinstance(event, Message):
                side.received.append(event.data)
            elif isinstance(event, ShutdownRequest):
                assert proto.shutdown_request == event
                if side.handshake_initiator is None:
                    side.handshake_initiator = Initiator.PEER
            elif event.acknowledged is None:
                if side.handshake_initiator is None:
                    side.handshake_initiator = Initiator.PEER
            else:
                side.acknowledged = event.acknowledged
        assert events == expected

    @rule()
    def deliver_everything(self) -> None:
        for sender in Role:
            self.deliver(sender, len(self.wires[sender].pending) + 1)

    @rule(
        how=st.sampled_from(["eof", "cut", "abort", "time out", "close"]),
        role=st.sampled_from(Role),
    )
    def end(self, how: str, role: Role) -> None:
        """One way for the connection to end, seen from ``role``: its input
        ends after what is in flight (``eof``) or cut short by a crash
        (``cut``); it aborts, times out or closes."""
        if how in ("eof", "cut"):
            self.transport_ends(role.peer, flush=how == "eof")
        elif how == "close":
            self.close(role)
        else:
            self.abort(role, timed_out=how == "time out")

    def transport_ends(self, sender: Role, flush: bool) -> None:
        """The byte stream from ``sender`` ends: after what is in flight
        (``flush``), or cut short, as by a crash."""
        receiver = sender.peer
        side = self.sides[receiver]
        if side.eof:
            return
        if flush:
            self.deliver(sender, len(self.wires[sender].pending) + 1)
        self.wires[sender].drop()
        self.wires[sender].ended = True
        truncated = side.ended is None and side.view[sender] is not SideState.DONE
        if truncated:
            error = raised(ConnectionTruncated, self.protos[receiver].receive_eof)
            assert str(error).startswith("the transport ended ")
        else:
            self.protos[receiver].receive_eof()
        side.eof = True
        if truncated:
            side.end(TerminationKind.TRUNCATED, Initiator.PEER)

    # -------------------------------------------------------------- endings

    def abort(self, role: Role, timed_out: bool) -> None:
        """``role`` aborts: its protocol records it and its peer sees a reset;
        whatever was in flight either way is lost."""
        self.protos[role].abort(timed_out=timed_out)
        self.sides[role].end(
            TerminationKind.TIMED_OUT if timed_out else TerminationKind.ABORTED,
            Initiator.LOCAL,
        )
        for wire in self.wires.values():
            wire.drop()
            wire.ended = True
        self.protos[role.peer].connection_reset()
        self.sides[role.peer].end(TerminationKind.RESET, Initiator.PEER)
        for side in self.sides.values():
            side.eof = True

    @rule(role=st.sampled_from(Role), data=st.data())
    def discard(self, role: Role, data: st.DataObject) -> None:
        side = self.sides[role]
        count = data.draw(st.integers(0, len(side.received) - side.discarded))
        self.protos[role].discard(count)
        side.discarded += count

    def close(self, role: Role) -> None:
        side = self.sides[role]
        decided = side.closed is not None
        termination = self.protos[role].close()
        if decided:
            assert termination is side.closed
            return
        self._check_termination(role, termination)
        side.closed = termination
        if side.ended is None and not side.finished:
            side.ended = (TerminationKind.TRUNCATED, Initiator.LOCAL)

    def _check_termination(self, role: Role, t: Termination) -> None:
        side = self.sides[role]
        if side.ended is not None:
            assert (t.kind, t.initiator) == side.ended
        elif side.finished:
            assert t.kind is TerminationKind.CLEAN
            assert t.initiator is (side.handshake_initiator or Initiator.LOCAL)
        else:
            assert (t.kind, t.initiator) == (TerminationKind.TRUNCATED, Initiator.LOCAL)
        assert t.messages_sent == len(side.sent)
        assert t.messages_received == len(side.received)
        assert t.messages_discarded == side.discarded
        assert t.acknowledged == side.acknowledged
        if side.acknowledged is None:
            assert t.confirmed is None
        else:
            assert t.confirmed is (side.acknowledged == len(side.sent))
        if t.kind is TerminationKind.CLEAN:
            # The peer's END came after all its messages: none is missing.
            assert side.received == self.sides[role.peer].sent
            if role is CLIENT:
                assert t.confirmed is not None

    def teardown(self) -> None:
        """Complete the terminal handshake where the connection still can,
        then close both sides and check both reports."""
        for _ in range(3):
            self.deliver_everything()
            for role in (CLIENT, SERVER):
                for kind in (FrameKind.PREAMBLE, FrameKind.END):
                    if self._expected_send(role, kind):
                        self._send(role, kind, b"", 0.0, None)
        self.deliver_everything()
        for role in Role:
            self.close(role)

    # ----------------------------------------------------------- invariants

    @invariant()
    def states_follow_the_tables(self) -> None:
        for role, proto in self.protos.items():
            side = self.sides[role]
            assert proto.our_state is side.view[role]
            assert proto.their_state is side.view[role.peer]
            assert proto.our_state in TRANSITIONS[role]

    @invariant()
    def the_termination_is_built_when_decided(self) -> None:
        """Once a side's ending is decided its report exists at once (not at
        the release), says what the model expects, and never changes."""
        for role, proto in self.protos.items():
            side, termination = self.sides[role], proto.termination
            assert proto.decided is (termination is not None)
            assert proto.may_release is proto.decided
            if termination is None:
                assert side.closed is None
            elif side.closed is None:
                self._check_termination(role, termination)
                side.closed = termination
            else:
                assert termination is side.closed

    @invariant()
    def causes_are_the_first_recorded(self) -> None:
        for role, proto in self.protos.items():
            ended = self.sides[role].ended
            assert proto.cause is (None if ended is None else ended[0])

    @invariant()
    def messages_arrive_in_order_and_unchanged(self) -> None:
        for role in Role:
            received = self.sides[role].received
            assert received == self.sides[role.peer].sent[: len(received)]

    @invariant()
    def the_server_never_ends_first(self) -> None:
        server = self.protos[SERVER]
        if server.end_sent:
            assert server.end_received
        client = self.protos[CLIENT]
        if client.end_received:
            assert client.end_sent

    @invariant()
    def counts_are_consistent(self) -> None:
        for role, proto in self.protos.items():
            side = self.sides[role]
            assert proto.messages_sent == len(side.sent)
            assert proto.messages_received == len(side.received)
            assert proto.messages_discarded == side.discarded
            assert proto.messages_received <= self.protos[role.peer].messages_sent
        acknowledged = self.sides[CLIENT].acknowledged
        if acknowledged is not None:
            assert acknowledged <= len(self.sides[CLIENT].sent)

    @invariant()
    def buffers_are_bounded(self) -> None:
        for proto in self.protos.values():
            assert proto.buffered <= (
                max(proto.max_message_size, MAX_CONTROL_PAYLOAD) + FRAME_HEADER
            )


class ClientMachine(_PairMachine):
    SUBJECT = CLIENT


class ServerMachine(_PairMachine):
    SUBJECT = SERVER


MACHINE_SETTINGS = settings(max_examples=120, stateful_step_count=40, deadline=None)
TestClientMachine = ClientMachine.TestCase
TestClientMachine.settings = MACHINE_SETTINGS
TestServerMachine = ServerMachine.TestCase
TestServerMachine.settings = MACHINE_SETTINGS


# ------------------------------------------------------- arbitrary bytes


def _header(ftype: int, length: int) -> bytes:
    return bytes([ftype]) + length.to_bytes(4, "big")


#: Pieces that make a byte soup likely to reach every refusal: garbage, frame
#: headers of every type with small and huge lengths, and valid frames.
pieces = st.one_of(
    st.binary(max_size=12),
    st.builds(
        _header,
        st.sampled_from([0x00, MESSAGE, END, SHUTDOWN, 0x04, 0x41, 0xFF]),
        st.one_of(st.integers(0, 300), st.integers(0, (1 << 32) - 1)),
    ),
    st.binary(max_size=20).map(lambda b: encode_message_header(len(b)) + b),
    st.sampled_from([encode_end(None), encode_end(3), encode_preamble(CLIENT)]),
    st.builds(encode_shutdown, grace_periods, st.text(max_size=80)),
)


@st.composite
def chunked(draw: st.DrawFn, prefix: bytes) -> list[bytes]:
    """A soup of pieces, after ``prefix`` or not, cut into random chunks."""
    head = draw(st.sampled_from([b"", prefix, prefix[:5]]))
    data = head + b"".join(draw(st.lists(pieces, max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


SOUP_SETTINGS = settings(max_examples=300, deadline=None)


@SOUP_SETTINGS
@given(
    peer=st.sampled_from(Role),
    max_size=st.integers(0, 24),
    data=st.data(),
)
def test_the_decoder_only_raises_documented_errors_and_stays_bounded(
    peer: Role, max_size: int, data: st.DataObject
) -> None:
    chunks = data.draw(chunked(encode_preamble(peer)))
    decoder = FrameDecoder(peer, max_size)
    bound = max(max_size, MAX_CONTROL_PAYLOAD) + FRAME_HEADER
    error: ProtocolError | None = None  # MessageTooLarge included
    for chunk in chunks:
        try:
            items = decoder.feed(chunk)
        except ProtocolError as exc:
            error = exc
            break  # the decoder must not be fed again
        for ftype, payload in items:
            if ftype == MESSAGE:
                assert len(payload) <= max_size
        assert decoder.buffered <= bound
    if isinstance(error, MessageTooLarge):
        assert error.size > error.limit == max_size
        assert decoder.buffered == 0  # refused from the header alone
    if error is not None:
        assert str(error)  # says what was wrong


@st.composite
def message_streams(draw: st.DrawFn, max_size: int) -> list[bytes]:
    """A client's preamble and MESSAGE frames of any announced length (some
    over ``max_size``), cut into random chunks."""
    data = encode_preamble(CLIENT)
    for _ in range(draw(st.integers(0, 6))):
        length = draw(
            st.one_of(st.integers(0, max_size), st.integers(0, (1 << 32) - 1))
        )
        if length > max_size:  # refused from here on: a few bytes suffice
            data += encode_message_header(length) + draw(st.binary(max_size=8))
            break
        data += encode_message_header(length)
        data += draw(st.binary(min_size=length, max_size=length))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@SOUP_SETTINGS
@given(max_size=st.integers(0, 24), data=st.data())
def test_a_message_never_buffers_more_than_its_limit_and_a_header(
    max_size: int, data: st.DataObject
) -> None:
    decoder = FrameDecoder(CLIENT, max_size)
    for chunk in data.draw(message_streams(max_size)):
        try:
            decoder.feed(chunk)
        except MessageTooLarge:
            assert decoder.buffered == 0
            return
        # (or a partial preamble, which is 8 bytes whatever the limit)
        assert decoder.buffered <= max(max_size + FRAME_HEADER, PREAMBLE_SIZE - 1)


@SOUP_SETTINGS
@given(role=st.sampled_from(Role), max_size=st.integers(0, 24), data=st.data())
def test_the_protocol_only_raises_documented_errors_on_any_bytes(
    role: Role, max_size: int, data: st.DataObject
) -> None:
    proto = Protocol(role, max_message_size=max_size)
    proto.preamble()
    if role is CLIENT:
        proto.send_message(b"")
        proto.send_end()  # so that a server's END may be legal
    bound = max(max_size, MAX_CONTROL_PAYLOAD) + FRAME_HEADER
    errors: list[ProtocolError] = []  # MessageTooLarge included
    events: list[object]
    for chunk in data.draw(chunked(encode_preamble(role.peer))):
        try:
            events = list(proto.receive_data(chunk))
        except ProtocolError as exc:
            errors.append(exc)
            events = list(exc.events)
        else:
            if errors:
                assert events == []  # ignored once the connection ended
        assert all(isinstance(e, Message | End | ShutdownRequest) for e in events)
        assert proto.buffered <= bound
    if errors:
        # One error ends the connection, even after both ENDs; what follows
        # is ignored.
        assert len(errors) == 1
        assert proto.cause is TerminationKind.PROTOCOL_ERROR
    truncated = not errors and not proto.end_received
    if truncated:
        raised(ConnectionTruncated, proto.receive_eof)
    else:
        proto.receive_eof()
    termination = proto.close()
    assert termination.messages_received == proto.messages_received
    if errors:
        assert termination.kind is TerminationKind.PROTOCOL_ERROR


# ------------------------------------------------------------- splitting


@st.composite
def server_streams(draw: st.DrawFn) -> tuple[int, bytes, list[Event]]:
    """``(messages the client sent, the server's bytes, expected events)``."""
    client_sent = draw(st.integers(0, 4))
    data = encode_preamble(SERVER)
    events: list[Event] = []
    messages = draw(st.lists(st.binary(max_size=40), max_size=5))
    shutdown_at = draw(st.one_of(st.none(), st.integers(0, len(messages))))
    for i, payload in enumerate([*messages, None]):
        if i == shutdown_at:
            frame = encode_shutdown(draw(grace_periods), draw(reasons))
            data += frame
            events.append(ShutdownRequest(*decode_shutdown(frame[FRAME_HEADER:])))
        if payload is not None:
            data += encode_message_header(len(payload)) + payload
            events.append(Message(payload))
    if draw(st.booleans()):
        count = draw(st.integers(0, client_sent))
        data += encode_end(count)
        events.append(End(count))
    return client_sent, data, events


@st.composite
def client_streams(draw: st.DrawFn) -> tuple[int, bytes, list[Event]]:
    data = encode_preamble(CLIENT)
    events: list[Event] = []
    for payload in draw(st.lists(st.binary(max_size=40), max_size=5)):
        data += encode_message_header(len(payload)) + payload
        events.append(Message(payload))
    if draw(st.booleans()):
        data += encode_end(None)
        events.append(End(None))
    return 0, data, events


def _receiver(role: Role, client_sent: int) -> Protocol:
    proto = Protocol(role, max_message_size=64)
    proto.preamble()
    if role is CLIENT:
        for _ in range(client_sent):
            proto.send_message(b"q")
        proto.send_end()
    return proto


@settings(max_examples=300, deadline=None)
@given(
    role=st.sampled_from(Role),
    data=st.data(),
)
def test_a_valid_stream_decodes_the_same_however_it_is_split(
    role: Role, data: st.DataObject
) -> None:
    streams = server_streams() if role is CLIENT else client_streams()
    client_sent, stream, expected = data.draw(streams)
    whole = _receiver(role, client_sent)
    assert whole.receive_data(stream) == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    bounds = [0, *cuts, len(stream)]
    split = _receiver(role, client_sent)
    events: list[Event] = []
    for a, b in itertools.pairwise(bounds):
        events += split.receive_data(stream[a:b])
    assert events == expected
    assert split.their_state is whole.their_state
    assert split.messages_received == whole.messages_received
    assert split.buffered == whole.buffered == 0
