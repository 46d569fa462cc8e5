"""Every interleaving of a client and a server running adieu's real core.

``pytest -s tests/model`` prints how many states each exploration visited.
The checker and the invariants are described in ``checker.py``.
"""

from __future__ import annotations

import pytest
from checker import (
    RST,
    ConnectionModel,
    Exploration,
    Frame,
    State,
    explore,
    format_trace,
)

import adieu
from adieu import Protocol, ProtocolError, Role, SideState, TerminationKind
from adieu._frames import FRAME_HEADER, encode_message_header

REQUESTS = 3
MODEL = ConnectionModel(requests=REQUESTS)


def _report(result: Exploration) -> str:
    text = result.summary()
    for violation in result.violations.values():
        text += f"\n\n{violation.invariant}: {violation.explanation}\n"
        text += format_trace(violation.trace)
    return text


def _in_flight(channel_items: tuple[object, ...], kind: str) -> bool:
    return any(isinstance(i, Frame) and i.kind == kind for i in channel_items)


def _crossing(s: State) -> bool:
    """The client's END and the server's SHUTDOWN on the wire at once."""
    return _in_flight(s.c2s.items, "end") and _in_flight(s.s2c.items, "shutdown")


def _split_frame(s: State) -> bool:
    """A message frame delivered up to its header and one payload byte."""
    for channel in (s.c2s, s.s2c):
        head = channel.items[0] if channel.items else None
        if (
            isinstance(head, Frame)
            and head.kind == "message"
            and channel.pos == FRAME_HEADER + 1
        ):
            return True
    return False


def _timed_out(s: State) -> bool:
    term = s.server.termination
    return term is not None and term.kind is TerminationKind.TIMED_OUT


def _reset_seen(s: State) -> bool:
    term = s.client.termination
    return term is not None and term.kind is TerminationKind.RESET


def _all_answered_cleanly(s: State) -> bool:
    return (
        MODEL.is_clean_end(s)
        and s.capp.replies() == list(range(1, REQUESTS + 1))
        and s.capp.shutdown_seen
    )


TARGETS = {
    "END crosses SHUTDOWN": _crossing,
    "a frame arrives split": _split_frame,
    "the grace period expires": _timed_out,
    "the client sees a reset": _reset_seen,
    "3 replies after SHUTDOWN, both CLEAN": _all_answered_cleanly,
}


@pytest.fixture(scope="module")
def exploration() -> Exploration:
    result = explore(MODEL, targets=TARGETS)
    print(f"\n{result.summary()}")
    return result


def test_no_interleaving_breaks_an_invariant(exploration: Exploration) -> None:
    assert exploration.violations == {}, _report(exploration)


def test_the_exploration_covers_three_messages_each_way(
    exploration: Exploration,
) -> None:
    # The bound the promise is checked to, and the races that matter: an
    # exploration that missed them would pass without proving anything.
    assert exploration.end_states > 0
    missing = sorted(set(TARGETS) - set(exploration.found))
    assert missing == []
    clean = exploration.found["3 replies after SHUTDOWN, both CLEAN"]
    sent = [step for step in clean if step[1].startswith("sends reply #")]
    assert len(sent) == REQUESTS


@pytest.mark.parametrize("misbehaving", [Role.CLIENT, Role.SERVER])
def test_a_misbehaving_peer_is_reported_as_protocol_error(misbehaving: Role) -> None:
    result = explore(ConnectionModel(requests=1, aborts=False, misbehaving=misbehaving))
    print(f"\n{result.summary()}")
    assert result.violations == {}, _report(result)


@pytest.mark.parametrize("role", [Role.CLIENT, Role.SERVER])
def test_a_frame_after_both_ends_is_a_protocol_error(role: Role) -> None:
    # Both ENDs are exchanged, the peer's EOF has not arrived yet, and the
    # peer sends a message after its END: it broke the rules, and that
    # message is lost, so the connection must not end CLEAN.
    client, server = Protocol(Role.CLIENT), Protocol(Role.SERVER)
    server.receive_data(client.preamble())
    client.receive_data(server.preamble())
    server.receive_data(client.send_end())
    client.receive_data(server.send_end())
    honest = client if role is Role.CLIENT else server
    assert honest.finished
    with pytest.raises(ProtocolError, match="after its END"):
        honest.receive_data(encode_message_header(2) + b"hi")
    termination = honest.close()
    assert termination.kind is TerminationKind.PROTOCOL_ERROR
    assert termination.initiator is adieu.Initiator.PEER


