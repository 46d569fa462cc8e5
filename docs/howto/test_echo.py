"""Tests of an adieu handler, the way adieu tests itself: in memory, on
pytest-trio's autojump_clock, with races forced by holding bytes in flight.

Run with ``pytest`` and ``trio_mode = true`` (pytest-trio).
"""

import pytest
import trio

import adieu
import adieu.testing


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def test_echo_over_a_connection_pair() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        await client.send(b"ping")
        assert await server.receive() == b"ping"
        await server.send(b"pong")
        assert await client.receive() == b"pong"
    assert client.termination is not None
    assert client.termination.kind is adieu.TerminationKind.CLEAN


async def test_a_client_that_ignores_shutdown_is_aborted_at_the_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        adieu.testing.open_memory_server(echo, grace_period=600) as server,
        adieu.testing.connect_memory(server) as client,
    ):
        report = await server.shutdown()  # ten minutes, in no real time
        assert client.shutdown_requested.is_set()
        with pytest.raises(adieu.ConnectionReset):
            await client.receive()
    [connection] = report.connections
    assert connection.termination.kind is adieu.TerminationKind.TIMED_OUT
    assert report.duration == pytest.approx(600)


async def test_the_last_request_crossing_shutdown_is_answered() -> None:
    async with (
        adieu.testing.open_memory_server(echo) as server,
        adieu.testing.connect_memory(server) as client,
    ):
        await client.send(b"first")
        assert await client.receive() == b"first"
        to_server = adieu.testing.memory_stream(client).outgoing
        to_server.hold()  # what the client sends now stays in flight
        await client.send(b"last")
        await client.send_eof()
        [conn] = server.connections
        conn.request_shutdown("restarting")  # crosses the client's END
        await client.shutdown_requested.wait()
        to_server.release()
        assert [m async for m in client] == [b"last"]
    assert client.termination is not None
    assert client.termination.lossless  # clean, both messages confirmed


async def test_a_cut_connection_is_reported_as_truncated() -> None:
    async with (
        adieu.testing.open_memory_server(echo) as server,
        adieu.testing.connect_memory(server) as client,
    ):
        await client.send(b"ping")
        assert await client.receive() == b"ping"
        adieu.testing.memory_stream(client).incoming.cut()  # the server's bytes stop
        with pytest.raises(adieu.ConnectionTruncated):
            await client.receive()
    assert client.termination is not None
    assert client.termination.kind is adieu.TerminationKind.TRUNCATED


async def test_a_reset_is_reported_as_such() -> None:
    async with (
        adieu.testing.open_memory_server(echo) as server,
        adieu.testing.connect_memory(server) as client,
    ):
        adieu.testing.memory_stream(client).incoming.reset()
        with pytest.raises(adieu.ConnectionReset):
            await client.receive()
    assert client.termination is not None
    assert client.termination.kind is adieu.TerminationKind.RESET
