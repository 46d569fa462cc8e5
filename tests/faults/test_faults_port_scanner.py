"""Port scanners: connect and close at once, or connect and reset.

No handler runs for them (no preamble ever arrives); each is counted in the
final report's ``ended_before`` as ``TRUNCATED`` (the peer's FIN before its
preamble) or ``RESET`` (its RST, or the kernel's RST when the scanner closed
with the server's preamble unread); and the server keeps serving honest
clients between and after the scans, with nothing leaked.
"""

from __future__ import annotations

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
from shared_support import answer

SCANS = 200


async def test_connect_and_close_and_connect_and_reset_are_counted() -> None:
    handled: list[adieu.Connection] = []
    async with adieu.open_tcp_server(counting(answer, handled), HOST, 0) as server:
        await trio.testing.wait_all_tasks_blocked()
        fds_before = count_fds()
        tasks_before = count_tasks()
        async with adieu.connect_tcp(HOST, server.port) as during:
            for i in range(SCANS):
                # Close at once; every other one with SO_LINGER {1, 0} (RST).
                scanner = await RawPeer.connect(server.port)
                if i % 2:
                    scanner.reset()
                else:
                    scanner.close()
                if i % 50 == 0:
                    await exchange(during, b"scan %d" % i)
            await trio.testing.wait_all_tasks_blocked()
            await exchange(during, b"after the scans")
        assert during.termination is not None
        assert during.termination.lossless
        await trio.testing.wait_all_tasks_blocked()
        assert count_tasks() == tasks_before
        assert count_fds() == fds_before
        await honest_client(server.port, 3, tag="after")
        report = await server.shutdown()

    assert len(handled) == 2  # the two honest clients, no scanner
    truncated = report.ended_before[adieu.TerminationKind.TRUNCATED]
    reset = report.ended_before[adieu.TerminationKind.RESET]
    assert truncated + reset == SCANS
    assert reset >= SCANS // 2  # at least every RST
    clean = adieu.TerminationKind.CLEAN
    assert report.ended_before[clean] + report.counts[clean] == 2
    assert sum(report.ended_before.values()) + len(report.connections) == SCANS + 2
