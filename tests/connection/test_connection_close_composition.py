"""The close verbs compose: two ``aclose()`` or ``shutdown()`` calls at once,
or one of each, give the outcome of one call on both sides; and ``aclose()``
while another task is blocked sending (the peer does not read) wakes that
sender with :exc:`trio.ClosedResourceError` and closes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from connection_support import Pair, memory_pair, tcp_pair

import adieu
from adieu import Initiator, TerminationKind

Close = Callable[[adieu.Connection], Awaitable[object]]


async def _aclose(conn: adieu.Connection) -> None:
    await conn.aclose()


async def _shutdown(conn: adieu.Connection) -> None:
    termination = await conn.shutdown()
    # Every caller gets the connection's one report.
    assert termination is conn.termination


CLOSES: dict[str, tuple[Close, Close]] = {
    "aclose+aclose": (_aclose, _aclose),
    "shutdown+shutdown": (_shutdown, _shutdown),
    "aclose+shutdown": (_aclose, _shutdown),
    "shutdown+aclose": (_shutdown, _aclose),
}


def assert_clean(conn: adieu.Connection) -> adieu.Termination:
    termination = conn.termination
    assert termination is not None
    assert termination.kind is TerminationKind.CLEAN, termination
    return termination


@pytest.mark.parametrize("closes", list(CLOSES))
@pytest.mark.parametrize("pair", [memory_pair, tcp_pair], ids=["memory", "tcp"])
async def test_two_client_closes_at_once_give_the_outcome_of_one(
    closes: str, pair: Pair
) -> None:
    first, second = CLOSES[closes]
    with trio.fail_after(10):
        async with pair() as (client, server):
            await client.send(b"last")

            async def serve() -> None:
                assert [data async for data in server] == [b"last"]
                await server.send_eof()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                nursery.start_soon(first, client)
                nursery.start_soon(second, client)
            # Both sides agree, inside the block: the client's END and the
            # server's went through, and the server confirmed the message.
            assert assert_clean(client).confirmed is True
            assert assert_clean(server).messages_received == 1


@pytest.mark.parametrize("closes", list(CLOSES))
async def test_two_server_closes_after_the_clients_end_give_one_outcome(
    closes: str, autojump_clock: trio.abc.Clock
) -> None:
    first, second = CLOSES[closes]
    async with memory_pair() as (client, server):
        await client.send(b"last")
        await client.send_eof()
        assert await server.receive() == b"last"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first, server)
            nursery.start_soon(second, server)
            with pytest.raises(adieu.EndOfMessages):
                await client.receive()
        await trio.testing.wait_all_tasks_blocked()
        assert assert_clean(server).messages_discarded == 0
        assert assert_clean(client).confirmed is True


async def aclose_while_a_sender_is_blocked(pair: Pair) -> None:
    """The server floods a client that reads nothing until its sender
    blocks, then closes in one step: the sender wakes with
    ClosedResourceError, and the server's report is its own truncation (it
    closed before the client's END)."""
    errors: list[BaseException] = []
    async with pair(receive_buffer_size=1024) as (client, server):

        async def flood() -> None:
            try:
                while True:
                    await server.send(b"x" * 65536)
            except trio.ClosedResourceError as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            await server.aclose()
        assert len(errors) == 1
        assert "closed by this side" in str(errors[0])
        termination = server.termination
        assert termination is not None
        assert (termination.kind, termination.initiator) == (
            TerminationKind.TRUNCATED,
            Initiator.LOCAL,
        )
        client.abort()


async def test_aclose_wakes_a_blocked_sender_over_memory_streams(
    autojump_clock: trio.abc.Clock,
) -> None:
    await aclose_while_a_sender_is_blocked(memory_pair)


async def test_aclose_wakes_a_blocked_sender_over_loopback_tcp() -> None:
    with trio.fail_after(30):
        await aclose_while_a_sender_is_blocked(tcp_pair)
