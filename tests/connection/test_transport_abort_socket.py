"""``TransportStream.abort()`` on a plain TCP socket: a reset, whether or
not a task waits on the socket. A task waiting in ``receive_some`` or
``send_all`` is woken with :exc:`trio.ClosedResourceError` (Trio is told
in the same step as the descriptor closes); with no task waiting, the descriptor is
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
    transport: TransportStream,
    wait: Callable[[], Awaitable[object]],
    abort: Callable[[], object] | None = None,
) -> None:
    """``transport.abort()`` (or ``abort()``) while a task waits in
    ``wait()``: that task gets :exc:`trio.ClosedResourceError` at once."""
    woken: list[trio.ClosedResourceError] = []

    async def waiting() -> None:
        try:
            await wait()
        except trio.ClosedResourceError as exc:
            woken.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting)
        await trio.testing.wait_all_tasks_blocked()
        (abort or transport.abort)()
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


async def test_abort_untold_leaves_the_notice_of_a_waited_on_socket_to_the_caller() -> (
    None
):
    """What a server's cut does for thousands of connections: reset now,
    tell Trio later in the same synchronous step. The task waiting to
    receive is woken by the caller's notice, as by ``abort()``, and the
    descriptor is left reusable."""
    with trio.fail_after(TIMEOUT):
        async with tcp_pair() as (transport, peer):
            assert transport.socket is not None
            fd = transport.socket.fileno()

            def reset_then_tell() -> None:
                untold = transport.abort_untold()
                assert untold == fd
                assert transport.abort_untold() is None  # idempotent
                trio.lowlevel.notify_closing(untold)

            await _abort_wakes(transport, transport.receive_some, reset_then_tell)
            await _peer_sees_reset(peer)
            await _descriptor_is_reusable(fd)


async def test_abort_untold_with_no_task_waiting_leaves_nothing_to_tell() -> None:
    with trio.fail_after(TIMEOUT):
        async with tcp_pair() as (transport, peer):
            assert transport.socket is not None
            fd = transport.socket.fileno()
            assert transport.abort_untold() is None
            await _peer_sees_reset(peer)
            await _descriptor_is_reusable(fd)
