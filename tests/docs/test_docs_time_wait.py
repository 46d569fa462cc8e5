"""Where TIME_WAIT ends up, as the explanation says: on the client.

The client sends its END, and its FIN right after, before the server may
send its own; so the client is the first to close, and the kernel keeps the
connection's TIME_WAIT record on the client's side. The test reads the
kernel's table of TCP sockets (Linux: ``/proc/net/tcp``) after a clean
ending over loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import adieu

TIME_WAIT = "06"  # the state's code in /proc/net/tcp


def tcp_states() -> dict[tuple[int, int], str]:
    """``{(local port, remote port): state}`` of the IPv4 TCP sockets."""
    states = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state = fields[1], fields[2], fields[3]
        key = (int(local.split(":")[1], 16), int(remote.split(":")[1], 16))
        states[key] = state
    return states


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


@pytest.mark.parametrize("starts", ["client", "server"])
async def test_time_wait_lands_on_the_client(starts: str) -> None:
    async with adieu.open_tcp_server(echo, "127.0.0.1", 0) as server:
        server_port = server.port
        async with adieu.connect_tcp("127.0.0.1", server_port) as conn:
            client_port = conn.local_address[1]
            await conn.send(b"x")
            assert await conn.receive() == b"x"
            if starts == "server":  # a shutdown: the server asks first
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(server.shutdown)
                    await conn.shutdown_requested.wait()
                    await conn.send_eof()
                    assert [m async for m in conn] == []
        assert conn.termination is not None
        assert conn.termination.lossless
        report = await server.shutdown()
    assert report.lossless
    states = tcp_states()
    assert states.get((client_port, server_port)) == TIME_WAIT
    assert states.get((server_port, client_port)) != TIME_WAIT
