"""``Connection.termination`` is set the moment the core decides the ending
(both ENDs exchanged, each side's END written, both EOFs), inside the block,
not when the block exits; and it says CLEAN on both sides."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import Pair, memory_pair, tcp_pair

import adieu
from adieu import TerminationKind


async def exchange_ends(client: adieu.Connection, server: adieu.Connection) -> None:
    """The client ends its messages; the server reads to it (its END goes
    out by itself then) and asks for its own END; the client reads to the
    server's END."""
    await client.send_eof()
    with pytest.raises(adieu.EndOfMessages):
        await server.receive()
    await server.send_eof()
    with pytest.raises(adieu.EndOfMessages):
        await client.receive()


async def wait_decided(*conns: adieu.Connection) -> None:
    while any(conn.termination is None for conn in conns):
        await trio.sleep(0.001)


async def test_the_termination_is_set_at_once_over_memory_streams(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        await exchange_ends(client, server)
        await trio.testing.wait_all_tasks_blocked()
        for conn in (client, server):
            termination = conn.termination
            assert termination is not None, conn.role
            assert termination.kind is TerminationKind.CLEAN


@pytest.mark.parametrize("pair", [memory_pair, tcp_pair], ids=["memory", "tcp"])
async def test_the_termination_is_set_inside_the_block(pair: Pair) -> None:
    with trio.fail_after(10):
        async with pair() as (client, server):
            await exchange_ends(client, server)
            await wait_decided(client, server)
            for conn in (client, server):
                termination = conn.termination
                assert termination is not None
                assert termination.kind is TerminationKind.CLEAN
                assert termination.confirmed is (
                    True if conn.role is adieu.Role.CLIENT else None
                )
