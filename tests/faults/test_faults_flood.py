"""A thousand bad connections while honest clients keep working.

Each bad peer connects over loopback and sends either a garbage preamble (an
HTTP request, a TLS ClientHello, random bytes, another protocol version, a
second server) or a valid preamble followed by a MESSAGE header announcing
2**31 bytes. The server refuses each with ``PROTOCOL_ERROR`` and a reset,
without running its handler; honest clients connected all along exchange
messages throughout and end ``CLEAN``; afterwards the test process holds
exactly the tasks and file descriptors it held before.
"""

from __future__ import annotations

import random
import struct

import pytest
import trio
import trio.testing
from fault_support import (
    HOST,
    RawPeer,
    count_fds,
    count_tasks,
    counting,
    exchange,
    honest_client,
)

import adieu
from shared_support import CLIENT_PREAMBLE, MESSAGE, answer

BAD_CONNECTIONS = 1000
#: Bad connections in flight at once.
CONCURRENCY = 50
HONEST_CLIENTS = 4

OVERSIZE = CLIENT_PREAMBLE + struct.pack(">BI", MESSAGE, 2**31)


def bad_bytes(index: int) -> bytes:
    """What bad peer ``index`` sends: garbage or an oversize length."""
    kinds = [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        bytes.fromhex("16030100a5010000a10303") + bytes(32),  # a TLS ClientHello
        random.Random(index).randbytes(32),
        b"ADIEU/\x02C",  # a protocol version this side does not speak
        b"ADIEU/\x01S",  # a server's preamble sent to a server
        b"ADIEU/\x01X",  # no such role
        OVERSIZE,
        OVERSIZE,
    ]
    data = kinds[index % len(kinds)]
    if data[:1] == b"A" and data[:6] != b"ADIEU/":  # random bytes may start so
        data = b"\x00" + data
    return data


async def bad_peer(port: int, index: int, limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        peer = await RawPeer.connect(port)
        try:
            await peer.send(bad_bytes(index))
            # The server's verdict: its preamble, then the reset of its abort.
            assert await peer.read_until_closed() == "reset"
        finally:
            peer.close()


@pytest.mark.slow
async def test_a_thousand_bad_connections_leave_honest_clients_and_no_leaks() -> None:
    handled: list[adieu.Connection] = []
    exchanges = 0
    async with adieu.open_tcp_server(counting(answer, handled), HOST, 0) as server:
        await trio.testing.wait_all_tasks_blocked()
        fds_before = count_fds()
        tasks_before = count_tasks()

        flood_over = trio.Event()

        async def honest_all_along(index: int) -> None:
            nonlocal exchanges
            async with adieu.connect_tcp(HOST, server.port) as conn:
                while not flood_over.is_set():
                    await exchange(conn, b"client %d, request %d" % (index, exchanges))
                    exchanges += 1
            assert conn.termination is not None
            assert conn.termination.lossless, conn.termination

        async with trio.open_nursery() as nursery:
            for i in range(HONEST_CLIENTS):
                nursery.start_soon(honest_all_along, i)
            limiter = trio.CapacityLimiter(CONCURRENCY)
            async with trio.open_nursery() as flood:
                for i in range(BAD_CONNECTIONS):
                    flood.start_soon(bad_peer, server.port, i, limiter)
            flood_over.set()

        # Every server task has ended or waits; count what is left.
        await trio.testing.wait_all_tasks_blocked()
        assert count_tasks() == tasks_before
        assert count_fds() == fds_before
        # And the server still serves.
        await honest_client(server.port, 3, tag="after")
        report = await server.shutdown()

    assert exchanges >= HONEST_CLIENTS
    assert len(handled) == HONEST_CLIENTS + 1  # no bad peer reached the handler
    assert report.ended_before[adieu.TerminationKind.PROTOCOL_ERROR] == BAD_CONNECTIONS
    clean = adieu.TerminationKind.CLEAN
    assert report.ended_before[clean] + report.counts[clean] == HONEST_CLIENTS + 1
    assert sum(report.ended_before.values()) + len(report.connections) == (
        BAD_CONNECTIONS + HONEST_CLIENTS + 1
    )
