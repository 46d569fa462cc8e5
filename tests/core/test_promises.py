"""Promises of the core that other tests only used by name.

Each test here pins a documented value or guarantee by its value, bytes in
and bytes out: the default and largest message limits, the termination
report's immutability and its one-line form, the type of a message's data
whatever buffer the bytes came in, the finality of a clean ending, and the
decoder's memory once a payload was delivered. A change to any of them must
fail a test here, not only a test that reads the same constant back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import itertools
import tracemalloc

import hypothesis.strategies as st
import pytest
from hypothesis import given

from adieu import (
    End,
    Initiator,
    LocalProtocolError,
    Message,
    MessageTooLarge,
    Protocol,
    ProtocolError,
    Role,
    ShutdownRequest,
    Termination,
    TerminationKind,
)
from adieu._frames import MESSAGE, FrameDecoder, encode_message_header

CLIENT, SERVER = Role.CLIENT, Role.SERVER
MIB = 1024 * 1024
#: The largest length a frame header's 32-bit field can carry.
U32_MAX = 4_294_967_295


def end_of(proto: Protocol) -> bytes:
    """``proto``'s END as an I/O layer sends it: produced, then written."""
    frame = proto.send_end()
    proto.end_written()
    return frame


def connected(max_message_size: int | None = None) -> tuple[Protocol, Protocol]:
    """A client and a server that exchanged preambles; the library's default
    message size unless one is given."""

    def make(role: Role) -> Protocol:
        if max_message_size is None:
            return Protocol(role)
        return Protocol(role, max_message_size=max_message_size)

    client, server = make(CLIENT), make(SERVER)
    server.receive_data(client.preamble())
    client.receive_data(server.preamble())
    return client, server


def cleanly_closed() -> tuple[Protocol, Termination]:
    """A server whose connection ended CLEAN, and its report."""
    client, server = connected()
    server.receive_data(client.send_message(b"question"))
    client.receive_data(server.send_message(b"answer"))
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    server.receive_eof()
    termination = server.close()
    assert termination.kind is TerminationKind.CLEAN
    return server, termination


# ------------------------------------------------------------------- limits


def test_the_default_limit_is_one_mebibyte_each_way() -> None:
    client, server = connected()
    assert client.max_message_size == MIB
    frame = client.send_message(bytes(MIB))
    [message] = server.receive_data(frame)
    assert message == Message(bytes(MIB))
    with pytest.raises(MessageTooLarge) as sent:
        client.send_message(bytes(MIB + 1))
    assert (sent.value.size, sent.value.limit) == (MIB + 1, MIB)
    with pytest.raises(MessageTooLarge) as received:
        server.receive_data(encode_message_header(MIB + 1))
    assert (received.value.size, received.value.limit) == (MIB + 1, MIB)


def test_the_largest_limit_is_what_a_frame_header_can_carry() -> None:
    client, server = connected(max_message_size=U32_MAX)
    assert client.max_message_size == U32_MAX
    # A header announcing the largest length is accepted: the decoder
    # waits for the payload instead of refusing it.
    assert server.receive_data(encode_message_header(U32_MAX)) == []
    assert server.buffered == 0
    with pytest.raises(ValueError, match="max_message_size must be between"):
        Protocol(CLIENT, max_message_size=U32_MAX + 1)


def test_the_limit_is_given_by_name_only() -> None:
    with pytest.raises(TypeError):
        Protocol(CLIENT, 10)  # type: ignore[call-arg]


def test_a_limit_of_zero_allows_only_empty_messages() -> None:
    client, server = connected(max_message_size=0)
    assert server.receive_data(client.send_message(b"")) == [Message(b"")]
    with pytest.raises(MessageTooLarge):
        client.send_message(b"x")


# -------------------------------------------------------------- termination


def test_a_termination_cannot_be_changed() -> None:
    _, termination = cleanly_closed()
    for field in dataclasses.fields(Termination):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(termination, field.name, None)
    assert termination.kind is TerminationKind.CLEAN
    # Immutable, hence usable as a key.
    assert {termination: 1}[dataclasses.replace(termination)] == 1


@pytest.mark.parametrize(
    "event", [Message(b"x"), End(3), ShutdownRequest(1.0, "bye")], ids=repr
)
def test_an_event_cannot_be_changed(event: Message | End | ShutdownRequest) -> None:
    for field in dataclasses.fields(event):
        with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
            setattr(event, field.name, None)


def test_str_of_a_clean_confirmed_client_termination() -> None:
    client, server = connected()
    server.receive_data(client.send_message(b"one"))
    server.receive_data(client.send_message(b"two"))
    client.receive_data(server.send_message(b"ok"))
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    assert str(client.close()) == (
        "CLEAN (begun by this side): sent 2 messages, received 1 message, "
        "the server confirmed all 2: both ENDs exchanged"
    )


def test_str_names_what_was_discarded_and_not_confirmed() -> None:
    termination = Termination(
        kind=TerminationKind.TRUNCATED,
        initiator=Initiator.PEER,
        messages_sent=5,
        messages_received=4,
        messages_discarded=3,
        confirmed=False,
        acknowledged=2,
        detail="the transport ended without the peer's END",
    )
    assert str(termination) == (
        "TRUNCATED (caused by the peer): sent 5 messages, received 4 messages, "
        "discarded 3 unread, the server confirmed only 2 of 5: "
        "the transport ended without the peer's END"
    )


