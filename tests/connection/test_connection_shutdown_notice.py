"""The background reader notices the server's SHUTDOWN while the client's
application only sends and never receives."""

from __future__ import annotations

import math

import trio
import trio.testing
from connection_support import Served, memory_pair, tcp_server

import adieu
from adieu import TerminationKind

REASON = "deploying a new version"
GRACE = 30.0
BEFORE_REQUEST = 10
#: A bound on the send loop, so that a SHUTDOWN never noticed fails the
#: test instead of hanging it.
SEND_LIMIT = 100_000


async def send_until_asked_to_stop(client: adieu.Connection) -> int:
    """The client's application: send, send, send; never receive."""
    sent = 0
    while not client.shutdown_requested.is_set():
        assert sent < SEND_LIMIT, "SHUTDOWN was never noticed"
        await client.send(b"work %d" % sent)
        sent += 1
    return sent


def assert_shutdown_noticed(client: adieu.Connection, requested_at: float) -> None:
    assert client.shutdown_requested.is_set()
    assert client.shutdown_reason == REASON
    assert client.shutdown_grace_period == GRACE
    assert client.shutdown_deadline is not None
    assert math.isclose(client.shutdown_deadline, requested_at + GRACE, abs_tol=1.0)


async def test_shutdown_is_noticed_while_the_client_only_sends_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        received: list[bytes] = []
        requested_at: list[float] = []

        async def serve() -> None:
            async for data in server:
                received.append(data)
                if len(received) == BEFORE_REQUEST:
                    server.request_shutdown(REASON, grace_period=GRACE)
                    requested_at.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            assert not client.shutdown_requested.is_set()
            sent = await send_until_asked_to_stop(client)
            assert sent >= BEFORE_REQUEST
            assert_shutdown_noticed(client, requested_at[0])
            await client.send_eof()
        assert received == [b"work %d" % i for i in range(sent)]
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.confirmed is True
    # The server asked first.
    assert client.termination.initiator is adieu.Initiator.PEER


async def test_shutdown_is_noticed_while_the_client_only_sends_over_tcp() -> None:
    served = Served()
    requested_at: list[float] = []

    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        async for data in conn:
            served.received.append(data)
            if len(served.received) == BEFORE_REQUEST:
                conn.request_shutdown(REASON, grace_period=GRACE)
                requested_at.append(trio.current_time())

    async with (
        tcp_server(handler) as server,
        adieu.connect_tcp("127.0.0.1", server.port) as client,
    ):
        sent = await send_until_asked_to_stop(client)
        assert_shutdown_noticed(client, requested_at[0])
        # Leaving the block: END, then the server's END.
    assert served.received == [b"work %d" % i for i in range(sent)]
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.confirmed is True
    assert served.only.termination is not None
    assert served.only.termination.kind is TerminationKind.CLEAN


async def test_shutdown_is_noticed_while_a_send_is_blocked(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A server whose application stops reading asks to shut down: the
    client's send is blocked (backpressure), yet SHUTDOWN arrives through
    its reader."""
    # A receive buffer of one byte: the server's reader stops after one
    # message until its application reads.
    async with memory_pair(receive_buffer_size=1) as (client, server):
        big = b"x" * 500_000
        big_sent = trio.Event()

        async def send_big() -> None:
            await client.send(big)
            big_sent.set()

        async with trio.open_nursery() as nursery:
            await client.send(b"first")
            nursery.start_soon(send_big)
            await trio.testing.wait_all_tasks_blocked()
            assert not big_sent.is_set()
            server.request_shutdown(REASON, grace_period=GRACE)
            with trio.fail_after(1):
                await client.shutdown_requested.wait()
            assert not big_sent.is_set()
            assert client.shutdown_reason == REASON
            assert client.shutdown_grace_period == GRACE
            # The server reads again, and the blocked send finishes.
            assert await server.receive() == b"first"
            assert await server.receive() == big
        await client.send_eof()
        assert [data async for data in server] == []
