"""The sans-I/O core alone: transitions, refusals, accounting, terminations.

The transition tests are generated from the tables in :mod:`adieu._state`:
every pair of side states a connection can reach, for each role's point of
view, times every frame kind, once as a local send and once as a received
frame. A legal one must move to the table's state; an illegal one must be
refused (``LocalProtocolError`` locally, ``ProtocolError`` from the peer)
with a message saying what was wrong, leaving the states as they were.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import pytest

from adieu import (
    ConnectionTruncated,
    End,
    Initiator,
    LocalProtocolError,
    Message,
    MessageTooLarge,
    Protocol,
    ProtocolError,
    Role,
    ShutdownRequest,
    SideState,
    TerminationKind,
)
from adieu._frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE_LIMIT,
    encode_end,
    encode_message_header,
    encode_preamble,
    encode_shutdown,
)
from adieu._state import GUARDS, TRANSITIONS, FrameKind

PRE, OPEN, SHUT, DONE = (
    SideState.PREAMBLE,
    SideState.OPEN,
    SideState.SHUTTING_DOWN,
    SideState.DONE,
)
CLIENT, SERVER = Role.CLIENT, Role.SERVER

#: A state of the whole connection: each role's side state.
Pair = dict[Role, SideState]


def _guard_ok(role: Role, kind: FrameKind, states: Pair) -> bool:
    guard = GUARDS.get((role, kind))
    return guard is None or states[guard[0]] is guard[1]


def legal(role: Role, kind: FrameKind, states: Pair) -> bool:
    """The table's verdict: may a side of ``role`` send ``kind`` now?"""
    return kind in TRANSITIONS[role].get(states[role], {}) and _guard_ok(
        role, kind, states
    )


def reachable_pairs() -> list[tuple[SideState, SideState]]:
    """Every ``(client state, server state)`` the tables allow, from the start."""
    start = (PRE, PRE)
    seen = {start}
    todo = [start]
    while todo:
        client, server = todo.pop()
        states = {CLIENT: client, SERVER: server}
        for role in Role:
            for kind, target in TRANSITIONS[role][states[role]].items():
                if _guard_ok(role, kind, states):
                    after = {**states, role: target}
                    pair = (after[CLIENT], after[SERVER])
                    if pair not in seen:
                        seen.add(pair)
                        todo.append(pair)
    return sorted(seen, key=lambda p: (list(SideState).index(p[0]), p[1].value))


REACHABLE = reachable_pairs()
CASES: list[tuple[Role, Pair, FrameKind]] = [
    (role, {CLIENT: client, SERVER: server}, kind)
    for role in Role
    for client, server in REACHABLE
    for kind in FrameKind
]
TRANSITION_CASES = [
    pytest.param(
        role,
        states,
        kind,
        id=f"{role.value}-C:{states[CLIENT].name}-S:{states[SERVER].name}-{kind.name}",
    )
    for role, states, kind in CASES
]


def build(role: Role, states: Pair) -> Protocol:
    """A ``Protocol`` of ``role`` whose own and peer states are ``states``,
    reached through its public methods and real peer bytes."""
    proto = Protocol(role)
    peer = role.peer
    ours, theirs = states[role], states[peer]
    if ours is not PRE:
        proto.preamble()
    if ours is SHUT:
        proto.send_shutdown(1.0)
    if ours is DONE and role is CLIENT:
        proto.send_end()
    peer_bytes = b""
    if theirs is not PRE:
        peer_bytes += encode_preamble(peer)
    if theirs is SHUT:
        peer_bytes += encode_shutdown(1.0, None)
    if theirs is DONE:
        peer_bytes += encode_end(None if peer is CLIENT else 0)
    proto.receive_data(peer_bytes)
    if ours is DONE and role is SERVER:
        proto.send_end()
    assert (proto.our_state, proto.their_state) == (ours, theirs)
    return proto


def local_send(proto: Protocol, kind: FrameKind) -> bytes:
    if kind is FrameKind.PREAMBLE:
        return proto.preamble()
    if kind is FrameKind.MESSAGE:
        return proto.send_message(b"x")
    if kind is FrameKind.SHUTDOWN:
        return proto.send_shutdown(2.0, "r")
    return proto.send_end()


