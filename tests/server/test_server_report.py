"""The :class:`~adieu.ShutdownReport`: every connection open when the
shutdown began with its ``Termination`` and handler ``Outcome``, counts by
kind (every kind present), connections that ended earlier counted by kind,
the grace period, the duration, and a readable ``str``."""

from __future__ import annotations

import outcome
import pytest
import trio
import trio.testing
from server_support import (
    Arrivals,
    counting,
    finish_when_asked,
    incoming_pipe,
    wait_until,
)

import adieu
from adieu.testing import connect_memory, open_memory_server
from shared_support import answer, reply_to

GRACE = 30.0


async def test_report_counts_connections_open_at_shutdown_and_those_ended_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(4)

    async def ignoring(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"ignored")
            await conn.receive()  # the reply
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()  # never anything more: then the reset

    async def well_behaved(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"a")
            await conn.send(b"b")
            assert await finish_when_asked(conn) == [reply_to(b"a"), reply_to(b"b")]

    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(
                counting(answer, arrivals), grace_period=GRACE
            ) as server,
        ):
            # Two connections end before the shutdown: one clean, one that
            # its client resets.
            async with connect_memory(server) as early:
                await early.send(b"early")
                assert await early.receive() == reply_to(b"early")
            async with connect_memory(server) as reset:
                await reset.send(b"x")
                assert await reset.receive() == reply_to(b"x")
                reset.abort()
            await wait_until(lambda: not server.connections)
            report_before, shutting_down_before = server.report, server.shutting_down
            assert report_before is None
            assert not shutting_down_before

            nursery.start_soon(ignoring, server)
            nursery.start_soon(well_behaved, server)
            await arrivals.all_here.wait()
            await wait_until(lambda: len(server.connections) == 2)
            start = trio.current_time()
            report = await server.shutdown()
            assert server.report is report
            assert server.shutting_down

    kinds = set(adieu.TerminationKind)
    assert set(report.counts) == kinds
    assert set(report.ended_before) == kinds
    assert dict(report.counts) == {
        **dict.fromkeys(kinds, 0),
        adieu.TerminationKind.CLEAN: 1,
        adieu.TerminationKind.TIMED_OUT: 1,
    }
    assert dict(report.ended_before) == {
        **dict.fromkeys(kinds, 0),
        adieu.TerminationKind.CLEAN: 1,
        adieu.TerminationKind.RESET: 1,
    }
    assert report.clean == 1
    assert report.grace_period == GRACE
    assert report.duration == pytest.approx(GRACE)
    assert trio.current_time() == pytest.approx(start + GRACE)
    assert not report.aborted
    assert not report.lossless

    assert len(report.connections) == 2
    by_kind = {c.termination.kind: c for c in report.connections}
    timed_out = by_kind[adieu.TerminationKind.TIMED_OUT]
    assert timed_out.outcome is None
    assert timed_out.termination.messages_received == 1
    assert timed_out.termination.messages_sent == 1
    clean = by_kind[adieu.TerminationKind.CLEAN]
    assert clean.outcome == outcome.Value(2)
    assert clean.termination.messages_received == 2
    assert clean.termination.messages_discarded == 0
    assert clean.termination.acknowledged is None  # a server's own view
    assert all(c.remote_address is None for c in report.connections)  # memory

    text = str(report)
    assert text == (
        "shutdown finished in 30.000 s (grace period 30 s): "
        "2 connections were open when the shutdown began: 1 clean, 1 timed out; "
        "2 connections had ended before: 1 clean, 1 reset"
    )


async def test_report_of_an_idle_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_server(answer, grace_period=GRACE) as server:
        report = await server.shutdown(grace_period=5)
    assert report.connections == ()
    assert set(report.counts.values()) == {0}
    assert set(report.ended_before.values()) == {0}
    assert report.grace_period == 5
    assert report.duration == 0
    assert report.lossless
    assert str(report) == (
        "shutdown finished in 0.000 s (grace period 5 s): "
        "no connection was open when the shutdown began"
    )


async def test_report_mentions_discarded_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A handler that returns without reading everything: the server asks
    the client to finish and discards (and counts) what was left."""
    arrivals = Arrivals(1)
    read_one = trio.Event()

    async def reads_one(conn: adieu.Connection) -> None:
        await conn.receive()
        read_one.set()
        await conn.shutdown_requested.wait()

    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(
                counting(reads_one, arrivals), grace_period=GRACE
            ) as server,
        ):

            async def client() -> None:
                async with connect_memory(server) as conn:
                    for i in range(3):
                        await conn.send(b"%d" % i)
                    assert await finish_when_asked(conn) == []
                assert conn.termination is not None
                assert conn.termination.kind is adieu.TerminationKind.CLEAN
                assert conn.termination.confirmed is False  # 1 of 3 delivered
                assert conn.termination.acknowledged == 1

            nursery.start_soon(client)
            await read_one.wait()
            await wait_until(
                lambda: (
                    server.connections[0].termination is None
                    and not incoming_pipe(server.connections[0]).in_flight
                )
            )
            report = await server.shutdown()

    (connection,) = report.connections
    assert connection.termination.kind is adieu.TerminationKind.CLEAN
    assert connection.termination.messages_discarded == 2
    assert connection.outcome == outcome.Value(None)
    assert not report.lossless
    assert str(report).endswith("1 clean; 2 unread messages discarded")
