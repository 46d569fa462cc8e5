"""A peer resets its connection in the middle of the server's drain.

The server is shutting down: it has sent SHUTDOWN and is either still
answering (the handler runs on in the grace period) or discarding (the
handler returned, and the graceful close reads the client's last messages
until its END). The raw peer then sends more and closes with
``SO_LINGER {1, 0}``: the kernel sends RST. That connection ends ``RESET``
on the server; every other connection finishes ``CLEAN``, and the honest
clients exchange messages during the drain and after the reset.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import outcome
import trio
from fault_support import HOST, RawPeer, client_until_asked

import adieu
from shared_support import MESSAGE, SHUTDOWN, answer, frame, reply_to

HONEST_CLIENTS = 3

Handler = Callable[[adieu.Connection], Awaitable[object]]


async def read_until_shutdown(peer: RawPeer) -> None:
    """Read frames (replies) until the server's SHUTDOWN."""
    while True:
        kind, _ = await peer.read_frame()
        if kind == SHUTDOWN:
            return


async def reset_during_drain(
    handler: Handler,
    in_drain: Callable[[RawPeer], Awaitable[None]],
    *,
    answered_during: bool,
) -> tuple[adieu.ShutdownReport, adieu.ConnectionReport[object]]:
    """Serve ``handler``; connect the raw peer (one exchange) and the honest
    clients; shut down; once the peer has read SHUTDOWN, run ``in_drain``,
    then reset. The honest clients exchange once more during the drain if
    ``answered_during``. Returns the report and the peer's entry in it."""
    reports: list[adieu.ShutdownReport] = []
    async with adieu.open_tcp_server(handler, HOST, 0, grace_period=60) as server:
        peer = await RawPeer.connect(server.port)
        try:
            address = peer.address
            await peer.handshake()
            await peer.send(frame(MESSAGE, b"a"))
            assert await peer.read_frame() == (MESSAGE, reply_to(b"a"))
            connected = trio.Semaphore(0)
            async with trio.open_nursery() as nursery:
                for i in range(HONEST_CLIENTS):
                    nursery.start_soon(
                        partial(client_until_asked, during=answered_during),
                        server.port,
                        connected.release,
                        f"c{i}",
                    )
                for _ in range(HONEST_CLIENTS):
                    await connected.acquire()

                async def shut_down() -> None:
                    reports.append(await server.shutdown())

                nursery.start_soon(shut_down)
                await read_until_shutdown(peer)
                await in_drain(peer)
                peer.reset()
        finally:
            peer.close()
    (report,) = reports
    (entry,) = [c for c in report.connections if c.remote_address == address]
    return report, entry


def assert_reset_and_others_clean(
    report: adieu.ShutdownReport, entry: adieu.ConnectionReport[object]
) -> None:
    assert entry.termination.kind is adieu.TerminationKind.RESET
    assert entry.termination.initiator is adieu.Initiator.PEER
    assert len(report.connections) == HONEST_CLIENTS + 1
    assert report.counts[adieu.TerminationKind.RESET] == 1
    assert report.counts[adieu.TerminationKind.CLEAN] == HONEST_CLIENTS
    assert not report.aborted


async def test_reset_while_the_handler_answers_after_shutdown() -> None:
    async def answer_then_send_and_reset(peer: RawPeer) -> None:
        # The server is in its grace period and still answers...
        await peer.send(frame(MESSAGE, b"b"))
        assert await peer.read_frame() == (MESSAGE, reply_to(b"b"))
        # ...then the peer sends once more and resets while it answers.
        await peer.send(frame(MESSAGE, b"c"))

    report, entry = await reset_during_drain(
        answer, answer_then_send_and_reset, answered_during=True
    )
    assert_reset_and_others_clean(report, entry)
    # The handler was still iterating: the reset reached it as itself.
    assert isinstance(entry.outcome, outcome.Error)
    assert isinstance(entry.outcome.error, adieu.ConnectionReset)


async def test_reset_while_the_server_discards_after_its_handler_returned() -> None:
    returned: dict[object, trio.Event] = {}

    async def answer_once_then_return_when_asked(conn: adieu.Connection) -> str:
        done = returned.setdefault(conn.remote_address, trio.Event())
        try:
            await conn.send(reply_to(await conn.receive()))
            await conn.shutdown_requested.wait()
            return "returned"
        finally:
            done.set()

    async def send_into_the_discard_and_reset(peer: RawPeer) -> None:
        # The handler has returned: the server's graceful close now reads
        # and discards until this peer's END, which never comes.
        await returned.setdefault(peer.address, trio.Event()).wait()
        await peer.send(frame(MESSAGE, b"b") + frame(MESSAGE, b"c"))

    report, entry = await reset_during_drain(
        answer_once_then_return_when_asked,
        send_into_the_discard_and_reset,
        answered_during=False,
    )
    assert_reset_and_others_clean(report, entry)
    assert entry.outcome == outcome.Value("returned")
