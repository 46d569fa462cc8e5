"""The lifecycle the core owns: when the ending is decided, when the I/O
layer may release the transport, what error a call raises, and how a close
in progress changes what an EOF means."""

from __future__ import annotations

import pytest

from adieu import (
    ConnectionReset,
    ConnectionTruncated,
    Initiator,
    LocalProtocolError,
    MessageTooLarge,
    Protocol,
    ProtocolError,
    Role,
    TerminationKind,
)
from adieu._frames import encode_message_header


def may_release(proto: Protocol) -> bool:
    """(A function, so that the type checker does not narrow the property
    between two steps that change it.)"""
    return proto.may_release


def close_expected(proto: Protocol) -> bool:
    return proto.close_expected


def connected(*, half_close: bool = True) -> tuple[Protocol, Protocol]:
    client = Protocol(Role.CLIENT, half_close=half_close)
    server = Protocol(Role.SERVER, half_close=half_close)
    assert server.receive_data(client.preamble()) == []
    assert client.receive_data(server.preamble()) == []
    return client, server


def ended(client: Protocol, server: Protocol) -> None:
    """Both ENDs exchanged; neither side has reported its END written."""
    server.receive_data(client.send_end())
    client.receive_data(server.send_end())


def test_the_ending_is_decided_only_once_our_end_is_out() -> None:
    client, server = connected()
    ended(client, server)
    assert server.finished
    assert not server.decided
    assert not server.may_release
    # The server's END is still queued here: an abort would destroy it, and
    # the client would never hear it. The report must not say CLEAN.
    server.abort()
    assert server.close().kind is TerminationKind.ABORTED


def test_once_decided_a_later_cause_changes_nothing() -> None:
    client, server = connected()
    ended(client, server)
    server.end_written()
    assert server.decided
    server.abort()
    server.connection_reset()
    assert server.cause is None
    assert server.close().kind is TerminationKind.CLEAN


def test_release_waits_for_the_peer_eof_where_there_is_one() -> None:
    client, server = connected()
    ended(client, server)
    client.end_written()
    assert client.decided
    assert not may_release(client)
    assert not close_expected(client)
    client.receive_eof()
    assert may_release(client)
    assert client.close().kind is TerminationKind.CLEAN


def test_without_a_half_close_the_ends_alone_allow_the_release() -> None:
    client, server = connected(half_close=False)
    ended(client, server)
    client.end_written()
    server.end_written()
    assert client.may_release
    assert server.may_release


def test_end_written_before_end_is_refused() -> None:
    client, _ = connected()
    with pytest.raises(LocalProtocolError, match="END was not sent"):
        client.end_written()
    assert not client.end_out


def test_close_expected_once_this_side_has_done_its_part() -> None:
    client, server = connected()
    assert not close_expected(client)
    assert not close_expected(server)
    server.receive_data(client.send_end())
    assert close_expected(client)  # only the server can move it on now
    assert not close_expected(server)
    server.send_shutdown(1.0)
    assert close_expected(server)


def test_an_eof_while_closing_now_is_this_sides_truncation() -> None:
    _, server = connected()
    server.begin_close(now=True)
    assert server.closing == "now"
    server.fin_written()
    assert not may_release(server)
    server.receive_eof()  # no ConnectionTruncated: this side is leaving
    assert may_release(server)
    assert server.failure() is None
    t = server.close()
    assert (t.kind, t.initiator) == (TerminationKind.TRUNCATED, Initiator.LOCAL)


def test_an_eof_while_closing_gracefully_is_the_peers_truncation() -> None:
    _, server = connected()
    server.begin_close()
    assert server.closing == "graceful"
    with pytest.raises(ConnectionTruncated):
        server.receive_eof()
    assert isinstance(server.failure(), ConnectionTruncated)
    assert server.may_release


def test_a_close_now_overrides_a_graceful_close_and_not_back() -> None:
    client, _ = connected()
    client.begin_close()
    client.begin_close(now=True)
    client.begin_close()
    assert client.closing == "now"


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
    assert client.may_release


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
    assert client.failure() is None
    assert client.may_release


def test_a_close_now_releases_only_once_its_own_end_is_out() -> None:
    client, server = connected()
    server.receive_data(client.send_end())
    server.begin_close(now=True)
    server.receive_eof()
    # The server may send its END now, and means to: releasing before it is
    # out would lose it.
    assert not may_release(server)
    server.send_end()
    server.end_written()
    assert may_release(server)


def test_a_close_now_with_a_fin_alone_releases_at_the_eof() -> None:
    _, server = connected()
    server.begin_close(now=True)
    server.fin_written()
    assert not may_release(server)
    server.receive_eof()
    assert may_release(server)
