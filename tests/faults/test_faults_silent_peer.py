"""A peer opens a connection and sends nothing, not even its preamble.

It cannot hold the server: the server's shutdown still ends at its
deadline (that connection ``TIMED_OUT``), and without a shutdown the
handshake timeout ends it. Honest clients keep working meanwhile.

Once over real loopback sockets with a short grace period (the kernel's part:
an accepted socket that never becomes readable), then over memory streams on
the ``autojump_clock`` with the long defaults.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from fault_support import HOST, RawPeer, client_until_asked, counting, honest_client

import adieu
import adieu.testing
from shared_support import answer

#: Real seconds the server grants in its shutdown: short, since the test
#: waits it out; long enough for the honest client's last exchange.
SHORT_GRACE = 1.0


@pytest.mark.slow
async def test_silent_tcp_peer_does_not_hold_the_shutdown_beyond_its_deadline() -> None:
    handled: list[adieu.Connection] = []
    reports: list[adieu.ShutdownReport] = []
    async with adieu.open_tcp_server(
        counting(answer, handled), HOST, 0, handshake_timeout=3600
    ) as server:
        silent = await RawPeer.connect(server.port)
        try:
            await honest_client(server.port, 3, tag="before")
            connected = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client_until_asked, server.port, connected.set)
                await connected.wait()

                async def shut_down() -> None:
                    reports.append(await server.shutdown(SHORT_GRACE))

                nursery.start_soon(shut_down)
            # The server aborted the silent connection at the deadline.
            assert await silent.read_until_closed() == "reset"
        finally:
            silent.close()
    (report,) = reports
    assert report.duration >= SHORT_GRACE
    assert not report.aborted
    (silent_entry,) = [
        c for c in report.connections if c.remote_address == silent.address
    ]
    (honest_entry,) = [c for c in report.connections if c is not silent_entry]
    assert honest_entry.termination.kind is adieu.TerminationKind.CLEAN
    assert silent_entry.termination.kind is adieu.TerminationKind.TIMED_OUT
    # What expired was the shutdown's grace period, not the handshake
    # timeout (an hour away), and the report says so.
    assert "grace period" in silent_entry.termination.detail
    assert silent_entry.outcome is None  # its handler never ran
    assert len(handled) == 2  # the two honest clients only


async def test_silent_peer_ends_a_long_shutdown_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    grace = 600.0
    handled: list[adieu.Connection] = []
    reports: list[adieu.ShutdownReport] = []
    silent, server_end = adieu.testing.memory_stream_pair()
    async with adieu.testing.open_memory_server(
        counting(answer, handled), handshake_timeout=3600
    ) as server:
        server.serve_stream(server_end)
        async with trio.open_nursery() as nursery:

            async def honest() -> None:
                async with adieu.testing.connect_memory(server) as conn:
                    await conn.send(b"ping")
                    assert await conn.receive() == b"re:ping"
                    await conn.shutdown_requested.wait()
                    await conn.send(b"during")
                    assert await conn.receive() == b"re:during"
                assert conn.termination is not None
                assert conn.termination.lossless

            nursery.start_soon(honest)
            await trio.testing.wait_all_tasks_blocked()
            reports.append(await server.shutdown(grace))
    (report,) = reports
    assert report.duration == pytest.approx(grace)
    kinds = sorted(c.termination.kind.value for c in report.connections)
    assert kinds == ["clean", "timed_out"]
    (timed_out,) = [c for c in report.connections if not c.termination.clean]
    assert "grace period" in timed_out.termination.detail
    assert len(handled) == 1
    await silent.aclose()


async def test_silent_peer_is_ended_by_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    handshake_timeout = 10.0
    silent, server_end = adieu.testing.memory_stream_pair()
    async with adieu.testing.open_memory_server(
        answer, handshake_timeout=handshake_timeout
    ) as server:
        start = trio.current_time()
        server.serve_stream(server_end)
        # The server's preamble comes at once; then, at the handshake
        # timeout, the reset.
        assert await silent.receive_some() == b"ADIEU/\x01S"
        try:
            await silent.receive_some()
        except trio.BrokenResourceError:
            ended_at = trio.current_time()
        else:
            raise AssertionError("the silent connection was not reset")
        assert ended_at - start == pytest.approx(handshake_timeout)
        async with adieu.testing.connect_memory(server) as conn:
            await conn.send(b"after")
            assert await conn.receive() == b"re:after"
        report = await server.shutdown()
    assert report.ended_before[adieu.TerminationKind.TIMED_OUT] == 1
    await silent.aclose()
