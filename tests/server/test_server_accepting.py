"""Accepting, over real loopback TCP where the kernel matters: accepts stop
the moment a shutdown starts (connections the kernel had completed are
served and asked to finish, never reset; later connects are refused); at
``max_connections`` further connections wait in the backlog; a peer that
never completes the handshake is cut at ``handshake_timeout``."""

from __future__ import annotations

import logging
import select

import outcome
import pytest
import trio
import trio.testing
from server_support import (
    Arrivals,
    connect_before_accepted,
    counting,
    finish_when_asked,
    read_exactly,
    wait_until,
)

import adieu
from adieu import open_tcp_server
from adieu.testing import connect_memory, memory_stream_pair, open_memory_server
from shared_support import SERVER_PREAMBLE, answer, reply_to


async def _kernel_has_completed_a_connection(server: adieu.Server) -> None:
    """Wait until a connection sits completed in the listener's backlog
    (the accept loop is not waiting on the socket: it waits for a slot)."""
    (listener,) = server.listeners
    assert isinstance(listener, trio.SocketListener)
    await trio.lowlevel.wait_readable(listener.socket)


def _backlog_holds_a_connection(server: adieu.Server) -> bool:
    """Whether a completed connection sits in the listener's backlog right
    now, not yet accepted: the listening socket is readable. Asked of the
    kernel without waiting (a poll with a zero timeout), so the answer is
    about this instant, with no chance for any task to run first."""
    (listener,) = server.listeners
    assert isinstance(listener, trio.SocketListener)
    readable, _, _ = select.select([listener.socket.fileno()], [], [], 0)
    return bool(readable)


async def _connect_is_refused(port: int) -> None:
    """A plain TCP connect to ``port`` is refused by the kernel."""
    with trio.socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        await sock.connect(("127.0.0.1", port))


async def test_connection_in_the_backlog_at_shutdown_is_asked_to_finish() -> None:
    arrivals = Arrivals(1)
    results: dict[str, tuple[list[bytes], adieu.Termination]] = {}
    finished = Arrivals(2)

    async def client(port: int, name: str, connected: trio.Event) -> None:
        async with connect_before_accepted(port) as conn:
            connected.set()
            # Sent before it was even accepted: waits in the kernel.
            await conn.send(name.encode())
            replies = await finish_when_asked(conn)
        assert conn.termination is not None
        results[name] = (replies, conn.termination)
        finished.arrive()

    with trio.fail_after(30):
        async with (
            trio.open_nursery() as clients,
            open_tcp_server(
                counting(answer, arrivals), "127.0.0.1", 0, max_connections=1
            ) as server,
        ):
            first, waiting = trio.Event(), trio.Event()
            clients.start_soon(client, server.port, "served", first)
            await arrivals.all_here.wait()
            # The only slot is taken: the kernel completes the next
            # connection, and it waits in the backlog.
            clients.start_soon(client, server.port, "waiting", waiting)
            await waiting.wait()
            await _kernel_has_completed_a_connection(server)
            assert arrivals.count == 1
            assert server.port  # read before the listeners close

            port = server.port
            async with trio.open_nursery() as shutting_down:
                shutting_down.start_soon(server.shutdown)
                await wait_until(lambda: server.shutting_down)
                await finished.all_here.wait()
                # The listener is closed: nobody else gets in.
                await _connect_is_refused(port)
            report = server.report

    assert report is not None
    for name in ("served", "waiting"):
        replies, termination = results[name]
        assert replies == [reply_to(name.encode())]
        assert termination.kind is adieu.TerminationKind.CLEAN
        assert termination.confirmed is True
    assert len(report.connections) == 2
    assert report.counts[adieu.TerminationKind.CLEAN] == 2
    assert [c.outcome for c in report.connections] == [outcome.Value(1)] * 2
    assert arrivals.count == 2
    await _connect_is_refused(port)


async def test_connect_after_shutdown_started_is_refused() -> None:
    with trio.fail_after(30):
        async with (
            trio.open_nursery() as nursery,
            open_tcp_server(answer, "127.0.0.1", 0, grace_period=5) as server,
        ):
            port = server.port
            async with adieu.connect_tcp("127.0.0.1", port) as conn:
                nursery.start_soon(server.shutdown)
                await conn.shutdown_requested.wait()
                # SHUTDOWN goes out first; the listener closes right after,
                # once the backlog is drained. The shutdown is still running
                # (this client holds it open).
                await trio.testing.wait_all_tasks_blocked()
                assert server.addresses == []
                assert server.report is None
                await _connect_is_refused(port)
                await conn.send_eof()
                assert [m async for m in conn] == []
            assert conn.termination is not None
            assert conn.termination.kind is adieu.TerminationKind.CLEAN


