"""Over TLS, which has no half-close, the END frames still give a clean end
on both sides: the terminal handshake is in-band."""

from __future__ import annotations

import ssl

import pytest
import trio
from connection_support import Handler, Served, tcp_server

import adieu
from adieu import Initiator, TerminationKind

COUNT = 5


def echo_recording(served: Served) -> Handler:
    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        async for data in conn:
            served.received.append(data)
            await conn.send(data)

    return handler


def assert_tls(conn: adieu.Connection) -> None:
    assert isinstance(conn.transport.stream, trio.SSLStream)
    assert not conn.transport.supports_half_close


def assert_clean(conn: adieu.Connection) -> adieu.Termination:
    termination = conn.termination
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN, termination
    assert termination.messages_discarded == 0
    return termination


async def test_a_client_ending_is_clean_on_both_sides_over_tls(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    served = Served()
    async with tcp_server(
        echo_recording(served), ssl_context=server_ssl_context
    ) as server:
        async with adieu.connect_tcp(
            "127.0.0.1",
            server.port,
            ssl_context=client_ssl_context,
            server_hostname="localhost",
        ) as client:
            assert_tls(client)
            for i in range(COUNT):
                await client.send(b"message %d" % i)
                assert await client.receive() == b"message %d" % i
            # Leaving the block: END, then the server's END, over TLS.
        mine = assert_clean(client)
        assert mine.initiator is Initiator.LOCAL
        assert mine.confirmed is True
        assert mine.acknowledged == COUNT
    assert_tls(served.only)
    theirs = assert_clean(served.only)
    assert theirs.messages_received == COUNT
    assert theirs.messages_sent == COUNT


async def test_a_server_shutdown_is_clean_on_both_sides_over_tls(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """The server asks (SHUTDOWN), the client finishes, both ENDs cross TLS."""
    served = Served()
    async with tcp_server(
        echo_recording(served), ssl_context=server_ssl_context
    ) as server:
        async with adieu.connect_tcp(
            "127.0.0.1",
            server.port,
            ssl_context=client_ssl_context,
            server_hostname="localhost",
        ) as client:
            await client.send(b"hello")
            assert await client.receive() == b"hello"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                await client.shutdown_requested.wait()
                await client.send(b"last words")
                assert await client.receive() == b"last words"
                termination = await client.shutdown()
        report = await server.shutdown()
    assert termination is client.termination
    mine = assert_clean(client)
    assert mine.initiator is Initiator.PEER  # the server asked first
    assert mine.confirmed is True
    assert mine.acknowledged == 2
    theirs = assert_clean(served.only)
    assert theirs.messages_received == 2
    assert report.counts[TerminationKind.CLEAN] == 1


async def test_the_termination_is_known_once_both_ends_are_out_over_tls(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """TLS has no half-close, so no EOF follows an END until a side closes:
    the ending is decided by the two ENDs alone, and each side's
    termination is set then, while both blocks are still open."""
    server_knows = trio.Event()
    client_knows = trio.Event()
    seen: list[adieu.Termination | None] = []

    async def handler(conn: adieu.Connection) -> None:
        async for data in conn:
            await conn.send(data)
        await conn.send_eof()
        with trio.fail_after(10):
            while conn.termination is None:
                await trio.sleep(0.01)
        seen.append(conn.termination)
        server_knows.set()
        await client_knows.wait()

    async with (
        tcp_server(handler, ssl_context=server_ssl_context) as server,
        adieu.connect_tcp(
            "127.0.0.1",
            server.port,
            ssl_context=client_ssl_context,
            server_hostname="localhost",
        ) as client,
    ):
        await client.send(b"one")
        assert await client.receive() == b"one"
        await client.send_eof()
        with pytest.raises(adieu.EndOfMessages):
            await client.receive()
        with trio.fail_after(10):
            while client.termination is None:
                await trio.sleep(0.01)
            await server_knows.wait()
        assert_clean(client)
        client_knows.set()
    [termination] = seen
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN
