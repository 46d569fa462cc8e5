"""Ending a server forcefully: cancelling the scope around it aborts every
connection at once (peers see a reset, over TCP a real RST); a second
shutdown request while one runs aborts what is left."""

from __future__ import annotations

import math

import outcome
import pytest
import trio
import trio.testing
from server_support import Arrivals, counting, finish_when_asked, wait_until

import adieu
from adieu import open_tcp_server
from adieu.testing import connect_memory, open_memory_server
from shared_support import CLIENT_PREAMBLE, SERVER_PREAMBLE, answer, reply_to


async def test_cancelling_the_scope_around_a_tcp_server_resets_every_client() -> None:
    arrivals = Arrivals(4)
    ready = Arrivals(4)
    resets: list[adieu.Termination] = []
    raw_errors: list[OSError] = []

    async def client(port: int) -> None:
        async with adieu.connect_tcp("127.0.0.1", port) as conn:
            await conn.send(b"hello")
            assert await conn.receive() == reply_to(b"hello")
            ready.arrive()
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
        assert conn.termination is not None
        resets.append(conn.termination)

    async def raw_peer(port: int) -> None:
        # No adieu on this side: the kernel's own word that it was an RST.
        sock = trio.socket.socket()
        with sock:
            await sock.connect(("127.0.0.1", port))
            await sock.send(CLIENT_PREAMBLE)
            assert await sock.recv(len(SERVER_PREAMBLE)) == SERVER_PREAMBLE
            ready.arrive()
            try:
                await sock.recv(1)
            except OSError as exc:
                raw_errors.append(exc)

    with trio.fail_after(30):
        async with trio.open_nursery() as clients:
            with trio.CancelScope() as scope:
                async with open_tcp_server(
                    counting(answer, arrivals), "127.0.0.1", 0
                ) as server:
                    for _ in range(3):
                        clients.start_soon(client, server.port)
                    clients.start_soon(raw_peer, server.port)
                    await arrivals.all_here.wait()
                    await ready.all_here.wait()
                    scope.cancel()
                    await trio.sleep_forever()
            assert scope.cancelled_caught

    assert [t.kind for t in resets] == [adieu.TerminationKind.RESET] * 3
    assert [t.initiator for t in resets] == [adieu.Initiator.PEER] * 3
    (raw_error,) = raw_errors
    assert isinstance(raw_error, ConnectionResetError)
    assert server.report is not None
    assert server.report.aborted
    assert server.report.counts[adieu.TerminationKind.ABORTED] == 4


async def test_cancelling_the_scope_around_a_memory_server_resets_every_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(3)
    resets = Arrivals(3)

    async def client(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
        resets.arrive()

    with trio.fail_after(3600):
        async with trio.open_nursery() as clients:
            with trio.CancelScope() as scope:
                async with open_memory_server(
                    counting(answer, arrivals), grace_period=600
                ) as server:
                    for _ in range(3):
                        clients.start_soon(client, server)
                    await arrivals.all_here.wait()
                    start = trio.current_time()
                    scope.cancel()
                    await trio.sleep_forever()
    assert resets.count == 3
    # At once: no grace period.
    assert trio.current_time() == start
    # The report is there too, for whoever waited on the shutdown.
    report = server.report
    assert report is not None
    assert report.aborted
    assert report.counts[adieu.TerminationKind.ABORTED] == 3
    assert [c.outcome for c in report.connections] == [None] * 3


async def test_second_shutdown_request_aborts_what_is_left(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(2)
    asked = Arrivals(2)
    clean_client: list[adieu.Termination] = []

    async def ignoring(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.shutdown_requested.wait()
            asked.arrive()
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()

    async def well_behaved(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"x")
            await conn.shutdown_requested.wait()
            asked.arrive()
            assert await finish_when_asked(conn) == [reply_to(b"x")]
        assert conn.termination is not None
        clean_client.append(conn.termination)

    first: list[adieu.ShutdownReport] = []

    async def first_shutdown(server: adieu.Server) -> None:
        first.append(await server.shutdown())

    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(counting(answer, arrivals), grace_period=600) as server,
        ):
            nursery.start_soon(ignoring, server)
            nursery.start_soon(well_behaved, server)
            await arrivals.all_here.wait()
            start = trio.current_time()
            nursery.start_soon(first_shutdown, server)
            await asked.all_here.wait()
            await wait_until(lambda: len(server.connections) == 1)
            await trio.sleep(100)  # well inside the grace period
            second = await server.shutdown()
            aborted_at = trio.current_time()
            again = await server.shutdown()

    assert aborted_at == start + 100
    assert first == [second]
    assert again is second
    assert second.aborted
    assert [t.kind for t in clean_client] == [adieu.TerminationKind.CLEAN]
    (stubborn,) = [c for c in second.connections if c.outcome is None]
    assert stubborn.termination.kind is adieu.TerminationKind.ABORTED
    (clean,) = [c for c in second.connections if c is not stubborn]
    assert clean.termination.kind is adieu.TerminationKind.CLEAN
    assert clean.outcome == outcome.Value(1)
    assert second.counts[adieu.TerminationKind.ABORTED] == 1
    assert second.counts[adieu.TerminationKind.CLEAN] == 1
    assert second.counts[adieu.TerminationKind.TIMED_OUT] == 0
    assert second.duration == 100
    assert not math.isclose(second.duration, second.grace_period)


async def test_server_abort_resets_every_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(2)
    resets = Arrivals(2)

    async def client(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
        resets.arrive()

    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(counting(answer, arrivals)) as server,
        ):
            nursery.start_soon(client, server)
            nursery.start_soon(client, server)
            await arrivals.all_here.wait()
            server.abort()
            report = await server.wait_shut_down()
            assert await server.shutdown() is report
    assert resets.count == 2
    assert report.aborted
    assert report.counts[adieu.TerminationKind.ABORTED] == 2
    assert [c.outcome for c in report.connections] == [None, None]
    with pytest.raises(trio.ClosedResourceError):
        async with connect_memory(server):
            pass  # pragma: no cover


async def test_reset_error_is_chained_to_the_os_error() -> None:
    """A client's ConnectionReset after a real RST carries the kernel's
    ConnectionResetError as its cause, as the errors module promises."""

    async def wait_for_abort(conn: adieu.Connection) -> None:
        await trio.sleep_forever()

    async with (
        adieu.open_tcp_server(wait_for_abort, "127.0.0.1", 0) as server,
        adieu.connect_tcp("127.0.0.1", server.port) as conn,
    ):
        await conn.send(b"hello")
        server.abort()
        with pytest.raises(adieu.ConnectionReset) as info:
            await conn.receive()
        assert isinstance(info.value.__cause__, ConnectionResetError)
        # Every later call raises a new instance, chained the same way.
        with pytest.raises(adieu.ConnectionReset) as again:
            await conn.send(b"more")
        assert again.value is not info.value
        assert isinstance(again.value.__cause__, ConnectionResetError)
