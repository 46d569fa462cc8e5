"""While a server shuts down, CPython's full (generation 2) collections are
deferred, by the collector's third threshold, until the report is built and
the last handler has returned (at the latest, until the server's block
exits); the application's thresholds come back as they were, unless it
changed them meanwhile, and nothing changes where automatic collection is
off. The young generations keep their thresholds throughout."""

from __future__ import annotations

import functools
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from server_support import Arrivals, counting

import adieu
from adieu.testing import connect_memory, open_memory_server
from shared_support import answer

#: Thresholds no default equals, so that a restore cannot pass by chance.
APP_THRESHOLDS = (701, 11, 12)
GRACE = 5.0
#: How long the slow handler's shielded clean-up takes once cancelled.
CLEAN_UP = 3.0


@pytest.fixture(autouse=True)
def app_thresholds() -> Iterator[None]:
    """The application's own thresholds during each test; the process's are
    put back afterwards."""
    saved = gc.get_threshold()
    gc.set_threshold(*APP_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


async def until_no_connection(server: adieu.Server) -> None:
    """Let time pass (the clean-ups sleep) until ``server`` serves no
    connection: every handler has returned. Bounded by each test's
    ``fail_after``."""
    while server.connections:
        await trio.sleep(CLEAN_UP / 10)


def full_collections_deferred() -> bool:
    first, second, third = gc.get_threshold()
    return (first, second) == APP_THRESHOLDS[:2] and third > 1_000_000


async def _asked_client(server: adieu.Server, *, seen: list[tuple[int, ...]]) -> None:
    """A client that records the thresholds when SHUTDOWN reaches it, then
    finishes cleanly."""
    async with connect_memory(server) as conn:
        await conn.shutdown_requested.wait()
        seen.append(gc.get_threshold())
        await conn.send_eof()
        assert [m async for m in conn] == []


async def _stuck_client(server: adieu.Server) -> None:
    """A client that never finishes: the server's cut resets it."""
    async with connect_memory(server) as conn:
        with pytest.raises(adieu.ConnectionReset):
            await conn.receive()


@asynccontextmanager
async def serving(
    handler: Callable[[adieu.Connection], Awaitable[object]],
    client: Callable[[adieu.Server], Awaitable[object]],
    count: int = 1,
) -> AsyncIterator[adieu.Server]:
    """A memory server running ``handler``, with ``count`` clients running
    ``client``, once every handler has started."""
    arrivals = Arrivals(count)
    async with (
        trio.open_nursery() as clients,
        open_memory_server(counting(handler, arrivals), grace_period=GRACE) as server,
    ):
        for _ in range(count):
            clients.start_soon(client, server)
        await arrivals.all_here.wait()
        yield server


async def _slow_to_unwind(conn: adieu.Connection) -> None:
    """A handler whose clean-up, once cancelled, takes CLEAN_UP seconds."""
    try:
        await answer(conn)
    finally:
        with trio.CancelScope(shield=True):
            await trio.sleep(CLEAN_UP)


async def test_full_collections_wait_during_the_shutdown_then_come_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Deferred when SHUTDOWN reaches the client; restored with the report,
    the handler being done, while the application is still in the block."""
    seen: list[tuple[int, ...]] = []
    with trio.fail_after(10 * GRACE):
        async with serving(
            answer, functools.partial(_asked_client, seen=seen)
        ) as server:
            assert gc.get_threshold() == APP_THRESHOLDS  # serving: untouched
            report = await server.shutdown()
            assert report.clean == 1
            assert gc.get_threshold() == APP_THRESHOLDS
    assert len(seen) == 1
    assert seen[0][:2] == APP_THRESHOLDS[:2]
    assert seen[0][2] > 1_000_000


async def test_after_a_cut_they_wait_until_the_last_handler_has_unwound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10 * GRACE):
        async with serving(_slow_to_unwind, _stuck_client, 2) as server:
            report = await server.shutdown()
            assert report.counts[adieu.TerminationKind.TIMED_OUT] == 2
            # The report is built; both handlers are in their clean-up.
            assert full_collections_deferred()
            await until_no_connection(server)
            assert gc.get_threshold() == APP_THRESHOLDS


async def test_an_abort_with_no_connection_restores_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10 * GRACE):
        async with open_memory_server(answer, grace_period=GRACE) as server:
            server.abort()
            assert gc.get_threshold() == APP_THRESHOLDS


async def test_an_exception_out_of_the_block_restores_them_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Boom(Exception):
        pass

    arrivals = Arrivals(1)

    async def serve_then_fail(clients: trio.Nursery) -> None:
        async with open_memory_server(
            counting(_slow_to_unwind, arrivals), grace_period=GRACE
        ) as server:
            clients.start_soon(_stuck_client, server)
            await arrivals.all_here.wait()
            raise Boom

    with trio.fail_after(10 * GRACE):
        async with trio.open_nursery() as clients:
            with pytest.raises(Boom):
                await serve_then_fail(clients)
            assert gc.get_threshold() == APP_THRESHOLDS


async def _abort_while_a_handler_unwinds(meanwhile: Callable[[], None]) -> None:
    """Serve one stuck client with a handler slow to unwind, abort, call
    ``meanwhile()`` while that handler unwinds, and leave the block."""
    with trio.fail_after(10 * GRACE):
        async with serving(_slow_to_unwind, _stuck_client) as server:
            server.abort()
            assert server.connections
            meanwhile()


async def test_a_change_the_application_makes_meanwhile_stands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def change() -> None:
        assert full_collections_deferred()
        gc.set_threshold(500, 5, 5)

    await _abort_while_a_handler_unwinds(change)
    assert gc.get_threshold() == (500, 5, 5)


async def test_nothing_changes_where_automatic_collection_is_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gc.set_threshold(0, 11, 12)

    def unchanged() -> None:
        assert gc.get_threshold() == (0, 11, 12)

    await _abort_while_a_handler_unwinds(unchanged)
    assert gc.get_threshold() == (0, 11, 12)


async def test_two_servers_restore_once_both_are_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server whose handler unwinds quickly is done first; the
    thresholds come back only when the slow one is done too."""
    arrivals = Arrivals(2)
    with trio.fail_after(10 * GRACE):
        async with (
            trio.open_nursery() as clients,
            open_memory_server(counting(answer, arrivals), grace_period=GRACE) as quick,
            open_memory_server(
                counting(_slow_to_unwind, arrivals), grace_period=GRACE
            ) as slow,
        ):
            clients.start_soon(_stuck_client, quick)
            clients.start_soon(_stuck_client, slow)
            await arrivals.all_here.wait()
            slow.abort()
            quick.abort()
            await until_no_connection(quick)
            assert slow.connections
            assert full_collections_deferred()
            await until_no_connection(slow)
            assert gc.get_threshold() == APP_THRESHOLDS
