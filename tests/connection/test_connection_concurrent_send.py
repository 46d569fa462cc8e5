"""``send()`` from many tasks at once: every message arrives whole, never
interleaved with another, each task's messages in its order; a sender
cancelled while queued behind another sends nothing and harms nothing; one
cancelled in the middle of its frame aborts the connection."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing
from connection_support import Pair, memory_pair, tcp_pair

import adieu
from adieu import Initiator, TerminationKind

TASKS = 20
PER_TASK = 50
_ID = struct.Struct(">HHI")


def message_size(task: int, seq: int) -> int:
    """Distinct, varying sizes: mostly small, every seventh one large (up to
    ~200 KiB, several times the transports' buffers)."""
    if (task + seq) % 7 == 0:
        return 100_000 + task * 5_000 + seq * 13
    return (task * 7919 + seq * 104_729) % 6_000


def make_message(task: int, seq: int) -> bytes:
    size = message_size(task, seq)
    fill = bytes([(task * 31 + seq * 7) % 251 + 1])
    return _ID.pack(task, seq, size) + fill * size


def check_message(data: bytes) -> tuple[int, int]:
    task, seq, _ = _ID.unpack_from(data)
    assert data == make_message(task, seq), f"message {task}/{seq} damaged"
    return task, seq


async def check_concurrent_senders(pair: Pair) -> None:
    async with pair() as (client, server):
        next_seq = [0] * TASKS

        async def sender(task: int) -> None:
            for seq in range(PER_TASK):
                await client.send(make_message(task, seq))

        async def receiver() -> None:
            for _ in range(TASKS * PER_TASK):
                task, seq = check_message(await server.receive())
                assert seq == next_seq[task], f"task {task}: {seq} out of order"
                next_seq[task] += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            for task in range(TASKS):
                nursery.start_soon(sender, task)
        assert next_seq == [PER_TASK] * TASKS
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.messages_sent == TASKS * PER_TASK
    assert client.termination.confirmed is True


async def test_concurrent_senders_never_interleave_over_memory(
    autojump_clock: trio.abc.Clock,
) -> None:
    await check_concurrent_senders(memory_pair)


async def test_concurrent_senders_never_interleave_over_tcp() -> None:
    await check_concurrent_senders(tcp_pair)


async def test_a_sender_cancelled_while_queued_sends_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with memory_pair() as (client, server):
        pipe = client.transport.stream.outgoing  # type: ignore[attr-defined]
        big = b"A" * 200_000
        # Hold the bytes in flight: the writer of ``big`` blocks mid-write.
        pipe.hold()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send, big)
            await trio.testing.wait_all_tasks_blocked()
            queued_scope = trio.CancelScope()
            cancelled = trio.Event()

            async def queued_sender() -> None:
                with queued_scope:
                    await client.send(b"B: never sent")
                cancelled.set()

            nursery.start_soon(queued_sender)
            await trio.testing.wait_all_tasks_blocked()
            assert not cancelled.is_set()  # queued behind the writer
            queued_scope.cancel()
            await cancelled.wait()
            assert queued_scope.cancelled_caught
            pipe.release()
        # The connection is still usable.
        await client.send(b"C")
        assert await server.receive() == big
        assert await server.receive() == b"C"
        await client.send_eof()
        with trio.move_on_after(60):
            assert [data async for data in server] == []
    assert client.termination is not None
    assert client.termination.kind is TerminationKind.CLEAN
    assert client.termination.messages_sent == 2
    assert client.termination.confirmed is True
    assert server.termination is not None
    assert server.termination.messages_received == 2


async def test_a_cancelled_queued_sender_does_not_disturb_the_others(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Three senders queue behind a blocked writer; the middle one is
    cancelled; the other two arrive in their order, whole."""
    async with memory_pair() as (client, server):
        pipe = client.transport.stream.outgoing  # type: ignore[attr-defined]
        pipe.hold()
        scopes = [trio.CancelScope() for _ in range(3)]

        async def sender(index: int) -> None:
            with scopes[index]:
                await client.send(bytes([index]) * (10_000 * (index + 1)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send, b"W" * 100_000)
            await trio.testing.wait_all_tasks_blocked()
            for index in range(3):
                nursery.start_soon(sender, index)
                await trio.testing.wait_all_tasks_blocked()
            scopes[1].cancel()
            await trio.testing.wait_all_tasks_blocked()
            pipe.release()
        assert await server.receive() == b"W" * 100_000
        assert await server.receive() == bytes([0]) * 10_000
        assert await server.receive() == bytes([2]) * 30_000
        assert scopes[1].cancelled_caught
        assert not scopes[0].cancelled_caught
        assert not scopes[2].cancelled_caught
    assert client.termination is not None
    assert client.termination.messages_sent == 3
    assert client.termination.confirmed is True


async def test_a_sender_cancelled_in_the_middle_of_its_frame_aborts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Half a frame cannot be taken back: cancelling the task that is
    writing aborts the connection (as documented), and the peer sees a
    reset rather than a corrupt stream."""
    async with memory_pair() as (client, server):
        pipe = client.transport.stream.outgoing  # type: ignore[attr-defined]
        pipe.hold()
        scope = trio.CancelScope()

        async def writer() -> None:
            with scope:
                await client.send(b"W" * 200_000)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
        assert scope.cancelled_caught
        termination = client.termination
        assert termination is not None
        assert termination.kind is TerminationKind.ABORTED
        assert termination.initiator is Initiator.LOCAL
        with pytest.raises(adieu.ConnectionReset):
            await server.receive()
