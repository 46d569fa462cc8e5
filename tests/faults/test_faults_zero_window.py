"""A zero-window reader: a raw TCP peer completes the handshake, asks for a
stream of data, and never reads.

The handler's sends fill the kernel's buffers and the peer's (small)
receive window, then block. The server keeps serving other clients while it
is stuck; its shutdown ends at the deadline even though that handler is
blocked in a send: that connection ends ``TIMED_OUT``, every other ``CLEAN``.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing
from fault_support import HOST, RawPeer, client_until_asked, honest_client

import adieu
from shared_support import MESSAGE, frame, reply_to

#: Real seconds the server grants in its shutdown: waited out in full,
#: since the stuck connection lasts until the deadline.
SHORT_GRACE = 1.0

CHUNK = b"z" * 65536


@pytest.mark.slow
async def test_zero_window_reader_times_out_at_the_deadline_alone() -> None:
    flooding = trio.Event()
    sent_chunks = 0

    async def answer_or_flood(conn: adieu.Connection) -> None:
        nonlocal sent_chunks
        async for message in conn:
            if message == b"flood":
                flooding.set()
                while True:
                    await conn.send(CHUNK)
                    sent_chunks += 1
            await conn.send(reply_to(message))

    reports: list[adieu.ShutdownReport] = []
    async with adieu.open_tcp_server(answer_or_flood, HOST, 0) as server:
        # A 4 KiB receive buffer: a small window that never opens.
        reader = await RawPeer.connect(server.port, receive_buffer=4096)
        try:
            await reader.handshake()
            await reader.send(frame(MESSAGE, b"flood"))
            await flooding.wait()
            # The handler is blocked in send: every buffer is full.
            await trio.testing.wait_all_tasks_blocked()
            stuck_at = sent_chunks
            # The server keeps serving meanwhile.
            await honest_client(server.port, 5, tag="while stuck")
            assert sent_chunks == stuck_at
            connected = trio.Semaphore(0)
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(
                        client_until_asked, server.port, connected.release, f"c{i}"
                    )
                for _ in range(3):
                    await connected.acquire()

                async def shut_down() -> None:
                    reports.append(await server.shutdown(SHORT_GRACE))

                nursery.start_soon(shut_down)
            assert sent_chunks == stuck_at
        finally:
            reader.close()
    (report,) = reports
    assert report.duration >= SHORT_GRACE
    assert not report.aborted
    (stuck,) = [c for c in report.connections if c.remote_address == reader.address]
    assert stuck.termination.kind is adieu.TerminationKind.TIMED_OUT
    assert stuck.outcome is None  # cancelled at the deadline: no result
    assert report.counts[adieu.TerminationKind.TIMED_OUT] == 1
    assert report.counts[adieu.TerminationKind.CLEAN] == 3
    assert report.ended_before[adieu.TerminationKind.CLEAN] == 1
