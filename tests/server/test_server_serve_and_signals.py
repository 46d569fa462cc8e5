"""``serve_tcp`` for ``nursery.start`` users, and ``run_until_signal``: the
first signal shuts down gracefully, a second one aborts.

The signal tests send SIGUSR1 to this process (``signals=``), never SIGINT:
an outer receiver for SIGUSR1 stays installed around each test, so a signal
can never reach the default action (which would end the process).
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import outcome
import pytest
import trio
import trio.testing
from server_support import Arrivals, counting, finish_when_asked

import adieu
from adieu.testing import connect_memory, open_memory_server
from shared_support import answer, reply_to

SIGNAL = signal.SIGUSR1


async def test_serve_tcp_with_nursery_start_returns_the_server() -> None:
    arrivals = Arrivals(1)
    reports: list[adieu.ShutdownReport] = []

    async def serve(task_status: trio.TaskStatus[adieu.Server]) -> None:
        reports.append(
            await adieu.serve_tcp(
                counting(answer, arrivals),
                0,
                host="127.0.0.1",
                grace_period=5,
                task_status=task_status,
            )
        )

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve)
            assert isinstance(server, adieu.Server)
            assert all(isinstance(x, trio.SocketListener) for x in server.listeners)
            async with adieu.connect_tcp("127.0.0.1", server.port) as conn:
                await conn.send(b"hi")
                await arrivals.all_here.wait()
                nursery.start_soon(server.shutdown)
                assert await finish_when_asked(conn) == [reply_to(b"hi")]
            assert conn.termination is not None
            assert conn.termination.kind is adieu.TerminationKind.CLEAN
            report = await server.wait_shut_down()

    assert reports == [report]
    assert report.grace_period == 5
    (connection,) = report.connections
    assert connection.termination.kind is adieu.TerminationKind.CLEAN
    assert connection.outcome == outcome.Value(1)


@pytest.fixture
async def signal_guard() -> AsyncIterator[None]:
    """Keep SIGUSR1 caught for the whole test (Trio's receivers nest)."""
    with trio.open_signal_receiver(SIGNAL):
        yield


async def _signal_when_all_blocked() -> None:
    # Every task blocked: run_until_signal's receiver is installed.
    await trio.testing.wait_all_tasks_blocked()
    os.kill(os.getpid(), SIGNAL)


async def test_first_signal_shuts_down_gracefully(
    autojump_clock: trio.testing.MockClock, signal_guard: None
) -> None:
    arrivals = Arrivals(2)
    terminations: list[adieu.Termination] = []

    async def client(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"ping")
            assert await finish_when_asked(conn) == [reply_to(b"ping")]
            assert conn.shutdown_reason == "deploying"
        assert conn.termination is not None
        terminations.append(conn.termination)

    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(counting(answer, arrivals), grace_period=600) as server,
        ):
            nursery.start_soon(client, server)
            nursery.start_soon(client, server)
            await arrivals.all_here.wait()
            start = trio.current_time()
            nursery.start_soon(_signal_when_all_blocked)
            report = await adieu.run_until_signal(
                server, signals=[SIGNAL], reason="deploying"
            )

    assert trio.current_time() < start + 600
    assert not report.aborted
    assert [t.kind for t in terminations] == [adieu.TerminationKind.CLEAN] * 2
    assert all(t.confirmed for t in terminations)
    assert report.counts[adieu.TerminationKind.CLEAN] == 2


async def test_second_signal_during_a_long_shutdown_aborts(
    autojump_clock: trio.testing.MockClock, signal_guard: None
) -> None:
    arrivals = Arrivals(2)
    asked = Arrivals(2)
    clean: list[adieu.Termination] = []

    async def well_behaved(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.shutdown_requested.wait()
            asked.arrive()
            await finish_when_asked(conn)
        assert conn.termination is not None
        clean.append(conn.termination)

    async def ignoring(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.shutdown_requested.wait()
            asked.arrive()
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()

    async def signal_twice() -> None:
        await _signal_when_all_blocked()
        await asked.all_here.wait()
        await trio.sleep(60)  # a long shutdown, well inside its grace period
        os.kill(os.getpid(), SIGNAL)

    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(counting(answer, arrivals), grace_period=600) as server,
        ):
            nursery.start_soon(well_behaved, server)
            nursery.start_soon(ignoring, server)
            await arrivals.all_here.wait()
            start = trio.current_time()
            nursery.start_soon(signal_twice)
            report = await adieu.run_until_signal(server, signals=[SIGNAL])
            assert trio.current_time() == start + 60

    assert report.aborted
    assert [t.kind for t in clean] == [adieu.TerminationKind.CLEAN]
    assert report.counts[adieu.TerminationKind.CLEAN] == 1
    assert report.counts[adieu.TerminationKind.ABORTED] == 1
    (stubborn,) = [c for c in report.connections if c.outcome is None]
    assert stubborn.termination.kind is adieu.TerminationKind.ABORTED