def frame_from(sender: Role, kind: FrameKind) -> bytes:
    """The bytes of a frame of ``kind`` from a side of role ``sender``."""
    if kind is FrameKind.PREAMBLE:
        return encode_preamble(sender)
    if kind is FrameKind.MESSAGE:
        return encode_message_header(1) + b"x"
    if kind is FrameKind.SHUTDOWN:
        return encode_shutdown(2.0, "r")
    return encode_end(None if sender is CLIENT else 0)


def test_the_transition_cases_cover_every_role_state_and_frame_kind() -> None:
    covered = {(role, states[role], kind) for role, states, kind in CASES}
    in_tables = {
        (role, state, kind)
        for role in Role
        for state in TRANSITIONS[role]
        for kind in FrameKind
    }
    assert covered == in_tables
    # Every state of a role's table is reached, and no other: the side
    # states a table leaves out (a client SHUTTING_DOWN) never occur.
    reached = {(CLIENT, c) for c, _ in REACHABLE} | {(SERVER, s) for _, s in REACHABLE}
    assert reached == {(role, state) for role in Role for state in TRANSITIONS[role]}
    assert (CLIENT, SHUT) not in reached


@pytest.mark.parametrize(("role", "states", "kind"), TRANSITION_CASES)
def test_a_local_send_follows_the_table(
    role: Role, states: Pair, kind: FrameKind
) -> None:
    proto = build(role, states)
    before = (proto.our_state, proto.their_state)
    if legal(role, kind, states):
        data = local_send(proto, kind)
        assert data == _expected_bytes(role, kind)
        assert proto.our_state is TRANSITIONS[role][states[role]][kind]
        assert proto.their_state is states[role.peer]
        assert proto.cause is None
        return
    with pytest.raises(LocalProtocolError) as info:
        local_send(proto, kind)
    text = str(info.value)
    if kind in TRANSITIONS[role].get(states[role], {}):
        other, need = GUARDS[(role, kind)]
        assert f"only after the {other.value} has reached {need.name}" in text
        assert "the server never ends first" in text
    elif states[role] is DONE:
        assert text == f"cannot send {kind.value} after END"
    else:
        assert text == (
            f"a {role.value} in state {states[role].name} may not send {kind.value}"
        )
    assert (proto.our_state, proto.their_state) == before
    assert proto.cause is None  # a refused call leaves the connection usable


def _expected_bytes(role: Role, kind: FrameKind) -> bytes:
    if kind is FrameKind.END and role is SERVER:
        return encode_end(0)
    return frame_from(role, kind)


@pytest.mark.parametrize(("role", "states", "kind"), TRANSITION_CASES)
def test_a_received_frame_follows_the_table(
    role: Role, states: Pair, kind: FrameKind
) -> None:
    proto = build(role, states)
    peer = role.peer
    before = (proto.our_state, proto.their_state)
    data = frame_from(peer, kind)
    if legal(peer, kind, states):
        events = proto.receive_data(data)
        assert proto.their_state is TRANSITIONS[peer][states[peer]][kind]
        assert proto.our_state is states[role]
        assert (
            events
            == {
                FrameKind.PREAMBLE: [],
                FrameKind.MESSAGE: [Message(b"x")],
                FrameKind.SHUTDOWN: [ShutdownRequest(2.0, "r")],
                FrameKind.END: [End(None if peer is CLIENT else 0)],
            }[kind]
        )
        assert proto.cause is None
        return
    with pytest.raises(ProtocolError) as info:
        proto.receive_data(data)
    text = str(info.value)
    theirs = states[peer]
    if theirs is PRE:
        assert "does not speak adieu" in text
    elif kind is FrameKind.PREAMBLE:
        assert "second preamble" in text
    elif kind in TRANSITIONS[peer][theirs]:
        other, need = GUARDS[(peer, kind)]
        assert text == (
            f"the {peer.value} sent {kind.name} before the "
            f"{other.value} reached {need.name}"
        )
    elif theirs is DONE:
        assert text == f"the {peer.value} sent {kind.name} after its END"
    else:
        assert text == f"a {peer.value} may not send {kind.name} in state {theirs.name}"
    assert info.value.events == ()
    assert (proto.our_state, proto.their_state) == before
    assert proto.cause is TerminationKind.PROTOCOL_ERROR  # even after both ENDs
    termination = proto.close()
    assert termination.kind is TerminationKind.PROTOCOL_ERROR
    assert termination.initiator is Initiator.PEER
    assert termination.detail == text


