"""The terminal handshake confirms delivery end to end: the server's END
carries how many client messages reached its application, and the client's
:class:`~adieu.Termination` says whether that is all it sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
from connection_support import Handler, Served, tcp_server

import adieu
from adieu import Initiator, TerminationKind
from adieu.testing import connect_memory, open_memory_server

COUNT = 25
READ_BEFORE_SHUTDOWN = 2


@asynccontextmanager
async def memory_setup(
    handler: Handler,
) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[adieu.Connection]]]:
    async with open_memory_server(handler) as server:
        yield lambda: connect_memory(server)


@asynccontextmanager
async def tcp_setup(
    handler: Handler,
) -> AsyncIterator[Callable[[], AbstractAsyncContextManager[adieu.Connection]]]:
    async with tcp_server(handler) as server:
        yield lambda: adieu.connect_tcp("127.0.0.1", server.port)


Setup = Callable[[Handler], AbstractAsyncContextManager[Any]]


async def check_every_message_confirmed(setup: Setup) -> None:
    served = Served()

    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        async for data in conn:
            served.received.append(data)
        # Returning: the server's END follows the client's.

    async with setup(handler) as connect, connect() as client:
        for i in range(COUNT):
            await client.send(b"message %d" % i)
            # Leaving the block: END, then read to the server's END.
    assert served.received == [b"message %d" % i for i in range(COUNT)]

    mine = client.termination
    assert mine is not None
    assert mine.kind is TerminationKind.CLEAN
    assert mine.initiator is Initiator.LOCAL
    assert mine.messages_sent == COUNT
    assert mine.acknowledged == mine.messages_sent
    assert mine.confirmed is True
    assert mine.lossless

    theirs = served.only.termination
    assert theirs is not None
    assert theirs.kind is TerminationKind.CLEAN
    assert theirs.messages_received == COUNT
    assert theirs.messages_discarded == 0
    assert theirs.confirmed is None  # only a client is confirmed
    assert theirs.acknowledged is None


async def test_every_message_confirmed_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    await check_every_message_confirmed(memory_setup)


async def test_every_message_confirmed_over_tcp() -> None:
    await check_every_message_confirmed(tcp_setup)


async def check_discarding_server_is_not_confirmed(setup: Setup) -> None:
    served = Served()
    server_results: list[adieu.Termination] = []

    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        for _ in range(READ_BEFORE_SHUTDOWN):
            served.received.append(await conn.receive())
        # Shut down with the rest of the client's messages unread.
        server_results.append(await conn.shutdown())

    async with setup(handler) as connect, connect() as client:
        for i in range(COUNT):
            await client.send(b"message %d" % i)
    assert served.received == [b"message %d" % i for i in range(READ_BEFORE_SHUTDOWN)]

    mine = client.termination
    assert mine is not None
    assert mine.kind is TerminationKind.CLEAN
    assert mine.messages_sent == COUNT
    assert mine.acknowledged == READ_BEFORE_SHUTDOWN
    assert mine.confirmed is False
    assert not mine.lossless

    [theirs] = server_results
    assert served.only.termination is theirs
    assert theirs.kind is TerminationKind.CLEAN
    assert theirs.messages_received == COUNT
    assert theirs.messages_discarded == COUNT - READ_BEFORE_SHUTDOWN
    assert not theirs.lossless


async def test_discarding_server_is_not_confirmed_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    await check_discarding_server_is_not_confirmed(memory_setup)


async def test_discarding_server_is_not_confirmed_over_tcp() -> None:
    await check_discarding_server_is_not_confirmed(tcp_setup)


@pytest.mark.parametrize("client_sends", [0, 1])
async def test_confirmation_counts_from_zero(
    autojump_clock: trio.abc.Clock, client_sends: int
) -> None:
    async def handler(conn: adieu.Connection) -> None:
        async for _ in conn:
            pass

    async with (
        open_memory_server(handler) as server,
        connect_memory(server) as client,
    ):
        for _ in range(client_sends):
            await client.send(b"")
    assert client.termination is not None
    assert client.termination.acknowledged == client_sends
    assert client.termination.confirmed is True
