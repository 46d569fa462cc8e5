"""One write path: frames produced where no task can write them (SHUTDOWN
from ``request_shutdown()``, a server's END deferred by ``send_eof()``,
replies gathered for a pipelining peer) queue behind a write in progress
and go out after it, in the order they were made; the transport's EOF
follows this side's END, never precedes it."""

from __future__ import annotations

import trio
import trio.testing
from connection_support import memory_pair

from adieu import TerminationKind

BIG = b"W" * 200_000


async def test_shutdown_and_a_deferred_end_follow_a_blocked_write(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        pipe = server.transport.stream.outgoing  # type: ignore[attr-defined]
        pipe.hold()
        received: list[bytes] = []
        async with trio.open_nursery() as nursery:
            # The server's writer blocks in the middle of a large message.
            nursery.start_soon(server.send, BIG)
            await trio.testing.wait_all_tasks_blocked()
            # Both are made from synchronous code while the write is held.
            server.request_shutdown("restart", grace_period=60)
            await server.send_eof()
            assert not client.shutdown_requested.is_set()
            pipe.release()
            # The message first, then SHUTDOWN, which the client notices.
            assert await client.receive() == BIG
            with trio.fail_after(10):
                await client.shutdown_requested.wait()
            assert client.shutdown_reason == "restart"
            await client.send(b"last words")
            await client.send_eof()
            # The server reads to the client's END, which releases its own.
            async for data in server:
                received.append(data)
            async for data in client:
                received.append(data)
        assert received == [b"last words"]
    for conn in (client, server):
        assert conn.termination is not None
        assert conn.termination.kind is TerminationKind.CLEAN, conn.termination
    # The server's END counted the one client message its handler read.
    assert client.termination is not None
    assert client.termination.confirmed is True


async def test_gathered_replies_go_out_before_the_end_that_follows_them(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A pipelining client: the server answers messages that were already
    buffered (the replies are gathered for one write), then ends. Every
    reply arrives, in order, before the server's END."""
    count = 200
    async with memory_pair() as (client, server):
        for index in range(count):
            await client.send(b"%d" % index)
        await client.send_eof()
        # Let every message reach the server's buffer before it answers.
        await trio.testing.wait_all_tasks_blocked()

        async def serve() -> None:
            async for data in server:
                await server.send(b"re " + data)
            await server.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            replies = [data async for data in client]
        assert replies == [b"re %d" % index for index in range(count)]
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.messages_received == count
    assert server.termination is not None
    assert server.termination.kind is TerminationKind.CLEAN
    assert server.termination.messages_sent == count
