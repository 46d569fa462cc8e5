"""The shutdown is the server's own task: a caller only waits for it.

Cancelling a caller cancels its wait alone; a second request (``shutdown()``
or ``abort()``) landing at any moment of a running shutdown ends it at once,
with no exception and one report for every caller; the end of the grace
period cuts every connection in one sweep and builds the report right away,
however long the cancelled handlers take to unwind.
"""

from __future__ import annotations

from collections.abc import Callable

import outcome
import pytest
import trio
import trio.testing
from server_support import (
    Arrivals,
    InjectAtStep,
    counting,
    finish_when_asked,
    incoming_pipe,
)

import adieu
from adieu.testing import connect_memory, open_memory_server
from shared_support import answer, reply_to

GRACE = 600.0


async def _ignoring(server: adieu.Server, asked: Arrivals) -> None:
    """A client that never finishes: it is cut (reset) when the grace
    period ends or the server aborts."""
    async with connect_memory(server) as conn:
        await conn.shutdown_requested.wait()
        asked.arrive()
        with pytest.raises(adieu.ConnectionReset):
            await conn.receive()


async def _until_reset(server: adieu.Server, asked: Arrivals) -> None:
    """A client that never finishes, and may be cut before it was asked."""
    async with connect_memory(server) as conn:
        with pytest.raises(adieu.ConnectionReset):
            await conn.receive()


async def _well_behaved(server: adieu.Server, asked: Arrivals) -> None:
    async with connect_memory(server) as conn:
        await conn.send(b"x")
        assert await conn.receive() == reply_to(b"x")
        await conn.shutdown_requested.wait()
        asked.arrive()
        assert await finish_when_asked(conn) == []
    assert conn.termination is not None
    assert conn.termination.kind is adieu.TerminationKind.CLEAN


@pytest.mark.parametrize("then_wait", [True, False], ids=["wait", "block-exit"])
async def test_a_cancelled_shutdown_call_cancels_only_its_wait(
    autojump_clock: trio.testing.MockClock, then_wait: bool
) -> None:
    """The shutdown goes on without its first caller: the clients are asked,
    the well-behaved one finishes, and the report comes at the end of the
    grace period, to ``wait_shut_down()`` and to the block's exit alike (or
    to the block's exit alone, when nobody else waits)."""
    arrivals = Arrivals(2)
    asked = Arrivals(2)
    reports: list[adieu.ShutdownReport] = []
    with trio.fail_after(10 * GRACE):
        async with trio.open_nursery() as clients:
            async with open_memory_server(
                counting(answer, arrivals), grace_period=GRACE
            ) as server:
                clients.start_soon(_ignoring, server, asked)
                clients.start_soon(_well_behaved, server, asked)
                await arrivals.all_here.wait()
                start = trio.current_time()
                with trio.move_on_after(1) as waited:
                    await server.shutdown()
                assert waited.cancelled_caught
                assert server.shutting_down
                early = server.report
                assert early is None
                if then_wait:
                    reports.append(await server.wait_shut_down())
                    assert trio.current_time() == pytest.approx(start + GRACE)
            block_left = trio.current_time()
    assert block_left == pytest.approx(start + GRACE)
    report = server.report
    assert report is not None
    assert all(r is report for r in reports)
    assert asked.count == 2
    assert not report.aborted
    assert sorted(c.termination.kind.name for c in report.connections) == [
        "CLEAN",
        "TIMED_OUT",
    ]


