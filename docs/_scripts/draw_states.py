"""Draw the state machine of one side of a connection, for each role, from
the protocol core's own tables (``adieu._state.TRANSITIONS`` and ``GUARDS``).

    python docs/_scripts/draw_states.py      # writes docs/diagrams/states.svg

Nothing about the protocol is written here: states, frames, transitions and
guards are all read from the tables, and the layout is computed from them
(a state's column is the length of the longest path that reaches it). If the
rules change, the picture changes with them; ``tests/test_docs.py`` fails
while the checked-in picture is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DOCS.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from svg import ACCENT, FILL, INK, MUTED, Drawing, text_width  # noqa: E402

from adieu._state import GUARDS, TRANSITIONS, FrameKind, Role, SideState  # noqa: E402

OUTPUT = "diagrams/states.svg"

# Sizes for a picture shown about 700 px wide (a page's text column); a
# click opens it at full size.
BOX_H = 52
STATE_SIZE = 19
LABEL_SIZE = 17
NOTE_SIZE = 17
MARGIN = 30


def frame_label(role: Role, kind: FrameKind) -> str:
    """The frame's name, with its guard if it has one."""
    label = kind.name
    guard = GUARDS.get((role, kind))
    if guard is not None:
        other, state = guard
        label += f" [{other.value} {state.name}]"
    return label


def columns(role: Role) -> dict[SideState, int]:
    """Each state's column: the longest path from PREAMBLE (self-loops
    aside; the tables have no other cycle)."""
    table = TRANSITIONS[role]
    column = {SideState.PREAMBLE: 0}
    changed = True
    while changed:
        changed = False
        for state, moves in table.items():
            if state not in column:
                continue
            for target in moves.values():
                if target is state:
                    continue
                if column.get(target, -1) < column[state] + 1:
                    column[target] = column[state] + 1
                    changed = True
    return column


def arcs(role: Role) -> int:
    """How many transitions skip a column (drawn as arcs below the boxes)."""
    column = columns(role)
    return sum(
        1
        for state, moves in TRANSITIONS[role].items()
        for target in moves.values()
        if column[target] - column[state] > 1
    )


def band(role: Role) -> float:
    """The height of one role's drawing."""
    return 170 + 50 * arcs(role)


def gap() -> float:
    """Horizontal room between two columns: the longest line of an edge's
    label fits (a guard goes on a line of its own, under the arrow)."""
    lines = [
        line
        for role in Role
        for kind in FrameKind
        for line in frame_label(role, kind).split(" [")
    ]
    return max(text_width(line, LABEL_SIZE) for line in lines) + 30


def draw_role(d: Drawing, role: Role, top: float, box_w: float) -> None:
    table = TRANSITIONS[role]
    column = columns(role)
    d.text(MARGIN, top + 26, f"A {role.value}'s side", size=21, bold=True)
    mid = top + 130
    x_of = {s: MARGIN + 40 + c * (box_w + gap()) for s, c in column.items()}

    # The start marker.
    start = x_of[SideState.PREAMBLE]
    d.circle(start - 30, mid, 6)
    d.line(start - 24, mid, start - 2, mid, arrow=True)

    below = 0
    for state, moves in table.items():
        x = x_of[state]
        for kind, target in moves.items():
            label = frame_label(role, kind)
            color = ACCENT if (role, kind) in GUARDS else INK
            if target is state:
                # A self-loop above the box.
                cx = x + box_w / 2
                y0 = mid - BOX_H / 2
                d.path(
                    f"M {cx - 18} {y0} C {cx - 40} {y0 - 55}, {cx + 40} {y0 - 55}, "
                    f"{cx + 18} {y0 - 2}",
                    color=color,
                    arrow=True,
                )
                d.text(
                    cx, y0 - 48, label, size=LABEL_SIZE, anchor="middle", color=color
                )
                continue
            span = column[target] - column[state]
            x1 = x + box_w
            x2 = x_of[target]
            if span == 1:
                d.line(x1, mid, x2 - 2, mid, arrow=True, color=color)
                frame, _, guard = label.partition(" [")
                d.text(
                    (x1 + x2) / 2,
                    mid - 9,
                    frame,
                    size=LABEL_SIZE,
                    anchor="middle",
                    color=color,
                )
                if guard:
                    d.text(
                        (x1 + x2) / 2,
                        mid + 24,
                        f"[{guard}",
                        size=LABEL_SIZE,
                        anchor="middle",
                        color=color,
                    )
            else:
                # Skips a column: an arc below the boxes, deeper for each one.
                below += 1
                depth = 40 + 34 * below
                xa = x + box_w / 2 + 10
                xb = x2 + box_w / 2 - 10
                y0 = mid + BOX_H / 2
                d.path(
                    f"M {xa} {y0} C {xa} {y0 + depth}, {xb} {y0 + depth}, "
                    f"{xb} {y0 + 2}",
                    color=color,
                    arrow=True,
                )
                d.text(
                    (xa + xb) / 2,
                    y0 + depth * 0.75 + 14,
                    label,
                    size=LABEL_SIZE,
                    anchor="middle",
                    color=color,
                )
    for state, x in x_of.items():
        final = not table[state]
        d.rect(x, mid - BOX_H / 2, box_w, BOX_H, fill="#e8f5e9" if final else FILL)
        d.text(
            x + box_w / 2,
            mid + 7,
            state.name,
            size=STATE_SIZE,
            anchor="middle",
            bold=True,
        )


def render() -> dict[str, bytes]:
    """The picture, as ``{path relative to docs/: bytes}``."""
    names = [s.name for role in Role for s in TRANSITIONS[role]]
    box_w = max(text_width(n, STATE_SIZE) for n in names) + 28
    n_columns = max(max(columns(role).values()) for role in Role) + 1
    width = 2 * MARGIN + 40 + n_columns * box_w + (n_columns - 1) * gap()
    height = sum(band(role) for role in Role) + 60
    d = Drawing(
        width,
        height,
        "adieu: the states of one side of a connection, for each role, drawn "
        "from adieu._state.TRANSITIONS and GUARDS",
    )
    top = 10.0
    for role in Role:
        draw_role(d, role, top, box_w)
        top += band(role)
    guards = ", ".join(
        f"{role.value} {kind.name} only once the {other.value} is {state.name}"
        for (role, kind), (other, state) in GUARDS.items()
    )
    d.text(
        MARGIN,
        height - 44,
        "Any frame not drawn from a state is a protocol error.",
        size=NOTE_SIZE,
        color=MUTED,
    )
    d.text(
        MARGIN, height - 18, f"Guards, in blue: {guards}.", size=NOTE_SIZE, color=ACCENT
    )
    return {OUTPUT: d.render()}


def main() -> None:
    for rel, data in render().items():
        (DOCS / rel).write_bytes(data)
        print(f"wrote docs/{rel}")


if __name__ == "__main__":
    main()
