"""A close with unread input must not destroy data already sent.

Closing a TCP socket whose receive queue still holds unread bytes makes the
kernel send RST instead of FIN, and throw away whatever it had not yet
transmitted: answers the application "sent" long ago are lost, and the
client is told nothing but "connection reset". This file reproduces that
over real loopback TCP, with a plain ``socket.close()``, and shows that
adieu's ``aclose()`` and graceful ``shutdown()`` deliver every byte in the
very same situation.

The situation, made deterministic:

* the client sends requests that the server never reads; they sit in the
  server's kernel receive queue (asserted before the close);
* the server sends several MiB of answers while the client reads them, and
  the client stops reading :data:`HELD_BACK` bytes before the end. Its
  receive buffer is pinned small (:data:`CLIENT_RCVBUF`), so when the
  server's last send returns, most of those bytes are still in the server's
  send queue (asserted before the close);
* the server closes; only then does the client read on, to the end.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
from connection_support import port_of, tcp_listener, unread_bytes

import adieu
from adieu import TerminationKind
from shared_support import (
    CLIENT_END,
    CLIENT_PREAMBLE,
    END,
    MESSAGE,
    PREAMBLE_SIZE,
    SERVER_PREAMBLE,
    SHUTDOWN,
    message_frame,
    parse_frames,
)

#: 64 answers of 64 KiB: 4 MiB, several times every buffer on the way.
ANSWERS = [bytes([i]) * 65536 for i in range(64)]
ANSWER_BYTES = SERVER_PREAMBLE + b"".join(message_frame(a) for a in ANSWERS)
#: 96 requests of 1 KiB, more than one read of the server's connection
#: (64 KiB) so that some of them stay in the kernel, and few enough that
#: they fit in the kernel's buffers while nobody reads them.
REQUESTS = [b"%04d" % i + b"r" * 1020 for i in range(96)]
REQUEST_BYTES = CLIENT_PREAMBLE + b"".join(message_frame(r) for r in REQUESTS)
#: The client's receive buffer, pinned (the kernel doubles it) so that it
#: cannot absorb the answers the client has not read yet.
CLIENT_RCVBUF = 16384
#: The server's send buffer (the kernel doubles it): room for HELD_BACK.
SERVER_SNDBUF = 262144
#: Bytes of answers the client leaves unread until the server has closed.
HELD_BACK = 256 * 1024


def tune_server_socket(sock: trio.socket.SocketType) -> None:
    """Let the server's kernel queue HELD_BACK bytes: a send buffer large
    enough, and no low-water mark on unsent bytes (Trio sets one of 16 KiB
    on its sockets, which would hold the server's send back instead)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SERVER_SNDBUF)
    notsent_lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if notsent_lowat is not None:
        sock.setsockopt(socket.IPPROTO_TCP, notsent_lowat, 1 << 30)


class SlowClient:
    """A raw client speaking adieu by hand: it sends its preamble and the
    requests, reads the answers up to HELD_BACK bytes before their end,
    waits for the server to close, then reads to the end. If a SHUTDOWN
    frame arrives, it answers with its END, as an adieu client would."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.data = bytearray()
        #: The error that ended the reading, if any (expected: a reset).
        self.error: trio.BrokenResourceError | None = None
        self.sent_end = False
        #: Set by the client when it stops reading, HELD_BACK bytes early.
        self.paused = trio.Event()
        #: Set by the server just before it closes.
        self.server_closing = trio.Event()

    async def run(self) -> None:
        stream = self.stream
        pause_at = len(ANSWER_BYTES) - HELD_BACK
        while len(self.data) < pause_at:
            chunk = await stream.receive_some(min(65536, pause_at - len(self.data)))
            assert chunk, "EOF before the server finished sending"
            self.data += chunk
        self.paused.set()
        await self.server_closing.wait()
        # Let the server's close run to where it waits (adieu) or is done
        # (plain close) before reading on.
        await trio.testing.wait_all_tasks_blocked()
        try:
            while chunk := await stream.receive_some(65536):
                self.data += chunk
                await self._answer_shutdown(stream)
        except trio.BrokenResourceError as exc:
            self.error = exc
            return
        await stream.send_eof()

    async def _answer_shutdown(self, stream: trio.SocketStream) -> None:
        frames, _ = parse_frames(bytes(self.data[PREAMBLE_SIZE:]))
        if not self.sent_end and any(kind == SHUTDOWN for kind, _ in frames):
            self.sent_end = True
            await stream.send_all(CLIENT_END)
            await stream.send_eof()


Serve = Callable[[trio.SocketStream, SlowClient], Awaitable[None]]


async def run_scenario(serve: Serve) -> SlowClient:
    """Connect the slow client to a server that runs ``serve(accepted,
    client)``; return the client once both are done."""
    async with tcp_listener() as listener:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
        await sock.connect(("127.0.0.1", port_of(listener)))
        client = SlowClient(trio.SocketStream(sock))
        # The requests are sent before the server even accepts: they all
        # sit in the server's kernel receive queue.
        await client.stream.send_all(REQUEST_BYTES)
        accepted = await listener.accept()
        tune_server_socket(accepted.socket)
        async with client.stream, trio.open_nursery() as nursery:
            nursery.start_soon(client.run)
            await serve(accepted, client)
    return client


async def prepare_to_close(accepted: trio.SocketStream, client: SlowClient) -> None:
    """Called when the server's last send has returned: wait until the
    client has stopped reading, check that a plain close would now destroy
    answers, and tell the client the server is closing."""
    await client.paused.wait()
    # Request bytes nobody read sit in the server's receive queue...
    assert unread_bytes(accepted.socket) > 0
    # ...and of the HELD_BACK bytes of answers the client has not read,
    # most have not even reached its kernel: they are in the server's.
    assert unread_bytes(client.stream.socket) < HELD_BACK // 2
    client.server_closing.set()


@pytest.mark.parametrize("close", ["aclose", "shutdown"])
async def test_adieu_close_with_unread_input_delivers_every_byte(close: str) -> None:
    terminations: list[adieu.Termination] = []

    async def serve(accepted: trio.SocketStream, client: SlowClient) -> None:
        # A receive buffer of one byte: the connection's reader stops after
        # its first read, leaving the other requests in the kernel.
        async with adieu.wrap_stream(accepted, "server", receive_buffer_size=1) as conn:
            for answer in ANSWERS:
                await conn.send(answer)
            await prepare_to_close(accepted, client)
            if close == "aclose":
                await conn.aclose()
            else:
                await conn.shutdown()
        assert conn.termination is not None
        terminations.append(conn.termination)

    client = await run_scenario(serve)

    assert client.error is None
    data = bytes(client.data)
    # Every byte of every answer, in order.
    assert data[: len(ANSWER_BYTES)] == ANSWER_BYTES
    frames, rest = parse_frames(data[PREAMBLE_SIZE:])
    assert rest == b""
    assert frames[: len(ANSWERS)] == [(MESSAGE, a) for a in ANSWERS]
    [termination] = terminations
    # The requests the application never read were discarded and counted.
    assert termination.messages_received == len(REQUESTS)
    assert termination.messages_discarded == len(REQUESTS)
    assert termination.messages_sent == len(ANSWERS)
    if close == "aclose":
        # aclose() before the client's END cannot send the server's END
        # (the server never ends first): the answers, then EOF.
        assert frames[len(ANSWERS) :] == []
    else:
        # The graceful path: SHUTDOWN, the client's END, the server's END
        # acknowledging none of the requests (all discarded).
        assert client.sent_end
        assert [kind for kind, _ in frames[len(ANSWERS) :]] == [SHUTDOWN, END]
        assert frames[-1] == (END, (0).to_bytes(8, "big"))
        assert termination.kind is TerminationKind.CLEAN


async def test_plain_close_with_unread_input_loses_answers() -> None:
    """The contrast: the same scenario, the same bytes, but the server ends
    with a plain ``socket.close()``."""

    async def serve(accepted: trio.SocketStream, client: SlowClient) -> None:
        await accepted.send_all(SERVER_PREAMBLE)
        for answer in ANSWERS:
            await accepted.send_all(message_frame(answer))
        assert unread_bytes(accepted.socket) == len(REQUEST_BYTES)
        await prepare_to_close(accepted, client)
        accepted.socket.close()

    client = await run_scenario(serve)

    data = bytes(client.data)
    # The client got a prefix of the answers, and lost the rest.
    assert data == ANSWER_BYTES[: len(data)]
    assert len(data) < len(ANSWER_BYTES)
    lost = len(ANSWER_BYTES) - len(data)
    assert lost >= HELD_BACK // 2
    # ...and was told only "connection reset".
    assert client.error is not None
    assert isinstance(client.error.__cause__, ConnectionResetError)
