"""What the test folders share (each folder adds its own support module).

* The wire format written out by hand from the protocol's specification, so
  that a raw peer never borrows the code under test to speak to it.
* The answering handler the server and fault tests run.
* A connect flood, run as a process of its own.

``tests/conftest.py`` puts this folder on the import path (pytest's default
import mode), so any test imports it as ``shared_support``.
"""

from __future__ import annotations

import struct

import adieu

# --------------------------------------------------------------- wire format

#: The preambles of wire protocol version 1.
CLIENT_PREAMBLE = b"ADIEU/\x01C"
SERVER_PREAMBLE = b"ADIEU/\x01S"
PREAMBLE_SIZE = 8

MESSAGE = 0x01
END = 0x02
SHUTDOWN = 0x03

_HEADER = struct.Struct(">BI")


def frame(kind: int, payload: bytes = b"") -> bytes:
    """One frame: type u8, payload length u32be, payload."""
    return _HEADER.pack(kind, len(payload)) + payload


def message_frame(data: bytes) -> bytes:
    """A MESSAGE frame carrying ``data``."""
    return frame(MESSAGE, data)


def header(kind: int, length: int) -> bytes:
    """A frame header alone, announcing ``length`` bytes of payload."""
    return _HEADER.pack(kind, length)


CLIENT_END = frame(END)


def server_end(count: int) -> bytes:
    """The server's END frame, acknowledging ``count`` client messages."""
    return frame(END, struct.pack(">Q", count))


def parse_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split ``data`` (what follows a preamble) into whole frames and the
    bytes of an incomplete last frame."""
    frames: list[tuple[int, bytes]] = []
    offset = 0
    while len(data) - offset >= _HEADER.size:
        kind, length = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if end > len(data):
            break
        frames.append((kind, data[offset + _HEADER.size : end]))
        offset = end
    return frames, data[offset:]


# ------------------------------------------------------ the answering handler


def reply_to(message: bytes) -> bytes:
    """What the answering handler sends back for ``message``."""
    return b"re:" + message


async def answer(conn: adieu.Connection) -> int:
    """The answering handler: one reply per request until the client's END;
    returns how many requests it answered."""
    answered = 0
    async for message in conn:
        await conn.send(reply_to(message))
        answered += 1
    return answered


# ------------------------------------------------------------ a connect flood

#: A process that floods a port on 127.0.0.1 (its one argument) with
#: non-blocking connects in a loop, bounded by a count and a time. The first
#: 2,000 sockets are held to the end (the oldest are those a server's backlog
#: holds); later ones are closed 2,000 connects after they opened, so the
#: process stays under its descriptor limit.
CONNECT_FLOOD_SCRIPT = """
import collections, resource, socket, sys, time
port = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 5000), hard))
kept, rotating = [], collections.deque()
end = time.monotonic() + 20
print("flooding", flush=True)
for _ in range(200_000):
    if time.monotonic() > end:
        break
    sock = socket.socket()
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    except OSError:
        sock.close()
        continue
    if len(kept) < 2000:
        kept.append(sock)
        continue
    rotating.append(sock)
    if len(rotating) > 2000:
        rotating.popleft().close()
"""
