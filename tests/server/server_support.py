"""Helpers shared by the server tests: handlers, well-behaved clients, and
raw frames for peers that do not run adieu."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable

import trio
import trio.testing

import adieu
from adieu.testing import MemoryPipe, MemoryStream


class Arrivals:
    """Counts arrivals and sets :attr:`all_here` at the expected number."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.all_here = trio.Event()

    def arrive(self) -> None:
        self.count += 1
        if self.count >= self.expected:
            self.all_here.set()


def counting(
    handler: Callable[[adieu.Connection], Awaitable[object]], arrivals: Arrivals
) -> Callable[[adieu.Connection], Awaitable[object]]:
    """``handler``, announcing each start to ``arrivals``."""

    async def wrapped(conn: adieu.Connection) -> object:
        arrivals.arrive()
        return await handler(conn)

    return wrapped


async def finish_when_asked(conn: adieu.Connection) -> list[bytes]:
    """A well-behaved client's ending: wait for SHUTDOWN, send END, read
    every reply up to the server's END; returns the replies."""
    await conn.shutdown_requested.wait()
    await conn.send_eof()
    return [message async for message in conn]


async def read_frame(
    stream: trio.abc.ReceiveStream, buffer: bytearray
) -> tuple[int, bytes]:
    """Read one frame from a raw stream (``buffer`` keeps what was read past
    it). Raises :exc:`EOFError` at EOF."""
    while True:
        if len(buffer) >= 5:
            kind, length = struct.unpack(">BI", buffer[:5])
            if len(buffer) >= 5 + length:
                payload = bytes(buffer[5 : 5 + length])
                del buffer[: 5 + length]
                return kind, payload
        data = await stream.receive_some()
        if not data:
            raise EOFError
        buffer += data


async def read_exactly(
    stream: trio.abc.ReceiveStream, buffer: bytearray, n: int
) -> bytes:
    """Read ``n`` bytes from a raw stream."""
    while len(buffer) < n:
        data = await stream.receive_some()
        if not data:
            raise EOFError
        buffer += data
    out = bytes(buffer[:n])
    del buffer[:n]
    return out


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Let the other tasks run until ``predicate()`` holds. Checked each
    time every task is blocked, so it never spins; if everything is blocked
    and it still does not hold, it never will: fail."""
    while not predicate():
        await trio.testing.wait_all_tasks_blocked()
        if not predicate():
            raise AssertionError("every task is blocked and it never happened")


def outgoing_pipe(conn: adieu.Connection) -> MemoryPipe:
    """The pipe carrying ``conn``'s bytes to its peer (memory streams)."""
    stream = conn.transport.stream
    assert isinstance(stream, MemoryStream)
    return stream.outgoing


def incoming_pipe(conn: adieu.Connection) -> MemoryPipe:
    """The pipe carrying the peer's bytes to ``conn`` (memory streams)."""
    stream = conn.transport.stream
    assert isinstance(stream, MemoryStream)
    return stream.incoming


class InjectAtStep(trio.abc.Instrument):
    """A Trio instrument that calls ``inject`` after the ``step``-th task
    step counted from :meth:`arm`: every moment at which another task could
    act, tried one by one by a test that raises ``step`` until the run ends
    before it. :attr:`injected_at` is the time it was called, or ``None``."""

    def __init__(self, step: int, inject: Callable[[], object]) -> None:
        self.step = step
        self.inject = inject
        self.count = 0
        self.armed = False
        self.injected_at: float | None = None

    def arm(self) -> None:
        self.armed = True

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if not self.armed:
            return
        if self.count == self.step:
            self.armed = False
            self.injected_at = trio.current_time()
            self.inject()
        self.count += 1
