"""A server whose END is produced but cannot be written before its close
gives up (another task holds the writer: the client does not read) must not
report ``CLEAN``: its client never gets that END. A graceful shutdown ends
``TIMED_OUT`` at its grace period; a close in one step ends ``TRUNCATED`` by
this side when its linger expires."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from connection_support import memory_pair

import adieu
from adieu import Initiator, TerminationKind


async def _shutdown(conn: adieu.Connection) -> None:
    await conn.shutdown(grace_period=1.0)


async def _aclose(conn: adieu.Connection) -> None:
    await conn.aclose()


CLOSES = {
    "shutdown": (_shutdown, TerminationKind.TIMED_OUT),
    "aclose": (_aclose, TerminationKind.TRUNCATED),
}


@pytest.mark.parametrize("verb", list(CLOSES))
async def test_an_end_stuck_behind_a_blocked_write_is_not_clean(
    verb: str, autojump_clock: trio.abc.Clock
) -> None:
    close, expected = CLOSES[verb]
    async with memory_pair(receive_buffer_size=1024) as (client, server):
        await client.send_eof()
        with pytest.raises(adieu.EndOfMessages):
            await server.receive()

        async def send_forever() -> None:
            while True:
                await server.send(b"x" * 65536)

        async def flood() -> None:
            with pytest.raises(trio.ClosedResourceError):
                await send_forever()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flood)
            # The client reads nothing: the flood's write blocks, and the
            # server's END queues behind it until the close gives up.
            await trio.testing.wait_all_tasks_blocked()
            await close(server)
        termination = server.termination
        assert termination is not None
        assert (termination.kind, termination.initiator) == (
            expected,
            Initiator.LOCAL,
        ), termination
        client.abort()
