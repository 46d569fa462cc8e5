"""The one client every server is measured with.

Plain non-blocking sockets and :mod:`select.epoll`, no framework: the client
does the same small amount of work whichever server it talks to, so that only
the server differs between the variants of a cell. It speaks three framings:

* adieu's wire format: the preamble ``ADIEU/\\x01C`` (the server's is
  ``ADIEU/\\x01S``), then frames of type (u8) + length (u32, big-endian) +
  payload: MESSAGE 0x01, END 0x02 (the client's is empty, the server's
  carries a u64 count of client messages its application received),
  SHUTDOWN 0x03 (u32 grace in ms + a UTF-8 reason);
* a naive 4-byte big-endian length prefix;
* raw bytes, unframed (the reply is complete when as many bytes came back as
  were sent);
* WebSocket (RFC 6455), for the trio-websocket and websockets servers: an
  HTTP/1.1 upgrade, then binary frames, the client's masked with the key 0
  (so that the masked payload is the payload itself), the server's unmasked;
  a Close frame answers the server's.

Every server echoes, and an echoed request is byte for byte the request
(adieu's MESSAGE header included; a WebSocket reply differs only in its
header), so the throughput loop only counts bytes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import errno
import functools
import json
import math
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

ADIEU_PREAMBLE = b"ADIEU/\x01C"
ADIEU_SERVER_PREAMBLE = b"ADIEU/\x01S"
MESSAGE = 0x01
END = 0x02
SHUTDOWN = 0x03
_FRAME = struct.Struct(">BI")
_U64 = struct.Struct(">Q")
CLIENT_END = _FRAME.pack(END, 0)

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_RESET = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

#: Seconds a blocking socket operation of the client may take before the run
#: is declared broken (a server that lost a reply would otherwise hang it).
_BLOCKING_TIMEOUT = 30.0
#: Bytes read per recv: large enough that a 100 KiB reply takes few calls.
_READ_SIZE = 1 << 18
#: Buffers per sendmsg (below the usual IOV_MAX of 1024).
_MAX_IOV = 512
#: Disagreements between the server's report and the client described in a
#: shutdown run's result: enough to see a pattern, few enough to read.
_DISAGREEMENT_SAMPLES = 5


@dataclasses.dataclass(frozen=True)
class Framing:
    name: str
    preamble: bytes
    server_preamble: bytes
    header: Callable[[int], bytes]
    #: What the client sends before its half-close (adieu: its END frame).
    end: bytes
    #: The header of the server's reply to a ``size``-byte message, where it
    #: differs from the request's.
    reply_header: Callable[[int], bytes] | None = None
    #: The server answers the preamble with an HTTP response (WebSocket).
    http_upgrade: bool = False


ADIEU = Framing(
    "adieu",
    ADIEU_PREAMBLE,
    ADIEU_SERVER_PREAMBLE,
    lambda n: _FRAME.pack(MESSAGE, n),
    CLIENT_END,
)
LENGTH_PREFIX = Framing("length prefix", b"", b"", lambda n: n.to_bytes(4, "big"), b"")
RAW = Framing("raw", b"", b"", lambda n: b"", b"")


def _ws_header(size: int, masked: bool) -> bytes:
    """A final binary frame's header; masked with the key 0 if ``masked``."""
    mask = 0x80 if masked else 0
    if size < 126:
        head = bytes((0x82, mask | size))
    elif size < 1 << 16:
        head = bytes((0x82, mask | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, mask | 127)) + size.to_bytes(8, "big")
    return head + bytes(4) if masked else head


WS_CLOSE = 0x8
#: The client's Close frame: code 1000 (normal closure), masked with key 0.
WS_CLIENT_CLOSE = bytes((0x88, 0x82)) + bytes(4) + (1000).to_bytes(2, "big")
WS_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
WEBSOCKET = Framing(
    "WebSocket",
    WS_UPGRADE,
    b"",
    functools.partial(_ws_header, masked=True),
    WS_CLIENT_CLOSE,
    reply_header=functools.partial(_ws_header, masked=False),
    http_upgrade=True,
)

FRAMINGS = {"adieu": ADIEU, "trio_naive": LENGTH_PREFIX, "asyncio": LENGTH_PREFIX}
FRAMINGS["trio_raw"] = RAW
FRAMINGS["trio_graceful"] = RAW
FRAMINGS["trio_websocket"] = FRAMINGS["websockets"] = WEBSOCKET


