""":exc:`adieu.MessageTooLarge`: on ``send()`` it is raised before anything is
written and the connection stays usable (the limit is inclusive); from a
peer that announces a message over the limit, ``receive()`` raises it after
the messages before it, checked from the frame header alone, and the
connection ends ``PROTOCOL_ERROR``."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import (
    collect,
    connect_to_raw_peer,
    memory_pair,
    tcp_listener,
)

import adieu
from adieu import Initiator, TerminationKind
from adieu.testing import memory_stream_pair
from shared_support import (
    MESSAGE,
    SERVER_PREAMBLE,
    header,
    message_frame,
)

LIMIT = 1000
#: The largest length a frame header can announce: a peer asking for 4 GiB.
HUGE = 0xFFFF_FFFF


def test_message_too_large_is_a_protocol_error_and_a_value_error() -> None:
    assert issubclass(adieu.MessageTooLarge, adieu.ProtocolError)
    assert issubclass(adieu.MessageTooLarge, ValueError)
    assert issubclass(adieu.MessageTooLarge, trio.BrokenResourceError)


async def test_sending_too_large_a_message_leaves_the_connection_usable(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair(max_message_size=LIMIT) as (client, server):
        assert client.max_message_size == LIMIT
        with pytest.raises(adieu.MessageTooLarge) as excinfo:
            await client.send(b"x" * (LIMIT + 1))
        assert excinfo.value.size == LIMIT + 1
        assert excinfo.value.limit == LIMIT
        # Any bytes-like object is measured in bytes.
        with pytest.raises(adieu.MessageTooLarge):
            await client.send(memoryview(bytearray(LIMIT + 1)))
        # Nothing was written: the next message is the next thing on the
        # wire. The limit is inclusive.
        await client.send(b"y" * LIMIT)
        await client.send(b"ok")
        assert await server.receive() == b"y" * LIMIT
        assert await server.receive() == b"ok"
        await client.send_eof()
        assert [data async for data in server] == []
    for conn in (client, server):
        assert conn.termination is not None
        assert conn.termination.kind is TerminationKind.CLEAN
    assert client.termination is not None
    assert client.termination.messages_sent == 2
    assert client.termination.confirmed is True


async def test_a_message_over_the_limit_from_an_adieu_peer(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A server allowed larger messages sends one over the client's limit."""
    client_stream, server_stream = memory_stream_pair()
    async with (
        adieu.wrap_stream(client_stream, "client", max_message_size=LIMIT) as client,
        adieu.wrap_stream(server_stream, "server") as server,
    ):
        await server.send(b"fine")
        await server.send(b"z" * (LIMIT + 1))
        assert await client.receive() == b"fine"
        with pytest.raises(adieu.MessageTooLarge) as excinfo:
            await client.receive()
        assert excinfo.value.size == LIMIT + 1
        assert excinfo.value.limit == LIMIT
        # The client's connection is over; the server sees a reset.
        with pytest.raises(adieu.ConnectionReset):
            await server.receive()
    termination = client.termination
    assert termination is not None
    assert termination.kind is TerminationKind.PROTOCOL_ERROR
    assert termination.initiator is Initiator.PEER
    assert termination.messages_received == 1


async def test_an_announced_message_over_the_limit_is_refused_from_its_header(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The peer sends only the header announcing 4 GiB: the refusal cannot
    have waited for (or buffered) the payload."""
    client_stream, peer = memory_stream_pair()
    async with adieu.wrap_stream(
        client_stream, "client", max_message_size=LIMIT
    ) as client:
        await peer.send_all(
            SERVER_PREAMBLE + message_frame(b"first") + header(MESSAGE, HUGE)
        )
        assert await client.receive() == b"first"
        with pytest.raises(adieu.MessageTooLarge) as excinfo:
            await client.receive()
        assert excinfo.value.size == HUGE
        assert excinfo.value.limit == LIMIT
        # Raised again on every later call.
        with pytest.raises(adieu.ProtocolError):
            await client.receive()
        with pytest.raises(adieu.ProtocolError):
            await client.send(b"no")
    termination = client.termination
    assert termination is not None
    assert termination.kind is TerminationKind.PROTOCOL_ERROR
    assert termination.initiator is Initiator.PEER


async def test_an_announced_message_over_the_limit_over_tcp() -> None:
    async with (
        tcp_listener() as listener,
        connect_to_raw_peer(listener, max_message_size=LIMIT) as (client, peer),
    ):
        await peer.send_all(
            message_frame(b"first")
            + message_frame(b"w" * LIMIT)
            + header(MESSAGE, LIMIT + 1)
        )
        received: list[bytes] = []
        with pytest.raises(adieu.MessageTooLarge):
            await collect(client, received)
        # The messages before it came first.
        assert received == [b"first", b"w" * LIMIT]
        # The client aborted: the peer sees a reset.
        with pytest.raises(trio.BrokenResourceError):
            await peer.receive_some()
        await peer.aclose()
    termination = client.termination
    assert termination is not None
    assert termination.kind is TerminationKind.PROTOCOL_ERROR
    assert termination.initiator is Initiator.PEER
    assert termination.messages_received == 2
