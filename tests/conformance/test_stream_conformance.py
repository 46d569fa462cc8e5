"""Trio's own conformance suite for adieu's streams.

:class:`adieu.TransportStream` is a :class:`trio.abc.HalfCloseableStream`, so
:func:`trio.testing.check_half_closeable_stream` holds it to the same contract
as Trio's own streams, over every kind of stream it wraps: socket pairs, a
real loopback TCP connection, Trio's memory streams (buffered and lockstep)
and adieu's own :class:`adieu.testing.MemoryStream`. The test transport is
held to the contract too, bare.

One check of the suite closes a receiving stream while its peer sends
without pause; :meth:`TransportStream.aclose` then discards the peer's input
for its whole linger before it closes (that is the lingering close), once in
each direction. With the default linger of 2 s the suite takes about 4 s per
stream kind, so these runs use a short linger, and one run over a socket pair
keeps the default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

import adieu
import adieu.testing

#: The linger of the wrapped streams: short, so that the check that waits
#: out a whole linger (twice) stays fast. Nothing in the suite depends on
#: its length.
SHORT_LINGER = 0.05

Pair = tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]
PairMaker = Callable[[], Awaitable[Pair]]


async def socket_pair() -> Pair:
    """A connected pair of Unix-domain :class:`trio.SocketStream`."""
    left, right = trio.socket.socketpair()
    return trio.SocketStream(left), trio.SocketStream(right)


async def tcp_pair() -> Pair:
    """Both ends of a real TCP connection over the loopback interface."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listener:
        port = listener.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        server = await listener.accept()
    return client, server


async def trio_memory_pair() -> Pair:
    return trio.testing.memory_stream_pair()


async def trio_lockstep_pair() -> Pair:
    return trio.testing.lockstep_stream_pair()


async def adieu_memory_pair() -> Pair:
    return adieu.testing.memory_stream_pair()


async def fill(stream: trio.abc.SendStream) -> None:
    """Send until ``stream`` blocks (every buffer on the way is full), then
    stop, as Trio's own socket tests do."""

    async def sender() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async def stop_when_blocked(nursery: trio.Nursery) -> None:
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        nursery.start_soon(stop_when_blocked, nursery)


def clogging(maker: PairMaker) -> PairMaker:
    """A maker of pairs whose sends block until the other end reads."""

    async def clogged() -> Pair:
        left, right = await maker()
        await fill(left)
        await fill(right)
        return left, right

    return clogged


def transports(maker: PairMaker, linger: float = SHORT_LINGER) -> PairMaker:
    """``maker``'s pairs, each end wrapped in a TransportStream."""

    async def wrapped() -> Pair:
        left, right = await maker()
        return (
            adieu.TransportStream(left, linger=linger),
            adieu.TransportStream(right, linger=linger),
        )

    return wrapped


# Each kind: the raw pair maker, and how to make a clogged pair of
# transports from it (None where the stream cannot be clogged: Trio's
# buffered memory streams never block a sender).
KINDS: dict[str, tuple[PairMaker, Callable[[PairMaker], PairMaker | None]]] = {
    "socketpair": (socket_pair, lambda m: clogging(transports(m))),
    "tcp-loopback": (tcp_pair, lambda m: clogging(transports(m))),
    "trio-memory": (trio_memory_pair, lambda m: None),
    # A lockstep stream is clogged as made: every send waits for a receive.
    "trio-lockstep": (trio_lockstep_pair, lambda m: transports(m)),
    "adieu-memory": (adieu_memory_pair, lambda m: clogging(transports(m))),
}


@pytest.mark.parametrize("kind", list(KINDS))
async def test_transport_stream_is_a_half_closeable_stream(kind: str) -> None:
    raw, make_clogged = KINDS[kind]
    await trio.testing.check_half_closeable_stream(transports(raw), make_clogged(raw))


@pytest.mark.slow
async def test_transport_stream_with_default_linger_is_half_closeable() -> None:
    maker = transports(socket_pair, linger=adieu.DEFAULT_LINGER)
    await trio.testing.check_half_closeable_stream(maker, clogging(maker))


async def test_adieu_memory_stream_is_a_half_closeable_stream() -> None:
    await trio.testing.check_half_closeable_stream(
        adieu_memory_pair, clogging(adieu_memory_pair)
    )


# Beyond the suite: Trio's contract lets another task close a stream while a
# task is blocked in send_all or receive_some. The blocked task gets
# ClosedResourceError, and the close itself succeeds (the suite only checks
# this with aclose_forcefully, which hides an error raised by aclose).

CLOSE_KINDS: dict[str, PairMaker] = {
    "socketpair": transports(socket_pair),
    "tcp-loopback": transports(tcp_pair),
    "adieu-memory": transports(adieu_memory_pair),
    "bare-adieu-memory": adieu_memory_pair,
}


@pytest.mark.parametrize("kind", list(CLOSE_KINDS))
async def test_aclose_wakes_a_task_blocked_in_send_all(kind: str) -> None:
    left, right = await clogging(CLOSE_KINDS[kind])()
    try:
        async with trio.open_nursery() as nursery:

            async def blocked_sender() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await left.send_all(b"y" * 10000)

            nursery.start_soon(blocked_sender)
            await trio.testing.wait_all_tasks_blocked()
            await left.aclose()
    finally:
        await trio.aclose_forcefully(left)
        await trio.aclose_forcefully(right)


@pytest.mark.parametrize("kind", list(CLOSE_KINDS))
async def test_aclose_wakes_a_task_blocked_in_receive_some(kind: str) -> None:
    left, right = await CLOSE_KINDS[kind]()
    try:
        async with trio.open_nursery() as nursery:

            async def blocked_receiver() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await left.receive_some(10)

            nursery.start_soon(blocked_receiver)
            await trio.testing.wait_all_tasks_blocked()
            await left.aclose()
    finally:
        await trio.aclose_forcefully(left)
        await trio.aclose_forcefully(right)
