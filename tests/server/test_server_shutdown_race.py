"""The race this library exists to remove: a client's last request and its
END crossing the server's SHUTDOWN.

Plain TCP loses the last answers when a client's "request, then FIN" crosses
a server's own FIN. Here the server never ends first, so in every order of
the two (forced with the memory pipes' hold/release controls and a
:class:`trio.testing.Sequencer`) every request is answered, both sides end
``CLEAN``, and the client's :class:`~adieu.Termination` confirms that the
server's application received all its messages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import outcome
import pytest
import trio
import trio.testing
from server_support import Arrivals, counting, incoming_pipe, outgoing_pipe, wait_until

import adieu
from adieu.testing import MemoryPipe, connect_memory, open_memory_server
from shared_support import reply_to

GRACE = 600.0
EARLIER = [b"one", b"two"]
LAST = b"last"


class Crossing:
    """The pieces one ordering plays with."""

    def __init__(self, server: adieu.Server, client: adieu.Connection) -> None:
        self.server = server
        self.client = client
        (self.server_side,) = server.connections
        self.to_server: MemoryPipe = outgoing_pipe(client)
        self.to_client: MemoryPipe = incoming_pipe(client)
        self.shutdown_started = trio.Event()
        self.report: adieu.ShutdownReport | None = None

    async def shutdown(self) -> None:
        self.shutdown_started.set()
        self.report = await self.server.shutdown()

    async def send_last_and_end(self) -> None:
        await self.client.send(LAST)
        await self.client.send_eof()


async def shutdown_arrives_before_last_request(
    x: Crossing, nursery: trio.Nursery
) -> None:
    """(a) SHUTDOWN reaches the client before it sends its last request."""
    nursery.start_soon(x.shutdown)
    await x.client.shutdown_requested.wait()
    await x.send_last_and_end()


async def request_and_end_in_flight_when_shutdown_is_sent(
    x: Crossing, nursery: trio.Nursery
) -> None:
    """(b) The last request and END are on the wire, not yet read by the
    server, when it sends SHUTDOWN; SHUTDOWN reaches the client first."""
    x.to_server.hold()
    await x.send_last_and_end()
    assert x.to_server.in_flight  # request + END, in flight
    nursery.start_soon(x.shutdown)
    await x.client.shutdown_requested.wait()
    assert not x.server_side.end_received
    x.to_server.release()


async def both_in_flight_end_delivered_first(
    x: Crossing, nursery: trio.Nursery
) -> None:
    """(b') Both directions in flight at once; the client's END reaches the
    server before the server's SHUTDOWN reaches the client."""
    x.to_server.hold()
    x.to_client.hold()
    await x.send_last_and_end()
    nursery.start_soon(x.shutdown)
    await wait_until(lambda: x.server_side.shutdown_requested.is_set())
    await trio.testing.wait_all_tasks_blocked()
    assert x.to_client.in_flight  # SHUTDOWN, in flight
    x.to_server.release()
    await wait_until(lambda: x.server_side.end_received)
    assert not x.client.shutdown_requested.is_set()
    x.to_client.release()
    await x.client.shutdown_requested.wait()


async def both_in_flight_shutdown_delivered_first(
    x: Crossing, nursery: trio.Nursery
) -> None:
    """(b'') Both directions in flight at once; SHUTDOWN reaches the client
    before the client's END reaches the server."""
    x.to_server.hold()
    x.to_client.hold()
    await x.send_last_and_end()
    nursery.start_soon(x.shutdown)
    await wait_until(lambda: x.server_side.shutdown_requested.is_set())
    x.to_client.release()
    await x.client.shutdown_requested.wait()
    assert not x.server_side.end_received
    x.to_server.release()


async def end_arrives_before_the_server_asks(
    x: Crossing, nursery: trio.Nursery
) -> None:
    """(c) The client's END has reached the server before its shutdown
    starts; the server's answers are still on their way (the handler is
    blocked sending them), so the connection is open when the server asks.
    SHUTDOWN is then not sent at all: there is nothing left to ask."""
    x.to_client.hold()
    await x.send_last_and_end()
    await wait_until(lambda: x.server_side.end_received)
    await trio.testing.wait_all_tasks_blocked()
    assert x.server_side.termination is None  # the handler is still sending
    nursery.start_soon(x.shutdown)
    await x.shutdown_started.wait()
    await trio.testing.wait_all_tasks_blocked()
    assert not x.server_side.shutdown_requested.is_set()
    x.to_client.release()


async def sequenced_last_request_then_shutdown_then_end(
    x: Crossing, nursery: trio.Nursery
) -> None:
    """(d) Ordered with a Sequencer: the last request goes out, then the
    server's shutdown starts, then the client's END, with SHUTDOWN still on
    its way to the client."""
    seq = trio.testing.Sequencer()

    async def client_side() -> None:
        async with seq(0):
            await x.client.send(LAST)
        async with seq(2):
            assert not x.client.shutdown_requested.is_set()
            await x.client.send_eof()
            x.to_client.release()

    async def server_side() -> None:
        async with seq(1):
            x.to_client.hold()
            nursery.start_soon(x.shutdown)
            await wait_until(lambda: x.server_side.shutdown_requested.is_set())

    async with trio.open_nursery() as inner:
        inner.start_soon(client_side)
        inner.start_soon(server_side)


Ordering = Callable[[Crossing, trio.Nursery], Awaitable[None]]

ORDERINGS: list[Ordering] = [
    shutdown_arrives_before_last_request,
    request_and_end_in_flight_when_shutdown_is_sent,
    both_in_flight_end_delivered_first,
    both_in_flight_shutdown_delivered_first,
    end_arrives_before_the_server_asks,
    sequenced_last_request_then_shutdown_then_end,
]


@pytest.mark.parametrize("ordering", ORDERINGS, ids=lambda f: f.__name__)
async def test_last_request_and_end_crossing_shutdown_lose_nothing(
    autojump_clock: trio.testing.MockClock, ordering: Ordering
) -> None:
    # The server started the terminal handshake (SHUTDOWN before the
    # client's END arrived) in every ordering but (c).
    started_by = (
        adieu.Initiator.PEER
        if ordering is end_arrives_before_the_server_asks
        else adieu.Initiator.LOCAL
    )
    arrivals = Arrivals(1)
    requests = [*EARLIER, LAST]
    # Small pipes, and answers larger than a request: in ordering (c) the
    # handler blocks sending while the answers are held back.
    big = 2048

    async def big_answers(conn: adieu.Connection) -> int:
        answered = 0
        async for message in conn:
            await conn.send(reply_to(message) * big)
            answered += 1
        return answered

    # A deadlock fails at once on the autojump clock instead of hanging.
    with trio.fail_after(10 * GRACE):
        async with (
            trio.open_nursery() as nursery,
            open_memory_server(
                counting(big_answers, arrivals), grace_period=GRACE
            ) as server,
        ):
            async with connect_memory(server, capacity=1024) as client:
                for request in EARLIER:
                    await client.send(request)
                await arrivals.all_here.wait()
                crossing = Crossing(server, client)
                await ordering(crossing, nursery)
                replies = [message async for message in client]
            server_side = crossing.server_side
            await server.wait_shut_down()

    assert replies == [reply_to(r) * big for r in requests]
    client_end = client.termination
    assert client_end is not None
    assert client_end.kind is adieu.TerminationKind.CLEAN
    assert client_end.confirmed is True
    assert client_end.acknowledged == len(requests) == client_end.messages_sent
    assert client_end.messages_received == len(requests)
    assert client_end.messages_discarded == 0
    assert client_end.lossless

    assert crossing.report is not None
    (connection,) = crossing.report.connections
    assert connection.termination is server_side.termination
    assert connection.termination.kind is adieu.TerminationKind.CLEAN
    assert connection.termination.initiator is started_by
    assert connection.termination.messages_received == len(requests)
    assert connection.termination.messages_sent == len(requests)
    assert connection.termination.messages_discarded == 0
    assert connection.outcome == outcome.Value(len(requests))
    assert crossing.report.counts[adieu.TerminationKind.CLEAN] == 1
    assert crossing.report.lossless
