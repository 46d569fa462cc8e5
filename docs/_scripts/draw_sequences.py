"""Draw the model checker's traces as sequence diagrams.

    python docs/_scripts/draw_sequences.py

writes

* ``docs/diagrams/symmetric.svg`` and ``docs/_generated/symmetric-trace.inc``:
  the shortest trace in which plain TCP half-close loses a reply without
  anyone noticing, exactly as ``tests/model/checker.py`` finds it
  (``symmetric_counterexample()``);
* ``docs/diagrams/asymmetric.svg`` and ``docs/_generated/asymmetric-trace.inc``:
  the same race (the client's last request and END on the wire while the
  server wants to end), played by the checker's model around adieu's real
  sans-I/O core: the server may not end first, so it asks with SHUTDOWN, and
  the reply survives. The script checks that this run ends CLEAN on both
  sides with every reply delivered and confirmed, and fails otherwise.

Nothing in the traces is written here: every step, label and note comes from
the checker. ``tests/test_docs.py`` regenerates both and fails while a
checked-in file is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "model"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import checker  # noqa: E402
from svg import ACCENT, ALARM, INK, MUTED, Drawing, angle_of, wrap  # noqa: E402

from adieu import Role  # noqa: E402

Step = tuple[str, str, str]

CLIENT_X = 470.0
SERVER_X = 790.0
WIDTH = 1260.0
# Sizes for a picture shown about 700 px wide (a page's text column): 19
# units there are 11 px, readable; a click opens it at full size.
TEXT_SIZE = 19.0
LABEL_SIZE = 17.0
LINE = 25.0
WRAP = 34  # characters per line of a step's text: fits beside its actor
TOP = 104.0

#: The race the asymmetric diagram replays: the moves of the symmetric
#: counterexample, except that adieu's server, which may not send END before
#: the client's END has arrived, asks with SHUTDOWN instead.
ASYMMETRIC_SCRIPT: tuple[tuple[str, str], ...] = (
    ("client", "sends request #1"),
    ("client", "sends END"),
    ("server", "sends SHUTDOWN"),
    ("server", "receives"),
    ("server", "sends reply #1"),
    ("server", "sends END"),
    ("server", "receives"),
    ("client", "receives"),
    ("client", "receives"),
)


def symmetric_trace() -> list[Step]:
    """The checker's shortest counterexample for symmetric half-close."""
    return checker.symmetric_counterexample()


def asymmetric_trace() -> list[Step]:
    """:data:`ASYMMETRIC_SCRIPT` played on the checker's model of adieu's
    core. A "receives" move delivers everything in flight.

    Raises:
        RuntimeError: the model offers no such move, or the run does not end
            CLEAN on both sides with every reply delivered and confirmed.
    """
    model = checker.ConnectionModel(requests=1, aborts=False)
    state: Any = model.initial()
    trace: list[Step] = []
    for actor, move in ASYMMETRIC_SCRIPT:
        options = [
            (step, after)
            for step, after, _ in model.successors(state)
            if step[0] == actor and step[1].startswith(move)
        ]
        if move == "receives":
            # Deliver everything: the option after which no frame is left in
            # flight towards this actor (only the transport's EOF may be).
            receiver = Role(actor)
            whole = {
                step: after
                for step, after in options
                if not any(
                    isinstance(item, checker.Frame)
                    for item in after.outbound(receiver.peer).items
                )
            }
            options = list(whole.items())
        if len(options) != 1:
            raise RuntimeError(f"no single move {actor} {move!r}: {options}")
        step, state = options[0]
        trace.append(step)
    client, server = state.client.termination, state.server.termination
    replies = state.capp.replies()
    if not (
        model.is_end(state)
        and client.clean
        and server.clean
        and client.confirmed
        and replies == [1]
        and not model.check(state)
    ):
        raise RuntimeError(f"the asymmetric run did not end as documented: {state}")
    return trace


class Arrow:
    def __init__(self, sender: str, label: str, row: int, *, fin: bool) -> None:
        self.sender = sender
        self.label = label
        self.row = row
        self.fin = fin
        self.received: int | None = None
        self.lost = False


def _arrows(trace: Sequence[Step]) -> list[Arrow]:
    """Match every frame received to the step that sent it. Both preambles
    are on the wire before the first step (row 0)."""
    arrows = [
        Arrow("client", "preamble", 0, fin=False),
        Arrow("server", "preamble", 0, fin=False),
    ]
    for row, (actor, action, detail) in enumerate(trace, 1):
        if action.startswith("sends "):
            label = action.removeprefix("sends ")
            arrows.append(Arrow(actor, label, row, fin=False))
            if label == "END":
                arrows.append(Arrow(actor, "FIN", row, fin=True))
            continue
        if not action.startswith("receives "):
            continue
        what = action.removeprefix("receives ")
        peer = Role(actor).peer.value
        if what == "the transport's EOF":
            labels = ["FIN"]
        else:
            labels = [part.removeprefix("the rest of ") for part in what.split(", ")]
        for label in labels:
            if " of " in label and "bytes of" in label:
                continue  # part of a frame: drawn when the rest arrives
            for arrow in arrows:
                if (
                    arrow.sender == peer
                    and arrow.label == label
                    and arrow.received is None
                ):
                    arrow.received = row
                    arrow.lost = f"cannot answer {label}" in detail
                    break
            else:
                raise RuntimeError(f"step {row}: nothing sent matches {label!r}")
    return arrows


