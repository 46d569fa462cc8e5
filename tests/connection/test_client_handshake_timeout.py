"""A client never waits forever for a server that does not speak: the
server's preamble must arrive within ``handshake_timeout``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

import adieu


async def silent_listener() -> trio.SocketListener:
    """A TCP listener on 127.0.0.1 that never accepts: the kernel completes
    the connection in its backlog, and nothing is ever sent."""
    [listener] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    assert isinstance(listener, trio.SocketListener)
    return listener


def port_of(listener: trio.SocketListener) -> int:
    port = listener.socket.getsockname()[1]
    assert isinstance(port, int)
    return port


async def test_a_silent_server_times_out_with_a_clear_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    listener = await silent_listener()
    port = port_of(listener)
    async with listener:
        start = trio.current_time()
        with trio.fail_after(60), pytest.raises(adieu.HandshakeTimeout) as caught:
            async with adieu.connect_tcp("127.0.0.1", port, handshake_timeout=3):
                pytest.fail("the block must not start without the preamble")
        assert trio.current_time() - start == pytest.approx(3)
    error = caught.value
    assert error.timeout == 3
    assert isinstance(error.__cause__, trio.TooSlowError)
    # In the existing tree: code that catches a broken connection, or a
    # timeout, catches this too.
    assert isinstance(error, adieu.ProtocolError)
    assert isinstance(error, trio.BrokenResourceError)
    assert isinstance(error, trio.TooSlowError)
    text = str(error)
    assert f"the server at '127.0.0.1' port {port}" in text
    assert "no adieu preamble within the handshake timeout (3 s)" in text
    assert "expected an adieu server there" in text


async def test_the_default_bound_is_the_servers(autojump_clock: trio.abc.Clock) -> None:
    # One constant for both sides: the server's default is the client's.
    listener = await silent_listener()
    async with listener:
        start = trio.current_time()
        with trio.fail_after(60), pytest.raises(adieu.HandshakeTimeout):
            async with adieu.connect_tcp("127.0.0.1", port_of(listener)):
                pytest.fail("the block must not start without the preamble")
        assert trio.current_time() - start == pytest.approx(
            adieu.DEFAULT_HANDSHAKE_TIMEOUT
        )


async def test_a_silent_unix_server_times_out(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    path = tmp_path / "silent.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        await sock.bind(str(path))
        sock.listen(1)
        with trio.fail_after(60), pytest.raises(adieu.HandshakeTimeout) as caught:
            async with adieu.connect_unix(path, handshake_timeout=0.5):
                pytest.fail("the block must not start without the preamble")
    assert str(path) in str(caught.value)


async def test_the_block_starts_once_the_server_has_spoken() -> None:
    async def echo(conn: adieu.Connection) -> None:
        async for message in conn:
            await conn.send(message)

    with trio.fail_after(10):
        async with (
            adieu.open_tcp_server(echo, "127.0.0.1", 0) as server,
            adieu.connect_tcp("127.0.0.1", server.port, handshake_timeout=5) as conn,
        ):
            assert conn.handshake_complete
            await conn.send(b"hi")
            assert await conn.receive() == b"hi"


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
async def test_a_negative_handshake_timeout_is_refused_before_connecting(
    bad: float,
) -> None:
    with pytest.raises(ValueError, match="handshake_timeout"):
        async with adieu.connect_tcp("127.0.0.1", 9, handshake_timeout=bad):
            pass  # pragma: no cover
    with pytest.raises(ValueError, match="handshake_timeout"):
        async with adieu.connect_unix("/nonexistent", handshake_timeout=bad):
            pass  # pragma: no cover