async def test_the_deadline_report_does_not_wait_for_handlers_to_unwind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """At the end of the grace period every connection still open is cut
    and the report is built at once: a handler that takes long to unwind
    after its cancellation (shielded clean-up) does not delay it."""
    arrivals = Arrivals(3)
    asked = Arrivals(3)
    unwound: list[float] = []
    unwinding = 100.0

    async def slow_to_unwind(conn: adieu.Connection) -> None:
        try:
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await trio.sleep(unwinding)
            unwound.append(trio.current_time())

    with trio.fail_after(10 * GRACE):
        async with trio.open_nursery() as clients:
            async with open_memory_server(
                counting(slow_to_unwind, arrivals), grace_period=GRACE
            ) as server:
                for _ in range(3):
                    clients.start_soon(_ignoring, server, asked)
                await arrivals.all_here.wait()
                start = trio.current_time()
                report = await server.shutdown()
                reported = trio.current_time()
            block_left = trio.current_time()

    assert reported == pytest.approx(start + GRACE)
    assert report.duration == pytest.approx(GRACE)
    # The block waits for its tasks, as structured concurrency demands.
    assert unwound == [pytest.approx(start + GRACE + unwinding)] * 3
    assert block_left == pytest.approx(start + GRACE + unwinding)
    assert report.counts[adieu.TerminationKind.TIMED_OUT] == 3
    for connection in report.connections:
        assert connection.outcome is None
        assert connection.termination.kind is adieu.TerminationKind.TIMED_OUT
        assert connection.termination.detail == (
            "the grace period of the server's shutdown (600 s) expired before "
            "the client's END"
        )


