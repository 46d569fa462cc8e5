"""The grace period of a server's shutdown is a cancel-scope deadline: a
client that ignores SHUTDOWN, or a peer that stops reading while its handler
sends, is aborted exactly when it expires (``TIMED_OUT``), and the shutdown
returns right after, while well-behaved clients end ``CLEAN``."""

from __future__ import annotations

import socket

import outcome
import pytest
import trio
import trio.testing
from server_support import (
    Arrivals,
    counting,
    finish_when_asked,
    incoming_pipe,
    outgoing_pipe,
    read_exactly,
)

import adieu
from adieu import TerminationKind, open_tcp_server
from adieu.testing import connect_memory, memory_stream_pair, open_memory_server
from shared_support import CLIENT_PREAMBLE, SERVER_PREAMBLE, answer, reply_to

GRACE = 600.0
#: Float tolerance on the autojump clock, where no real time passes.
EPSILON = 1e-6


async def test_client_ignoring_shutdown_is_aborted_exactly_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(3)
    reset_seen_at: list[float] = []
    clean_terminations: list[adieu.Termination] = []

    async def well_behaved(server: adieu.Server, n: int) -> None:
        async with connect_memory(server) as conn:
            for i in range(n):
                await conn.send(b"%d" % i)
            replies = await finish_when_asked(conn)
            assert replies == [reply_to(b"%d" % i) for i in range(n)]
        assert conn.termination is not None
        clean_terminations.append(conn.termination)

    async def ignoring(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"hello")
            assert await conn.receive() == reply_to(b"hello")
            await conn.shutdown_requested.wait()
            # Carries on as if nothing was asked: never sends END.
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
        reset_seen_at.append(trio.current_time())

    # A deadlock fails at once on the autojump clock instead of hanging.
    with trio.fail_after(10 * GRACE):
        async with (
            trio.open_nursery() as clients,
            open_memory_server(
                counting(answer, arrivals), grace_period=GRACE
            ) as server,
        ):
            clients.start_soon(well_behaved, server, 1)
            clients.start_soon(ignoring, server)
            clients.start_soon(well_behaved, server, 2)
            await arrivals.all_here.wait()
            start = trio.current_time()
            report = await server.shutdown()
            end = trio.current_time()

    assert end == pytest.approx(start + GRACE, abs=EPSILON)
    assert reset_seen_at == [pytest.approx(start + GRACE, abs=EPSILON)]
    assert report.duration == pytest.approx(GRACE, abs=EPSILON)
    assert report.grace_period == GRACE
    assert not report.aborted

    # Clients start in an order Trio chooses: tell them apart by result.
    (stubborn,) = [c for c in report.connections if c.outcome is None]
    assert stubborn.termination.kind is adieu.TerminationKind.TIMED_OUT
    assert stubborn.termination.initiator is adieu.Initiator.LOCAL
    assert stubborn.termination.messages_received == 1
    clean = sorted(
        (c for c in report.connections if c.outcome is not None),
        key=lambda c: c.termination.messages_received,
    )
    assert [c.termination.kind for c in clean] == [adieu.TerminationKind.CLEAN] * 2
    assert [c.outcome for c in clean] == [outcome.Value(1), outcome.Value(2)]
    assert report.counts[adieu.TerminationKind.CLEAN] == 2
    assert report.counts[adieu.TerminationKind.TIMED_OUT] == 1
    assert sum(report.counts.values()) == 3

    assert [t.kind for t in clean_terminations] == [adieu.TerminationKind.CLEAN] * 2
    assert all(t.confirmed for t in clean_terminations)


async def test_shutdown_of_idle_server_returns_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_server(answer, grace_period=GRACE) as server:
        start = trio.current_time()
        report = await server.shutdown()
    assert trio.current_time() == start
    assert report.connections == ()


async def _sender_until_cancelled(conn: adieu.Connection) -> None:
    chunk = b"x" * 4096
    while True:
        await conn.send(chunk)


