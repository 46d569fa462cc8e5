"""The close verbs compose: two ``aclose()`` or ``shutdown()`` calls at once
(or one after the other) give the outcome of one, and ``aclose()`` while
another task is blocked sending wakes that sender and closes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from connection_support import Pair, memory_pair, tcp_pair

import adieu
from adieu import TerminationKind

Close = Callable[[adieu.Connection], Awaitable[object]]


async def _aclose(conn: adieu.Connection) -> None:
    await conn.aclose()


async def _shutdown(conn: adieu.Connection) -> None:
    await conn.shutdown()


CLOSES = {"aclose": _aclose, "shutdown": _shutdown}


@pytest.mark.parametrize("verb", list(CLOSES))
@pytest.mark.parametrize("pair", [memory_pair, tcp_pair], ids=["memory", "tcp"])
async def test_two_closes_at_once_give_the_outcome_of_one(
    verb: str, pair: Pair
) -> None:
    close = CLOSES[verb]
    with trio.fail_after(10):
        async with pair() as (client, server):
            await client.send(b"last")

            async def serve() -> None:
                assert [data async for data in server] == [b"last"]
                await server.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                nursery.start_soon(close, client)
                nursery.start_soon(close, client)
    assert client.termination is not None
    assert server.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN, client.termination
    assert client.termination.confirmed is True
    assert server.termination.kind is TerminationKind.CLEAN, server.termination


async def test_a_close_during_a_graceful_shutdown_waits_for_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        results: list[adieu.Termination] = []

        async def shut() -> None:
            results.append(await client.shutdown())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(shut)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(_aclose, client)
            await trio.testing.wait_all_tasks_blocked()
            assert [data async for data in server] == []
            await server.send_eof()
    [termination] = results
    assert termination is client.termination
    assert termination.kind is TerminationKind.CLEAN


async def test_aclose_wakes_a_blocked_sender_with_closed_resource_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        errors: list[BaseException] = []

        async def flood() -> None:
            try:
                while True:
                    await server.send(b"x" * 65536)
            except BaseException as exc:  # recorded, checked below
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(60):
                await server.aclose()
        [error] = errors
        assert type(error) is trio.ClosedResourceError, repr(error)
        assert server.termination is not None
        assert server.termination.kind is TerminationKind.TRUNCATED
        client.abort()