# ------------------------------------------------------------------ helpers


def end_of(proto: Protocol) -> bytes:
    """``proto``'s END as an I/O layer sends it: produced, then written."""
    frame = proto.send_end()
    proto.end_written()
    return frame


def connected(
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> tuple[Protocol, Protocol]:
    """A client and a server that have exchanged preambles."""
    client = Protocol(CLIENT, max_message_size=max_message_size)
    server = Protocol(SERVER, max_message_size=max_message_size)
    assert server.receive_data(client.preamble()) == []
    assert client.receive_data(server.preamble()) == []
    return client, server


def converse(client: Protocol, server: Protocol, n: int) -> None:
    """The client sends ``n`` messages, the server answers each one."""
    for i in range(n):
        [request] = server.receive_data(client.send_message(b"req %d" % i))
        assert request == Message(b"req %d" % i)
        [reply] = client.receive_data(server.send_message(b"rep %d" % i))
        assert reply == Message(b"rep %d" % i)


# ----------------------------------------------------------- named refusals


def test_a_client_may_not_send_shutdown() -> None:
    client, _ = connected()
    with pytest.raises(LocalProtocolError, match="a client in state OPEN may not send"):
        client.send_shutdown(1.0)
    assert not client.shutdown_sent


def test_a_server_refuses_shutdown_from_a_client() -> None:
    _, server = connected()
    with pytest.raises(ProtocolError, match="a client may not send SHUTDOWN"):
        server.receive_data(encode_shutdown(1.0, None))


def test_a_second_shutdown_is_refused_both_ways() -> None:
    client, server = connected()
    client.receive_data(server.send_shutdown(1.0))
    with pytest.raises(LocalProtocolError, match="SHUTTING_DOWN may not send shutdown"):
        server.send_shutdown(1.0)
    with pytest.raises(
        ProtocolError, match="a server may not send SHUTDOWN in state SHUTTING_DOWN"
    ):
        client.receive_data(encode_shutdown(1.0, None))


@pytest.mark.parametrize("role", list(Role))
def test_no_message_after_this_sides_end(role: Role) -> None:
    client, server = connected()
    server.receive_data(end_of(client))
    if role is SERVER:
        client.receive_data(end_of(server))
    proto = client if role is CLIENT else server
    with pytest.raises(LocalProtocolError, match="cannot send message after END"):
        proto.send_message(b"late")
    assert proto.messages_sent == 0


@pytest.mark.parametrize("role", list(Role))
def test_no_message_accepted_after_the_peers_end(role: Role) -> None:
    client, server = connected()
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    receiver = server if role is CLIENT else client  # the peer of the sender
    late = encode_message_header(4) + b"late"
    with pytest.raises(ProtocolError, match=f"the {role.value} sent MESSAGE after"):
        receiver.receive_data(late)
    assert receiver.messages_received == 0


def test_a_server_end_before_the_clients_end_is_refused_locally() -> None:
    _, server = connected()
    assert not server.may_send_end
    with pytest.raises(LocalProtocolError, match="the server never ends first"):
        server.send_end()
    assert server.our_state is OPEN
    server.send_shutdown(5.0)
    with pytest.raises(LocalProtocolError, match="only after the client has reached"):
        server.send_end()
    assert server.our_state is SHUT


def test_a_server_end_before_the_clients_end_is_refused_remotely() -> None:
    client, _ = connected()
    with pytest.raises(
        ProtocolError, match="the server sent END before the client reached DONE"
    ):
        client.receive_data(encode_end(0))
    assert client.cause is TerminationKind.PROTOCOL_ERROR


def test_a_second_preamble_is_refused() -> None:
    client, server = connected()
    with pytest.raises(LocalProtocolError, match="may not send preamble"):
        client.preamble()
    with pytest.raises(ProtocolError, match="second preamble"):
        server.receive_data(encode_preamble(CLIENT))


def test_nothing_may_be_sent_after_the_connection_ended() -> None:
    client, _ = connected()
    client.connection_reset()
    assert not client.can_send
    assert not client.may_send_end
    with pytest.raises(LocalProtocolError, match=r"the connection has ended \(RESET"):
        client.send_message(b"x")
    with pytest.raises(LocalProtocolError, match="cannot send end: the connection"):
        client.send_end()


# ---------------------------------------------------------------- END count


def test_the_server_end_counts_messages_received_minus_discarded() -> None:
    client, server = connected()
    for i in range(5):
        server.receive_data(client.send_message(b"%d" % i))
    server.receive_data(end_of(client))
    server.discard(2)
    end = server.send_end()
    assert end == encode_end(3)
    [event] = client.receive_data(end)
    assert event == End(3)
    termination = client.close()
    assert termination.acknowledged == 3
    assert termination.confirmed is False
    assert termination.kind is TerminationKind.CLEAN
    assert not termination.lossless
    server_termination = server.close()
    assert server_termination.messages_received == 5
    assert server_termination.messages_discarded == 2
    assert server_termination.confirmed is None


def test_the_client_is_confirmed_when_the_server_delivered_everything() -> None:
    client, server = connected()
    converse(client, server, 3)
    server.receive_data(end_of(client))
    assert client.receive_data(end_of(server)) == [End(3)]
    termination = client.close()
    assert termination.confirmed is True
    assert termination.acknowledged == 3
    assert termination.lossless


def test_confirmed_is_none_where_no_end_came() -> None:
    client, server = connected()
    server.receive_data(client.send_message(b"x"))
    client.send_end()
    with pytest.raises(ConnectionTruncated):
        client.receive_eof()
    termination = client.close()
    assert termination.confirmed is None
    assert termination.acknowledged is None


def test_confirmed_is_none_on_a_server() -> None:
    client, server = connected()
    converse(client, server, 1)
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    assert server.close().confirmed is None
    assert server.termination is not None
    assert server.termination.acknowledged is None


def test_an_end_acknowledging_more_than_was_sent_is_refused() -> None:
    client, server = connected()
    server.receive_data(client.send_message(b"one"))
    client.send_end()
    with pytest.raises(
        ProtocolError, match="acknowledges 2 messages; this client sent 1"
    ):
        client.receive_data(encode_end(2))
    assert client.close().kind is TerminationKind.PROTOCOL_ERROR


def test_discarding_more_than_was_received_is_refused() -> None:
    client, server = connected()
    server.receive_data(client.send_message(b"one"))
    with pytest.raises(ValueError, match="cannot discard more"):
        server.discard(2)
    with pytest.raises(ValueError, match="cannot discard more"):
        server.discard(-1)
    server.discard(1)
    assert server.messages_discarded == 1


# ---------------------------------------------------------------------- EOF


@pytest.mark.parametrize(
    ("received", "detail"),
    [
        (b"", "the transport ended before the peer's preamble was complete"),
        (b"ADIEU", "the transport ended before the peer's preamble was complete"),
        (encode_preamble(SERVER), "the transport ended without the peer's END"),
        (
            encode_preamble(SERVER) + encode_message_header(3) + b"abc",
            "the transport ended without the peer's END",
        ),
        (
            encode_preamble(SERVER) + encode_message_header(10)[:2],
            "the transport ended in the middle of a frame (2 of 5 frame header bytes)",
        ),
        (
            encode_preamble(SERVER) + encode_message_header(10) + b"abcd",
            "the transport ended in the middle of a frame "
            "(4 of 10 payload bytes of a frame)",
        ),
    ],
    ids=[
        "nothing",
        "mid-preamble",
        "between-frames",
        "after-a-message",
        "mid-header",
        "mid-payload",
    ],
)
def test_eof_before_the_peers_end_is_a_truncation(received: bytes, detail: str) -> None:
    client = Protocol(CLIENT)
    client.preamble()
    client.receive_data(received)
    with pytest.raises(ConnectionTruncated) as info:
        client.receive_eof()
    assert str(info.value) == detail
    assert client.eof_received
    termination = client.close()
    assert termination.kind is TerminationKind.TRUNCATED
    assert termination.initiator is Initiator.PEER
    assert termination.detail == detail


def test_eof_after_the_peers_end_is_clean() -> None:
    client, server = connected()
    converse(client, server, 2)
    server.receive_data(end_of(client))
    server.receive_eof()  # the client's FIN after its END: nothing to say
    client.receive_data(end_of(server))
    client.receive_eof()
    assert client.close().kind is TerminationKind.CLEAN
    assert server.close().kind is TerminationKind.CLEAN


def test_eof_is_reported_once() -> None:
    client = Protocol(CLIENT)
    with pytest.raises(ConnectionTruncated):
        client.receive_eof()
    client.receive_eof()  # a second report changes nothing and raises nothing
    assert client.close().kind is TerminationKind.TRUNCATED


def test_data_after_eof_is_a_protocol_error() -> None:
    client, server = connected()
    server.receive_data(end_of(client))
    server.receive_eof()
    with pytest.raises(ProtocolError, match="data after the transport's EOF"):
        server.receive_data(b"\x01")


# -------------------------------------------------------------- terminations


def test_clean_initiated_by_the_client() -> None:
    client, server = connected()
    converse(client, server, 2)
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    assert client.finished
    assert server.finished
    c, s = client.close(), server.close()
    assert (c.kind, c.initiator) == (TerminationKind.CLEAN, Initiator.LOCAL)
    assert (s.kind, s.initiator) == (TerminationKind.CLEAN, Initiator.PEER)
    assert (c.messages_sent, c.messages_received, c.messages_discarded) == (2, 2, 0)
    assert (s.messages_sent, s.messages_received, s.messages_discarded) == (2, 2, 0)
    assert c.lossless
    assert s.lossless


def test_clean_initiated_by_the_server_with_shutdown() -> None:
    client, server = connected()
    converse(client, server, 1)
    assert client.receive_data(server.send_shutdown(math.inf, "deploy")) == [
        ShutdownRequest(math.inf, "deploy")
    ]
    assert server.shutdown_sent
    assert client.shutdown_request == ShutdownRequest(math.inf, "deploy")
    # The server keeps answering while the client finishes.
    converse(client, server, 1)
    assert server.receive_data(end_of(client)) == [End(None)]
    assert client.receive_data(end_of(server)) == [End(2)]
    c, s = client.close(), server.close()
    assert (c.kind, c.initiator) == (TerminationKind.CLEAN, Initiator.PEER)
    assert (s.kind, s.initiator) == (TerminationKind.CLEAN, Initiator.LOCAL)
    assert c.confirmed is True


def test_clean_when_the_clients_end_crosses_the_shutdown() -> None:
    client, server = connected()
    converse(client, server, 1)
    # Both are on the wire at once; neither has seen the other's yet.
    client_end = end_of(client)
    shutdown = server.send_shutdown(10.0, "bye")
    # The client, already DONE, takes the SHUTDOWN and reads on.
    assert client.receive_data(shutdown + server.send_message(b"late answer")) == [
        ShutdownRequest(10.0, "bye"),
        Message(b"late answer"),
    ]
    assert server.receive_data(client_end) == [End(None)]
    assert client.receive_data(end_of(server)) == [End(1)]
    c, s = client.close(), server.close()
    assert c.kind is s.kind is TerminationKind.CLEAN
    # Each side started the handshake before it saw the other's frame.
    assert c.initiator is Initiator.LOCAL
    assert s.initiator is Initiator.LOCAL
    assert c.confirmed is True
    assert c.messages_received == 2


def test_reset() -> None:
    client, server = connected()
    converse(client, server, 1)
    client.connection_reset()
    t = client.close()
    assert (t.kind, t.initiator) == (TerminationKind.RESET, Initiator.PEER)
    assert t.detail == "the peer reset the connection"
    assert not t.clean


def test_truncated_by_the_peer_through_a_broken_transport() -> None:
    client, _ = connected()
    client.transport_broken("TLS stream cut without close_notify")
    t = client.close()
    assert (t.kind, t.initiator) == (TerminationKind.TRUNCATED, Initiator.PEER)
    assert t.detail == "TLS stream cut without close_notify"


def test_truncated_by_the_peer_through_eof() -> None:
    client, server = connected()
    server.receive_data(client.send_message(b"x"))
    with pytest.raises(ConnectionTruncated):
        server.receive_eof()
    t = server.close()
    assert (t.kind, t.initiator) == (TerminationKind.TRUNCATED, Initiator.PEER)
    assert t.messages_received == 1


@pytest.mark.parametrize("role", list(Role))
def test_truncated_locally_by_closing_before_the_handshake_completes(
    role: Role,
) -> None:
    proto = Protocol(role)
    proto.preamble()
    t = proto.close()
    assert (t.kind, t.initiator) == (TerminationKind.TRUNCATED, Initiator.LOCAL)
    assert t.detail == "this side closed before the terminal handshake completed"
    assert proto.cause is TerminationKind.TRUNCATED
    assert not proto.can_send


def test_truncated_locally_by_closing_after_only_the_clients_end() -> None:
    client, server = connected()
    server.receive_data(end_of(client))
    t = server.close()  # a server closing without its END: the client will know
    assert (t.kind, t.initiator) == (TerminationKind.TRUNCATED, Initiator.LOCAL)


def test_aborted() -> None:
    client, server = connected()
    converse(client, server, 1)
    server.abort()
    t = server.close()
    assert (t.kind, t.initiator) == (TerminationKind.ABORTED, Initiator.LOCAL)
    assert t.detail == "aborted by this side"


def test_timed_out() -> None:
    _, server = connected()
    server.send_shutdown(0.5)
    server.abort(timed_out=True)
    t = server.close()
    assert (t.kind, t.initiator) == (TerminationKind.TIMED_OUT, Initiator.LOCAL)
    assert t.detail == "timed out"


def test_abort_with_a_detail() -> None:
    client = Protocol(CLIENT)
    client.abort(detail="the handler raised KeyError")
    assert client.close().detail == "the handler raised KeyError"


def test_protocol_error() -> None:
    _, server = connected()
    with pytest.raises(ProtocolError):
        server.receive_data(b"\x09\x00\x00\x00\x00")
    t = server.close()
    assert (t.kind, t.initiator) == (TerminationKind.PROTOCOL_ERROR, Initiator.PEER)
    assert t.detail == "unknown frame type 0x09"


def test_a_message_too_large_from_the_peer_is_a_protocol_error() -> None:
    _, server = connected(max_message_size=4)
    with pytest.raises(MessageTooLarge) as info:
        server.receive_data(encode_message_header(5))
    assert (info.value.size, info.value.limit) == (5, 4)
    assert server.buffered == 0
    assert server.close().kind is TerminationKind.PROTOCOL_ERROR


Cause = Callable[[Protocol], None]


def _reset(p: Protocol) -> None:
    p.connection_reset()


def _abort(p: Protocol) -> None:
    p.abort()


def _time_out(p: Protocol) -> None:
    p.abort(timed_out=True)


def _break(p: Protocol) -> None:
    p.transport_broken("broken")


def _eof(p: Protocol) -> None:
    with contextlib.suppress(ConnectionTruncated):
        p.receive_eof()


def _bad_bytes(p: Protocol) -> None:
    with contextlib.suppress(ProtocolError):
        p.receive_data(b"\xee\x00\x00\x00\x00")


CAUSES: dict[str, tuple[Cause, TerminationKind, Initiator]] = {
    "reset": (_reset, TerminationKind.RESET, Initiator.PEER),
    "abort": (_abort, TerminationKind.ABORTED, Initiator.LOCAL),
    "timeout": (_time_out, TerminationKind.TIMED_OUT, Initiator.LOCAL),
    "broken": (_break, TerminationKind.TRUNCATED, Initiator.PEER),
    "eof": (_eof, TerminationKind.TRUNCATED, Initiator.PEER),
    "bad-bytes": (_bad_bytes, TerminationKind.PROTOCOL_ERROR, Initiator.PEER),
}


@pytest.mark.parametrize("first", list(CAUSES))
@pytest.mark.parametrize("second", list(CAUSES))
def test_the_first_cause_wins(first: str, second: str) -> None:
    client, server = connected()
    converse(client, server, 1)
    cause, kind, initiator = CAUSES[first]
    cause(client)
    assert client.cause is kind
    CAUSES[second][0](client)  # raises nothing: the connection already ended
    t = client.close()
    assert (t.kind, t.initiator) == (kind, initiator)


def test_data_after_the_connection_ended_is_ignored() -> None:
    client, server = connected()
    client.abort()
    assert client.receive_data(server.send_message(b"too late")) == []
    assert client.messages_received == 0


@pytest.mark.parametrize("cause", ["abort", "timeout", "reset", "broken"])
def test_a_cause_after_both_ends_leaves_the_connection_clean(cause: str) -> None:
    client, server = connected()
    converse(client, server, 1)
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    CAUSES[cause][0](client)
    CAUSES[cause][0](server)
    assert client.cause is None
    assert client.close().kind is TerminationKind.CLEAN
    assert server.close().kind is TerminationKind.CLEAN


@pytest.mark.parametrize("cause", ["abort", "timeout", "reset", "broken"])
def test_a_cause_before_our_end_is_written_counts(cause: str) -> None:
    # Both ENDs were produced, but the server's is still queued: the cause
    # destroys it on its way to the client, so the ending is not CLEAN.
    client, server = connected()
    converse(client, server, 1)
    server.receive_data(end_of(client))
    client.receive_data(server.send_end())
    CAUSES[cause][0](server)
    assert server.cause is not None
    assert server.close().kind is not TerminationKind.CLEAN


def test_close_is_idempotent_and_final() -> None:
    client, _ = connected()
    first = client.close()
    assert client.termination is first
    client.abort()
    client.connection_reset()
    assert client.close() is first
    assert first.kind is TerminationKind.TRUNCATED
    with pytest.raises(LocalProtocolError, match="the connection has ended"):
        client.send_message(b"x")


def test_termination_is_none_before_close() -> None:
    client, _ = connected()
    assert client.termination is None


# ------------------------------------------------- events before a bad frame


def test_events_before_a_bad_frame_are_kept_on_the_error() -> None:
    client, server = connected()
    data = (
        server.send_message(b"one")
        + server.send_shutdown(3.0, "bye")
        + server.send_message(b"two")
        + encode_shutdown(1.0, None)  # a second SHUTDOWN: the bad frame
        + server.send_message(b"never")
    )
    with pytest.raises(ProtocolError, match="SHUTTING_DOWN") as info:
        client.receive_data(data)
    assert info.value.events == (
        Message(b"one"),
        ShutdownRequest(3.0, "bye"),
        Message(b"two"),
    )
    assert client.messages_received == 2


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (b"\x09\x00\x00\x00\x00", ProtocolError),  # unknown frame type
        (encode_preamble(SERVER), ProtocolError),  # second preamble
        (b"\x02\x00\x00\x01\x00", ProtocolError),  # END of 256 bytes
        (encode_message_header(101), MessageTooLarge),
    ],
    ids=["unknown-type", "second-preamble", "control-size", "too-large"],
)
def test_events_before_a_frame_the_decoder_refuses_are_kept_on_the_error(
    bad: bytes, error: type[ProtocolError]
) -> None:
    client, server = connected(max_message_size=100)
    data = server.send_message(b"one") + server.send_message(b"two") + bad
    with pytest.raises(error) as info:
        client.receive_data(data)
    assert info.value.events == (Message(b"one"), Message(b"two"))
    assert client.messages_received == 2
    assert client.close().kind is TerminationKind.PROTOCOL_ERROR


