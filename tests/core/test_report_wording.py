"""What a person reads: every line of :class:`~adieu.Termination` and
:class:`~adieu.ShutdownReport` says what it counts, when, and who, in words,
with plurals right."""

from __future__ import annotations

from typing import Any

import pytest

from adieu import (
    ConnectionReport,
    Initiator,
    ShutdownReport,
    Termination,
    TerminationKind,
)

K = TerminationKind


def termination(
    kind: TerminationKind = K.CLEAN,
    initiator: Initiator = Initiator.LOCAL,
    *,
    sent: int = 3,
    received: int = 3,
    discarded: int = 0,
    acknowledged: int | None = None,
    detail: str = "both ENDs exchanged",
) -> Termination:
    confirmed = None if acknowledged is None else acknowledged == sent
    return Termination(
        kind, initiator, sent, received, discarded, confirmed, acknowledged, detail
    )


def report(
    *ended: Termination,
    before: dict[TerminationKind, int] | None = None,
    aborted: bool = False,
) -> ShutdownReport:
    counts = dict.fromkeys(TerminationKind, 0)
    for end in ended:
        counts[end.kind] += 1
    earlier = dict.fromkeys(TerminationKind, 0) | (before or {})
    connections: tuple[ConnectionReport[Any], ...] = tuple(
        ConnectionReport(end, None, None) for end in ended
    )
    return ShutdownReport(connections, counts, earlier, 10.0, 0.0205, aborted)


@pytest.mark.parametrize(
    ("end", "text"),
    [
        (
            termination(acknowledged=3),
            "CLEAN (begun by this side): sent 3 messages, received 3 messages, "
            "the server confirmed all 3: both ENDs exchanged",
        ),
        (
            termination(sent=1, received=0, acknowledged=1),
            "CLEAN (begun by this side): sent 1 message, received 0 messages, "
            "the server confirmed it: both ENDs exchanged",
        ),
        (
            termination(initiator=Initiator.PEER, sent=1, received=1),
            "CLEAN (begun by the peer): sent 1 message, received 1 message: "
            "both ENDs exchanged",
        ),
        (
            termination(sent=0, received=2, discarded=1, acknowledged=0),
            "CLEAN (begun by this side): sent 0 messages, received 2 messages, "
            "discarded 1 unread: both ENDs exchanged",
        ),
        (
            termination(sent=4, acknowledged=2),
            "CLEAN (begun by this side): sent 4 messages, received 3 messages, "
            "the server confirmed only 2 of 4: both ENDs exchanged",
        ),
        (
            termination(K.RESET, Initiator.PEER, detail="the peer reset"),
            "RESET (caused by the peer): sent 3 messages, received 3 messages: "
            "the peer reset",
        ),
        (
            termination(K.TIMED_OUT, detail="the grace period expired"),
            "TIMED_OUT (caused by this side): sent 3 messages, received 3 "
            "messages: the grace period expired",
        ),
    ],
)
def test_a_termination_reads_as_a_sentence(end: Termination, text: str) -> None:
    assert str(end) == text


def test_one_connection_open_when_the_shutdown_began() -> None:
    assert str(report(termination())) == (
        "shutdown finished in 0.021 s (grace period 10 s): "
        "1 connection was open when the shutdown began: 1 clean"
    )


def test_connections_that_ended_before_the_shutdown_are_said_so() -> None:
    assert str(report(before={K.CLEAN: 1})) == (
        "shutdown finished in 0.021 s (grace period 10 s): "
        "no connection was open when the shutdown began; "
        "1 connection had ended before: 1 clean"
    )
    both = report(termination(), termination(K.TIMED_OUT), before={K.CLEAN: 2})
    assert str(both) == (
        "shutdown finished in 0.021 s (grace period 10 s): "
        "2 connections were open when the shutdown began: 1 clean, 1 timed out; "
        "2 connections had ended before: 2 clean"
    )


def test_an_abort_that_cut_connections_says_aborted() -> None:
    text = str(report(termination(), termination(K.ABORTED), aborted=True))
    assert text == (
        "shutdown aborted in 0.021 s (grace period 10 s): "
        "2 connections were open when the shutdown began: 1 clean, 1 aborted"
    )


def test_an_abort_that_came_after_every_connection_ended_says_so() -> None:
    # A second Ctrl+C just after the last connection ended cut nothing.
    text = str(report(termination(), termination(), termination(), aborted=True))
    assert text == (
        "shutdown finished (an abort was requested, but it cut no connection) "
        "in 0.021 s (grace period 10 s): "
        "3 connections were open when the shutdown began: 3 clean"
    )


@pytest.mark.parametrize(("discarded", "noun"), [(1, "message"), (2, "messages")])
def test_discarded_messages_are_counted_in_words(discarded: int, noun: str) -> None:
    text = str(report(termination(discarded=discarded)))
    assert text.endswith(f"1 clean; {discarded} unread {noun} discarded")
