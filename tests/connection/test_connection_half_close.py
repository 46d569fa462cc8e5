"""``send_eof()``: END goes out once; sending is over (``send`` raises
:exc:`trio.ClosedResourceError`) while receiving goes on."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import Pair, memory_pair, receive_to_eof, tcp_pair

import adieu
from adieu import TerminationKind
from adieu.testing import memory_stream_pair
from shared_support import (
    CLIENT_END,
    CLIENT_PREAMBLE,
    SERVER_PREAMBLE,
    message_frame,
    server_end,
)


async def check_send_eof_then_send_fails_while_receiving_goes_on(pair: Pair) -> None:
    async with pair() as (client, server):
        await client.send(b"request")
        await client.send_eof()
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"too late")
        await client.send_eof()  # idempotent: no error, nothing more sent
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"still too late")

        # The server reads the client's messages up to its END...
        assert [data async for data in server] == [b"request"]
        # ...and keeps answering; the half-closed client keeps receiving.
        await server.send(b"answer 1")
        await server.send(b"answer 2")
        assert await client.receive() == b"answer 1"
        assert await client.receive() == b"answer 2"
    for conn in (client, server):
        assert conn.termination is not None
        assert conn.termination.kind is TerminationKind.CLEAN, conn.termination
    assert client.termination is not None
    assert client.termination.messages_sent == 1
    assert client.termination.confirmed is True


async def test_send_eof_then_send_fails_while_receiving_goes_on_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    await check_send_eof_then_send_fails_while_receiving_goes_on(memory_pair)


async def test_send_eof_then_send_fails_while_receiving_goes_on_over_tcp() -> None:
    await check_send_eof_then_send_fails_while_receiving_goes_on(tcp_pair)


async def test_send_eof_is_idempotent_one_end_on_the_wire(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Byte for byte: two ``send_eof()`` calls give one END, followed by the
    transport's own EOF; answers sent after it are still delivered."""
    client_stream, peer = memory_stream_pair()
    async with adieu.wrap_stream(client_stream, "client") as client:
        await client.send(b"request")
        await client.send_eof()
        await client.send_eof()
        assert await receive_to_eof(peer) == (
            CLIENT_PREAMBLE + message_frame(b"request") + CLIENT_END
        )
        await peer.send_all(
            SERVER_PREAMBLE + message_frame(b"late answer") + server_end(1)
        )
        await peer.aclose()
        assert await client.receive() == b"late answer"
        with pytest.raises(adieu.EndOfMessages):
            await client.receive()
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.confirmed is True


async def test_send_eof_is_idempotent_when_called_concurrently(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(client.send_eof)
        with pytest.raises(adieu.EndOfMessages):
            await server.receive()
        await server.send(b"after the client's END")
        assert await client.receive() == b"after the client's END"
    assert server.termination is not None
    assert server.termination.kind is TerminationKind.CLEAN