def test_events_before_an_undecodable_payload_are_kept_on_the_error() -> None:
    client, server = connected()
    grace_and_bad_reason = b"\x00\x00\x03\xe8" + b"ok\xff"
    bad_shutdown = b"\x03" + len(grace_and_bad_reason).to_bytes(4, "big")
    data = server.send_message(b"one") + bad_shutdown + grace_and_bad_reason
    with pytest.raises(ProtocolError, match="not valid UTF-8") as info:
        client.receive_data(data)
    assert info.value.events == (Message(b"one"),)


# ---------------------------------------------------------- counts and sizes


def test_message_counts() -> None:
    client, server = connected()
    for i in range(4):
        server.receive_data(client.send_message(b"c%d" % i))
    for i in range(2):
        client.receive_data(server.send_message(b"s%d" % i))
    assert (client.messages_sent, client.messages_received) == (4, 2)
    assert (server.messages_sent, server.messages_received) == (2, 4)
    server.discard(1)
    assert server.messages_discarded == 1


def test_a_message_counts_only_once_whole() -> None:
    client, server = connected()
    frame = client.send_message(b"split in two")
    assert server.receive_data(frame[:7]) == []  # the header and 2 bytes
    assert server.messages_received == 0
    assert server.buffered == 2
    assert server.receive_data(frame[7:]) == [Message(b"split in two")]
    assert server.messages_received == 1
    assert server.buffered == 0


