"""A connect flood during a shutdown cannot extend it.

Another process connects as fast as it can, and keeps on, while the server
shuts down with a short grace period. The shutdown serves the connections
the kernel had completed when it began (those in the listen backlog, at most
``backlog + 1`` on Linux) and no more: the report holds at most the
connections being served plus that backlog, each says what happened to it,
and an honest client connected all along ends ``CLEAN``.
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys

import trio
from fault_support import HOST

import adieu
from shared_support import CONNECT_FLOOD_SCRIPT, answer, reply_to

BACKLOG = 64
MAX_CONNECTIONS = 10
GRACE = 0.3


def _accept_queue_length(server: adieu.Server) -> int:
    """Linux's ``TCP_INFO`` of a listening socket: ``tcpi_unacked`` (a u32
    at offset 24) is its accept queue's length."""
    (listener,) = server.listeners
    assert isinstance(listener, trio.SocketListener)
    info = listener.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    (count,) = struct.unpack_from("=I", info, 24)
    return int(count)


async def test_a_connect_flood_does_not_extend_a_short_shutdown() -> None:
    honest_done = trio.Event()
    honest: list[adieu.Termination] = []
    started = trio.Event()

    async def counted(conn: adieu.Connection) -> int:
        started.set()
        return await answer(conn)

    async def honest_client(port: int) -> None:
        async with adieu.connect_tcp(HOST, port) as conn:
            await conn.send(b"before the flood")
            assert await conn.receive() == reply_to(b"before the flood")
            await conn.shutdown_requested.wait()
            await conn.send_eof()
            assert [m async for m in conn] == []
        assert conn.termination is not None
        honest.append(conn.termination)
        honest_done.set()

    with trio.fail_after(60):
        async with (
            trio.open_nursery() as nursery,
            adieu.open_tcp_server(
                counted,
                HOST,
                0,
                backlog=BACKLOG,
                max_connections=MAX_CONNECTIONS,
                grace_period=GRACE,
            ) as server,
        ):
            nursery.start_soon(honest_client, server.port)
            await started.wait()
            process = await trio.lowlevel.open_process(
                [sys.executable, "-c", CONNECT_FLOOD_SCRIPT, str(server.port)],
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            try:
                said = await process.stdout.receive_some()
                assert said.startswith(b"flooding"), said
                # The slots are taken and the backlog fills up.
                while _accept_queue_length(server) < BACKLOG // 2:
                    await trio.sleep(0.001)
                report = await server.shutdown()
                await honest_done.wait()
                assert process.returncode is None  # still flooding
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
                await process.stdout.aclose()

    assert [t.kind for t in honest] == [adieu.TerminationKind.CLEAN]
    # Served when the shutdown began, plus the backlog then: nothing more.
    assert len(report.connections) >= 1 + BACKLOG // 2
    assert len(report.connections) <= MAX_CONNECTIONS + BACKLOG + 1
    assert report.counts[adieu.TerminationKind.CLEAN] == 1
    expired = re.compile(
        r"the grace period of the server's shutdown \(0\.3 s\) expired before "
        r"the client's preamble was read(; accepted from the listen backlog as "
        r"the shutdown began)?"
    )
    from_backlog = 0
    for connection in report.connections:
        termination = connection.termination
        if termination.kind is adieu.TerminationKind.CLEAN:
            continue
        # The flood sends nothing: each connection is cut at the deadline,
        # or ended first by the flood closing it (with the server's preamble
        # unread: a reset; or without: a truncation).
        if termination.kind is adieu.TerminationKind.TIMED_OUT:
            assert expired.fullmatch(termination.detail), termination.detail
            from_backlog += termination.detail.endswith("as the shutdown began")
        elif termination.kind is adieu.TerminationKind.RESET:
            assert termination.detail.startswith("the peer reset the connection")
        else:
            assert termination.kind is adieu.TerminationKind.TRUNCATED
            assert termination.detail == (
                "the transport ended before the peer's preamble was complete"
            )
    # The flood's oldest connections, held open, waited in the backlog.
    assert from_backlog >= BACKLOG // 2
