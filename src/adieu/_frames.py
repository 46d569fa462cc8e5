"""The adieu wire format, version 1: encoding and incremental decoding.

This module knows the byte layouts and their size limits, nothing about which
frame may come when (that is :mod:`adieu._state`). ``docs/protocol.rst`` is
the byte-for-byte specification; the constants here are its single source.

Layout::

    preamble  = "ADIEU/" version:u8 role:u8          8 bytes, once, first
    frame     = type:u8 length:u32be payload[length]
    MESSAGE   type 0x01, payload = the message (0 .. max_message_size bytes)
    END       type 0x02, payload = empty (client)
                                 | count:u64be (server: client messages
                                   delivered to its application)
    SHUTDOWN  type 0x03, payload = grace_ms:u32be reason:utf-8 (0..255 bytes)
                                   (server to client only)

All integers are unsigned, big-endian.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Final

from ._errors import MessageTooLarge, ProtocolError
from ._state import Role

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "END",
    "FRAME_HEADER",
    "MAGIC",
    "MAX_REASON_BYTES",
    "MESSAGE",
    "PREAMBLE_SIZE",
    "SHUTDOWN",
    "VERSION",
    "FrameDecoder",
    "encode_end",
    "encode_message_header",
    "encode_preamble",
    "encode_shutdown",
]

MAGIC = b"ADIEU/"
#: The protocol version this library speaks. A peer announcing another
#: version is refused with a ProtocolError that names both.
VERSION = 1
PREAMBLE_SIZE = len(MAGIC) + 2
_ROLE_BYTES = {Role.CLIENT: b"C", Role.SERVER: b"S"}
_BYTE_ROLES = {ord(v): k for k, v in _ROLE_BYTES.items()}

# Frame types. Values 0x00 and 0x04-0xFF are reserved for later versions; an
# unknown type is a ProtocolError. 0x41 ("A") is what a second preamble
# would start with, and gets its own message.
MESSAGE = 0x01
END = 0x02
SHUTDOWN = 0x03

#: type (1 byte) + payload length (4 bytes)
FRAME_HEADER = 5
_HEADER = struct.Struct(">BI")
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")

#: 1 MiB, the default of the ``websockets`` library: large enough for any
#: chat or RPC message, small enough that a hostile peer cannot make a
#: server allocate much per connection.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
#: The largest message size the frame header can express.
MAX_MESSAGE_SIZE_LIMIT = (1 << 32) - 1
#: A SHUTDOWN reason is a short human sentence; 255 bytes of UTF-8 keeps the
#: frame small and bounded.
MAX_REASON_BYTES = 255
#: Grace periods travel in whole milliseconds; this value means "unbounded".
_GRACE_UNBOUNDED = (1 << 32) - 1

_SERVER_END_SIZE = _U64.size
_MAX_SHUTDOWN_SIZE = _U32.size + MAX_REASON_BYTES


def encode_preamble(role: Role) -> bytes:
    """The 8 bytes a side of ``role`` sends before anything else."""
    return MAGIC + bytes([VERSION]) + _ROLE_BYTES[role]


def encode_message_header(size: int) -> bytes:
    """The 5-byte header of a MESSAGE frame whose payload is ``size`` bytes."""
    return _HEADER.pack(MESSAGE, size)


def encode_end(count: int | None) -> bytes:
    """An END frame; ``count`` is the server's count of client messages its
    application received, ``None`` for a client's END."""
    if count is None:
        return _HEADER.pack(END, 0)
    return _HEADER.pack(END, _SERVER_END_SIZE) + _U64.pack(count)


def encode_shutdown(grace_period: float, reason: str | None) -> bytes:
    """A SHUTDOWN frame granting ``grace_period`` seconds, with an optional
    ``reason``.

    Raises:
        ValueError: ``grace_period`` is negative or NaN, or ``reason`` is
            longer than :data:`MAX_REASON_BYTES` bytes once encoded as UTF-8.
    """
    if not grace_period >= 0:
        raise ValueError(f"grace_period must be >= 0, not {grace_period!r}")
    if math.isinf(grace_period):
        grace_ms = _GRACE_UNBOUNDED
    else:
        grace_ms = min(math.ceil(grace_period * 1000), _GRACE_UNBOUNDED - 1)
    return _shutdown_frame(grace_ms, reason)


#: Distinct (grace in ms, reason) SHUTDOWN frames kept. A server's shutdown
#: tells thousands of connections the same reason and, within a millisecond,
#: the same grace: the frame is encoded once per millisecond of the broadcast
#: rather than once per connection. 64 frames of at most 264 bytes each.
_SHUTDOWN_FRAMES_KEPT: Final = 64


