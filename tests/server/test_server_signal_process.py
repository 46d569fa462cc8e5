"""``run_until_signal`` in a real process, under a connect flood: Ctrl+C
starts the shutdown, a second Ctrl+C aborts it cleanly, whenever it lands
(the shutdown's first step, draining the listen backlog, is one synchronous
step, so it never lands inside it). The program then exits through its own
path: ``run_until_signal`` returns the aborted report, no exception, no
traceback; the program below exits 1 for a report that is aborted, as the
how-to's example does.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import trio

import adieu
from shared_support import CONNECT_FLOOD_SCRIPT, reply_to

SERVER_SCRIPT = """
import sys
import trio
import adieu

async def answer(conn):
    async for message in conn:
        await conn.send(b"re:" + message)

async def main():
    async with adieu.open_tcp_server(
        answer, "127.0.0.1", 0, max_connections=1, backlog=1024, grace_period=600
    ) as server:
        print("port", server.port, flush=True)
        report = await adieu.run_until_signal(server)
    print(report, flush=True)
    return 0 if report.lossless and not report.aborted else 1

sys.exit(trio.run(main))
"""


async def _line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        chunk = await stream.receive_some()
        assert chunk, "the process ended early"
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


@pytest.mark.slow
async def test_a_second_ctrl_c_under_a_connect_flood_aborts_cleanly() -> None:
    with trio.fail_after(60):
        server = await trio.lowlevel.open_process(
            [sys.executable, "-c", SERVER_SCRIPT],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        flood = None
        assert server.stdout is not None
        try:
            buffer = bytearray()
            port = int((await _line(server.stdout, buffer)).split()[1])
            async with adieu.connect_tcp("127.0.0.1", port) as conn:
                # The only slot: every flooding connect waits in the backlog.
                await conn.send(b"served")
                assert await conn.receive() == reply_to(b"served")
                flood = await trio.lowlevel.open_process(
                    [sys.executable, "-c", CONNECT_FLOOD_SCRIPT, str(port)],
                    stdout=subprocess.PIPE,
                )
                assert flood.stdout is not None
                assert await _line(flood.stdout, bytearray()) == b"flooding"
                await trio.sleep(0.5)  # the backlog fills
                server.send_signal(signal.SIGINT)
                await conn.shutdown_requested.wait()
                server.send_signal(signal.SIGINT)
                try:
                    while True:
                        await conn.receive()
                except adieu.ConnectionReset:
                    pass
            status = await server.wait()
            output = bytearray(buffer)
            while chunk := await server.stdout.receive_some():
                output += chunk
        finally:
            for process in (server, flood):
                if process is not None:
                    process.kill()
                    await process.wait()
                    if process.stdout is not None:
                        await process.stdout.aclose()

    text = output.decode()
    assert status == 1, text
    assert "Traceback" not in text, text
    assert "shutdown aborted" in text, text
    assert conn.termination is not None
    assert conn.termination.kind is adieu.TerminationKind.RESET
