"""The wire format alone: encoding, incremental decoding, and refusals.

Every frame type of version 1 is encoded and decoded back, whole and in
every chunking; every kind of bad input gives the error the format
documents, refused as early as the bytes allow (a foreign protocol at its
first wrong byte, an oversized message from its 5-byte header alone).
"""

from __future__ import annotations

import math
import struct
import tracemalloc
from collections.abc import Iterator

import pytest

from adieu import MessageTooLarge, ProtocolError, Role
from adieu._frames import (
    DEFAULT_MAX_MESSAGE_SIZE,
    END,
    FRAME_HEADER,
    MAGIC,
    MAX_REASON_BYTES,
    MESSAGE,
    PREAMBLE_SIZE,
    SHUTDOWN,
    VERSION,
    FrameDecoder,
    decode_end,
    decode_shutdown,
    encode_end,
    encode_message_header,
    encode_preamble,
    encode_shutdown,
)

PREAMBLE = FrameDecoder.PREAMBLE_ITEM

Item = tuple[int, bytes]


def message(payload: bytes) -> bytes:
    return encode_message_header(len(payload)) + payload


def header(ftype: int, length: int) -> bytes:
    return struct.pack(">BI", ftype, length)


def decode_whole(data: bytes, peer: Role, max_size: int = 64) -> list[Item]:
    return FrameDecoder(peer, max_size).feed(data)


def decode_chunks(chunks: list[bytes], peer: Role, max_size: int = 64) -> list[Item]:
    decoder = FrameDecoder(peer, max_size)
    items: list[Item] = []
    for chunk in chunks:
        items.extend(decoder.feed(chunk))
    assert decoder.buffered == 0
    assert decoder.at_frame_boundary
    return items


def after_preamble(peer: Role, max_size: int = 64) -> FrameDecoder:
    """A decoder that has taken a valid preamble from ``peer``."""
    decoder = FrameDecoder(peer, max_size)
    assert decoder.feed(encode_preamble(peer)) == [(PREAMBLE, b"")]
    return decoder


def refusal(decoder: FrameDecoder, data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decoder.feed(data)
    return info.value


# --------------------------------------------------------------- round trips


@pytest.mark.parametrize("role", list(Role))
def test_preamble_round_trip_for_each_role(role: Role) -> None:
    data = encode_preamble(role)
    assert data == MAGIC + bytes([VERSION]) + (b"C" if role is Role.CLIENT else b"S")
    assert len(data) == PREAMBLE_SIZE
    decoder = FrameDecoder(role, 64)
    assert decoder.feed(data) == [(PREAMBLE, b"")]
    assert decoder.buffered == 0
    assert decoder.at_frame_boundary


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello", b"\x00\x01\x02\xff" * 3, bytes(range(256)) * 4],
    ids=["empty", "small", "binary", "1KiB"],
)
def test_message_round_trip(payload: bytes) -> None:
    frame = message(payload)
    assert frame[:FRAME_HEADER] == bytes([MESSAGE]) + len(payload).to_bytes(4, "big")
    decoder = after_preamble(Role.CLIENT, max_size=len(payload))
    assert decoder.feed(frame) == [(MESSAGE, payload)]
    assert decoder.buffered == 0


def test_message_of_exactly_the_default_maximum_round_trips() -> None:
    payload = b"m" * DEFAULT_MAX_MESSAGE_SIZE
    decoder = after_preamble(Role.SERVER, max_size=DEFAULT_MAX_MESSAGE_SIZE)
    frame = message(payload)
    # Header and payload in separate writes, as an I/O layer may see them.
    assert decoder.feed(frame[:FRAME_HEADER]) == []
    assert decoder.feed(frame[FRAME_HEADER : FRAME_HEADER + 1000]) == []
    assert decoder.buffered == 1000
    [(ftype, got)] = decoder.feed(frame[FRAME_HEADER + 1000 :])
    assert ftype == MESSAGE
    assert got == payload
    assert decoder.buffered == 0