@functools.lru_cache(maxsize=_SHUTDOWN_FRAMES_KEPT)
def _shutdown_frame(grace_ms: int, reason: str | None) -> bytes:
    reason_bytes = b"" if reason is None else reason.encode("utf-8")
    if len(reason_bytes) > MAX_REASON_BYTES:
        raise ValueError(
            f"a shutdown reason is at most {MAX_REASON_BYTES} bytes of UTF-8, "
            f"this one is {len(reason_bytes)}"
        )
    payload = _U32.pack(grace_ms) + reason_bytes
    return _HEADER.pack(SHUTDOWN, len(payload)) + payload


def decode_shutdown(payload: bytes) -> tuple[float, str | None]:
    """``(grace_period, reason)`` from a SHUTDOWN payload.

    Raises:
        ProtocolError: the payload is shorter than 4 bytes or its reason is not
            UTF-8.
    """
    if len(payload) < _U32.size:
        raise ProtocolError(
            f"SHUTDOWN frame of {len(payload)} bytes: at least 4 are required"
        )
    (grace_ms,) = _U32.unpack_from(payload)
    grace = math.inf if grace_ms == _GRACE_UNBOUNDED else grace_ms / 1000
    raw = payload[_U32.size :]
    try:
        reason = raw.decode("utf-8") if raw else None
    except UnicodeDecodeError as exc:
        raise ProtocolError("SHUTDOWN reason is not valid UTF-8") from exc
    return grace, reason


def decode_end(payload: bytes, sender: Role) -> int | None:
    """The count carried by an END frame from ``sender``.

    Raises:
        ProtocolError: the payload has the wrong size for that role.
    """
    if sender is Role.CLIENT:
        if payload:
            raise ProtocolError(
                f"a client's END frame is empty; got {len(payload)} bytes"
            )
        return None
    if len(payload) != _SERVER_END_SIZE:
        raise ProtocolError(f"a server's END frame carries 8 bytes; got {len(payload)}")
    (count,) = _U64.unpack(payload)
    return int(count)


def _describe_foreign(data: bytes) -> str:
    """A hint at what a peer that is not speaking adieu is speaking."""
    if data[:1] == b"\x16":
        return " (it looks like a TLS handshake: does only one side use TLS?)"
    head = data[:8]
    for verb in (b"GET ", b"POST", b"PUT ", b"HEAD", b"HTTP", b"PRI ", b"OPTI"):
        if head.startswith(verb[: len(head)]) and head:
            return " (it looks like HTTP)"
    return ""


