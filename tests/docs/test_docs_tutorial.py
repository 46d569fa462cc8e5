"""Every program of the tutorial runs, and prints what the tutorial says.

The tutorial shows files of ``docs/tutorial/`` (``literalinclude``); each is
run here: in this process over loopback, or as a real process that gets a
real signal, as a reader would run it.
"""

from __future__ import annotations

import re
import signal
import sys
from collections.abc import Callable

import pytest
import trio
from docs_support import ROOT, Process, load

import adieu

echo = load("tutorial/echo.py")
client = load("tutorial/client.py")
# test_chat.py imports the room as its reader would: ``from chat import Room``.
chat = load("tutorial/chat.py", name="chat")
tutorial_tests = load("tutorial/test_chat.py")

EXAMPLE_CLIENT = ROOT / "examples" / "chat" / "client.py"

# Programs that start servers and clients as processes take a second or so.
slow = pytest.mark.slow


async def test_step1_echo_prints_a_clean_confirmed_end(
    capsys: pytest.CaptureFixture[str],
) -> None:
    await echo.main()
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["answer: one", "answer: two", "answer: three"]
    assert lines[3] == (
        "client: CLEAN (begun by this side): sent 3 messages, received 3 "
        "messages, the server confirmed all 3: both ENDs exchanged"
    )
    # The two forms the tutorial shows, by when the server's side finished
    # closing: before the shutdown began, or just after.
    assert re.fullmatch(
        r"server: shutdown finished in [\d.]+ s \(grace period 10 s\): (no "
        r"connection was open when the shutdown began; 1 connection had ended "
        r"before: 1 clean|1 connection was open when the shutdown began: 1 clean)",
        lines[4],
    )


@slow
async def test_step2_the_client_finishes_when_the_server_is_interrupted(
    start: Callable[..., Process],
) -> None:
    server = start("tutorial/server.py", "0")
    port = int((await trio.to_thread.run_sync(server.wait_for, r"port (\d+)"))[1])
    async with trio.open_nursery() as nursery:
        results: list[adieu.Termination] = []

        async def run_client() -> None:
            results.append(await client.main(port))

        nursery.start_soon(run_client)
        await trio.to_thread.run_sync(server.wait_for, "connection from")
        server.popen.send_signal(signal.SIGINT)  # Ctrl+C
    [termination] = results
    assert termination.kind is adieu.TerminationKind.CLEAN
    assert termination.initiator is adieu.Initiator.PEER
    assert termination.lossless
    status, output = await trio.to_thread.run_sync(server.finish)
    assert status == 0, output
    assert "1 connection was open when the shutdown began: 1 clean" in output


@slow
async def test_step3_the_chat_room_relays_and_shuts_down_cleanly(
    start: Callable[..., Process],
) -> None:
    server = start("tutorial/chat.py", "0")
    port = int((await trio.to_thread.run_sync(server.wait_for, r"port (\d+)"))[1])
    async with (
        adieu.connect_tcp("127.0.0.1", port) as alice,
        adieu.connect_tcp("127.0.0.1", port) as bob,
    ):
        await alice.send(b"alice")
        assert await alice.receive() == b"* alice joined"
        await bob.send(b"bob")
        assert await alice.receive() == b"* bob joined"
        assert await bob.receive() == b"* bob joined"
        await bob.send(b"hi alice")
        assert await alice.receive() == b"<bob> hi alice"
        assert await bob.receive() == b"<bob> hi alice"
        server.popen.send_signal(signal.SIGINT)
        await alice.shutdown_requested.wait()
        await bob.shutdown_requested.wait()
        await alice.send(b"bye")  # still relayed during the shutdown
        assert await bob.receive() == b"<alice> bye"
        await bob.send_eof()  # bob finishes first...
        assert [m async for m in bob] == []  # ...and gets the server's END
        await alice.send_eof()
        # alice still gets what was said until then, up to the server's END.
        assert [m async for m in alice] == [b"<alice> bye", b"* bob left"]
    assert alice.termination is not None
    assert alice.termination.lossless
    assert bob.termination is not None
    assert bob.termination.lossless
    status, output = await trio.to_thread.run_sync(server.finish)
    assert status == 0, output
    assert "2 connections were open when the shutdown began: 2 clean" in output


@slow
async def test_step3_the_example_chat_client_can_join_the_room(
    start: Callable[..., Process],
) -> None:
    # The tutorial suggests joining the room with examples/chat/client.py.
    server = start("tutorial/chat.py", "0")
    port = (await trio.to_thread.run_sync(server.wait_for, r"port (\d+)"))[1]
    result = await trio.run_process(
        [sys.executable, str(EXAMPLE_CLIENT), "--name", "alice", "--port", port],
        stdin=b"hello room\n",  # then end of input: the client leaves
        capture_stdout=True,
        check=False,
    )
    output = result.stdout.decode()
    assert "<alice> hello room" in output
    assert (
        "clean end: the server confirmed everything you sent: "
        "your name and 1 line (2 messages)"
    ) in output
    assert result.returncode == 0, output
    server.popen.send_signal(signal.SIGINT)
    status, _ = await trio.to_thread.run_sync(server.finish)
    assert status == 0


# Step 4: the tutorial's own tests, run as part of this suite.
test_step4_everyone_gets_every_line = tutorial_tests.test_everyone_gets_every_line
test_step4_a_shutdown_lets_every_member_finish = (
    tutorial_tests.test_a_shutdown_lets_every_member_finish
)
