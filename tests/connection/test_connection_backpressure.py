"""The receive buffer is bounded: a peer that floods a connection whose
application does not read is held back (its sends block) instead of growing
memory; reading resumes the flow."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from connection_support import Pair, memory_pair, tcp_pair

import adieu
from adieu import TerminationKind

#: What the connection's reader may take in one read beyond the bound: it
#: checks the bound before each read, and one read brings at most this.
READ_CHUNK = 65536
#: The smallest frame (an empty message): a read holds at most
#: READ_CHUNK // FRAME_HEADER messages.
FRAME_HEADER = 5


def held(conn: adieu.Connection) -> tuple[int, int]:
    """The messages the connection holds for its application, and their
    bytes (its internal buffer: nothing public exposes it; none at all until
    a message was read for the application)."""
    buffer = conn._buffer or ()
    return len(buffer), sum(map(len, buffer))


def assert_within_bounds(conn: adieu.Connection, receive_buffer_size: int) -> None:
    messages, payload = held(conn)
    # Bytes: the bound, plus what one read brought past it.
    assert payload <= receive_buffer_size + READ_CHUNK
    # Messages, even empty ones: each costs at least a byte of the bound.
    assert messages <= receive_buffer_size + READ_CHUNK // FRAME_HEADER


def message(i: int, size: int) -> bytes:
    """Message ``i`` of ``size`` bytes, its index repeated."""
    return (b"%08d" % i * (size // 8 + 1))[:size]


async def check_flood_is_bounded(
    pair: Pair, *, receive_buffer_size: int, size: int, count: int, **options: Any
) -> None:
    async with pair(receive_buffer_size=receive_buffer_size, **options) as (
        client,
        server,
    ):
        sent = 0
        flood_done = trio.Event()

        async def flood() -> None:
            nonlocal sent
            for i in range(count):
                await server.send(message(i, size))
                sent += 1
            flood_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()
            # Everything is blocked: the flood is stuck in a send, and the
            # client's reader has stopped within the bounds.
            assert not flood_done.is_set()
            stuck_at = sent
            assert stuck_at < count
            assert_within_bounds(client, receive_buffer_size)
            await trio.testing.wait_all_tasks_blocked()
            assert sent == stuck_at

            # Reading resumes the flow; the bounds hold all the way.
            for i in range(count):
                assert await client.receive() == message(i, size)
                assert_within_bounds(client, receive_buffer_size)
            await flood_done.wait()
        assert sent == count
        assert held(client) == (0, 0)
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.messages_received == count
    assert client.termination.messages_discarded == 0


async def test_a_flood_is_bounded_and_blocks_the_sender_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    await check_flood_is_bounded(
        memory_pair, receive_buffer_size=100_000, size=1000, count=2000
    )


async def test_the_reader_stops_reading_the_transport_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Measured from outside: the reader took no more bytes from the pipe
    than the bound and one read; the rest waits with the sender."""
    async with memory_pair(receive_buffer_size=100_000) as (client, server):
        pipe = client.transport.stream.incoming  # type: ignore[attr-defined]
        async with trio.open_nursery() as nursery:

            async def flood() -> None:
                for i in range(2000):
                    await server.send(message(i, 1000))

            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()
            assert pipe.delivered <= 100_000 + READ_CHUNK
            assert len(pipe.in_flight) > 0
            for i in range(2000):
                assert await client.receive() == message(i, 1000)


async def test_empty_messages_are_bounded_too(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A flood of empty messages costs no payload, yet is bounded: each
    buffered message counts for its bookkeeping."""
    await check_flood_is_bounded(
        memory_pair, receive_buffer_size=10_000, size=0, count=2_000, capacity=4096
    )


async def test_a_flood_is_bounded_and_blocks_the_sender_over_tcp() -> None:
    await check_flood_is_bounded(
        tcp_pair, receive_buffer_size=256 * 1024, size=65536, count=96
    )
