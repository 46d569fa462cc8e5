"""Step 4: test the chat room without a network, on pytest-trio's
autojump_clock (a grace period of ten minutes takes no real time).

    pytest test_chat.py      (with pytest-trio, trio_mode = true)
"""

import trio
from chat import Room

import adieu
import adieu.testing


async def test_everyone_gets_every_line() -> None:
    room = Room()
    async with (
        adieu.testing.open_memory_server(room.handler) as server,
        adieu.testing.connect_memory(server) as alice,
        adieu.testing.connect_memory(server) as bob,
    ):
        await alice.send(b"alice")
        assert await alice.receive() == b"* alice joined"
        await bob.send(b"bob")
        assert await alice.receive() == b"* bob joined"
        assert await bob.receive() == b"* bob joined"
        await alice.send(b"hello")
        assert await alice.receive() == b"<alice> hello"
        assert await bob.receive() == b"<alice> hello"


async def test_a_shutdown_lets_every_member_finish(
    autojump_clock: trio.abc.Clock,
) -> None:
    room = Room()
    async with adieu.testing.open_memory_server(
        room.handler, grace_period=600
    ) as server:
        async with adieu.testing.connect_memory(server) as alice:
            await alice.send(b"alice")
            assert await alice.receive() == b"* alice joined"
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                await alice.shutdown_requested.wait()  # SHUTDOWN arrived
                await trio.sleep(300)  # take our time: the grace period is 600 s
                await alice.send(b"one last line")  # the server still answers
                assert await alice.receive() == b"<alice> one last line"
                await alice.send_eof()  # finish: our END
        assert alice.termination is not None
        assert alice.termination.lossless  # CLEAN, and all 2 messages confirmed
    assert server.report is not None
    assert server.report.counts[adieu.TerminationKind.CLEAN] == 1