def test_the_checker_catches_a_server_that_ends_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the rule "the server never ends first" the checker must find
    # the loss the rule prevents.
    monkeypatch.setattr("adieu._protocol.GUARDS", {})
    result = explore(ConnectionModel(requests=1, aborts=False))
    assert "server ended first" in result.violations
    assert "lost reply" in result.violations
    lost = result.violations["lost reply"].trace
    assert ("server", "sends END") in [(actor, action) for actor, action, _ in lost]


def test_the_checker_catches_a_server_that_can_never_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A core whose server could never send END: the liveness checks must
    # notice that no clean end (and, once the client's END arrived before any
    # SHUTDOWN, no end at all) can be reached.
    never = {(Role.SERVER, adieu._state.FrameKind.END): (Role.CLIENT, SideState.OPEN)}
    monkeypatch.setattr("adieu._protocol.GUARDS", never)
    result = explore(ConnectionModel(requests=1, aborts=False))
    assert "no way to end" in result.violations
    assert "no clean end" in result.violations


def test_an_abort_loses_the_bytes_in_flight() -> None:
    # The model's abort: the aborting side's channel carries only the reset.
    model = ConnectionModel(requests=1)
    start = model.initial()
    aborted = [
        t for step, t, _ in model.successors(start) if step[:2] == ("client", "aborts")
    ]
    assert len(aborted) == 1
    assert aborted[0].c2s.items == (RST,)
    assert aborted[0].s2c.dead
    assert aborted[0].client.termination.kind is TerminationKind.ABORTED


def _closed_twice(s: State) -> bool:
    return s.capp.closes == 2 or s.sapp.closes == 2


def _linger_expired_clean_server(s: State) -> bool:
    """The client closed in one step and gave up before the server's END;
    the server, which cannot know, ended CLEAN."""
    cterm, sterm = s.client.termination, s.server.termination
    return (
        s.capp.closing
        and cterm is not None
        and cterm.kind is TerminationKind.TRUNCATED
        and sterm is not None
        and sterm.clean
    )


def _both_clean_after_a_close_now(s: State) -> bool:
    return (s.capp.closing or s.sapp.closing) and LIFECYCLE.is_clean_end(s)


#: The lifecycle: EOFs, aborts, and closes in one step (``aclose``), each
#: side's possibly twice (a concurrent or repeated close), with a linger
#: that may expire. Two requests and whole frames only, to stay quick.
LIFECYCLE = ConnectionModel(requests=2, closes=True, fine_chunks=False)

LIFECYCLE_TARGETS = {
    "a second close": _closed_twice,
    "a close now, both CLEAN": _both_clean_after_a_close_now,
    "the client gave up, the server CLEAN": _linger_expired_clean_server,
}


def test_closes_eofs_and_aborts_break_no_invariant() -> None:
    result = explore(LIFECYCLE, targets=LIFECYCLE_TARGETS)
    print(f"\n{result.summary()}")
    assert result.violations == {}, _report(result)
    assert sorted(set(LIFECYCLE_TARGETS) - set(result.found)) == []


def test_the_checker_catches_a_reset_after_the_end_is_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A connection that resets even once its END is out destroys that END
    # on the wire, while its report (decided: CLEAN) says nothing was lost.
    monkeypatch.setattr(ConnectionModel, "_quiet_abort", lambda self, side: False)
    result = explore(ConnectionModel(requests=1))
    violation = result.violations["server CLEAN, END unheard"]
    steps = [(actor, action) for actor, action, _ in violation.trace]
    assert ("server", "aborts") in steps
    assert steps[-1] == ("client", "receives a reset")
