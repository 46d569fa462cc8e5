"""A peer process is killed (SIGKILL) in the middle of a message.

The peer is a separate Python process: it connects, sends the preamble and
half of a MESSAGE frame, reads the server's preamble (so that nothing unread
turns its kernel's close into a reset), says so, and waits. Killed with
SIGKILL, it cannot send anything more: its kernel closes the socket with a
FIN, and the server reads EOF with a frame cut in half. That connection ends
``TRUNCATED``, the handler's ``ConnectionTruncated`` is logged at INFO, and
the honest clients, connected before, during and after, are unaffected.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections import defaultdict

import outcome
import pytest
import trio
from fault_support import HOST, counting, exchange, honest_client

import adieu
from shared_support import MESSAGE, answer

# The peer writes the preamble, a header announcing 100 bytes and 50 of
# them; reads the server's 8-byte preamble; reports; waits to be killed.
PEER_SCRIPT = f"""
import socket, struct, sys, time
sock = socket.create_connection(({HOST!r}, int(sys.argv[1])))
sock.sendall(b"ADIEU/\\x01C" + struct.pack(">BI", {MESSAGE}, 100) + b"x" * 50)
preamble = b""
while len(preamble) < 8:
    preamble += sock.recv(8 - len(preamble))
print(preamble.decode(), flush=True)
time.sleep(3600)
"""


async def test_peer_killed_mid_message_ends_truncated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handled: list[adieu.Connection] = []
    outcomes: dict[int, outcome.Outcome[object]] = {}
    started: defaultdict[int, trio.Event] = defaultdict(trio.Event)
    ended: defaultdict[int, trio.Event] = defaultdict(trio.Event)

    async def answer_and_record(conn: adieu.Connection) -> object:
        index = len(handled) - 1
        started[index].set()
        try:
            result = await outcome.acapture(answer, conn)
            outcomes[index] = result
            return result.unwrap()
        finally:
            ended[index].set()

    # Handlers run in order: the first client (0), the one connected
    # throughout (1), the peer (2), the last client (3).
    peer = 2
    handler = counting(answer_and_record, handled)
    async with adieu.open_tcp_server(handler, HOST, 0) as server:
        before = await honest_client(server.port, 3, tag="before")
        async with adieu.connect_tcp(HOST, server.port) as during:
            await exchange(during, b"before the peer connects")
            process = await trio.lowlevel.open_process(
                [sys.executable, "-c", PEER_SCRIPT, str(server.port)],
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            try:
                said = b""
                while not said.endswith(b"\n"):
                    chunk = await process.stdout.receive_some()
                    assert chunk, "the peer process ended early"
                    said += chunk
                assert said.strip() == b"ADIEU/\x01S"
                await started[peer].wait()
                await exchange(during, b"while the peer hangs mid-frame")
            finally:
                process.send_signal(signal.SIGKILL)
                await process.wait()
                await process.stdout.aclose()
            assert process.returncode == -signal.SIGKILL
            await ended[peer].wait()
            await exchange(during, b"after the peer was killed")
        after = await honest_client(server.port, 3, tag="after")
        report = await server.shutdown()

    killed = handled[peer]
    assert killed.termination is not None
    assert killed.termination.kind is adieu.TerminationKind.TRUNCATED
    assert killed.termination.initiator is adieu.Initiator.PEER
    assert "in the middle of a frame" in killed.termination.detail
    handler_outcome = outcomes[peer]
    assert isinstance(handler_outcome, outcome.Error)
    assert isinstance(handler_outcome.error, adieu.ConnectionTruncated)
    # Logged at INFO, without a traceback: a peer's doing, not a bug.
    records = [
        r
        for r in caplog.records
        if r.name == "adieu" and "ConnectionTruncated" in r.getMessage()
    ]
    assert [r.levelno for r in records] == [logging.INFO]
    assert records[0].exc_info is None
    # Everyone else ended clean.
    for conn in (before, after):
        assert conn.kind is adieu.TerminationKind.CLEAN
    assert during.termination is not None
    assert during.termination.lossless
    # The server counts the same: the killed peer truncated, the rest clean
    # (the last one may still be closing on the server as it shuts down).
    assert report.ended_before[adieu.TerminationKind.TRUNCATED] == 1
    clean = adieu.TerminationKind.CLEAN
    assert report.ended_before[clean] + report.counts[clean] == 3
    assert sum(report.ended_before.values()) + len(report.connections) == 4