async def test_handler_blocked_sending_to_a_peer_that_stops_reading(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(2)
    in_send = Arrivals(1)
    capacity = 16384

    async def handler(conn: adieu.Connection) -> int:
        first = await conn.receive()
        if first == b"stream to me":
            in_send.arrive()
            await _sender_until_cancelled(conn)
        await conn.send(reply_to(first))
        return 1 + await answer(conn)

    async def stops_reading(server: adieu.Server) -> None:
        async with connect_memory(server, capacity=capacity) as conn:
            # The peer stops reading: nothing the server writes reaches it.
            incoming_pipe(conn).hold()
            await conn.send(b"stream to me")
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()  # nothing ever arrives, until the reset

    async def well_behaved(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"ping")
            assert await finish_when_asked(conn) == [reply_to(b"ping")]
        assert conn.termination is not None
        assert conn.termination.kind is adieu.TerminationKind.CLEAN

    # A deadlock fails at once on the autojump clock instead of hanging.
    with trio.fail_after(10 * GRACE):
        async with (
            trio.open_nursery() as clients,
            open_memory_server(
                counting(handler, arrivals), grace_period=GRACE
            ) as server,
        ):
            clients.start_soon(stops_reading, server)
            clients.start_soon(well_behaved, server)
            await arrivals.all_here.wait()
            await in_send.all_here.wait()
            await trio.testing.wait_all_tasks_blocked()
            # The handler is blocked in send: the pipe to the peer is full.
            pipes = [outgoing_pipe(c) for c in server.connections]
            assert sorted(len(p.in_flight) > capacity for p in pipes) == [False, True]
            start = trio.current_time()
            report = await server.shutdown()
            assert trio.current_time() == pytest.approx(start + GRACE, abs=EPSILON)

    (stuck,) = [c for c in report.connections if c.outcome is None]
    (clean,) = [c for c in report.connections if c.outcome is not None]
    assert stuck.termination.kind is adieu.TerminationKind.TIMED_OUT
    assert stuck.outcome is None
    assert clean.termination.kind is adieu.TerminationKind.CLEAN
    assert clean.outcome == outcome.Value(1)


async def test_peer_that_stops_reading_over_tcp_cannot_hold_the_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    in_send = Arrivals(1)

    async def handler(conn: adieu.Connection) -> None:
        in_send.arrive()
        await _sender_until_cancelled(conn)

    async with open_tcp_server(handler, "127.0.0.1", 0, grace_period=GRACE) as server:
        # A peer that says hello and then never reads again: the kernel's
        # buffers fill and the handler's send blocks.
        peer = await trio.open_tcp_stream("127.0.0.1", server.port)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await peer.send_all(CLIENT_PREAMBLE)
        assert await read_exactly(peer, bytearray(), len(SERVER_PREAMBLE)) == (
            SERVER_PREAMBLE
        )
        await in_send.all_here.wait()
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        report = await server.shutdown()
        assert trio.current_time() == pytest.approx(start + GRACE, abs=EPSILON)
        await peer.aclose()

    (stuck,) = report.connections
    assert stuck.termination.kind is adieu.TerminationKind.TIMED_OUT
    assert stuck.termination.messages_sent > 0
    assert stuck.outcome is None


async def test_a_grace_deadline_after_both_ends_closes_without_a_reset(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A client that sent END and read the server's END, but never closes its
    side, holds its connection until the grace deadline: the server then
    closes it normally (the client reads EOF, not a reset), and the report
    counts it CLEAN, as the client experienced it."""
    async with open_memory_server(answer, grace_period=600) as server:
        ours, theirs = memory_stream_pair()
        server.serve_stream(theirs)
        await ours.send_all(b"ADIEU/\x01C" + b"\x02\x00\x00\x00\x00")
        start = trio.current_time()
        report = await server.shutdown()
        assert trio.current_time() == start + 600
        received = b""
        while chunk := await ours.receive_some():
            received += chunk
    assert received.endswith(b"\x02\x00\x00\x00\x08" + bytes(8))
    (only,) = report.connections
    assert only.termination.kind is TerminationKind.CLEAN