def _row_heights(trace: Sequence[Step]) -> list[float]:
    heights = [56.0]
    for _actor, action, detail in trace:
        lines = len(wrap(action, WRAP)) + (len(wrap(detail, WRAP)) if detail else 0)
        heights.append(max(56.0, lines * LINE + 22))
    return heights


def draw(trace: Sequence[Step], title: str, heading: str) -> bytes:
    heights = _row_heights(trace)
    ys: list[float] = []
    y = TOP
    for h in heights:
        ys.append(y + 14)
        y += h
    height = y + 30
    d = Drawing(WIDTH, height, title)
    d.text(WIDTH / 2, 32, heading, size=23, anchor="middle", bold=True)
    for name, x in (("client", CLIENT_X), ("server", SERVER_X)):
        d.rect(x - 70, 48, 140, 40, radius=4)
        d.text(x, 75, name, size=21, anchor="middle", bold=True)
        d.line(x, 88, x, height - 20, color=MUTED, dashed=True, width=1)
    x_of = {"client": CLIENT_X, "server": SERVER_X}

    for arrow in _arrows(trace):
        if arrow.received is None:
            continue
        x1 = x_of[arrow.sender]
        x2 = x_of[Role(arrow.sender).peer.value]
        y1, y2 = ys[arrow.row], ys[arrow.received]
        if arrow.fin:
            y1 += 8
            y2 += 8
        color = ALARM if arrow.lost else (MUTED if arrow.fin else ACCENT)
        end = x2 - 17 if x2 > x1 else x2 + 17  # stop at the step's badge
        d.line(x1, y1, end, y2, color=color, arrow=True, dashed=arrow.fin)
        # The label sits on the arrow, a third of the way from the sender.
        lx = x1 + (x2 - x1) * 0.3
        ly = y1 + (y2 - y1) * 0.3
        d.text(
            lx,
            ly - 5,
            arrow.label,
            size=LABEL_SIZE,
            anchor="middle",
            color=color,
            angle=angle_of(x1, y1, x2, y2),
        )

    for x in (CLIENT_X, SERVER_X):
        d.circle(x, ys[0], 4, fill=ACCENT)
    for row, (actor, action, detail) in enumerate(trace, 1):
        x = x_of[actor]
        y = ys[row]
        alarm = "cannot answer" in detail or "unanswered" in detail
        d.circle(x, y, 15, fill=ALARM if alarm else INK)
        d.text(x, y + 6, str(row), size=17, anchor="middle", color="#ffffff", bold=True)
        if actor == "client":
            tx, anchor = x - 24, "end"
        else:
            tx, anchor = x + 24, "start"
        ty = y + 6
        for line in wrap(action, WRAP):
            d.text(tx, ty, line, size=TEXT_SIZE, anchor=anchor, bold=True)
            ty += LINE
        if detail:
            color = ALARM if alarm else MUTED
            for line in wrap(detail, WRAP):
                d.text(tx, ty, line, size=TEXT_SIZE, anchor=anchor, color=color)
                ty += LINE
    return d.render()


def trace_text(trace: Sequence[Step]) -> bytes:
    """The trace as a plain-text listing to include in the docs (long lines
    wrap: see the ``adieu-listing`` class in ``_static/adieu.css``)."""
    body = checker.format_trace(trace)
    lines = [".. code-block:: text", "   :class: adieu-listing", ""]
    lines += [f"    {line}" for line in body.splitlines()] + [""]
    return "\n".join(lines).encode("utf-8")


def render() -> dict[str, bytes]:
    """The pictures and trace texts, as ``{path relative to docs/: bytes}``."""
    symmetric = symmetric_trace()
    asymmetric = asymmetric_trace()
    return {
        "diagrams/symmetric.svg": draw(
            symmetric,
            "Symmetric half-close loses a reply: the model checker's shortest "
            "counterexample",
            "Symmetric half-close: the shortest trace that loses a reply",
        ),
        "_generated/symmetric-trace.inc": trace_text(symmetric),
        "diagrams/asymmetric.svg": draw(
            asymmetric,
            "The same race with adieu's asymmetric handshake: nothing is lost",
            "adieu: the same race, the server asks with SHUTDOWN",
        ),
        "_generated/asymmetric-trace.inc": trace_text(asymmetric),
    }


def main() -> None:
    for rel, data in render().items():
        (DOCS / rel).write_bytes(data)
        print(f"wrote docs/{rel}")


if __name__ == "__main__":
    main()
