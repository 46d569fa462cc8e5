"""``abort()``: the peer sees a reset (a real RST on TCP); synchronous, so it
works inside a cancelled scope; idempotent; the first terminal cause wins."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import (
    Served,
    connect_to_raw_peer,
    memory_pair,
    tcp_listener,
    tcp_server,
)

import adieu
from adieu import Initiator, TerminationKind
from adieu.testing import memory_stream_pair
from shared_support import CLIENT_PREAMBLE, SERVER_PREAMBLE


def assert_ended(
    conn: adieu.Connection, kind: TerminationKind, initiator: Initiator
) -> adieu.Termination:
    termination = conn.termination
    assert termination is not None
    assert (termination.kind, termination.initiator) == (kind, initiator), termination
    return termination


# ------------------------------------------------------------------ memory


async def test_abort_makes_the_peer_see_a_reset_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        await client.send(b"before")
        assert await server.receive() == b"before"
        client.abort()
        with pytest.raises(adieu.ConnectionReset):
            await server.receive()
        with pytest.raises(adieu.ConnectionReset):
            await server.send(b"after")
    assert_ended(client, TerminationKind.ABORTED, Initiator.LOCAL)
    assert_ended(server, TerminationKind.RESET, Initiator.PEER)


async def test_abort_inside_a_cancelled_scope_needs_no_checkpoint(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        # No await inside, on purpose: abort() needs no checkpoint.
        with trio.CancelScope() as scope:  # noqa: ASYNC100
            scope.cancel()
            client.abort()
            # Synchronous: the termination is there before any checkpoint.
            termination = assert_ended(client, TerminationKind.ABORTED, Initiator.LOCAL)
        # Nothing inside the scope checkpointed, so nothing was cancelled.
        assert not scope.cancelled_caught
        with pytest.raises(adieu.ConnectionReset):
            await server.receive()
    assert client.termination is termination


async def test_abort_is_idempotent(autojump_clock: trio.abc.Clock) -> None:
    async with memory_pair() as (client, server):
        await client.send(b"one")
        assert await server.receive() == b"one"
        client.abort()
        first = client.termination
        client.abort()
        client.abort()
        assert client.termination is first
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"after abort")
        with pytest.raises(trio.ClosedResourceError):
            await client.receive()
        with pytest.raises(adieu.ConnectionReset):
            await server.receive()
    assert_ended(client, TerminationKind.ABORTED, Initiator.LOCAL)
    assert client.termination is first
    assert first is not None
    assert first.messages_sent == 1


async def test_abort_discards_and_counts_unread_messages(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        for data in (b"a", b"b", b"c"):
            await server.send(data)
        assert await client.receive() == b"a"
        await trio.testing.wait_all_tasks_blocked()
        client.abort()
    termination = assert_ended(client, TerminationKind.ABORTED, Initiator.LOCAL)
    assert termination.messages_received == 3
    assert termination.messages_discarded == 2


async def test_abort_after_the_peer_reset_leaves_reset(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        server.abort()
        with pytest.raises(adieu.ConnectionReset):
            await client.receive()
        first = assert_ended(client, TerminationKind.RESET, Initiator.PEER)
        client.abort()
        assert client.termination is first
    assert_ended(client, TerminationKind.RESET, Initiator.PEER)
    assert_ended(server, TerminationKind.ABORTED, Initiator.LOCAL)


async def test_abort_after_a_truncation_leaves_truncated(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        server.transport.stream.outgoing.cut()  # type: ignore[attr-defined]
        with pytest.raises(adieu.ConnectionTruncated):
            await client.receive()
        client.abort()
        first = assert_ended(client, TerminationKind.TRUNCATED, Initiator.PEER)
        client.abort()
        assert client.termination is first
        server.abort()


# --------------------------------------------------------------------- TCP


@pytest.mark.parametrize("in_cancelled_scope", [False, True])
async def test_abort_sends_a_real_rst_over_tcp(in_cancelled_scope: bool) -> None:
    """The raw peer's own ``recv`` fails with ECONNRESET: the kernel sent
    RST, not FIN."""
    async with tcp_listener() as listener:
        # The raw peer reads everything the client sent, so that nothing
        # unread could explain a reset, and completes the handshake.
        async with connect_to_raw_peer(listener) as (conn, peer):
            with trio.CancelScope() as scope:  # noqa: ASYNC100 (abort is sync)
                if in_cancelled_scope:
                    scope.cancel()
                conn.abort()
            assert not scope.cancelled_caught
            with pytest.raises(ConnectionResetError):
                await peer.socket.recv(1)
            await peer.aclose()
        assert_ended(conn, TerminationKind.ABORTED, Initiator.LOCAL)
        assert conn.transport.socket is not None
        assert conn.transport.socket.fileno() == -1


async def test_client_abort_is_a_reset_for_an_adieu_server_over_tcp() -> None:
    served = Served()

    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        try:
            async for data in conn:
                await conn.send(data)
        except adieu.ConnectionReset as exc:
            served.errors.append(exc)
        served.done.set()

    async with tcp_server(handler) as server:
        async with adieu.connect_tcp("127.0.0.1", server.port) as client:
            await client.send(b"ping")
            assert await client.receive() == b"ping"
            client.abort()
        await served.done.wait()
    assert len(served.errors) == 1
    assert_ended(client, TerminationKind.ABORTED, Initiator.LOCAL)
    assert_ended(served.only, TerminationKind.RESET, Initiator.PEER)


async def test_server_abort_is_a_reset_for_the_client_over_tcp() -> None:
    served = Served()

    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        assert await conn.receive() == b"ping"
        await conn.send(b"pong")
        await served.done.wait()
        conn.abort()

    async with (
        tcp_server(handler) as server,
        adieu.connect_tcp("127.0.0.1", server.port) as client,
    ):
        await client.send(b"ping")
        assert await client.receive() == b"pong"
        served.done.set()
        with pytest.raises(adieu.ConnectionReset):
            await client.receive()
        reset = assert_ended(client, TerminationKind.RESET, Initiator.PEER)
        # The first cause wins: aborting now changes nothing.
        client.abort()
        assert client.termination is reset
    assert_ended(served.only, TerminationKind.ABORTED, Initiator.LOCAL)


async def test_a_deadline_after_both_ends_closes_without_a_reset(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A server whose END is out, waiting only for the client's EOF when its
    grace period ends, has nothing left to lose: it closes normally (the
    peer reads EOF, not a reset) and the report stays CLEAN."""
    ours, peer = memory_stream_pair()
    async with adieu.wrap_stream(ours, "server", grace_period=600) as conn:
        # A client that sends its END and then keeps its side open forever.
        await peer.send_all(CLIENT_PREAMBLE + _client_end())
        assert [m async for m in conn] == []
        start = trio.current_time()
        termination = await conn.shutdown()
        assert trio.current_time() == start + 600
    assert termination.kind is TerminationKind.CLEAN
    received = b""
    while chunk := await peer.receive_some():
        received += chunk
    assert received.startswith(SERVER_PREAMBLE)
    assert received.endswith(b"\x02\x00\x00\x00\x08" + (0).to_bytes(8, "big"))


def _client_end() -> bytes:
    return b"\x02\x00\x00\x00\x00"
