"""The lifecycle the core owns: when the ending is decided (and the report
built, at that moment), when the I/O layer may release the transport, what
error a call raises after the peer broke the connection, and how a close in
progress changes what arriving messages and an EOF mean."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adieu import (
    ConnectionReset,
    ConnectionTruncated,
    Initiator,
    LocalProtocolError,
    MessageTooLarge,
    Protocol,
    ProtocolError,
    Role,
    Termination,
    TerminationKind,
)
from adieu._frames import encode_message_header
from adieu._protocol import End, Message, ShutdownRequest


def connected(*, half_close: bool = True) -> tuple[Protocol, Protocol]:
    client = Protocol(Role.CLIENT, half_close=half_close)
    server = Protocol(Role.SERVER, half_close=half_close)
    assert server.receive_data(client.preamble()) == []
    assert client.receive_data(server.preamble()) == []
    return client, server


def decided(proto: Protocol) -> Termination | None:
    """(A function, so that the type checker does not narrow the property
    between two steps that change it.)"""
    assert proto.may_release is proto.decided
    assert proto.decided is (proto.termination is not None)
    return proto.termination


def test_a_clean_ending_is_decided_at_the_last_step_whichever_it_is() -> None:
    client, server = connected()
    server.receive_data(client.send_end())
    client.end_written()
    client.eof_sent()
    server.receive_eof()
    client.receive_data(server.send_end())
    assert decided(client) is None  # the server's EOF is still to come
    server.end_written()
    assert decided(server) is None  # its own EOF is not sent yet
    server.eof_sent()
    termination = decided(server)
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN
    assert termination.initiator is Initiator.PEER
    assert server.close() is termination
    client.receive_eof()
    termination = decided(client)
    assert termination is not None
    assert (termination.kind, termination.initiator) == (
        TerminationKind.CLEAN,
        Initiator.LOCAL,
    )


def test_the_ending_is_not_decided_until_our_end_is_written() -> None:
    client, server = connected()
    server.receive_data(client.send_end())
    client.receive_data(server.send_end())
    server.eof_sent()
    server.receive_eof()
    assert server.finished
    assert decided(server) is None
    # The server's END is still queued: an abort destroys it on its way, and
    # the client never hears it. The report must not say CLEAN.
    server.abort()
    termination = decided(server)
    assert termination is not None
    assert termination.kind is TerminationKind.ABORTED


def test_once_decided_a_later_cause_changes_nothing() -> None:
    client, server = connected(half_close=False)
    server.receive_data(client.send_end())
    client.receive_data(server.send_end())
    server.end_written()
    first = decided(server)
    assert first is not None
    server.abort()
    server.connection_reset()
    server.transport_broken("late")
    assert server.cause is None
    assert server.failure() is None
    assert server.close() is first


def test_a_cause_after_our_end_is_written_decides_clean_at_once() -> None:
    # Both ENDs exchanged, ours written, no EOF yet: a reset can destroy
    # nothing any more (the transport just ended untidily).
    client, server = connected()
    server.receive_data(client.send_end())
    client.end_written()
    client.receive_data(server.send_end())
    client.connection_reset()
    termination = decided(client)
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN
    assert client.failure() is None


def test_without_a_half_close_the_two_ends_decide() -> None:
    client, server = connected(half_close=False)
    server.receive_data(client.send_end())
    client.end_written()
    assert decided(client) is None
    [end] = client.receive_data(server.send_end())
    assert end == End(0)
    assert decided(client) is not None  # no EOF to wait for
    assert decided(server) is None
    server.end_written()
    assert decided(server) is not None


def test_end_written_before_end_is_refused() -> None:
    client, _ = connected()
    with pytest.raises(LocalProtocolError, match="END was not sent"):
        client.end_written()
    assert not client.end_out


def test_end_and_eof_out_are_recorded() -> None:
    client, _ = connected()
    assert not client.end_out
    assert not client.eof_out
    client.send_end()
    client.end_written()
    client.end_written()  # idempotent
    client.eof_sent()
    assert (client.end_out, client.eof_out) == (True, True)


def test_an_eof_while_closing_now_is_this_sides_truncation() -> None:
    _, server = connected()
    server.begin_close(now=True)
    assert server.closing
    assert decided(server) is None
    server.receive_eof()  # no ConnectionTruncated: this side is leaving
    termination = decided(server)
    assert termination is not None
    assert (termination.kind, termination.initiator) == (
        TerminationKind.TRUNCATED,
        Initiator.LOCAL,
    )
    assert server.failure() is None


def test_an_eof_while_closing_gracefully_is_the_peers_truncation() -> None:
    _, server = connected()
    server.begin_close()
    with pytest.raises(ConnectionTruncated):
        server.receive_eof()
    assert isinstance(server.failure(), ConnectionTruncated)
    termination = decided(server)
    assert termination is not None
    assert termination.initiator is Initiator.PEER


def test_a_close_now_overrides_a_graceful_close_and_not_back() -> None:
    _, server = connected()
    server.begin_close()
    server.begin_close(now=True)
    server.begin_close()
    server.receive_eof()  # a close in one step: no truncation raised
    assert server.cause is TerminationKind.TRUNCATED
    assert not server.broken


@given(before=st.integers(0, 5), after=st.integers(0, 5))
def test_messages_that_arrive_while_closing_are_discarded_and_counted(
    before: int, after: int
) -> None:
    client, server = connected()
    for i in range(before):
        assert server.receive_data(client.send_message(b"%d" % i)) == [
            Message(b"%d" % i)
        ]
    server.begin_close()
    wire = b"".join(client.send_message(b"late") for _ in range(after))
    assert server.receive_data(wire + client.send_end()) == [End(None)]
    assert server.messages_received == before + after
    assert server.messages_discarded == after
    # The server's END acknowledges only what its application received.
    [end] = client.receive_data(server.send_end())
    assert end == End(before)


def test_the_failure_is_new_each_time_and_chained_to_its_cause() -> None:
    client, _ = connected()
    assert client.failure() is None
    os_error = ConnectionResetError(104, "Connection reset by peer")
    client.connection_reset("reset!", error=os_error)
    first, second = client.failure(), client.failure()
    assert isinstance(first, ConnectionReset)
    assert first is not second
    assert str(first) == "reset!"
    assert first.__cause__ is os_error
    assert client.broken
    assert decided(client) is not None


def test_a_broken_transport_fails_as_a_truncation() -> None:
    client, _ = connected()
    client.transport_broken("cut", error=OSError("gone"))
    failure = client.failure()
    assert isinstance(failure, ConnectionTruncated)
    assert isinstance(failure.__cause__, OSError)


def test_a_protocol_error_fails_as_itself_with_its_sizes() -> None:
    client, _ = connected()
    with pytest.raises(MessageTooLarge) as info:
        client.receive_data(encode_message_header(client.max_message_size + 1))
    failure = client.failure()
    assert type(failure) is MessageTooLarge
    assert failure.size == client.max_message_size + 1
    assert failure.limit == client.max_message_size
    assert failure.__cause__ is info.value
    _, server = connected()
    with pytest.raises(ProtocolError):
        server.receive_data(b"\x07\x00\x00\x00\x00")
    assert type(server.failure()) is ProtocolError


def test_a_local_abort_has_no_failure_to_raise() -> None:
    client, _ = connected()
    client.abort()
    assert not client.broken
    assert client.failure() is None
    assert decided(client) is not None


def test_closing_now_the_eof_decides_unless_our_end_is_on_its_way() -> None:
    # The server closed in one step before the client's END arrived: it sent
    # only its FIN. The client's END and EOF then come: nothing more will
    # be sent, so the EOF decides this side's truncation.
    client, server = connected()
    server.begin_close(now=True)
    server.eof_sent()
    server.receive_data(client.send_end())
    server.receive_eof()
    termination = decided(server)
    assert termination is not None
    assert (termination.kind, termination.initiator) == (
        TerminationKind.TRUNCATED,
        Initiator.LOCAL,
    )
    # Here the server's END was produced before the EOF and is still being
    # written: the EOF waits for it, and the ending is CLEAN.
    client, server = connected()
    server.receive_data(client.send_end())
    server.begin_close(now=True)
    client.receive_data(server.send_end())
    server.receive_eof()
    assert decided(server) is None
    server.end_written()
    server.eof_sent()
    termination = decided(server)
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN


@pytest.mark.parametrize("now", [False, True])
def test_a_closing_side_may_no_longer_send_messages(now: bool) -> None:
    client, _ = connected()
    before = client.can_send
    client.begin_close(now=now)
    assert (before, client.can_send) == (True, False)
    assert client.may_send_end  # its END still goes out


def test_a_release_before_our_end_is_written_is_our_truncation() -> None:
    # The server's END was produced but never written (its write never
    # started before the transport was released): the client never got it.
    client, server = connected()
    server.receive_data(client.send_end())
    client.receive_data(server.send_end())
    termination = server.close()
    assert (termination.kind, termination.initiator) == (
        TerminationKind.TRUNCATED,
        Initiator.LOCAL,
    )


def test_the_shutdown_request_is_known_to_both_sides() -> None:
    client, server = connected()
    before = server.shutdown_request
    frame = server.send_shutdown(5.0, "maintenance")
    assert before is None
    assert server.shutdown_request == ShutdownRequest(5.0, "maintenance")
    assert client.receive_data(frame) == [ShutdownRequest(5.0, "maintenance")]
    assert client.shutdown_request == server.shutdown_request


def test_can_receive_until_the_peers_end_a_close_or_a_cause() -> None:
    client = Protocol(Role.CLIENT)
    server = Protocol(Role.SERVER)
    steps = [server.can_receive]  # before the client's preamble
    server.receive_data(client.preamble())
    steps.append(server.can_receive)
    server.receive_data(client.send_end())
    steps.append(server.can_receive)
    client.receive_data(server.preamble())
    steps.append(client.can_receive)
    client.begin_close()
    steps.append(client.can_receive)
    _, server = connected()
    server.abort()
    steps.append(server.can_receive)
    assert steps == [False, True, False, True, False, False]


def test_by_default_the_transport_half_closes() -> None:
    # The default is a transport with an EOF after each END (TCP): both ENDs
    # are not enough, the ending waits for our FIN and the peer's.
    client, server = Protocol(Role.CLIENT), Protocol(Role.SERVER)
    server.receive_data(client.preamble())
    client.receive_data(server.preamble())
    server.receive_data(client.send_end())
    client.end_written()
    client.receive_data(server.send_end())
    server.end_written()
    assert (client.settled, server.settled) == (True, True)
    assert (decided(client), decided(server)) == (None, None)
    client.eof_sent()
    client.receive_eof()
    termination = decided(client)
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN


@pytest.mark.parametrize("discarded", [0, 1])
def test_the_confirmation_compares_counts_of_any_size(discarded: int) -> None:
    # Counts past 256 are distinct int objects however equal: the client's
    # check must compare their values.
    count = 300
    client, server = connected()
    wire = b"".join(client.send_message(b"") for _ in range(count))
    assert len(server.receive_data(wire)) == count
    server.receive_data(client.send_end())
    client.end_written()
    server.discard(discarded)
    [end] = client.receive_data(server.send_end())
    assert end == End(count - discarded)
    termination = client.close()
    assert termination.acknowledged == count - discarded
    assert termination.confirmed is (discarded == 0)


def test_closing_is_false_until_a_close_begins() -> None:
    client, server = connected()
    assert (client.closing, server.closing) == (False, False)
    server.abort()  # an abort is not the application closing
    assert not server.closing
    client.begin_close()
    assert client.closing


def test_the_flags_of_the_closing_verbs_are_given_by_name_only() -> None:
    # A bare True must not be read as "now", "timed out" or an error: each
    # of these changes what the report says.
    client, _ = connected()
    with pytest.raises(TypeError):
        client.begin_close(True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client.abort(True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client.connection_reset("reset", OSError())  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        client.transport_broken("cut", OSError())  # type: ignore[call-arg]
    assert not client.closing
    assert decided(client) is None


def test_the_peers_eof_is_recorded_once_reported() -> None:
    client, server = connected()
    server.receive_data(client.send_end())
    steps = [server.eof_received]  # END alone is not the transport's EOF
    server.receive_eof()
    steps.append(server.eof_received)
    server.receive_eof()  # idempotent
    steps += [server.eof_received, client.eof_received]
    assert steps == [False, True, True, False]