def test_message_too_large_on_send_leaves_the_protocol_usable_and_uncounted() -> None:
    client, server = connected(max_message_size=8)
    with pytest.raises(MessageTooLarge) as info:
        client.send_message(b"123456789")
    assert (info.value.size, info.value.limit) == (9, 8)
    assert isinstance(info.value, ValueError)
    assert client.messages_sent == 0
    assert client.cause is None
    assert client.can_send
    assert server.receive_data(client.send_message(b"12345678")) == [
        Message(b"12345678")
    ]
    assert client.messages_sent == 1


def test_send_message_takes_any_bytes_like_object() -> None:
    client, server = connected(max_message_size=4)
    frames = (
        client.send_message(bytearray(b"ab"))
        + client.send_message(memoryview(b"cd"))
        + client.send_message(memoryview(b"wxyz").cast("I"))  # 4 bytes, 1 item
    )
    assert server.receive_data(frames) == [
        Message(b"ab"),
        Message(b"cd"),
        Message(b"wxyz"),
    ]
    with pytest.raises(MessageTooLarge):
        client.send_message(memoryview(b"12345678").cast("I"))  # 8 bytes, 2 items


def test_receive_data_takes_a_bytearray() -> None:
    client, server = connected()
    assert server.receive_data(bytearray(client.send_message(b"x"))) == [Message(b"x")]


