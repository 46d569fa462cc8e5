"""A transport EOF without the peer's END is a truncation
(:exc:`adieu.ConnectionTruncated`), never a clean end; the messages that
arrived before the cut are delivered first."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import (
    collect,
    connect_to_raw_peer,
    memory_pair,
    port_of,
    receive_exactly,
    tcp_listener,
)

import adieu
from adieu import Initiator, TerminationKind
from adieu.testing import memory_stream_pair
from shared_support import (
    CLIENT_PREAMBLE,
    MESSAGE,
    SERVER_PREAMBLE,
    header,
    message_frame,
)

BEFORE = [b"one", b"", b"three"]


async def test_a_cut_pipe_is_a_truncation_after_the_messages_before_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        for data in BEFORE:
            await client.send(data)
        # Let the server's reader take every byte in flight, then cut: the
        # server sees EOF without the client's END.
        await trio.testing.wait_all_tasks_blocked()
        pipe = adieu.testing.memory_stream(client).outgoing
        assert pipe.in_flight == b""
        pipe.cut()
        await trio.testing.wait_all_tasks_blocked()
        # The application reads only now: the messages come first...
        for data in BEFORE:
            assert await server.receive() == data
        # ...then the truncation, every time it asks.
        with pytest.raises(adieu.ConnectionTruncated):
            await server.receive()
        with pytest.raises(adieu.ConnectionTruncated):
            await server.receive()
        client.abort()
    termination = server.termination
    assert termination is not None
    assert termination.kind is TerminationKind.TRUNCATED
    assert termination.initiator is Initiator.PEER
    assert termination.messages_received == len(BEFORE)
    assert termination.messages_discarded == 0


async def test_iteration_raises_the_truncation_instead_of_ending(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        await client.send(b"only")
        await trio.testing.wait_all_tasks_blocked()
        client.transport.stream.outgoing.cut()  # type: ignore[attr-defined]
        received: list[bytes] = []
        with pytest.raises(adieu.ConnectionTruncated):
            await collect(server, received)
        client.abort()
    assert received == [b"only"]


@pytest.mark.parametrize("mid_frame", [False, True], ids=["at_boundary", "mid_frame"])
async def test_a_raw_peer_closing_without_end_over_memory(
    autojump_clock: trio.abc.Clock, mid_frame: bool
) -> None:
    client_stream, peer = memory_stream_pair()
    async with adieu.wrap_stream(client_stream, "client") as client:
        assert await receive_exactly(peer, len(CLIENT_PREAMBLE)) == CLIENT_PREAMBLE
        data = SERVER_PREAMBLE + b"".join(message_frame(m) for m in BEFORE)
        if mid_frame:
            data += header(MESSAGE, 100) + b"only ten b"
        await peer.send_all(data)
        await peer.send_eof()
        for expected in BEFORE:
            assert await client.receive() == expected
        with pytest.raises(adieu.ConnectionTruncated) as excinfo:
            await client.receive()
        if mid_frame:
            assert "middle of a frame" in str(excinfo.value)
        await peer.aclose()
    termination = client.termination
    assert termination is not None
    assert termination.kind is TerminationKind.TRUNCATED
    assert termination.initiator is Initiator.PEER
    assert termination.messages_received == len(BEFORE)


@pytest.mark.parametrize("mid_frame", [False, True], ids=["at_boundary", "mid_frame"])
async def test_a_raw_peer_closing_without_end_over_tcp(mid_frame: bool) -> None:
    """A server that sends its preamble and some messages, then closes its
    socket without END (having read everything, so the close is a FIN)."""
    async with tcp_listener() as listener:
        async with connect_to_raw_peer(listener) as (client, peer):
            data = b"".join(message_frame(m) for m in BEFORE)
            if mid_frame:
                data += header(MESSAGE, 100) + b"only ten b"
            await peer.send_all(data)
            await peer.aclose()
            received: list[bytes] = []
            with pytest.raises(adieu.ConnectionTruncated) as excinfo:
                await collect(client, received)
            assert received == BEFORE
            if mid_frame:
                assert "middle of a frame" in str(excinfo.value)
            # Asking again gives the same answer.
            with pytest.raises(adieu.ConnectionTruncated):
                await client.receive()
        termination = client.termination
        assert termination is not None
        assert termination.kind is TerminationKind.TRUNCATED
        assert termination.initiator is Initiator.PEER
        assert termination.messages_received == len(BEFORE)


async def test_leaving_the_block_after_a_truncation_closes_without_a_reset() -> None:
    """Once the peer's EOF without END was reported, ending the block
    normally releases the transport with a FIN: a peer that half-closed and
    still reads sees EOF, not a reset, and the report stays TRUNCATED."""
    async with tcp_listener() as listener:
        peer = trio.socket.socket()
        await peer.connect(("127.0.0.1", port_of(listener)))
        accepted = await listener.accept()
        async with adieu.wrap_stream(accepted, "server") as conn:
            await peer.send(CLIENT_PREAMBLE + message_frame(b"last"))
            peer.shutdown(trio.socket.SHUT_WR)  # EOF without END
            assert await conn.receive() == b"last"
            with pytest.raises(adieu.ConnectionTruncated):
                await conn.receive()
        # The peer reads the server's preamble, then a clean EOF.
        received = b""
        while True:
            chunk = await peer.recv(65536)
            if not chunk:
                break
            received += chunk
        assert received == SERVER_PREAMBLE
        peer.close()
    termination = conn.termination
    assert termination is not None
    assert termination.kind is TerminationKind.TRUNCATED
    assert termination.initiator is Initiator.PEER