def _ws_frames(data: bytearray) -> Iterable[tuple[int, int, int]]:
    """``(opcode, payload start, payload end)`` of each complete unmasked
    frame at the start of ``data``; stops at the first incomplete one."""
    pos = 0
    while len(data) - pos >= 2:
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        head = 2
        if length == 126:
            head = 4
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif length == 127:
            head = 10
            length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        if len(data) - pos < head + length:
            return
        yield opcode, pos + head, pos + head + length
        pos += head + length


def read_http_response(sock: socket.socket) -> bytes:
    """The head of an HTTP response (to the blank line), from a blocking
    socket, checked to be 101 Switching Protocols."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed during the WebSocket upgrade")
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101") or rest:
        raise ConnectionError(f"unexpected upgrade response {head[:40]!r}")
    return head


def _schedstat_seconds(pid: int, field: int) -> float | None:
    """A field of the scheduler's nanosecond accounting (``schedstat``)
    summed over every thread of process ``pid``, in seconds (field 0: time
    on a CPU, 1: time runnable but waiting for one), or ``None`` where the
    kernel does not keep it."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[field])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return total / 1e9


def process_cpu_seconds(pid: int) -> float:
    """CPU time used so far by every thread of process ``pid``, in seconds,
    from the scheduler's nanosecond accounting (``schedstat``), or from
    ``/proc/<pid>/stat`` in clock ticks where that is missing."""
    seconds = _schedstat_seconds(pid, 0)
    if seconds is not None:
        return seconds
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_wait_seconds(pid: int) -> float:
    """Time every thread of process ``pid`` has spent so far runnable but
    waiting for a CPU, in seconds (``schedstat``; 0 where it is missing):
    what the process lost to other processes on its core."""
    return _schedstat_seconds(pid, 1) or 0.0


def cores_busy_seconds(cores: Iterable[int]) -> float:
    """CPU time spent on ``cores`` by anything (user, system, interrupts,
    steal) since boot, in seconds, from ``/proc/stat`` (clock ticks)."""
    wanted = {f"cpu{c}" for c in cores}
    ticks = 0
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] in wanted:
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(
                    int, fields[1:9]
                )
                ticks += user + nice + system + irq + softirq + steal
    return ticks / os.sysconf("SC_CLK_TCK")


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from a blocking socket."""
    parts = []
    while size:
        chunk = sock.recv(min(size, _READ_SIZE))
        if not chunk:
            raise ConnectionError("the server closed the connection unexpectedly")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def recv_until_eof(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(_READ_SIZE):
        parts.append(chunk)
    return b"".join(parts)


def connect(port: int, framing: Framing) -> socket.socket:
    """A blocking connection that has exchanged preambles."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=_BLOCKING_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if framing.http_upgrade:
        sock.sendall(framing.preamble)
        read_http_response(sock)
    elif framing.preamble:
        sock.sendall(framing.preamble)
        got = recv_exactly(sock, len(framing.server_preamble))
        if got != framing.server_preamble:
            raise ConnectionError(f"unexpected server preamble {got!r}")
    return sock


def finish(socks: dict[socket.socket, int], framing: Framing) -> None:
    """End connections whose replies have all arrived (``socks`` maps each
    to the number of messages it sent): END (adieu), then half-close, then
    read to the server's EOF. For adieu, check that the server's END counts
    every message sent."""
    for sock in socks:
        sock.setblocking(True)
        sock.settimeout(_BLOCKING_TIMEOUT)
        if framing.end:
            sock.sendall(framing.end)
        sock.shutdown(socket.SHUT_WR)
    for sock, sent in socks.items():
        rest = recv_until_eof(sock)
        sock.close()
        if framing is ADIEU:
            expected = _FRAME.pack(END, _U64.size) + _U64.pack(sent)
            if rest != expected:
                raise ConnectionError(
                    f"expected the server's END counting {sent} messages, got {rest!r}"
                )
        elif framing.http_upgrade:
            if rest[:1] != bytes((0x80 | WS_CLOSE,)):
                raise ConnectionError(
                    f"expected the server's Close frame, got {rest!r}"
                )
        elif rest:
            raise ConnectionError(f"{len(rest)} unexpected bytes after the last reply")