def test_client_end_is_empty_and_round_trips() -> None:
    frame = encode_end(None)
    assert frame == bytes([END, 0, 0, 0, 0])
    [(ftype, payload)] = after_preamble(Role.CLIENT).feed(frame)
    assert (ftype, payload) == (END, b"")
    assert decode_end(payload, Role.CLIENT) is None


@pytest.mark.parametrize("count", [0, 1, 12345, (1 << 64) - 1])
def test_server_end_carries_its_count(count: int) -> None:
    frame = encode_end(count)
    assert frame[:FRAME_HEADER] == bytes([END, 0, 0, 0, 8])
    [(ftype, payload)] = after_preamble(Role.SERVER).feed(frame)
    assert ftype == END
    assert decode_end(payload, Role.SERVER) == count


@pytest.mark.parametrize(
    ("grace", "reason"),
    [
        (0.0, None),
        (10.0, None),
        (2.5, "maintenance"),
        (30.0, "redémarrage — à tout de suite ✓"),
        (1.0, "r" * MAX_REASON_BYTES),
    ],
)
def test_shutdown_round_trip(grace: float, reason: str | None) -> None:
    frame = encode_shutdown(grace, reason)
    [(ftype, payload)] = after_preamble(Role.SERVER).feed(frame)
    assert ftype == SHUTDOWN
    assert decode_shutdown(payload) == (grace, reason)


def test_shutdown_with_an_empty_reason_decodes_as_no_reason() -> None:
    assert encode_shutdown(1.0, "") == encode_shutdown(1.0, None)
    assert decode_shutdown(encode_shutdown(1.0, "")[FRAME_HEADER:]) == (1.0, None)


def test_shutdown_with_an_unbounded_grace_period() -> None:
    frame = encode_shutdown(math.inf, "forever")
    assert frame[FRAME_HEADER : FRAME_HEADER + 4] == b"\xff\xff\xff\xff"
    assert decode_shutdown(frame[FRAME_HEADER:]) == (math.inf, "forever")


@pytest.mark.parametrize(
    ("grace", "expected_ms"),
    [(0.0001, 1), (0.0011, 2), (1.0000001, 1001), (2.999, 2999), (0.5, 500)],
)
def test_fractional_grace_periods_round_up_to_the_millisecond(
    grace: float, expected_ms: int
) -> None:
    frame = encode_shutdown(grace, None)
    assert frame[FRAME_HEADER : FRAME_HEADER + 4] == expected_ms.to_bytes(4, "big")
    decoded, _ = decode_shutdown(frame[FRAME_HEADER:])
    assert decoded == expected_ms / 1000
    assert decoded >= grace  # never shorter than what was granted


def test_a_huge_finite_grace_period_stays_finite() -> None:
    decoded, _ = decode_shutdown(encode_shutdown(1e12, None)[FRAME_HEADER:])
    assert math.isfinite(decoded)
    assert decoded == ((1 << 32) - 2) / 1000


@pytest.mark.parametrize("grace", [-0.001, -1.0, math.nan, -math.inf])
def test_shutdown_refuses_a_negative_or_nan_grace_period(grace: float) -> None:
    with pytest.raises(ValueError, match="grace_period must be >= 0"):
        encode_shutdown(grace, None)


def test_shutdown_refuses_a_reason_over_255_utf8_bytes() -> None:
    encode_shutdown(1.0, "é" * 127)  # 254 bytes: fine
    with pytest.raises(ValueError, match="at most 255 bytes of UTF-8, this one is 256"):
        encode_shutdown(1.0, "é" * 128)


def test_a_refused_reason_is_refused_every_time() -> None:
    # Frames are kept once encoded (a server tells thousands of connections
    # the same thing); a refusal is not, and nothing is kept for it.
    for _ in range(2):
        with pytest.raises(ValueError, match="at most 255 bytes"):
            encode_shutdown(1.0, "r" * (MAX_REASON_BYTES + 1))


