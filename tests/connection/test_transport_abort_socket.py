"""``TransportStream.abort()`` on a plain TCP socket: a reset, whether or
not a task waits on the socket. A task waiting in ``receive_some`` or
``send_all`` is woken with :exc:`trio.ClosedResourceError` (Trio is told
before the descriptor closes); with no task waiting, the descriptor is
closed without that notice, and Trio keeps nothing of it: a new socket that
gets the same descriptor number works as any other."""

from __future__ import annotations

import functools
import socket as stdlib_socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from connection_support import port_of, tcp_listener

from adieu import TransportStream

#: Bounds every wait of these tests (real sockets on loopback).
TIMEOUT = 10.0


@asynccontextmanager
async def tcp_pair(
    linger: float = 2.0,
) -> AsyncIterator[tuple[TransportStream, trio.SocketStream]]:
    """An accepted loopback connection wrapped in a transport, and its raw
    peer."""
    async with tcp_listener() as listener:
        peer = await trio.open_tcp_stream("127.0.0.1", port_of(listener))
        async with peer:
            accepted = await listener.accept()
            assert isinstance(accepted, trio.SocketStream)
            yield TransportStream(accepted, linger=linger), peer


async def _descriptor_is_reusable(fd: int) -> None:
    """The lowest free descriptor is ``fd``, just closed: a new socket gets
    it, and Trio can wait on it as on any other (it kept no registration of
    the old one)."""
    left, right = trio.socket.socketpair()
    with left, right:
        assert fd in (left.fileno(), right.fileno())
        reused = left if left.fileno() == fd else right
        other = right if reused is left else left
        await other.send(b"x")
        await trio.lowlevel.wait_readable(reused)
        assert await reused.recv(1) == b"x"


async def _peer_sees_reset(peer: trio.SocketStream) -> None:
    """The peer reads what reached it, then the reset (never an EOF)."""
    with pytest.raises(ConnectionResetError):  # noqa: PT012 (reads until it)
        while True:
            assert await peer.socket.recv(65536) != b""


async def test_abort_with_no_task_waiting_resets_and_leaves_trio_nothing() -> None:
    with trio.fail_after(TIMEOUT):
        async with tcp_pair() as (transport, peer):
            assert transport.socket is not None
            fd = transport.socket.fileno()
            transport.abort()
            assert transport.socket.fileno() == -1
            await _peer_sees_reset(peer)
            transport.abort()  # idempotent
            await _descriptor_is_reusable(fd)


async def _abort_wakes(
    transport: TransportStream, wait: Callable[[], Awaitable[object]]
) -> None:
    """``transport.abort()`` while a task waits in ``wait()``: that task
    gets :exc:`trio.ClosedResourceError` at once."""
    woken: list[trio.ClosedResourceError] = []

    async def waiting() -> None:
        try:
            await wait()
        except trio.ClosedResourceError as exc:
            woken.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting)
        await trio.testing.wait_all_tasks_blocked()
        transport.abort()
    assert len(woken) == 1


async def test_abort_wakes_a_task_waiting_to_receive() -> None:
    with trio.fail_after(TIMEOUT):
        async with tcp_pair() as (transport, peer):
            await _abort_wakes(transport, transport.receive_some)
            await _peer_sees_reset(peer)


async def test_abort_wakes_a_task_waiting_to_send() -> None:
    with trio.fail_after(TIMEOUT):
        async with tcp_pair() as (transport, peer):
            assert transport.socket is not None
            # Small buffers, and a peer that does not read: the send waits.
            transport.socket.setsockopt(
                stdlib_socket.SOL_SOCKET, stdlib_socket.SO_SNDBUF, 4096
            )
            await _abort_wakes(
                transport, functools.partial(transport.send_all, b"x" * 10_000_000)
            )
            await _peer_sees_reset(peer)


async def test_abort_wakes_aclose_waiting_for_the_peers_eof() -> None:
    """``aclose()`` reads the peer's input until its EOF (the linger) and
    waits on the socket meanwhile; an abort from another task ends that
    wait at once, and leaves Trio nothing of the descriptor."""
    with trio.fail_after(TIMEOUT):
        # A linger far longer than the test's bound: only the abort can end
        # the wait in time.
        async with tcp_pair(linger=1000 * TIMEOUT) as (transport, _peer):
            assert transport.socket is not None
            fd = transport.socket.fileno()
            closed = trio.Event()

            async def close() -> None:
                await transport.aclose()
                closed.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(close)
                await trio.testing.wait_all_tasks_blocked()
                assert not closed.is_set()  # lingering: the peer sends no EOF
                transport.abort()
                await trio.testing.wait_all_tasks_blocked()
                assert closed.is_set()
            await _descriptor_is_reusable(fd)
