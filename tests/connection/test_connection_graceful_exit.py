"""A client leaving its block normally: END, then the server's remaining
messages are read (discarded, counted) until the server's END, bounded by
the close timeout; a server that never sends END makes the exit end
``TIMED_OUT`` exactly at the timeout."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import (
    connect_to_raw_peer,
    receive_exactly,
    tcp_listener,
    tcp_server,
)

import adieu
from adieu import Initiator, TerminationKind
from adieu.testing import connect_memory, memory_stream_pair, open_memory_server
from shared_support import CLIENT_END, CLIENT_PREAMBLE, SERVER_PREAMBLE, message_frame

CLOSE_TIMEOUT = 600.0


async def talkative(conn: adieu.Connection) -> None:
    """Sends three messages nobody asked for, reads to the client's END,
    sends two more, returns (the server's END)."""
    for i in range(3):
        await conn.send(b"early %d" % i)
    async for _ in conn:
        pass
    for i in range(2):
        await conn.send(b"late %d" % i)


def assert_clean_with_five_discarded(conn: adieu.Connection) -> None:
    termination = conn.termination
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN
    assert termination.initiator is Initiator.LOCAL  # the client's END came first
    assert termination.messages_received == 5
    assert termination.messages_discarded == 5
    assert termination.confirmed is True
    assert termination.acknowledged == 0


async def test_leaving_the_block_reads_and_counts_what_the_server_still_sends(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_memory_server(talkative) as server:
        async with connect_memory(server) as conn:
            pass
        assert_clean_with_five_discarded(conn)


async def test_leaving_the_block_reads_and_counts_what_the_server_still_sends_tcp() -> (
    None
):
    async with tcp_server(talkative) as server:
        async with adieu.connect_tcp("127.0.0.1", server.port) as conn:
            pass
        assert_clean_with_five_discarded(conn)


async def test_a_server_that_never_ends_times_out_exactly_at_the_close_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    client_stream, peer = memory_stream_pair()
    peer_saw = bytearray()

    async def never_ending_server() -> None:
        await peer.send_all(SERVER_PREAMBLE + message_frame(b"unread"))
        try:
            while chunk := await peer.receive_some():
                peer_saw.extend(chunk)
        except trio.BrokenResourceError:
            pass  # the client's abort

    async with trio.open_nursery() as nursery:
        nursery.start_soon(never_ending_server)
        async with adieu.wrap_stream(
            client_stream, "client", grace_period=CLOSE_TIMEOUT
        ) as conn:
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
        assert trio.current_time() == start + CLOSE_TIMEOUT
    termination = conn.termination
    assert termination is not None
    assert termination.kind is TerminationKind.TIMED_OUT
    assert termination.initiator is Initiator.LOCAL
    assert termination.messages_discarded == 1
    assert termination.confirmed is None
    # The client did send its END before it waited.
    assert bytes(peer_saw) == CLIENT_PREAMBLE + CLIENT_END


async def test_connect_tcp_close_timeout_bounds_the_exit() -> None:
    """The same over TCP, with ``connect_tcp(close_timeout=...)`` (short:
    this test runs on the real clock)."""
    close_timeout = 0.2
    async with tcp_listener() as listener:
        async with connect_to_raw_peer(listener, close_timeout=close_timeout) as (
            conn,
            peer,
        ):
            start = trio.current_time()
        assert trio.current_time() - start >= close_timeout
        # The client's END and its half-close came before the wait...
        assert await receive_exactly(peer, len(CLIENT_END)) == CLIENT_END
        assert await peer.receive_some() == b""
        # ...and the abort at the timeout reset the connection.
        with pytest.raises(trio.BrokenResourceError):
            await peer.send_all(b"too late")
        await peer.aclose()
    assert conn.termination is not None
    assert conn.termination.kind is TerminationKind.TIMED_OUT