def test_a_shutdown_frame_is_encoded_once_per_millisecond_and_reason() -> None:
    # What a server's broadcast relies on: the grace left, read for each
    # connection, differs by microseconds; the frame is the same object.
    first = encode_shutdown(0.9991, "maintenance")
    assert encode_shutdown(0.9999, "maintenance") is first
    assert encode_shutdown(1.0, "maintenance") is first
    assert encode_shutdown(1.0001, "maintenance") != first
    assert encode_shutdown(1.0, "other") != first


def test_the_encoded_shutdown_frames_kept_are_bounded_at_64() -> None:
    # The bound is what keeps a server that shuts down with many grace
    # periods or reasons from growing without limit: the 64 most recently
    # used frames are kept, the 65th distinct one evicts the oldest.
    def frame(k: int) -> bytes:
        return encode_shutdown(1.0, f"kept frames, number {k}")

    first = frame(0)
    for k in range(1, 64):
        frame(k)
    assert frame(0) is first  # 64 distinct frames: all still kept
    for k in range(64, 128):
        frame(k)
    again = frame(0)
    assert again == first
    assert again is not first  # pushed out by 64 newer ones, encoded anew


# ------------------------------------------------------------------ chunking

#: A server's whole sending life, with every frame type.
SERVER_STREAM_ITEMS: list[Item] = [
    (PREAMBLE, b""),
    (MESSAGE, b""),
    (MESSAGE, b"hi"),
    (MESSAGE, bytes(range(64))),  # exactly the limit used below
    (SHUTDOWN, encode_shutdown(1.5, "bye")[FRAME_HEADER:]),
    (MESSAGE, b"after the request"),
    (END, (7).to_bytes(8, "big")),
]
SERVER_STREAM = (
    encode_preamble(Role.SERVER)
    + message(b"")
    + message(b"hi")
    + message(bytes(range(64)))
    + encode_shutdown(1.5, "bye")
    + message(b"after the request")
    + encode_end(7)
)
CLIENT_STREAM_ITEMS: list[Item] = [
    (PREAMBLE, b""),
    (MESSAGE, b"one"),
    (MESSAGE, b""),
    (END, b""),
]
CLIENT_STREAM = (
    encode_preamble(Role.CLIENT) + message(b"one") + message(b"") + encode_end(None)
)
STREAMS = [
    pytest.param(Role.SERVER, SERVER_STREAM, SERVER_STREAM_ITEMS, id="from-server"),
    pytest.param(Role.CLIENT, CLIENT_STREAM, CLIENT_STREAM_ITEMS, id="from-client"),
]


@pytest.mark.parametrize(("peer", "stream", "items"), STREAMS)
def test_a_whole_stream_decodes_in_one_feed(
    peer: Role, stream: bytes, items: list[Item]
) -> None:
    assert decode_whole(stream, peer) == items


@pytest.mark.parametrize(("peer", "stream", "items"), STREAMS)
def test_a_stream_fed_byte_by_byte_decodes_the_same(
    peer: Role, stream: bytes, items: list[Item]
) -> None:
    chunks = [stream[i : i + 1] for i in range(len(stream))]
    assert decode_chunks(chunks, peer) == items


@pytest.mark.parametrize(("peer", "stream", "items"), STREAMS)
def test_a_stream_split_at_every_point_decodes_the_same(
    peer: Role, stream: bytes, items: list[Item]
) -> None:
    for cut in range(len(stream) + 1):
        assert decode_chunks([stream[:cut], stream[cut:]], peer) == items, cut


def _three_way_splits(n: int) -> Iterator[tuple[int, int]]:
    for first in range(n + 1):
        for second in range(first, n + 1):
            yield first, second


def test_a_stream_split_at_every_pair_of_points_decodes_the_same() -> None:
    stream, items = CLIENT_STREAM, CLIENT_STREAM_ITEMS
    for a, b in _three_way_splits(len(stream)):
        chunks = [stream[:a], stream[a:b], stream[b:]]
        assert decode_chunks(chunks, Role.CLIENT) == items, (a, b)


def test_empty_feeds_change_nothing() -> None:
    decoder = FrameDecoder(Role.SERVER, 64)
    assert decoder.feed(b"") == []
    assert decoder.feed(SERVER_STREAM[:3]) == []
    assert decoder.feed(b"") == []
    assert decoder.buffered == 3
    assert decoder.feed(SERVER_STREAM[3:]) == SERVER_STREAM_ITEMS


