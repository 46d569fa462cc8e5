"""Shutdown under load: 200 clients, each with requests in flight when the
shutdown starts, each finishing when asked. Nothing sent before a client's
END is lost."""

from __future__ import annotations

import outcome
import trio
import trio.testing
from server_support import Arrivals, counting, incoming_pipe, outgoing_pipe

import adieu
from adieu.testing import connect_memory, open_memory_server
from shared_support import answer, reply_to

CLIENTS = 200


async def test_every_request_sent_before_end_is_answered_during_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started = Arrivals(CLIENTS)
    loaded = Arrivals(CLIENTS)
    results: dict[int, tuple[list[bytes], list[bytes], adieu.Termination]] = {}

    async def client(server: adieu.Server, n: int) -> None:
        async with connect_memory(server) as conn:
            await started.all_here.wait()
            to_server = outgoing_pipe(conn)
            # Requests stay on the wire until the shutdown has started.
            to_server.hold()
            sent = [b"%d-%d" % (n, i) for i in range(1 + n % 7)]
            for request in sent:
                await conn.send(request)
            loaded.arrive()
            await conn.shutdown_requested.wait()
            # Finish: one last request, END, then every reply.
            sent.append(b"%d-last" % n)
            await conn.send(sent[-1])
            await conn.send_eof()
            to_server.release()
            replies = [message async for message in conn]
        assert conn.termination is not None
        results[n] = (sent, replies, conn.termination)

    # A deadlock fails at once on the autojump clock instead of hanging.
    with trio.fail_after(3600):
        async with (
            trio.open_nursery() as clients,
            open_memory_server(counting(answer, started), grace_period=60) as server,
        ):
            for n in range(CLIENTS):
                clients.start_soon(client, server, n)
            await started.all_here.wait()
            await loaded.all_here.wait()
            # Every client's requests are in flight, none yet read by its server.
            assert all(
                c.termination is None and incoming_pipe(c).in_flight
                for c in server.connections
            )
            start = trio.current_time()
            report = await server.shutdown()
            assert trio.current_time() < start + 60

    assert sorted(results) == list(range(CLIENTS))
    lost = 0
    for sent, replies, termination in results.values():
        lost += len(sent) - len(replies)
        assert replies == [reply_to(r) for r in sent]
        assert termination.kind is adieu.TerminationKind.CLEAN
        assert termination.confirmed is True
        assert termination.acknowledged == len(sent)
    assert lost == 0

    assert len(report.connections) == CLIENTS
    assert report.counts[adieu.TerminationKind.CLEAN] == CLIENTS
    assert report.clean == CLIENTS
    assert sum(report.counts.values()) == CLIENTS
    assert report.lossless
    assert not report.aborted
    assert sorted(
        c.outcome.unwrap()
        for c in report.connections
        if isinstance(c.outcome, outcome.Value)
    ) == sorted(len(sent) for sent, _, _ in results.values())
