"""``send`` and ``receive`` are always cancel points, as their docstrings
promise: in a cancelled scope they raise :exc:`trio.Cancelled` whatever path
they would take (a write the kernel takes at once, a message already
buffered, an oversize message, a connection that can no longer send or
receive), and a cancelled call leaves the connection as it was."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import memory_pair

import adieu
from adieu import TerminationKind

LIMIT = 1024


async def test_send_in_a_cancelled_scope_sends_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair(max_message_size=LIMIT) as (client, server):
        for data in (b"would be written at once", b"x" * (LIMIT + 1)):
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await client.send(data)
        await client.send(b"after")
        assert await server.receive() == b"after"
        await client.send_eof()
        assert [data async for data in server] == []
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.messages_sent == 1


async def test_send_after_send_eof_in_a_cancelled_scope_is_cancelled(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, _server):
        await client.send_eof()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await client.send(b"late")
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"late")


async def test_receive_in_a_cancelled_scope_takes_no_message(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        await client.send(b"waiting")
        await trio.testing.wait_all_tasks_blocked()
        # Buffered and nothing buffered alike: cancelled, nothing taken.
        for _ in range(2):
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await server.receive()
        assert await server.receive() == b"waiting"
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await server.receive()
        await client.send_eof()
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await server.receive()
        with pytest.raises(adieu.EndOfMessages):
            await server.receive()
    assert server.termination is not None
    assert server.termination.kind is TerminationKind.CLEAN
    assert server.termination.messages_received == 1
    assert server.termination.messages_discarded == 0