def test_buffered_and_describe_partial_follow_the_bytes_held() -> None:
    decoder = FrameDecoder(Role.CLIENT, 64)
    assert decoder.describe_partial() == f"0 of {PREAMBLE_SIZE} preamble bytes"
    decoder.feed(encode_preamble(Role.CLIENT)[:5])
    assert decoder.buffered == 5
    assert decoder.describe_partial() == f"5 of {PREAMBLE_SIZE} preamble bytes"
    decoder.feed(encode_preamble(Role.CLIENT)[5:])
    assert decoder.describe_partial() == "nothing"
    frame = message(b"0123456789")
    decoder.feed(frame[:3])
    assert decoder.buffered == 3
    assert not decoder.at_frame_boundary
    assert decoder.describe_partial() == f"3 of {FRAME_HEADER} frame header bytes"
    decoder.feed(frame[3:9])
    assert decoder.buffered == 4
    assert decoder.describe_partial() == "4 of 10 payload bytes of a frame"
    assert decoder.feed(frame[9:]) == [(MESSAGE, b"0123456789")]
    assert decoder.at_frame_boundary


# ------------------------------------------------------------ foreign bytes


def test_http_is_refused_at_its_first_byte_and_named() -> None:
    exc = refusal(FrameDecoder(Role.CLIENT, 64), b"G")
    assert "does not speak adieu" in str(exc)
    assert "looks like HTTP" in str(exc)


def test_a_whole_http_request_line_is_refused_as_http() -> None:
    exc = refusal(FrameDecoder(Role.CLIENT, 64), b"GET / HTTP/1.1\r\n")
    assert "looks like HTTP" in str(exc)
    assert repr(encode_preamble(Role.CLIENT)) in str(exc)  # says what was expected


def test_http_response_is_refused_as_http() -> None:
    exc = refusal(FrameDecoder(Role.SERVER, 64), b"HTTP/1.1 400 Bad Request\r\n")
    assert "looks like HTTP" in str(exc)


def test_a_wrong_byte_after_a_right_prefix_is_refused_at_once() -> None:
    decoder = FrameDecoder(Role.SERVER, 64)
    assert decoder.feed(b"ADIE") == []
    exc = refusal(decoder, b"X")
    assert "b'ADIEX'" in str(exc)
    assert "HTTP" not in str(exc)
    assert "TLS" not in str(exc)


def test_a_tls_client_hello_is_refused_and_named() -> None:
    client_hello = bytes.fromhex("1603010200010001fc0303") + bytes(32)
    exc = refusal(FrameDecoder(Role.CLIENT, 64), client_hello)
    assert "TLS handshake" in str(exc)
    assert "does only one side use TLS" in str(exc)


def test_the_first_tls_byte_alone_is_refused() -> None:
    exc = refusal(FrameDecoder(Role.CLIENT, 64), b"\x16")
    assert "TLS" in str(exc)


@pytest.mark.parametrize(
    "data",
    [b"\x00", b"\x05\x01\x00", b"\x15\x03\x03", b"\x17\x03\x03"],
    ids=["zero", "a SOCKS5 greeting", "a TLS alert", "TLS application data"],
)
def test_only_a_handshake_record_is_named_as_tls(data: bytes) -> None:
    # The hint is for the one byte a TLS client opens with (a handshake
    # record, 0x16); any other first byte is just not adieu.
    exc = refusal(FrameDecoder(Role.CLIENT, 64), data)
    assert "does not speak adieu" in str(exc)
    assert "TLS" not in str(exc)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_another_protocol_version_is_refused_naming_both(version: int) -> None:
    data = MAGIC + bytes([version]) + b"S"
    exc = refusal(FrameDecoder(Role.SERVER, 64), data)
    assert f"version {version}" in str(exc)
    assert f"version {VERSION}" in str(exc)


