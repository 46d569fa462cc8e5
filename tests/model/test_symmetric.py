"""The counterexample: symmetric half-close loses a reply and nobody notices.

The same checker as ``test_asymmetric.py``, run on endpoints that end the
way plain TCP half-close does (``checker.HalfCloseEndpoint``: either side may
end first, no SHUTDOWN, END taken as final). It must find the loss adieu's
asymmetric handshake exists to prevent; ``pytest -s tests/model`` prints the
shortest trace.
"""

from __future__ import annotations

import pytest
from checker import (
    ConnectionModel,
    Exploration,
    explore,
    format_trace,
    symmetric_counterexample,
)

REQUESTS = 3


@pytest.fixture(scope="module")
def symmetric() -> tuple[ConnectionModel, Exploration]:
    model = ConnectionModel(requests=REQUESTS, symmetric=True, aborts=False)
    result = explore(model, targets={"seed loss": model.seed_loss})
    print(f"\n{result.summary()}")
    if "seed loss" in result.found:
        print("\nShortest trace of the loss:")
        print(format_trace(result.found["seed loss"]))
    return model, result


def test_symmetric_half_close_loses_a_reply_silently(
    symmetric: tuple[ConnectionModel, Exploration],
) -> None:
    _, result = symmetric
    assert "lost reply" in result.violations
    assert "server ended first" in result.violations
    assert "seed loss" in result.found


def test_the_shortest_trace_tells_the_seed_story(
    symmetric: tuple[ConnectionModel, Exploration],
) -> None:
    _, result = symmetric
    trace = result.found["seed loss"]
    moves = [(actor, action) for actor, action, _ in trace]
    # The client's request is on the wire when the server ends first.
    request = moves.index(("client", "sends request #1"))
    server_end = moves.index(("server", "sends END"))
    assert request < server_end
    assert "ends first" in trace[server_end][2]
    # The server then receives the request and cannot answer it...
    late = [
        i
        for i, (actor, action, detail) in enumerate(trace)
        if actor == "server"
        and "request #1" in action
        and "cannot answer request #1" in detail
    ]
    assert late
    assert late[0] > server_end
    # ...and the client takes the server's END as final and ends CLEAN.
    taken = [i for i, step in enumerate(trace) if "takes it as final" in step[2]]
    assert taken
    assert "request #1 still unanswered" in trace[taken[0]][2]
    closes = [(actor, detail) for actor, _, detail in trace if "closes:" in detail]
    assert ("client", "closes: CLEAN") in closes
    assert ("server", "closes: CLEAN") in closes


def test_the_counterexample_is_available_as_data() -> None:
    trace = symmetric_counterexample()
    assert trace
    for step in trace:
        assert isinstance(step, tuple)
        assert len(step) == 3
        assert all(isinstance(part, str) for part in step)
    assert trace[0] == ("client", "sends request #1", "in flight")
    text = format_trace(trace)
    assert text.splitlines()[0] == "1. client -> sends request #1 (in flight)"
    assert len(text.splitlines()) == len(trace)


def test_the_asymmetric_core_survives_the_same_workload() -> None:
    # The very workload that loses a reply above, with adieu's core: the
    # server cannot end first, so nothing is lost without being reported.
    model = ConnectionModel(requests=1, aborts=False)
    result = explore(model, targets={"seed loss": model.seed_loss})
    assert "seed loss" not in result.found
    assert result.violations == {}