@pytest.mark.parametrize("size", [-1, MAX_MESSAGE_SIZE_LIMIT + 1])
def test_max_message_size_out_of_range_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="max_message_size must be between"):
        Protocol(CLIENT, max_message_size=size)


def test_a_refused_shutdown_argument_sends_nothing() -> None:
    _, server = connected()
    with pytest.raises(ValueError, match="grace_period"):
        server.send_shutdown(-1.0)
    assert server.our_state is OPEN
    assert not server.shutdown_sent
    server.send_shutdown(1.0)
    assert server.our_state is SHUT


def flags(proto: Protocol) -> set[str]:
    """The names of the state properties that are true."""
    names = [
        "handshake_complete",
        "can_send",
        "may_send_end",
        "end_sent",
        "end_received",
        "finished",
    ]
    return {name for name in names if getattr(proto, name)}


def test_state_properties_follow_the_handshake() -> None:
    client, server = Protocol(CLIENT), Protocol(SERVER)
    assert flags(client) == flags(server) == set()
    server.receive_data(client.preamble())
    assert flags(client) == {"can_send", "may_send_end"}
    assert flags(server) == {"handshake_complete"}
    client.receive_data(server.preamble())
    assert flags(client) == {"handshake_complete", "can_send", "may_send_end"}
    # The server never ends first: no END before the client's.
    assert flags(server) == {"handshake_complete", "can_send"}
    server.receive_data(end_of(client))
    assert flags(client) == {"handshake_complete", "end_sent"}
    assert flags(server) == {
        "handshake_complete",
        "can_send",
        "may_send_end",
        "end_received",
    }
    client.receive_data(end_of(server))
    done = {"handshake_complete", "end_sent", "end_received", "finished"}
    assert flags(client) == flags(server) == done
