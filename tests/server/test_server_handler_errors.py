"""A handler that raises ends only its own connection: the connection is
aborted (its client sees a reset), the exception is logged on the ``adieu``
logger and reported, and the server and the other connections carry on."""

from __future__ import annotations

import logging

import outcome
import pytest
import trio
import trio.testing
from server_support import Arrivals, counting, finish_when_asked, wait_until

import adieu
from adieu.testing import connect_memory, open_memory_server
from shared_support import answer, reply_to


def _handler_records(
    caplog: pytest.LogCaptureFixture,
) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "adieu" and r.getMessage().startswith("handler for")
    ]


async def crash_on_request(conn: adieu.Connection) -> int:
    """Answers, but raises ValueError on b"crash now", and on b"crash later"
    once the server asks to shut down."""
    answered = 0
    async for message in conn:
        if message == b"crash now":
            raise ValueError("the handler has a bug")
        if message == b"crash later":
            await conn.shutdown_requested.wait()
            raise ValueError("the handler has a bug, late")
        await conn.send(reply_to(message))
        answered += 1
    return answered


async def test_handler_crash_aborts_only_its_own_connection(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    arrivals = Arrivals(4)
    clean: list[adieu.Termination] = []
    reset: list[adieu.Termination] = []

    async def crashing_client(server: adieu.Server, request: bytes) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"fine")
            assert await conn.receive() == reply_to(b"fine")
            await conn.send(request)
            with pytest.raises(adieu.ConnectionReset):
                await conn.receive()
        assert conn.termination is not None
        reset.append(conn.termination)

    async def well_behaved(server: adieu.Server) -> None:
        async with connect_memory(server) as conn:
            await conn.send(b"before")
            assert await conn.receive() == reply_to(b"before")
            await crashed.wait()  # carries on after the other one's crash
            await conn.send(b"after")
            assert await conn.receive() == reply_to(b"after")
            await conn.send(b"last")
            assert await finish_when_asked(conn) == [reply_to(b"last")]
        assert conn.termination is not None
        clean.append(conn.termination)

    crashed = trio.Event()
    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as clients,
            open_memory_server(
                counting(crash_on_request, arrivals), grace_period=60
            ) as server,
        ):
            clients.start_soon(crashing_client, server, b"crash now")
            clients.start_soon(crashing_client, server, b"crash later")
            clients.start_soon(well_behaved, server)
            clients.start_soon(well_behaved, server)
            await arrivals.all_here.wait()
            # The first crash: the connection ends before the shutdown.
            await wait_until(lambda: len(reset) == 1)
            assert len(server.connections) == 3
            crashed.set()
            report = await server.shutdown()

    assert [t.kind for t in reset] == [adieu.TerminationKind.RESET] * 2
    assert [t.kind for t in clean] == [adieu.TerminationKind.CLEAN] * 2
    assert all(t.confirmed for t in clean)

    # The first crash, before the shutdown: counted, not kept.
    assert report.ended_before[adieu.TerminationKind.ABORTED] == 1
    assert sum(report.ended_before.values()) == 1
    # The second, open when the shutdown began: reported with its error.
    (late,) = [c for c in report.connections if isinstance(c.outcome, outcome.Error)]
    assert isinstance(late.outcome, outcome.Error)
    assert isinstance(late.outcome.error, ValueError)
    assert str(late.outcome.error) == "the handler has a bug, late"
    assert late.termination.kind is adieu.TerminationKind.ABORTED
    others = [c for c in report.connections if c is not late]
    assert [c.termination.kind for c in others] == [adieu.TerminationKind.CLEAN] * 2
    assert [c.outcome for c in others] == [outcome.Value(3)] * 2
    assert report.counts[adieu.TerminationKind.ABORTED] == 1
    assert report.counts[adieu.TerminationKind.CLEAN] == 2

    records = _handler_records(caplog)
    assert len(records) == 2
    for record in records:
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], ValueError)
        assert "ValueError" in record.getMessage()
    assert "Traceback" in caplog.text
    assert "the handler has a bug, late" in caplog.text


async def test_handler_ended_by_the_peers_reset_logs_info_without_traceback(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    arrivals = Arrivals(1)
    with trio.fail_after(3600):
        async with open_memory_server(
            counting(answer, arrivals), grace_period=60
        ) as server:
            async with connect_memory(server) as conn:
                await conn.send(b"hello")
                assert await conn.receive() == reply_to(b"hello")
                conn.abort()
            await wait_until(lambda: not server.connections)
            report = await server.shutdown()

    assert report.ended_before[adieu.TerminationKind.RESET] == 1
    (record,) = _handler_records(caplog)
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "ConnectionReset" in record.getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "Traceback" not in caplog.text


class _RaisingHandler(logging.Handler):
    """A logging handler with a bug: it raises on the record of a
    connection's end."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("connection ended"):
            raise RuntimeError("the logging handler has a bug")


async def _serve_one_then_abort() -> None:
    async with (
        open_memory_server(answer) as server,
        connect_memory(server) as conn,
    ):
        await conn.send(b"one")
        assert await conn.receive() == reply_to(b"one")
        server.abort()
        with pytest.raises(trio.BrokenResourceError):
            await conn.receive()


async def test_a_logging_handler_that_raises_does_not_hang_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server's bookkeeping of an ended connection comes before its log
    line: a handler that raises there surfaces as an error from the
    server's block instead of leaving an abort waiting forever for a
    connection it already counted out."""
    logger = logging.getLogger("adieu")
    broken = _RaisingHandler(logging.DEBUG)
    level = logger.level
    logger.addHandler(broken)
    logger.setLevel(logging.DEBUG)
    try:
        with (
            trio.fail_after(60),
            pytest.RaisesGroup(
                pytest.RaisesExc(RuntimeError, match="the logging handler has a bug"),
                flatten_subgroups=True,
                allow_unwrapped=True,
            ),
        ):
            await _serve_one_then_abort()
    finally:
        logger.removeHandler(broken)
        logger.setLevel(level)