async def test_connections_past_max_connections_wait_in_the_backlog() -> None:
    running = 0
    most = 0
    arrivals = Arrivals(2)

    async def handler(conn: adieu.Connection) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        arrivals.arrive()
        try:
            return await answer(conn)
        finally:
            running -= 1

    with trio.fail_after(30):
        async with open_tcp_server(
            handler, "127.0.0.1", 0, max_connections=2
        ) as server:
            async with (
                adieu.connect_tcp("127.0.0.1", server.port) as one,
                adieu.connect_tcp("127.0.0.1", server.port) as two,
            ):
                await arrivals.all_here.wait()
                async with connect_before_accepted(server.port) as third:
                    await third.send(b"third")
                    # Not dropped, not served: completed by the kernel and
                    # waiting to be accepted.
                    await _kernel_has_completed_a_connection(server)
                    # Let the server run: a whole exchange with one of the
                    # two it serves, after the third had arrived.
                    await two.send(b"two, while the third waits")
                    assert await two.receive() == reply_to(
                        b"two, while the third waits"
                    )
                    # Still in the backlog at this instant, so not accepted,
                    # so not greeted: the server's preamble can only follow
                    # an accept. (Read together, with no checkpoint between.)
                    assert _backlog_holds_a_connection(server)
                    assert len(server.connections) == 2
                    greeted_while_waiting = third.handshake_complete
                    assert not greeted_while_waiting
                    # A slot frees: the third is served.
                    await one.send_eof()
                    assert [m async for m in one] == []
                    assert await third.receive() == reply_to(b"third")
                    assert third.handshake_complete
                    await two.send(b"two")
                    assert await two.receive() == reply_to(b"two")
            for conn in (one, two, third):
                assert conn.termination is not None
                assert conn.termination.kind is adieu.TerminationKind.CLEAN
            report = await server.shutdown()

    assert most == 2
    assert report.ended_before[adieu.TerminationKind.CLEAN] == 3


HANDSHAKE_TIMEOUT = 5.0


async def test_peer_that_never_sends_its_preamble_is_cut_at_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    arrivals = Arrivals(1)
    with trio.fail_after(3600):
        async with open_memory_server(
            counting(answer, arrivals), handshake_timeout=HANDSHAKE_TIMEOUT
        ) as server:
            silent, server_end = memory_stream_pair()
            start = trio.current_time()
            server.serve_stream(server_end)
            async with connect_memory(server) as other:
                buffer = bytearray()
                assert await read_exactly(silent, buffer, 8) == SERVER_PREAMBLE
                # The silent peer never answers; the server gives up.
                with pytest.raises(trio.BrokenResourceError):
                    await silent.receive_some()
                assert trio.current_time() == start + HANDSHAKE_TIMEOUT
                # The other connection, well past that time, is unaffected.
                await trio.sleep(2 * HANDSHAKE_TIMEOUT)
                await other.send(b"still here")
                assert await other.receive() == reply_to(b"still here")
            assert other.termination is not None
            assert other.termination.kind is adieu.TerminationKind.CLEAN
            await wait_until(lambda: not server.connections)
            report = await server.shutdown()

    assert arrivals.count == 1  # only the other connection's handler ran
    assert report.ended_before[adieu.TerminationKind.TIMED_OUT] == 1
    assert report.ended_before[adieu.TerminationKind.CLEAN] == 1
    assert "ended before its handler ran" in caplog.text
    assert "handshake timeout" in caplog.text


async def test_peer_that_speaks_http_is_a_protocol_error_and_never_handled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    arrivals = Arrivals(1)
    with trio.fail_after(3600):
        async with open_memory_server(counting(answer, arrivals)) as server:
            http, server_end = memory_stream_pair()
            server.serve_stream(server_end)
            await http.send_all(b"GET / HTTP/1.1\r\n\r\n")
            buffer = bytearray()
            assert await read_exactly(http, buffer, 8) == SERVER_PREAMBLE
            await wait_until(lambda: not server.connections)
            report = await server.shutdown()
    assert arrivals.count == 0
    assert report.ended_before[adieu.TerminationKind.PROTOCOL_ERROR] == 1
    assert sum(report.ended_before.values()) == 1


async def test_peer_that_speaks_http_over_tcp_is_refused_without_handling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    arrivals = Arrivals(1)
    with trio.fail_after(30):
        async with open_tcp_server(
            counting(answer, arrivals), "127.0.0.1", 0
        ) as server:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
                buffer = bytearray()
                assert await read_exactly(stream, buffer, 8) == SERVER_PREAMBLE
                with pytest.raises((trio.BrokenResourceError, EOFError)):
                    await read_exactly(stream, buffer, 1)
            await wait_until(lambda: not server.connections)
            report = await server.shutdown()
    assert arrivals.count == 0
    assert report.ended_before[adieu.TerminationKind.PROTOCOL_ERROR] == 1
    # Logged as a peer's fault, without a traceback.
    (record,) = [
        r for r in caplog.records if "ended before its handler ran" in r.getMessage()
    ]
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "PROTOCOL_ERROR" in record.getMessage()
