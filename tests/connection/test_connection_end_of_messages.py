"""The end of messages: ``async for`` stops exactly at the peer's END, and
``receive()`` then raises :exc:`adieu.EndOfMessages` (a
:exc:`trio.EndOfChannel`) every time. ``b""`` is a message, not the end."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import Pair, memory_pair, tcp_pair

import adieu
from adieu import TerminationKind

MESSAGES = [b"first", b"", b"third", b"", b""]


def test_end_of_messages_is_a_clean_end_of_channel() -> None:
    assert issubclass(adieu.EndOfMessages, trio.EndOfChannel)
    assert not issubclass(adieu.EndOfMessages, trio.BrokenResourceError)


async def check_iteration_ends_exactly_at_end(pair: Pair) -> None:
    async with pair() as (client, server):
        # Client to server: the server iterates until the client's END.
        for data in MESSAGES:
            await client.send(data)
        await client.send_eof()
        assert [data async for data in server] == MESSAGES
        for _ in range(3):
            with pytest.raises(adieu.EndOfMessages):
                await server.receive()

        # Server to client, after the client's END: the same.
        for data in MESSAGES:
            await server.send(data)
        await server.send_eof()
        assert [data async for data in client] == MESSAGES
        for _ in range(3):
            with pytest.raises(adieu.EndOfMessages):
                await client.receive()
        # Iterating again yields nothing: the end stays the end.
        assert [data async for data in client] == []
    for conn in (client, server):
        assert conn.termination is not None
        assert conn.termination.kind is TerminationKind.CLEAN
        assert conn.termination.messages_received == len(MESSAGES)
        assert conn.termination.messages_discarded == 0


async def test_iteration_ends_exactly_at_end_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    await check_iteration_ends_exactly_at_end(memory_pair)


async def test_iteration_ends_exactly_at_end_over_tcp() -> None:
    await check_iteration_ends_exactly_at_end(tcp_pair)


async def test_an_empty_message_does_not_end_the_iteration(
    autojump_clock: trio.abc.Clock,
) -> None:
    """While only empty messages have arrived, the iteration is still
    waiting; it ends when END arrives, not before."""
    async with memory_pair() as (client, server):
        seen: list[bytes] = []
        finished = trio.Event()

        async def iterate() -> None:
            async for data in server:
                seen.append(data)
            finished.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(iterate)
            await client.send(b"")
            await client.send(b"")
            await trio.testing.wait_all_tasks_blocked()
            assert seen == [b"", b""]
            assert not finished.is_set()
            await client.send_eof()
            await finished.wait()
        assert seen == [b"", b""]
        with pytest.raises(adieu.EndOfMessages):
            await server.receive()
