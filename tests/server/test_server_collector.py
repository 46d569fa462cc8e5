"""While a server shuts down, CPython's full (generation 2) collections are
deferred, by the collector's third threshold, until the server's block has
exited; the application's thresholds come back as they were, unless it
changed them meanwhile, and nothing changes where automatic collection is
off. The young generations keep their thresholds throughout."""

from __future__ import annotations

import gc
from collections.abc import Iterator

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


def full_collections_deferred() -> bool:
    first, second, third = gc.get_threshold()
    return (first, second) == APP_THRESHOLDS[:2] and third > 1_000_000


async def _asked_client(server: adieu.Server, seen: list[tuple[int, ...]]) -> None:
    """A client that records the thresholds when SHUTDOWN reaches it, then
    finishes cleanly."""
    async with connect_memory(server) as conn:
        await conn.shutdown_requested.wait()
        seen.append(gc.get_threshold())
        await conn.send_eof()
        assert [m async for m in conn] == []


async def test_full_collections_wait_from_the_shutdown_to_the_block_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[int, ...]] = []
    arrivals = Arrivals(1)
    with trio.fail_after(10 * GRACE):
        async with trio.open_nursery() as clients:
            async with open_memory_server(
                counting(answer, arrivals), grace_period=GRACE
            ) as server:
                clients.start_soon(_asked_client, server, seen)
                await arrivals.all_here.wait()
                assert gc.get_threshold() == APP_THRESHOLDS  # serving: untouched
                report = await server.shutdown()
                assert report.clean == 1
                # Still deferred after the report: handlers may still unwind.
                assert full_collections_deferred()
            assert gc.get_threshold() == APP_THRESHOLDS
    assert len(seen) == 1
    assert seen[0][:2] == APP_THRESHOLDS[:2]
    assert seen[0][2] > 1_000_000


async def test_an_abort_restores_the_thresholds_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Boom(Exception):
        pass

    async def serve_then_fail() -> None:
        async with open_memory_server(answer, grace_period=GRACE) as server:
            server.abort()
            assert full_collections_deferred()
            raise Boom

    with trio.fail_after(10 * GRACE), pytest.raises(Boom):
        await serve_then_fail()
    assert gc.get_threshold() == APP_THRESHOLDS


async def test_a_change_the_application_makes_meanwhile_stands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10 * GRACE):
        async with open_memory_server(answer, grace_period=GRACE) as server:
            server.abort()
            assert full_collections_deferred()
            gc.set_threshold(500, 5, 5)
    assert gc.get_threshold() == (500, 5, 5)


async def test_nothing_changes_where_automatic_collection_is_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gc.set_threshold(0, 11, 12)
    with trio.fail_after(10 * GRACE):
        async with open_memory_server(answer, grace_period=GRACE) as server:
            server.abort()
            assert gc.get_threshold() == (0, 11, 12)
    assert gc.get_threshold() == (0, 11, 12)


async def test_two_servers_restore_once_both_blocks_have_exited(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(10 * GRACE):
        async with open_memory_server(answer, grace_period=GRACE) as first:
            async with open_memory_server(answer, grace_period=GRACE) as second:
                first.abort()
                second.abort()
                assert full_collections_deferred()
            # The first server's block has not exited yet.
            assert full_collections_deferred()
        assert gc.get_threshold() == APP_THRESHOLDS
        # And the other way round: the one whose shutdown began first exits
        # first.
        async with open_memory_server(answer, grace_period=GRACE) as outer:
            async with open_memory_server(answer, grace_period=GRACE) as inner:
                outer.abort()
                inner.abort()
            assert full_collections_deferred()
        assert gc.get_threshold() == APP_THRESHOLDS
