"""The listen backlog at shutdown, over real loopback TCP: connections the
kernel had completed when the shutdown began are accepted and told (the
server's preamble and SHUTDOWN) before anything else happens to them, even
with a grace period of 0; the drain needs no ``select()``, so a listener
whose file descriptor is above 1024 drains like any other; and a second
request landing at any step of a shutdown with a backlog aborts it cleanly.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from server_support import Arrivals, InjectAtStep, counting, finish_when_asked

import adieu
from adieu import open_tcp_server
from shared_support import answer, reply_to

HOST = "127.0.0.1"


def _accept_queue_length(server: adieu.Server) -> int:
    """Completed connections waiting in the (only) listener's accept queue:
    Linux's ``TCP_INFO`` gives it for a listening socket in ``tcpi_unacked``
    (a u32 at offset 24)."""
    (listener,) = server.listeners
    assert isinstance(listener, trio.SocketListener)
    info = listener.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    (count,) = struct.unpack_from("=I", info, 24)
    return int(count)


async def _until_queued(server: adieu.Server, count: int) -> None:
    while _accept_queue_length(server) < count:
        await trio.sleep(0.001)


async def test_grace_zero_tells_every_backlog_connection_what_happened() -> None:
    """Grace 0 with a backlog: every connection gets the server's preamble
    and SHUTDOWN (grace 0), then the reset; the report says of each what
    happened (the grace period expired; taken from the backlog after it had
    ended, told and reset), never that a client which sent its preamble sent
    none."""
    arrivals = Arrivals(1)
    waiting = 3
    seen: list[tuple[bool, float | None]] = []

    async def ignoring(conn: adieu.Connection) -> None:
        await trio.sleep_forever()

    async def client(port: int, connected: Arrivals) -> None:
        async with adieu.connect_tcp(HOST, port) as conn:
            await conn.send(b"hello")  # with its preamble, long before
            connected.arrive()
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
            seen.append((conn.shutdown_requested.is_set(), conn.shutdown_grace_period))

    with trio.fail_after(30):
        async with (
            trio.open_nursery() as clients,
            open_tcp_server(
                counting(ignoring, arrivals), HOST, 0, max_connections=1
            ) as server,
        ):
            served = Arrivals(1)
            clients.start_soon(client, server.port, served)
            await arrivals.all_here.wait()
            connected = Arrivals(waiting)
            for _ in range(waiting):
                clients.start_soon(client, server.port, connected)
            await connected.all_here.wait()
            await _until_queued(server, waiting)
            report = await server.shutdown(grace_period=0)

    assert seen == [(True, 0.0)] * (1 + waiting)
    assert len(report.connections) == 1 + waiting
    assert report.counts[adieu.TerminationKind.TIMED_OUT] == 1 + waiting
    first, *backlog = report.connections
    assert first.termination.detail == (
        "the grace period of the server's shutdown (0 s) expired before the "
        "client's END"
    )
    for connection in backlog:
        assert connection.outcome is None
        assert connection.termination.kind is adieu.TerminationKind.TIMED_OUT
        # No time was left to serve it: told, then reset at once.
        assert connection.termination.detail == (
            "accepted from the listen backlog as the shutdown began, after its "
            "grace period (0 s) had ended: told to finish (the server's preamble "
            "and SHUTDOWN), then reset"
        )


@pytest.fixture
def listener_fds_above_1024() -> Iterator[None]:
    """Hold enough descriptors that the next ones are above 1024 (what a
    server that raised its limit to serve thousands of connections has)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.fail(f"this test needs a hard file limit of {wanted}, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    dummies: list[int] = []
    try:
        while not dummies or dummies[-1] <= 1024:
            dummies.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in dummies:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_listener_above_fd_1024_drains_its_backlog(
    listener_fds_above_1024: None,
) -> None:
    arrivals = Arrivals(1)
    results: list[tuple[list[bytes], adieu.Termination]] = []

    async def client(port: int, name: bytes, connected: trio.Event) -> None:
        async with adieu.connect_tcp(HOST, port) as conn:
            await conn.send(name)
            connected.set()
            replies = await finish_when_asked(conn)
        assert conn.termination is not None
        results.append((replies, conn.termination))

    with trio.fail_after(30):
        async with (
            trio.open_nursery() as clients,
            open_tcp_server(
                counting(answer, arrivals), HOST, 0, max_connections=1
            ) as server,
        ):
            (listener,) = server.listeners
            assert isinstance(listener, trio.SocketListener)
            assert listener.socket.fileno() > 1024
            first, second = trio.Event(), trio.Event()
            clients.start_soon(client, server.port, b"served", first)
            await arrivals.all_here.wait()
            clients.start_soon(client, server.port, b"waiting", second)
            await second.wait()
            await _until_queued(server, 1)
            report = await server.shutdown()

    assert sorted(replies for replies, _ in results) == [
        [reply_to(b"served")],
        [reply_to(b"waiting")],
    ]
    assert [t.kind for _, t in results] == [adieu.TerminationKind.CLEAN] * 2
    assert report.counts[adieu.TerminationKind.CLEAN] == 2
    assert not report.aborted


#: A short grace period: the run in which the second request never comes
#: (every window has been tried) ends by it.
SHORT_GRACE = 1.0


async def _backlog_shutdown_with_second_request(
    step: int, use_abort: bool
) -> adieu.ShutdownReport | None:
    """A TCP server with one connection served and two in the backlog, a
    graceful shutdown, and a second request (``shutdown()`` or ``abort()``)
    woken after the ``step``-th task step. Returns the report every caller
    got, or ``None`` if the shutdown ended before that step."""
    arrivals = Arrivals(1)
    reports: list[adieu.ShutdownReport] = []
    second = trio.Event()

    async def stubborn(port: int, connected: Arrivals) -> None:
        async with adieu.connect_tcp(HOST, port) as conn:
            connected.arrive()
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()

    async def second_request(server: adieu.Server) -> None:
        await second.wait()
        if use_abort:
            server.abort()
            reports.append(await server.wait_shut_down())
        else:
            reports.append(await server.shutdown())

    instrument = InjectAtStep(step, second.set)
    with trio.fail_after(30):
        async with (
            trio.open_nursery() as clients,
            trio.open_nursery() as callers,
            open_tcp_server(
                counting(answer, arrivals),
                HOST,
                0,
                max_connections=1,
                grace_period=SHORT_GRACE,
            ) as server,
        ):
            served = Arrivals(1)
            clients.start_soon(stubborn, server.port, served)
            await arrivals.all_here.wait()
            connected = Arrivals(2)
            clients.start_soon(stubborn, server.port, connected)
            clients.start_soon(stubborn, server.port, connected)
            await connected.all_here.wait()
            await _until_queued(server, 2)
            callers.start_soon(second_request, server)
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.add_instrument(instrument)
            try:
                instrument.arm()
                reports.append(await server.shutdown())
            finally:
                trio.lowlevel.remove_instrument(instrument)
            if instrument.injected_at is None:
                callers.cancel_scope.cancel()
    report = reports[0]
    assert all(r is report for r in reports)
    assert report is server.report
    # Nothing waiting in the backlog was left untold or unreported.
    assert len(report.connections) == 3
    if instrument.injected_at is None:
        assert report.counts[adieu.TerminationKind.TIMED_OUT] == 3
        return None
    assert len(reports) == 2
    kind = "ABORTED" if report.aborted else "TIMED_OUT"
    if not report.aborted:
        # The request landed as the grace period ended, after the sweep.
        assert report.duration >= SHORT_GRACE
    assert [c.termination.kind.name for c in report.connections] == [kind] * 3
    return report


@pytest.mark.slow
@pytest.mark.parametrize("use_abort", [False, True], ids=["shutdown", "abort"])
async def test_a_second_request_at_every_step_of_a_backlog_shutdown(
    use_abort: bool,
) -> None:
    """The drain itself is one synchronous step; every task step after it,
    until the shutdown's report, is a window for the second request, tried
    one by one until one lands as the grace period ends (every earlier
    window has then been tried)."""
    step = 0
    while True:
        report = await _backlog_shutdown_with_second_request(step, use_abort)
        if report is None or not report.aborted:
            break
        step += 1
    assert step > 5