async def test_an_end_still_queued_at_the_deadline_is_not_reported_clean(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The client sent END; the handler returned; the server's END is
    produced but cannot be written (the client does not read). When the
    grace period cuts it, the client never got that END: the report must
    not say CLEAN."""
    arrivals = Arrivals(1)
    reset = trio.Event()

    async def client(server: adieu.Server) -> None:
        # Room for the preamble and the reply; the server's END does not fit.
        async with connect_memory(server, capacity=20) as conn:
            incoming_pipe(conn).hold()
            await conn.send(b"x")
            await conn.send_eof()
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
        assert conn.termination is not None
        assert conn.termination.kind is adieu.TerminationKind.RESET
        reset.set()

    with trio.fail_after(10 * GRACE):
        async with trio.open_nursery() as clients:
            async with open_memory_server(
                counting(answer, arrivals), grace_period=GRACE
            ) as server:
                clients.start_soon(client, server)
                await arrivals.all_here.wait()
                (conn,) = server.connections
                while not conn.end_received:
                    await trio.testing.wait_all_tasks_blocked()
                await trio.testing.wait_all_tasks_blocked()
                report = await server.shutdown()
            await reset.wait()

    (only,) = report.connections
    assert only.outcome == outcome.Value(1)
    assert only.termination.kind is adieu.TerminationKind.TIMED_OUT
    assert only.termination.detail == (
        "the grace period of the server's shutdown (600 s) expired after the "
        "client's END, before the server's END was written"
    )
    assert report.counts[adieu.TerminationKind.CLEAN] == 0


# ------------------------------------------- a second request at any moment


SecondCall = Callable[[adieu.Server, trio.Nursery, list[adieu.ShutdownReport]], None]


def _second_shutdown(
    server: adieu.Server,
    nursery: trio.Nursery,
    reports: list[adieu.ShutdownReport],
) -> None:
    async def call() -> None:
        reports.append(await server.shutdown())

    nursery.start_soon(call)


def _abort(
    server: adieu.Server,
    nursery: trio.Nursery,
    reports: list[adieu.ShutdownReport],
) -> None:
    server.abort()


async def _shutdown_with_a_second_call_at_step(
    step: int, second: SecondCall
) -> tuple[InjectAtStep, list[adieu.ShutdownReport], float]:
    """One run: two clients (one never finishes), a graceful shutdown, and
    ``second`` called after the ``step``-th task step from its start.
    Returns the instrument, every report received, and the start time."""
    arrivals = Arrivals(2)
    asked = Arrivals(2)
    reports: list[adieu.ShutdownReport] = []
    with trio.fail_after(10 * GRACE):
        async with (
            trio.open_nursery() as clients,
            trio.open_nursery() as callers,
            open_memory_server(
                counting(answer, arrivals), grace_period=GRACE
            ) as server,
        ):
            instrument = InjectAtStep(step, lambda: second(server, callers, reports))
            clients.start_soon(_until_reset, server, asked)
            clients.start_soon(_until_reset, server, asked)
            await arrivals.all_here.wait()
            await trio.testing.wait_all_tasks_blocked()
            trio.lowlevel.add_instrument(instrument)
            try:
                start = trio.current_time()
                instrument.arm()
                reports.append(await server.shutdown())
                reports.append(await server.wait_shut_down())
            finally:
                trio.lowlevel.remove_instrument(instrument)
        assert server.report is not None
        reports.append(server.report)
    return instrument, reports, start


@pytest.mark.parametrize("second", [_second_shutdown, _abort])
async def test_a_second_request_at_every_step_of_a_shutdown_aborts_it(
    autojump_clock: trio.testing.MockClock, second: SecondCall
) -> None:
    step = 0
    while True:
        instrument, reports, start = await _shutdown_with_a_second_call_at_step(
            step, second
        )
        if instrument.injected_at is None:
            break  # the shutdown ended before this many steps
        report = reports[0]
        assert all(r is report for r in reports), step
        if instrument.injected_at == pytest.approx(start + GRACE):
            # Landed in the final steps, as the grace period ended: either
            # the sweep or the abort built the report; one report all the
            # same, at the deadline.
            kind = "ABORTED" if report.aborted else "TIMED_OUT"
            assert report.duration == pytest.approx(GRACE), step
        else:
            # Promptly: no time passes between the request and the report.
            assert instrument.injected_at == pytest.approx(start), step
            assert report.aborted, step
            assert report.duration == pytest.approx(0), step
            kind = "ABORTED"
        assert [c.termination.kind.name for c in report.connections] == [kind] * 2
        step += 1
    # Without a second request the shutdown ran its full grace period.
    assert step > 5
    assert reports[0].counts[adieu.TerminationKind.TIMED_OUT] == 2
    assert not reports[0].aborted


async def test_concurrent_shutdown_calls_get_one_report(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two shutdown() calls started together: the second aborts, and both
    (and the block) get the same report."""
    arrivals = Arrivals(2)
    asked = Arrivals(2)
    reports: list[adieu.ShutdownReport] = []

    async def call(server: adieu.Server) -> None:
        reports.append(await server.shutdown())

    with trio.fail_after(10 * GRACE):
        async with trio.open_nursery() as clients:
            async with (
                open_memory_server(
                    counting(answer, arrivals), grace_period=GRACE
                ) as server,
                trio.open_nursery() as callers,
            ):
                clients.start_soon(_until_reset, server, asked)
                clients.start_soon(_until_reset, server, asked)
                await arrivals.all_here.wait()
                start = trio.current_time()
                callers.start_soon(call, server)
                callers.start_soon(call, server)
            assert trio.current_time() == start
    assert len(reports) == 2
    assert reports[0] is reports[1] is server.report
    assert reports[0].aborted
    assert reports[0].counts[adieu.TerminationKind.ABORTED] == 2


class _StepsBeforeReport(trio.abc.Instrument):
    """Counts the task steps that begin, once armed, before the server's
    report exists."""

    def __init__(self, server: adieu.Server) -> None:
        self.server = server
        self.armed = False
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self.armed and self.server.report is None:
            self.steps += 1


async def test_the_cut_comes_before_any_further_task_step_on_a_busy_server(
    mock_clock: trio.testing.MockClock,
) -> None:
    """Handlers that never wait keep every batch of the scheduler full: the
    grace period's end is acted on before the next task step, not when the
    shutdown's own task gets its turn. (A clock the test moves by hand:
    nothing here waits on real time.)"""
    busy = 20

    async def spinning(conn: adieu.Connection) -> None:
        # Bounded, so that a failure cannot spin forever.
        for _ in range(100_000):
            await trio.lowlevel.checkpoint()

    async def run() -> tuple[int, adieu.ShutdownReport]:
        arrivals = Arrivals(busy)
        async with (
            trio.open_nursery() as clients,
            open_memory_server(
                counting(spinning, arrivals), grace_period=GRACE
            ) as server,
        ):
            for _ in range(busy):
                clients.start_soon(_until_reset, server, Arrivals(busy))
            await arrivals.all_here.wait()
            clients.start_soon(server.shutdown)
            while not server.shutting_down:
                await trio.lowlevel.checkpoint()
            counter = _StepsBeforeReport(server)
            trio.lowlevel.add_instrument(counter)
            try:
                mock_clock.jump(GRACE)
                counter.armed = True
                report = await server.wait_shut_down()
            finally:
                trio.lowlevel.remove_instrument(counter)
        return counter.steps, report

    steps, report = await run()
    assert steps == 0
    assert report.counts[adieu.TerminationKind.TIMED_OUT] == busy
