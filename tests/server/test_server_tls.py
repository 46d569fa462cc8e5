"""TLS (certificates from ``trustme``): the graceful shutdown works end to
end, and since TLS has no half-close, the END frame is what tells a clean
end from a cut: a TLS stream cut without END is ``TRUNCATED``."""

from __future__ import annotations

import ssl

import outcome
import trio
from server_support import (
    Arrivals,
    counting,
    finish_when_asked,
    read_exactly,
    read_frame,
)

import adieu
from adieu import open_tcp_server
from shared_support import (
    CLIENT_PREAMBLE,
    MESSAGE,
    SERVER_PREAMBLE,
    SHUTDOWN,
    answer,
    frame,
    reply_to,
)


async def test_graceful_shutdown_over_tls(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    clients = 3
    arrivals = Arrivals(clients)
    terminations: list[adieu.Termination] = []

    async def client(port: int, n: int) -> None:
        async with adieu.connect_tcp(
            "127.0.0.1",
            port,
            ssl_context=client_ssl_context,
            server_hostname="localhost",
        ) as conn:
            assert isinstance(conn.transport.stream, trio.SSLStream)
            requests = [b"%d-%d" % (n, i) for i in range(n + 1)]
            for request in requests:
                await conn.send(request)
            replies = await finish_when_asked(conn)
            assert replies == [reply_to(r) for r in requests]
            assert conn.shutdown_reason == "maintenance"
        assert conn.termination is not None
        terminations.append(conn.termination)

    with trio.fail_after(30):
        async with (
            trio.open_nursery() as nursery,
            open_tcp_server(
                counting(answer, arrivals),
                "127.0.0.1",
                0,
                ssl_context=server_ssl_context,
            ) as server,
        ):
            for n in range(clients):
                nursery.start_soon(client, server.port, n)
            await arrivals.all_here.wait()
            report = await server.shutdown(reason="maintenance")

    assert [t.kind for t in terminations] == [adieu.TerminationKind.CLEAN] * clients
    assert all(t.confirmed for t in terminations)
    assert report.counts[adieu.TerminationKind.CLEAN] == clients
    assert sorted(
        c.outcome.unwrap() for c in report.connections if c.outcome is not None
    ) == [
        1,
        2,
        3,
    ]
    assert all(c.remote_address[0] == "127.0.0.1" for c in report.connections)


async def test_tls_stream_cut_without_end_is_truncated_on_the_server(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    arrivals = Arrivals(1)
    with trio.fail_after(30):
        async with (
            trio.open_nursery() as nursery,
            open_tcp_server(
                counting(answer, arrivals),
                "127.0.0.1",
                0,
                ssl_context=server_ssl_context,
            ) as server,
        ):
            tcp = await trio.open_tcp_stream("127.0.0.1", server.port)
            tls = trio.SSLStream(tcp, client_ssl_context, server_hostname="localhost")
            await tls.send_all(CLIENT_PREAMBLE + frame(MESSAGE, b"hello"))
            buffer = bytearray()
            assert await read_exactly(tls, buffer, 8) == SERVER_PREAMBLE
            assert await read_frame(tls, buffer) == (MESSAGE, reply_to(b"hello"))
            await arrivals.all_here.wait()
            nursery.start_soon(server.shutdown)
            kind, _ = await read_frame(tls, buffer)
            assert kind == SHUTDOWN
            # Cut under the TLS layer: a TCP FIN, no END, no close_notify.
            await tcp.aclose()
            report = await server.wait_shut_down()

    (cut,) = report.connections
    assert cut.termination.kind is adieu.TerminationKind.TRUNCATED
    assert cut.termination.initiator is adieu.Initiator.PEER
    assert cut.termination.messages_received == 1
    assert isinstance(cut.outcome, outcome.Error)
    assert isinstance(cut.outcome.error, adieu.ConnectionTruncated)
    assert report.counts[adieu.TerminationKind.TRUNCATED] == 1
    assert not report.lossless