class _Conn:
    __slots__ = ("fd", "out", "remaining", "sent", "sock", "times", "want_out")

    def __init__(self, sock: socket.socket, reply_size: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.out: list[Any] = []
        self.remaining = reply_size
        self.times: collections.deque[float] = collections.deque()
        self.sent = 0
        self.want_out = False


def _flush(conn: _Conn, ep: select.epoll) -> None:
    """Send what ``conn`` has queued, as far as the socket takes it; watch
    for writability while something is left."""
    out = conn.out
    while out:
        try:
            if len(out) == 1:
                n = conn.sock.send(out[0])
            else:
                n = conn.sock.sendmsg(out[:_MAX_IOV])
        except BlockingIOError:
            break
        while n:
            size = len(out[0])
            if n < size:
                out[0] = memoryview(out[0])[n:]
                break
            del out[0]
            n -= size
        if n:
            break  # a partial send: the socket's buffer is full
    if out and not conn.want_out:
        ep.modify(conn.fd, _EPOLLIN | _EPOLLOUT)
        conn.want_out = True
    elif not out and conn.want_out:
        ep.modify(conn.fd, _EPOLLIN)
        conn.want_out = False


@dataclasses.dataclass
class ThroughputResult:
    messages: int
    seconds: float
    rtts: list[float]
    server_cpu: float
    client_cpu: float
    #: CPU time used on the measured cores by anything else (other
    #: processes, interrupts) during the measurement
    others_cpu: float


def throughput(
    port: int,
    server_pid: int,
    framing: Framing,
    size: int,
    *,
    connections: int,
    window: int,
    warmup: float,
    duration: float,
    cores: Iterable[int] = (),
    alone: bool = False,
) -> ThroughputResult:
    """Echo ``size``-byte messages over ``connections`` connections with
    ``window`` requests in flight on each (1: ping-pong); count the replies
    completed during ``duration`` seconds after ``warmup``.

    ``alone``: one request in flight in all, the connections taking turns,
    so that the server never finds two messages to handle at once (nothing
    batches: every message costs a wake-up of its own)."""
    payload = os.urandom(size)
    request = framing.header(size) + payload
    reply = (framing.reply_header or framing.header)(size) + payload
    reply_size = len(reply)
    socks = [connect(port, framing) for _ in range(connections)]
    for sock in socks:  # one checked exchange per connection
        sock.sendall(request)
        if recv_exactly(sock, reply_size) != reply:
            raise ConnectionError(f"{framing.name}: the echo differs from the request")
    ep = select.epoll()
    conns: dict[int, _Conn] = {}
    for sock in socks:
        sock.setblocking(False)
        conn = _Conn(sock, reply_size)
        conn.sent = 1
        conns[conn.fd] = conn
        ep.register(conn.fd, _EPOLLIN)
    buffer = bytearray(_READ_SIZE)
    rtts: list[float] = []
    clock = time.perf_counter
    start = clock()
    turns = list(conns.values())
    for conn in turns[:1] if alone else turns:
        for _ in range(1 if alone else window):
            conn.out.append(request)
            conn.times.append(start)
            conn.sent += 1
        _flush(conn, ep)
    turn = 0
    warm_at = start + warmup
    end_at = warm_at + duration
    measuring = stopping = False
    counted = 0
    cores = tuple(cores)
    t0 = t1 = cpu0 = cpu1 = ccpu0 = ccpu1 = busy0 = busy1 = 0.0
    try:
        while True:
            now = clock()
            if not measuring and now >= warm_at:
                measuring = True
                busy0 = cores_busy_seconds(cores)
                t0, cpu0, ccpu0 = (
                    now,
                    process_cpu_seconds(server_pid),
                    time.thread_time(),
                )
            if measuring and not stopping and now >= end_at and counted == 0:
                # A client starved of its core (a loaded machine, the smoke
                # run's short windows) may reach the end before a single
                # reply: measure on until one arrives, so that a rate is
                # never 0 by accident; give up after the usual bound.
                if now > warm_at + duration + _BLOCKING_TIMEOUT:
                    raise TimeoutError(f"{framing.name}: no reply in the run")
                end_at = now + 0.001
            if measuring and not stopping and now >= end_at:
                stopping = True
                t1, cpu1, ccpu1 = (
                    now,
                    process_cpu_seconds(server_pid),
                    time.thread_time(),
                )
                busy1 = cores_busy_seconds(cores)
            if stopping:
                if not any(c.times for c in conns.values()):
                    break
                if now > end_at + _BLOCKING_TIMEOUT:
                    raise TimeoutError(f"{framing.name}: replies missing after the run")
            mark = warm_at if not measuring else end_at if not stopping else now + 0.05
            for fd, events in ep.poll(max(0.0, min(0.05, mark - now))):
                conn = conns[fd]
                if events & _EPOLLOUT:
                    _flush(conn, ep)
                if not events & ~_EPOLLOUT:
                    continue
                try:
                    n = conn.sock.recv_into(buffer)
                except BlockingIOError:
                    continue
                if n == 0:
                    raise ConnectionError(
                        f"{framing.name}: the server closed a connection"
                    )
                t = clock()
                remaining = conn.remaining
                while n >= remaining:
                    n -= remaining
                    remaining = reply_size
                    sent_at = conn.times.popleft()
                    if measuring and not stopping:
                        rtts.append(t - sent_at)
                        counted += 1
                    if not stopping:
                        if alone:
                            turn = (turn + 1) % len(turns)
                            nxt = turns[turn]
                            nxt.out.append(request)
                            nxt.times.append(t)
                            nxt.sent += 1
                            _flush(nxt, ep)
                        else:
                            conn.out.append(request)
                            conn.times.append(t)
                            conn.sent += 1
                conn.remaining = remaining - n
                if conn.out:
                    _flush(conn, ep)
    finally:
        ep.close()
    finish({conn.sock: conn.sent for conn in conns.values()}, framing)
    server_cpu, client_cpu = cpu1 - cpu0, ccpu1 - ccpu0
    others = max(0.0, busy1 - busy0 - server_cpu - client_cpu) if cores else 0.0
    return ThroughputResult(counted, t1 - t0, rtts, server_cpu, client_cpu, others)


# ------------------------------------------------------------ many sockets


def connect_many(port: int, count: int, framing: Framing) -> list[socket.socket]:
    """``count`` blocking connects in a row, each sending the preamble at
    once (the server's preamble is left unread). Keep ``count`` below the
    listen backlog: connects beyond it wait for the server to accept."""
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.connect(("127.0.0.1", port))
        if framing.preamble:
            sock.send(framing.preamble)
        socks.append(sock)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


# --------------------------------------------------------------- shutdown


class _Peer:
    """One client connection of the shutdown run."""

    __slots__ = (
        "closed_at",
        "eof",
        "established",
        "fd",
        "half_close",
        "in_flight",
        "inbuf",
        "out",
        "port",
        "replies",
        "reset",
        "sent",
        "server_end",
        "shutdown_at",
        "sock",
        "stubborn",
        "want_out",
    )

    def __init__(self, sock: socket.socket, stubborn: bool) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        #: the local port: the server's report names the connection by it
        self.port: int = sock.getsockname()[1]
        self.stubborn = stubborn
        self.established = False
        self.inbuf = bytearray()
        self.out: list[Any] = []
        self.want_out = True  # registered for the connect's completion
        self.half_close = False
        self.sent = 0
        self.replies = 0
        self.in_flight = 0
        self.shutdown_at: float | None = None
        self.server_end: int | None = None
        self.eof = False
        self.reset = False
        self.closed_at: float | None = None


def _is_open(peer: _Peer) -> bool:
    return peer.closed_at is None


@dataclasses.dataclass
class ShutdownClientResult:
    connections: int
    stubborn: int
    #: compliant connections that ended with the server's END, then EOF
    clean: int
    #: compliant connections the server reset or ended without its END (it
    #: could not finish them within the grace period; the client is told)
    compliant_cut: int
    #: connections reset by the server (the stubborn ones are expected here)
    reset: int
    #: replies missing on connections that ended with the server's END: a
    #: loss nobody was told about (must be 0)
    lost_replies: int
    #: connections whose server END count differs from the number of
    #: messages the client sent (must be 0)
    end_mismatches: int
    #: requests left unanswered on connections that were cut (the client
    #: is told, by the reset)
    cut_requests: int
    requests: int
    #: connections on which the server's report and the client disagree:
    #: the server says CLEAN but the client did not get the server's END
    #: and EOF, or the client got END (with the right count) and EOF but
    #: the server says otherwise, or the report does not list the
    #: connection at all (must be 0)
    disagreements: int
    #: a few of them, to say what happened: the client's port, what the
    #: server reported and what the client saw
    disagreement_samples: list[dict[str, Any]]
    #: seconds from writing the shutdown command to the last connection's
    #: end, as the client saw it
    client_seconds: float
    #: when the client saw the last connection end, relative to the end of
    #: the server's grace period (both processes read the same monotonic
    #: clock); includes the client's own delay in noticing
    client_past_deadline: float
    #: when the last client received SHUTDOWN, in seconds after the server's
    #: shutdown started (how long asking everyone took)
    last_shutdown_seen: float
    #: connections that ended (as the client saw it) at or after the end of
    #: the server's grace period: those the server's cut had to end, reset
    #: or closed quietly
    ended_after_deadline: int
    #: seconds from the start of the traffic to the server's answer (the
    #: shutdown's report)
    window_seconds: float
    #: CPU seconds used during that window by the server, by the client,
    #: and by anything else on the measured cores (other processes,
    #: interrupts): what says whether the machine was quiet
    server_cpu: float
    client_cpu: float
    others_cpu: float
    #: seconds the server, and the client, were runnable but waited for
    #: their core, in the same window (other processes on their core)
    server_wait: float
    client_wait: float
    server: dict[str, Any]


class ShutdownClient:
    """``count`` adieu connections to a server that will be shut down.

    ``busy``: every connection keeps one 64-byte request in flight. A
    compliant client, on SHUTDOWN, stops making requests, sends END and
    half-closes, then reads the remaining replies and the server's END until
    EOF. ``stubborn_every``: every n-th connection ignores SHUTDOWN and goes
    on as before, until the server cuts it.
    """

    #: Connects in flight at once: well below the listen backlog.
    CONNECT_WINDOW = 256

    def __init__(
        self, port: int, count: int, *, busy: bool, stubborn_every: int = 0
    ) -> None:
        self.port = port
        self.count = count
        self.busy = busy
        self.stubborn_every = stubborn_every
        self.request = _FRAME.pack(MESSAGE, 64) + os.urandom(64)
        self.ep = select.epoll()
        self.peers: dict[int, _Peer] = {}
        self.open = 0
        self.established = 0
        self.buffer = bytearray(_READ_SIZE)
        #: what the server wrote after its answer's line, read with it (the
        #: start of its next line, if any)
        self.answer_rest = b""

    # -- connecting

    def connect_all(self) -> None:
        """Open every connection and wait for every server preamble."""
        started = 0
        deadline = time.monotonic() + 60
        while self.established < self.count:
            window = started - self.established
            while started < self.count and window < self.CONNECT_WINDOW:
                stubborn = (
                    bool(self.stubborn_every) and started % self.stubborn_every == 0
                )
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = sock.connect_ex(("127.0.0.1", self.port))
                if err not in (0, errno.EINPROGRESS):
                    raise OSError(err, os.strerror(err))
                peer = _Peer(sock, stubborn)
                peer.out.append(ADIEU_PREAMBLE)
                self.peers[peer.fd] = peer
                self.ep.register(peer.fd, _EPOLLIN | _EPOLLOUT)
                started += 1
                window += 1
                self.open += 1
            self.poll(0.05)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.established} of {self.count} connected")

    # -- the event loop

    def send(self, peer: _Peer, data: bytes) -> None:
        peer.out.append(data)
        self.flush(peer)

    def flush(self, peer: _Peer) -> None:
        out = peer.out
        try:
            while out:
                n = peer.sock.send(out[0])
                if n < len(out[0]):
                    out[0] = memoryview(out[0])[n:]
                    break
                del out[0]
        except BlockingIOError:
            pass
        except _RESET:
            self.closed(peer, reset=True)
            return
        if not out and peer.half_close:
            peer.half_close = False
            with contextlib.suppress(OSError):
                peer.sock.shutdown(socket.SHUT_WR)
        if out and not peer.want_out:
            self.ep.modify(peer.fd, _EPOLLIN | _EPOLLOUT)
            peer.want_out = True
        elif not out and peer.want_out:
            self.ep.modify(peer.fd, _EPOLLIN)
            peer.want_out = False

    def closed(self, peer: _Peer, *, reset: bool) -> None:
        if peer.closed_at is not None:
            return
        peer.closed_at = time.perf_counter()
        peer.reset = reset
        peer.eof = not reset
        self.ep.unregister(peer.fd)
        peer.sock.close()
        self.open -= 1

    def start_traffic(self) -> None:
        if not self.busy:
            return
        for peer in self.peers.values():
            peer.sent += 1
            peer.in_flight += 1
            self.send(peer, self.request)

    def poll(
        self, timeout: float, extra: dict[int, Callable[[], None]] | None = None
    ) -> None:
        for fd, events in self.ep.poll(timeout):
            if extra and fd in extra:
                extra[fd]()
                continue
            peer = self.peers[fd]
            if events & _EPOLLOUT and _is_open(peer):
                self.flush(peer)
            if events & ~_EPOLLOUT and _is_open(peer):
                self.readable(peer)

    def readable(self, peer: _Peer) -> None:
        try:
            n = peer.sock.recv_into(self.buffer)
        except BlockingIOError:
            return
        except _RESET:
            self.closed(peer, reset=True)
            return
        if n == 0:
            self.closed(peer, reset=False)
            return
        inbuf = peer.inbuf
        inbuf += memoryview(self.buffer)[:n]
        pos = 0
        if not peer.established:
            if len(inbuf) < len(ADIEU_SERVER_PREAMBLE):
                return
            if inbuf[:8] != ADIEU_SERVER_PREAMBLE:
                raise ConnectionError(
                    f"unexpected server preamble {bytes(inbuf[:8])!r}"
                )
            peer.established = True
            self.established += 1
            pos = 8
        size = len(inbuf)
        while size - pos >= 5:
            kind, length = _FRAME.unpack_from(inbuf, pos)
            if size - pos - 5 < length:
                break
            body = pos + 5
            pos = body + length
            if kind == MESSAGE:
                peer.replies += 1
                peer.in_flight -= 1
                if self.busy and (peer.stubborn or peer.shutdown_at is None):
                    peer.sent += 1
                    peer.in_flight += 1
                    self.send(peer, self.request)
            elif kind == SHUTDOWN:
                peer.shutdown_at = time.perf_counter()
                if not peer.stubborn:
                    peer.half_close = True
                    self.send(peer, CLIENT_END)
            elif kind == END:
                (peer.server_end,) = _U64.unpack_from(inbuf, body)
            else:
                raise ConnectionError(f"unknown frame type {kind:#x}")
        del inbuf[:pos]

    def run_shutdown(
        self,
        command_fd: int,
        answer_fd: int,
        *,
        traffic_seconds: float,
        timeout: float,
        server_pid: int,
        cores: Iterable[int] = (),
    ) -> ShutdownClientResult:
        """Run the traffic for ``traffic_seconds``, write ``shutdown`` to
        ``command_fd``, then serve every connection until it ends and the
        server's answer (a JSON line) has arrived on ``answer_fd``. CPU time
        is counted from the start of the traffic to the answer (``cores``:
        the cores on which other processes' CPU time is counted too; the
        window is at least ``traffic_seconds`` long, because the kernel
        counts it in ticks of 10 ms)."""
        cores = tuple(cores)
        started = time.perf_counter()
        busy0, cpu0, ccpu0, wait0, cwait0 = (
            cores_busy_seconds(cores),
            process_cpu_seconds(server_pid),
            time.thread_time(),
            process_wait_seconds(server_pid),
            process_wait_seconds(os.getpid()),
        )
        self.start_traffic()
        until = time.perf_counter() + traffic_seconds
        while (now := time.perf_counter()) < until:
            self.poll(until - now)
        answer = bytearray()

        def read_answer() -> None:
            answer.extend(os.read(answer_fd, 65536) or b"\n")

        self.ep.register(answer_fd, _EPOLLIN)
        extra = {answer_fd: read_answer}
        answered = cpu1 = wait1 = 0.0
        os.write(command_fd, b"shutdown\n")
        triggered = time.perf_counter()
        deadline = triggered + timeout
        while self.open or b"\n" not in answer:
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{self.open} connections still open {timeout} s after shutdown"
                )
            if b"\n" in answer and not cpu1:
                answered, cpu1 = time.perf_counter(), process_cpu_seconds(server_pid)
                wait1 = process_wait_seconds(server_pid)
            self.poll(0.05, extra)
        self.ep.unregister(answer_fd)
        self.ep.close()
        if not cpu1:
            answered, cpu1 = time.perf_counter(), process_cpu_seconds(server_pid)
            wait1 = process_wait_seconds(server_pid)
        ccpu1, busy1 = time.thread_time(), cores_busy_seconds(cores)
        cwait1 = process_wait_seconds(os.getpid())
        first, _, self.answer_rest = bytes(answer).partition(b"\n")
        server = json.loads(first)
        return self.result(
            triggered,
            server,
            window=answered - started,
            server_cpu=cpu1 - cpu0,
            server_wait=wait1 - wait0,
            client_cpu=ccpu1 - ccpu0,
            client_wait=cwait1 - cwait0,
            busy=busy1 - busy0,
        )

    def disagreements(
        self, reported: list[list[Any]]
    ) -> tuple[int, list[dict[str, Any]]]:
        """Compare each connection's end as the client saw it with the
        server's report (``servers.peer_entry`` lists), matched by the
        client's local port. Returns the number of disagreements and the
        first few of them."""
        by_port = {entry[0]: entry for entry in reported}
        count = 0
        samples: list[dict[str, Any]] = []
        for peer in self.peers.values():
            entry = by_port.get(peer.port)
            got_end = peer.eof and peer.server_end is not None
            if entry is None:
                wrong = True
            elif entry[1] == "clean":
                wrong = not got_end
            else:
                wrong = got_end and peer.server_end == peer.sent
            if not wrong:
                continue
            count += 1
            if len(samples) < _DISAGREEMENT_SAMPLES:
                samples.append(
                    {
                        "port": peer.port,
                        "stubborn": peer.stubborn,
                        "server": entry,
                        "client": {
                            "server_end": peer.server_end,
                            "eof": peer.eof,
                            "reset": peer.reset,
                            "sent": peer.sent,
                            "replies": peer.replies,
                            "shutdown_seen": peer.shutdown_at is not None,
                        },
                    }
                )
        return count, samples

    def result(
        self,
        triggered: float,
        server: dict[str, Any],
        *,
        window: float,
        server_cpu: float,
        server_wait: float,
        client_cpu: float,
        client_wait: float,
        busy: float,
    ) -> ShutdownClientResult:
        peers = list(self.peers.values())
        ended = [p for p in peers if p.eof and p.server_end is not None]
        cut = [p for p in peers if not (p.eof and p.server_end is not None)]
        last = max((p.closed_at or triggered) for p in peers)
        deadline = server["started_at"] + server["grace"]
        disagreements, samples = self.disagreements(server.pop("peers"))
        return ShutdownClientResult(
            connections=len(peers),
            stubborn=sum(1 for p in peers if p.stubborn),
            clean=sum(1 for p in ended if not p.stubborn),
            compliant_cut=sum(1 for p in cut if not p.stubborn),
            reset=sum(1 for p in peers if p.reset),
            lost_replies=sum(p.sent - p.replies for p in ended),
            end_mismatches=sum(1 for p in ended if p.server_end != p.sent),
            cut_requests=sum(p.sent - p.replies for p in cut),
            requests=sum(p.sent for p in peers),
            disagreements=disagreements,
            disagreement_samples=samples,
            client_seconds=last - triggered,
            client_past_deadline=last - server["started_at"] - server["grace"],
            last_shutdown_seen=max(
                (p.shutdown_at for p in peers if p.shutdown_at is not None),
                default=math.nan,
            )
            - server["started_at"],
            ended_after_deadline=sum(
                1 for p in peers if p.closed_at is None or p.closed_at >= deadline
            ),
            window_seconds=window,
            server_cpu=server_cpu,
            server_wait=server_wait,
            client_cpu=client_cpu,
            client_wait=client_wait,
            others_cpu=max(0.0, busy - server_cpu - client_cpu) if busy else 0.0,
            server=server,
        )


