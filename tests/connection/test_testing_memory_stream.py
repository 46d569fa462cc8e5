"""``adieu.testing.memory_stream``: the stream under a connection made in
memory, typed as a MemoryStream, so that tests using its pipes type-check."""

from __future__ import annotations

import pytest
import trio
from connection_support import tcp_pair

import adieu.testing


async def test_it_is_the_stream_under_a_memory_connection() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        stream = adieu.testing.memory_stream(client)
        assert stream is client.transport.stream
        # The client's outgoing pipe is the server's incoming one.
        assert stream.outgoing is adieu.testing.memory_stream(server).incoming
        stream.outgoing.hold()
        await client.send(b"held")
        assert stream.outgoing.in_flight.endswith(b"held")
        stream.outgoing.release()
        assert await server.receive() == b"held"


async def test_a_connection_over_a_socket_is_refused() -> None:
    with trio.fail_after(10):
        async with tcp_pair() as (client, _):
            with pytest.raises(TypeError, match="SocketStream, not a MemoryStream"):
                adieu.testing.memory_stream(client)