@given(
    kind=st.sampled_from(TerminationKind),
    initiator=st.sampled_from(Initiator),
    sent=st.integers(0, 10**6),
    received=st.integers(0, 10**6),
    discarded=st.integers(0, 10**6),
    confirmed=st.sampled_from([None, True, False]),
    detail=st.text(max_size=40),
)
def test_str_is_one_line_built_from_the_fields(
    kind: TerminationKind,
    initiator: Initiator,
    sent: int,
    received: int,
    discarded: int,
    confirmed: bool | None,
    detail: str,
) -> None:
    # A server that confirmed less than was sent counted fewer messages.
    acknowledged = max(0, sent - 1) if confirmed is False else None
    termination = Termination(
        kind, initiator, sent, received, discarded, confirmed, acknowledged, detail
    )

    def count(n: int) -> str:
        return f"{n} message{'' if n == 1 else 's'}"

    side = "this side" if initiator is Initiator.LOCAL else "the peer"
    verb = "begun" if kind is TerminationKind.CLEAN else "caused"
    parts = [f"sent {count(sent)}", f"received {count(received)}"]
    if discarded:
        parts.append(f"discarded {discarded} unread")
    if confirmed and sent == 1:
        parts.append("the server confirmed it")
    elif confirmed and sent:
        parts.append(f"the server confirmed all {sent}")
    elif confirmed is False:
        parts.append(f"the server confirmed only {acknowledged} of {sent}")
    assert str(termination) == f"{kind.name} ({verb} by {side}): " + (
        ", ".join(parts) + ": " + detail
    )


@pytest.mark.parametrize("discarded", [0, 1, 2])
def test_a_clean_end_is_lossless_only_if_nothing_was_discarded(discarded: int) -> None:
    # The server's own report: a clean end, no confirmation to read (that
    # is the client's), so only what its application threw away decides.
    client, server = connected()
    for i in range(3):
        server.receive_data(client.send_message(b"%d" % i))
    server.discard(discarded)
    server.receive_data(end_of(client))
    client.receive_data(end_of(server))
    termination = server.close()
    assert termination.clean
    assert termination.confirmed is None
    assert termination.messages_discarded == discarded
    assert termination.lossless is (discarded == 0)


def test_a_refusal_after_the_end_names_the_cause_and_its_detail() -> None:
    client, _ = connected()
    client.abort(detail="the operator pulled the plug")
    with pytest.raises(LocalProtocolError) as refused:
        client.send_message(b"x")
    assert "(ABORTED: the operator pulled the plug)" in str(refused.value)


# ----------------------------------------------------- what comes out, bytes


@given(
    payloads=st.lists(st.binary(max_size=40), min_size=1, max_size=5),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    wrap=st.sampled_from([bytes, bytearray]),
)
def test_a_message_is_bytes_however_its_bytes_arrived(
    payloads: list[bytes], cuts: list[int], wrap: type[bytes] | type[bytearray]
) -> None:
    client, server = connected()
    stream = b"".join(client.send_message(p) for p in payloads)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    events = []
    for start, end in itertools.pairwise(bounds):
        chunk = wrap(stream[start:end])
        events += server.receive_data(chunk)
        if isinstance(chunk, bytearray):
            chunk[:] = b"\0" * len(chunk)  # the caller reuses its buffer
    assert events == [Message(p) for p in payloads]
    assert all(type(e.data) is bytes for e in events if isinstance(e, Message))


# ------------------------------------------------------------- accounting


@given(
    received=st.integers(0, 6),
    discards=st.lists(st.integers(0, 6), max_size=6),
)
def test_discards_add_up_and_never_pass_what_was_received(
    received: int, discards: list[int]
) -> None:
    client, server = connected()
    for i in range(received):
        server.receive_data(client.send_message(b"%d" % i))
    total = 0
    for count in discards:
        if total + count > received:
            with pytest.raises(ValueError, match="cannot discard more"):
                server.discard(count)
        else:
            server.discard(count)
            total += count
        assert server.messages_discarded == total
    server.receive_data(end_of(client))
    [end] = client.receive_data(end_of(server))
    assert end == End(received - total)


# -------------------------------------------------------- a clean end stays


@pytest.mark.parametrize(
    "garbage",
    [b"\xff", encode_message_header(3) + b"abc", b"ADIEU/\x01C"],
    ids=["unknown type", "a message after END", "a second preamble"],
)
def test_garbage_after_a_clean_close_does_not_change_its_cause(garbage: bytes) -> None:
    server, termination = cleanly_closed()
    # Refusing it is fine; rewriting the ending is not.
    with contextlib.suppress(ProtocolError):
        server.receive_data(garbage)
    server.connection_reset()
    server.abort()
    assert server.cause is None
    assert server.termination is termination
    assert server.close() is termination
    assert termination.kind is TerminationKind.CLEAN
    assert termination.detail == "both ENDs exchanged"


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "truncated"])
def test_nothing_can_be_sent_once_closed(clean: bool) -> None:
    server, _ = cleanly_closed() if clean else (connected()[1], None)
    server.close()
    assert not server.can_send
    with pytest.raises(LocalProtocolError):
        server.send_message(b"late")


# ---------------------------------------------------------- decoder memory


def test_the_decoder_keeps_nothing_of_a_delivered_payload() -> None:
    size = MIB
    frame = encode_message_header(size) + bytes(size)
    decoder = FrameDecoder(CLIENT, MIB)
    decoder.feed(b"ADIEU/\x01C")
    gc.collect()
    tracemalloc.start()
    try:
        # Split inside the header and inside the payload.
        items = decoder.feed(frame[:3])
        items += decoder.feed(frame[3 : size // 2])
        items += decoder.feed(frame[size // 2 :])
        assert [(t, len(p)) for t, p in items] == [(MESSAGE, size)]
        del items
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoder.buffered == 0
    assert decoder.at_frame_boundary
    # The payload was delivered and dropped: what is left is a few small
    # objects, not a copy or a piece of the megabyte.
    assert held < size // 16