# ------------------------------------------------------------ closing


@dataclasses.dataclass
class CloseResult:
    connections: int
    #: connections that ended with the server's closing handshake, then EOF
    clean: int
    #: connections reset or ended otherwise
    cut: int
    #: seconds from writing the command to the last connection's end, as the
    #: client saw it
    client_seconds: float
    server: dict[str, Any]


class _Closing:
    __slots__ = ("done", "fd", "handshaken", "inbuf", "said_bye", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.inbuf = bytearray()
        self.handshaken = False
        self.said_bye = False
        self.done = False


class CloseClient:
    """``count`` idle connections to a server that will close them all with
    its closing handshake; the client answers as a well-behaved peer of that
    protocol would, and as cheaply as it can:

    * adieu: SHUTDOWN is answered with END and a half-close, then the server's
      END and EOF end the connection;
    * WebSocket: the server's Close frame is answered with the client's, then
      the server's EOF ends it;
    * raw Trio graceful close: the goodbye is read, then the server's EOF is
      answered by closing (the server reads to that EOF).

    Connections open ``CONNECT_WINDOW`` at a time, each completing its
    handshake (preamble, upgrade) before the run.
    """

    CONNECT_WINDOW = 256

    def __init__(self, port: int, count: int, framing: Framing) -> None:
        self.port = port
        self.count = count
        self.framing = framing
        self.ep = select.epoll()
        self.conns: dict[int, _Closing] = {}
        self.open = 0
        self.handshaken = 0
        self.clean = 0
        self.buffer = bytearray(_READ_SIZE)

    def connect_all(self) -> None:
        started = 0
        deadline = time.monotonic() + 60
        while self.handshaken < self.count:
            while started < self.count and started - self.handshaken < (
                self.CONNECT_WINDOW
            ):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                err = sock.connect_ex(("127.0.0.1", self.port))
                if err not in (0, errno.EINPROGRESS):
                    raise OSError(err, os.strerror(err))
                conn = _Closing(sock)
                self.conns[conn.fd] = conn
                self.ep.register(conn.fd, _EPOLLOUT)
                started += 1
                self.open += 1
            self.poll(0.05)
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.handshaken} of {self.count} connected")

    def poll(
        self, timeout: float, extra: dict[int, Callable[[], None]] | None = None
    ) -> None:
        for fd, events in self.ep.poll(timeout):
            if extra and fd in extra:
                extra[fd]()
                continue
            conn = self.conns[fd]
            if conn.done:
                continue
            if events & _EPOLLOUT:
                # The connect completed: send the preamble or the upgrade,
                # small enough for an empty socket buffer.
                self.ep.modify(fd, _EPOLLIN)
                if self.framing.preamble:
                    conn.sock.send(self.framing.preamble)
                else:
                    conn.handshaken = True
                    self.handshaken += 1
                continue
            self.readable(conn)

    def end(self, conn: _Closing, *, clean: bool) -> None:
        conn.done = True
        self.ep.unregister(conn.fd)
        conn.sock.close()
        self.open -= 1
        self.clean += clean

    def readable(self, conn: _Closing) -> None:
        try:
            n = conn.sock.recv_into(self.buffer)
        except BlockingIOError:
            return
        except _RESET:
            self.end(conn, clean=False)
            return
        if n == 0:
            self.end(conn, clean=conn.said_bye)
            return
        inbuf = conn.inbuf
        inbuf += memoryview(self.buffer)[:n]
        framing = self.framing
        if not conn.handshaken:
            if framing.http_upgrade:
                head, sep, _ = inbuf.partition(b"\r\n\r\n")
                if not sep:
                    return
                if not head.startswith(b"HTTP/1.1 101"):
                    raise ConnectionError(f"upgrade refused: {bytes(head[:40])!r}")
                del inbuf[: len(head) + len(sep)]
            else:
                if len(inbuf) < len(framing.server_preamble):
                    return
                del inbuf[: len(framing.server_preamble)]
            conn.handshaken = True
            self.handshaken += 1
        if framing is ADIEU:
            pos = 0
            while len(inbuf) - pos >= 5:
                kind, length = _FRAME.unpack_from(inbuf, pos)
                if len(inbuf) - pos - 5 < length:
                    break
                pos += 5 + length
                if kind == SHUTDOWN:
                    conn.sock.send(CLIENT_END)
                    conn.sock.shutdown(socket.SHUT_WR)
                elif kind == END:
                    conn.said_bye = True
            del inbuf[:pos]
        elif framing.http_upgrade:
            pos = 0
            for opcode, _, end in _ws_frames(inbuf):
                pos = end
                if opcode == WS_CLOSE:
                    conn.sock.send(WS_CLIENT_CLOSE)
                    conn.said_bye = True
            del inbuf[:pos]
        elif inbuf:
            conn.said_bye = True  # the goodbye
            inbuf.clear()

    def run_close(
        self, command: bytes, command_fd: int, answer_fd: int, *, timeout: float
    ) -> CloseResult:
        """Write ``command`` to ``command_fd``, then serve every connection
        until it ends and the server's answer (a JSON line) has arrived on
        ``answer_fd``."""
        answer = bytearray()

        def read_answer() -> None:
            answer.extend(os.read(answer_fd, 65536) or b"\n")

        self.ep.register(answer_fd, _EPOLLIN)
        extra = {answer_fd: read_answer}
        os.write(command_fd, command + b"\n")
        triggered = time.perf_counter()
        deadline = triggered + timeout
        last = triggered
        while self.open or b"\n" not in answer:
            if time.perf_counter() > deadline:
                raise TimeoutError(
                    f"{self.open} connections still open {timeout} s after {command!r}"
                )
            before = self.open
            self.poll(0.05, extra)
            if self.open != before:
                last = time.perf_counter()
        self.ep.unregister(answer_fd)
        self.ep.close()
        server = json.loads(answer.partition(b"\n")[0])
        if "error" in server:
            raise RuntimeError(f"server: {server['error']}")
        return CloseResult(
            connections=len(self.conns),
            clean=self.clean,
            cut=len(self.conns) - self.clean,
            client_seconds=last - triggered,
            server=server,
        )
