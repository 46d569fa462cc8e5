"""What the fault-injection tests share: raw peers that do not run adieu,
well-behaved clients, handlers, and counts of tasks and file descriptors.

A raw peer is a bare Trio socket on the loopback interface: it writes the
wire protocol by hand, so it can stop anywhere, send what it likes, never
read, or reset the connection (``SO_LINGER {1, 0}`` then close).
"""

from __future__ import annotations

import os
import socket as stdlib_socket
import struct
from collections.abc import Awaitable, Callable

import trio

import adieu
from shared_support import CLIENT_PREAMBLE, SERVER_PREAMBLE, reply_to

HOST = "127.0.0.1"


class RawPeer:
    """A TCP peer that speaks the wire protocol by hand."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        #: This end's address: what the server sees as the remote address.
        self.address: tuple[str, int] = sock.getsockname()
        self._buffer = bytearray()

    @classmethod
    async def connect(cls, port: int, *, receive_buffer: int | None = None) -> RawPeer:
        """Connect to ``port`` on the loopback interface. ``receive_buffer``
        sets ``SO_RCVBUF`` first (a small one makes a small window)."""
        sock = trio.socket.socket(stdlib_socket.AF_INET, stdlib_socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:
                sock.setsockopt(
                    stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, receive_buffer
                )
            await sock.connect((HOST, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[await self.sock.send(view) :]

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = await self.sock.recv(65536)
            if not data:
                raise EOFError
            self._buffer += data
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    async def handshake(self) -> None:
        """Send the client's preamble and read the server's."""
        await self.send(CLIENT_PREAMBLE)
        assert await self.read_exactly(len(SERVER_PREAMBLE)) == SERVER_PREAMBLE

    async def read_frame(self) -> tuple[int, bytes]:
        kind, length = struct.unpack(">BI", await self.read_exactly(5))
        return kind, await self.read_exactly(length)

    async def read_until_closed(self) -> str:
        """Read and drop everything until the server closes: ``"eof"`` or
        ``"reset"``."""
        try:
            while await self.sock.recv(65536):
                pass
        except ConnectionResetError:
            return "reset"
        return "eof"

    def reset(self) -> None:
        """Close with ``SO_LINGER {1, 0}``: the kernel sends RST."""
        self.sock.setsockopt(
            stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        self.sock.close()

    def close(self) -> None:
        self.sock.close()


async def exchange(conn: adieu.Connection, message: bytes) -> None:
    """One request and its reply, checked."""
    await conn.send(message)
    assert await conn.receive() == reply_to(message)


async def honest_client(
    port: int, requests: int, *, tag: str = "honest"
) -> adieu.Termination:
    """A well-behaved client: ``requests`` checked exchanges, then the
    graceful end. Returns its termination, which must be lossless."""
    async with adieu.connect_tcp(HOST, port) as conn:
        for i in range(requests):
            await exchange(conn, f"{tag} {i}".encode())
    termination = conn.termination
    assert termination is not None
    assert termination.lossless, termination
    assert termination.messages_sent == requests
    assert termination.messages_received == requests
    return termination


async def client_until_asked(
    port: int,
    connected: Callable[[], None],
    tag: str = "honest",
    *,
    during: bool = True,
) -> adieu.Termination:
    """A well-behaved client of a server that shuts down: one exchange, then
    ``connected()``; when SHUTDOWN arrives, one more exchange if ``during``
    (the server keeps answering in its grace period), then END and every
    reply up to the server's END. Returns its termination, which must be
    lossless."""
    async with adieu.connect_tcp(HOST, port, close_timeout=60) as conn:
        await exchange(conn, f"{tag} before".encode())
        connected()
        await conn.shutdown_requested.wait()
        if during:
            await exchange(conn, f"{tag} during".encode())
        await conn.send_eof()
        assert [message async for message in conn] == []
    termination = conn.termination
    assert termination is not None
    assert termination.lossless, termination
    assert termination.confirmed is True
    assert termination.messages_sent == (2 if during else 1)
    return termination


def count_fds() -> int:
    """File descriptors open in this process."""
    return len(os.listdir("/proc/self/fd"))


def count_tasks() -> int:
    """Trio tasks alive in this run."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def counting(
    handler: Callable[[adieu.Connection], Awaitable[object]],
    ran: list[adieu.Connection],
) -> Callable[[adieu.Connection], Awaitable[object]]:
    """``handler``, recording every connection it runs for in ``ran``."""

    async def wrapped(conn: adieu.Connection) -> object:
        ran.append(conn)
        return await handler(conn)

    return wrapped