@pytest.mark.parametrize("role", list(Role))
def test_the_same_role_on_both_ends_is_refused(role: Role) -> None:
    # A decoder expecting the other role is fed this role's preamble.
    exc = refusal(FrameDecoder(role.peer, 64), encode_preamble(role))
    assert f"both ends are {role.value}s" in str(exc)


def test_a_preamble_naming_no_role_is_refused() -> None:
    exc = refusal(FrameDecoder(Role.SERVER, 64), MAGIC + bytes([VERSION]) + b"X")
    assert "names no role" in str(exc)


# --------------------------------------------------------------- bad frames


@pytest.mark.parametrize("ftype", [0x00, 0x04, 0x40, 0x42, 0x7F, 0xFF])
def test_an_unknown_frame_type_is_refused_from_its_header(ftype: int) -> None:
    decoder = after_preamble(Role.SERVER)
    exc = refusal(decoder, header(ftype, 3))  # no payload needed
    assert str(exc) == f"unknown frame type 0x{ftype:02x}"


def test_a_second_preamble_is_refused_by_name() -> None:
    decoder = after_preamble(Role.CLIENT)
    exc = refusal(decoder, encode_preamble(Role.CLIENT))
    assert "second preamble" in str(exc)
    assert "0x41" in str(exc)


@pytest.mark.parametrize("length", [9, 100, (1 << 32) - 1])
def test_an_end_frame_over_8_bytes_is_refused_from_its_header(length: int) -> None:
    exc = refusal(after_preamble(Role.SERVER), header(END, length))
    assert f"END frame of {length} bytes: at most 8" in str(exc)


@pytest.mark.parametrize("length", [260, (1 << 32) - 1])
def test_a_shutdown_frame_over_its_maximum_is_refused_from_its_header(
    length: int,
) -> None:
    exc = refusal(after_preamble(Role.SERVER), header(SHUTDOWN, length))
    assert f"SHUTDOWN frame of {length} bytes: at most 259" in str(exc)


def test_the_largest_shutdown_frame_is_accepted() -> None:
    frame = encode_shutdown(1.0, "x" * MAX_REASON_BYTES)
    assert len(frame) == FRAME_HEADER + 4 + MAX_REASON_BYTES
    assert after_preamble(Role.SERVER).feed(frame)[0][0] == SHUTDOWN


@pytest.mark.parametrize("size", [1, 7, 9])
def test_a_server_end_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(ProtocolError, match=f"carries 8 bytes; got {size}"):
        decode_end(bytes(size), Role.SERVER)


def test_a_client_end_with_a_payload_is_refused() -> None:
    with pytest.raises(ProtocolError, match="client's END frame is empty; got 8 bytes"):
        decode_end(bytes(8), Role.CLIENT)


@pytest.mark.parametrize("size", [0, 3])
def test_a_shutdown_shorter_than_its_grace_field_is_refused(size: int) -> None:
    with pytest.raises(ProtocolError, match=f"SHUTDOWN frame of {size} bytes"):
        decode_shutdown(bytes(size))


@pytest.mark.parametrize(
    "raw", [b"\xff", b"\xc3", b"ok \xe2\x82", b"\xed\xa0\x80"], ids=repr
)
def test_a_shutdown_reason_that_is_not_utf8_is_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError, match="not valid UTF-8"):
        decode_shutdown(b"\x00\x00\x03\xe8" + raw)


# ------------------------------------------------------------- size limits


@pytest.mark.parametrize("limit", [0, 1, 100, DEFAULT_MAX_MESSAGE_SIZE])
def test_a_message_of_exactly_the_limit_is_accepted(limit: int) -> None:
    decoder = after_preamble(Role.CLIENT, max_size=limit)
    assert decoder.feed(encode_message_header(limit)) == (
        [] if limit else [(MESSAGE, b"")]
    )
    assert decoder.feed(b"z" * limit) == ([(MESSAGE, b"z" * limit)] if limit else [])


