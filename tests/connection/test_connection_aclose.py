"""``aclose()``: Trio's ``AsyncResource`` contract. Idempotent; if cancelled
(or called in a cancelled scope) the transport is still released, at once,
without waiting for the linger; the linger itself is bounded."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import (
    connect_to_raw_peer,
    memory_pair,
    receive_to_eof,
    tcp_listener,
)

import adieu
from adieu import Initiator, TerminationKind
from adieu.testing import memory_stream_pair, open_connection_pair
from shared_support import CLIENT_END, CLIENT_PREAMBLE, SERVER_PREAMBLE

LONG = 3600.0


async def test_aclose_is_idempotent(autojump_clock: trio.abc.Clock) -> None:
    async with memory_pair() as (client, server):
        await client.send(b"last")

        async def serve() -> None:
            assert [data async for data in server] == [b"last"]
            await server.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            await client.aclose()
        first = client.termination
        assert first is not None
        assert first.kind is TerminationKind.CLEAN
        await client.aclose()
        await client.aclose()
        assert client.termination is first
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"after close")
        with pytest.raises(trio.ClosedResourceError):
            await client.receive()
    assert client.termination is first
    assert server.termination is not None
    assert server.termination.kind is TerminationKind.CLEAN


async def test_aclose_in_a_cancelled_scope_releases_at_once_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    client_stream, peer = memory_stream_pair()
    async with adieu.wrap_stream(client_stream, "client", linger=LONG) as client:
        await peer.send_all(SERVER_PREAMBLE)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.aclose()
        # No linger was waited for, and the transport is released: the peer
        # reads the client's preamble and then EOF (no END: there was no
        # time to send one).
        assert trio.current_time() == start
        termination = client.termination
        assert termination is not None
        assert termination.kind is TerminationKind.TRUNCATED
        assert termination.initiator is Initiator.LOCAL
        assert client.transport.closed
        assert await receive_to_eof(peer) == CLIENT_PREAMBLE
        # Idempotent, cancelled or not.
        await client.aclose()
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.aclose()
        assert client.termination is termination
        assert trio.current_time() == start


async def test_aclose_cancelled_while_lingering_releases_at_once(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A peer that never closes holds the linger; cancelling the close ends
    it there and then, with the transport released."""
    client_stream, peer = memory_stream_pair()
    async with adieu.wrap_stream(client_stream, "client", linger=LONG) as client:
        await peer.send_all(SERVER_PREAMBLE)
        start = trio.current_time()
        with trio.move_on_after(5) as scope:
            await client.aclose()
        assert scope.cancelled_caught
        assert trio.current_time() == start + 5
        assert client.termination is not None
        assert client.transport.closed
        # END went out before the linger; then EOF, since it was released.
        assert await receive_to_eof(peer) == CLIENT_PREAMBLE + CLIENT_END


async def test_aclose_linger_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    """Without a cancellation, a peer that never closes holds ``aclose()``
    for exactly the linger, then the transport is released anyway."""
    client_stream, peer = memory_stream_pair()
    async with adieu.wrap_stream(client_stream, "client", linger=30) as client:
        await peer.send_all(SERVER_PREAMBLE)
        start = trio.current_time()
        await client.aclose()
        assert trio.current_time() == start + 30
        assert client.termination is not None
        assert await receive_to_eof(peer) == CLIENT_PREAMBLE + CLIENT_END


async def test_aclose_in_a_cancelled_scope_releases_the_socket_over_tcp() -> None:
    async with tcp_listener() as listener:
        async with connect_to_raw_peer(listener, linger=LONG) as (client, peer):
            sock = client.transport.socket
            assert sock is not None
            assert sock.fileno() >= 0
            start = trio.current_time()
            with trio.CancelScope() as scope:
                scope.cancel()
                await client.aclose()
            # Released without the (hour-long) linger.
            assert trio.current_time() - start < LONG
            assert sock.fileno() == -1
            assert client.termination is not None
            # A close, not a reset: the peer reads EOF.
            assert await peer.receive_some(1) == b""
            await client.aclose()
            await peer.aclose()
        assert client.termination.kind is TerminationKind.TRUNCATED


async def test_a_server_that_acloses_first_truncates_by_its_own_hand(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A server's aclose() before the client's END cannot send END: its
    client sees a truncation by the peer, and the server reports the
    truncation as its own (LOCAL), even though the client's EOF arrived
    while it lingered. Leaving the pair's block afterwards raises nothing."""
    async with open_connection_pair() as (client, server):
        await client.send(b"late request")
        assert await server.receive() == b"late request"
        await server.aclose()
        with pytest.raises(adieu.ConnectionTruncated):
            await client.receive()
    assert server.termination is not None
    assert server.termination.kind is TerminationKind.TRUNCATED
    assert server.termination.initiator is Initiator.LOCAL
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.TRUNCATED
    assert client.termination.initiator is Initiator.PEER