class FrameDecoder:
    """Turns a byte stream into ``(type, payload)`` items, incrementally.

    Feed it bytes as they arrive, in chunks of any size, with :meth:`feed`.
    The first item is always ``(PREAMBLE_ITEM, peer_role)``-shaped: see
    :meth:`feed`. Sizes are checked as soon as a frame header is complete, so
    an oversized or malformed frame is refused before its payload is
    buffered.

    Memory: at most one incomplete frame is kept between calls, in one
    buffer however the bytes were split, so :attr:`buffered` never exceeds
    ``max(max_message_size, 259) + FRAME_HEADER`` bytes: a MESSAGE is
    bounded by the limit, a SHUTDOWN by its 4 + 255 bytes, whatever the
    limit (with the default limit of 1 MiB that is simply
    ``max_message_size + FRAME_HEADER``).
    """

    #: The pseudo frame type :meth:`feed` reports for the peer's preamble.
    PREAMBLE_ITEM = -1

    def __init__(self, expected_peer: Role, max_message_size: int) -> None:
        self._expected_peer = expected_peer
        self._max_message_size = max_message_size
        self._preamble = b""
        self._in_preamble = True
        self._header = b""
        self._type = 0
        self._remaining = 0
        # One growing buffer for the payload of an incomplete frame: a list
        # of the chunks as they came would cost a small object per read
        # (22 times the frame's size for a frame trickled 2 bytes at a time).
        self._partial = bytearray()
        #: After :meth:`feed` refused a frame header: the items that call
        #: completed before it, in order (what :meth:`feed` would have
        #: returned), so that they can still be delivered.
        self.completed: list[tuple[int, bytes]] = []

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete preamble or frame held until more arrive."""
        return len(self._preamble) + len(self._header) + len(self._partial)

    @property
    def at_frame_boundary(self) -> bool:
        """``True`` if no partial preamble or frame is being held."""
        return not self._preamble and not self._header and not self._type

    def describe_partial(self) -> str:
        """A phrase describing what is held, for a truncation message."""
        if self._in_preamble:
            return f"{len(self._preamble)} of {PREAMBLE_SIZE} preamble bytes"
        if self._header:
            return f"{len(self._header)} of {FRAME_HEADER} frame header bytes"
        if self._type:
            held = len(self._partial)
            return f"{held} of {held + self._remaining} payload bytes of a frame"
        return "nothing"

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Decode what ``data`` completes.

        Returns:
            A list of ``(frame_type, payload)`` for every frame completed by
            ``data``, in order. The peer's preamble is reported as
            ``(FrameDecoder.PREAMBLE_ITEM, b"")`` once it is complete and valid.

        Raises:
            ProtocolError: the bytes are not adieu version 1 from a peer of the
                expected role, an unknown frame type, or a control frame of
                the wrong size. The frames the same call completed before
                the bad one are left in :attr:`completed`; the connection is
                unusable.
            MessageTooLarge: a MESSAGE header announces more than
                ``max_message_size`` bytes.

        After an error the decoder must not be fed again.
        """
        out: list[tuple[int, bytes]] = []
        n = len(data)
        pos = 0
        if self._in_preamble:
            pos = self._feed_preamble(data)
            if pos < 0:
                return out
            out.append((self.PREAMBLE_ITEM, b""))
        while pos < n:
            if self._type:
                # Completing a payload begun in an earlier chunk.
                take = min(self._remaining, n - pos)
                self._partial += data[pos : pos + take]
                self._remaining -= take
                pos += take
                if self._remaining:
                    break
                out.append((self._type, bytes(self._partial)))
                self._type = 0
                self._partial = bytearray()
                continue
            if self._header or n - pos < FRAME_HEADER:
                take = min(FRAME_HEADER - len(self._header), n - pos)
                self._header += data[pos : pos + take]
                pos += take
                if len(self._header) < FRAME_HEADER:
                    break
                ftype, length = _HEADER.unpack(self._header)
                self._header = b""
            else:
                ftype, length = _HEADER.unpack_from(data, pos)
                pos += FRAME_HEADER
            try:
                self._check_header(ftype, length)
            except ProtocolError:
                self.completed = out
                raise
            if n - pos >= length:
                out.append((ftype, data[pos : pos + length]))
                pos += length
            else:
                self._type = ftype
                self._remaining = length - (n - pos)
                self._partial = bytearray(data[pos:])
                pos = n
        return out

    def _feed_preamble(self, data: bytes) -> int:
        """Consume preamble bytes; return how many bytes of ``data`` it
        took once the preamble is complete, or -1 if it needs more."""
        need = PREAMBLE_SIZE - len(self._preamble)
        got = self._preamble + data[:need]
        # Refuse a foreign protocol at its first wrong byte, not after 8.
        if got[: len(MAGIC)] != MAGIC[: len(got)]:
            raise ProtocolError(
                "the peer does not speak adieu: expected the preamble "
                f"{encode_preamble(self._expected_peer)!r}, got {got!r}"
                + _describe_foreign(got)
            )
        if len(got) < PREAMBLE_SIZE:
            self._preamble = got
            return -1  # all of data consumed, preamble still incomplete
        version, role_byte = got[len(MAGIC)], got[len(MAGIC) + 1]
        if version != VERSION:
            raise ProtocolError(
                f"the peer speaks adieu protocol version {version}; "
                f"this side speaks version {VERSION}"
            )
        role = _BYTE_ROLES.get(role_byte)
        if role is None:
            raise ProtocolError(f"the peer's preamble names no role: {got!r}")
        if role is not self._expected_peer:
            raise ProtocolError(
                f"both ends are {role.value}s: a {self._expected_peer.peer.value} "
                f"must talk to a {self._expected_peer.value}"
            )
        self._preamble = b""
        self._in_preamble = False
        return need

    def _check_header(self, ftype: int, length: int) -> None:
        if ftype == MESSAGE:
            if length > self._max_message_size:
                raise MessageTooLarge(
                    f"the peer announced a message of {length} bytes; "
                    f"the limit is {self._max_message_size}",
                    size=length,
                    limit=self._max_message_size,
                )
        elif ftype == END:
            if length > _SERVER_END_SIZE:
                raise ProtocolError(f"END frame of {length} bytes: at most 8")
        elif ftype == SHUTDOWN:
            if length > _MAX_SHUTDOWN_SIZE:
                raise ProtocolError(
                    f"SHUTDOWN frame of {length} bytes: at most {_MAX_SHUTDOWN_SIZE}"
                )
        elif ftype == MAGIC[0]:
            raise ProtocolError(
                "the peer sent a second preamble (frame type 0x41, 'A')"
            )
        else:
            raise ProtocolError(f"unknown frame type 0x{ftype:02x}")