@pytest.mark.parametrize("limit", [0, 1, 100, DEFAULT_MAX_MESSAGE_SIZE])
def test_an_oversized_message_is_refused_from_its_header_alone(limit: int) -> None:
    decoder = after_preamble(Role.CLIENT, max_size=limit)
    with pytest.raises(MessageTooLarge) as info:
        decoder.feed(encode_message_header(limit + 1))  # the header, no payload
    exc = info.value
    assert (exc.size, exc.limit) == (limit + 1, limit)
    assert f"message of {limit + 1} bytes" in str(exc)
    assert f"the limit is {limit}" in str(exc)
    assert decoder.buffered == 0  # nothing of it was kept
    assert isinstance(exc, ProtocolError)
    assert isinstance(exc, ValueError)


def test_an_oversized_header_fed_byte_by_byte_is_refused_at_its_fifth_byte() -> None:
    decoder = after_preamble(Role.CLIENT, max_size=10)
    head = encode_message_header(11)
    for i in range(FRAME_HEADER - 1):
        assert decoder.feed(head[i : i + 1]) == []
        assert decoder.buffered == i + 1
    with pytest.raises(MessageTooLarge):
        decoder.feed(head[-1:])
    assert decoder.buffered == 0


def test_an_oversized_header_followed_by_payload_is_refused_without_keeping_it() -> (
    None
):
    decoder = after_preamble(Role.CLIENT, max_size=10)
    with pytest.raises(MessageTooLarge):
        decoder.feed(message(b"x" * 11))
    assert decoder.buffered == 0


def test_a_4gib_announcement_allocates_nothing() -> None:
    decoder = after_preamble(Role.CLIENT, max_size=DEFAULT_MAX_MESSAGE_SIZE)
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge) as info:
            decoder.feed(encode_message_header((1 << 32) - 1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size == (1 << 32) - 1
    assert peak < 64 * 1024  # kilobytes of bookkeeping, not the announced size
    assert decoder.buffered == 0


def test_a_large_allowed_announcement_is_not_allocated_before_its_payload() -> None:
    limit = (1 << 32) - 1
    decoder = after_preamble(Role.CLIENT, max_size=limit)
    tracemalloc.start()
    try:
        assert decoder.feed(encode_message_header(limit) + b"abc") == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered == 3  # only the bytes that arrived
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (encode_message_header(5), MessageTooLarge),
        (header(0x09, 0), ProtocolError),
        (encode_preamble(Role.CLIENT), ProtocolError),
    ],
    ids=["too-large", "unknown-type", "second-preamble"],
)
def test_frames_completed_before_a_refused_header_are_kept(
    bad: bytes, error: type[ProtocolError]
) -> None:
    decoder = FrameDecoder(Role.CLIENT, 4)
    data = encode_preamble(Role.CLIENT) + message(b"ok") + encode_end(None) + bad
    with pytest.raises(error):
        decoder.feed(data)
    assert decoder.completed == [(PREAMBLE, b""), (MESSAGE, b"ok"), (END, b"")]
    assert decoder.buffered == 0


def test_a_frame_trickled_in_two_byte_reads_holds_about_its_own_size() -> None:
    """However the bytes are split, the decoder holds one incomplete frame
    in about its own size (not one small object per read)."""
    size = 64 * 1024
    decoder = after_preamble(Role.CLIENT, max_size=size)
    data = message(bytes(range(256)) * (size // 256))
    pieces = [data[i : i + 2] for i in range(0, len(data), 2)]
    tracemalloc.start()
    try:
        # The first traced calls allocate the interpreter's own bookkeeping:
        # measure from after the header and the first payload byte.
        for piece in pieces[:3]:
            assert decoder.feed(piece) == []
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for i in range(3, len(pieces) - 1):  # (a slice would copy the list)
            assert decoder.feed(pieces[i]) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered == len(data) - len(pieces[-1]) - FRAME_HEADER
    # bytearray growth over-allocates by an eighth; the rest is a constant.
    assert peak - base < size * 1.25 + 4096, (base, peak)
    [(ftype, payload)] = decoder.feed(pieces[-1])
    assert (ftype, payload) == (MESSAGE, data[FRAME_HEADER:])
    assert type(payload) is bytes
    assert decoder.buffered == 0
