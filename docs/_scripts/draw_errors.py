"""Draw adieu's exception tree from the exception classes themselves.

    python docs/_scripts/draw_errors.py      # writes docs/diagrams/errors.svg

Every exception class in ``adieu.__all__`` is placed under its first base
class (further bases are noted, as MessageTooLarge's ValueError); a base
class outside adieu (Trio's, Python's) is a root. Each box carries the first
sentence of the class's docstring. Trio's ``ClosedResourceError``, which
adieu raises as is for use after close, is drawn beside them.
``tests/test_docs.py`` fails while the checked-in picture is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DOCS.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import trio  # noqa: E402
from svg import ACCENT, FILL, INK, MUTED, Drawing, text_width, wrap  # noqa: E402

import adieu  # noqa: E402

OUTPUT = "diagrams/errors.svg"

# Sizes for a picture shown about 700 px wide (a page's text column); a
# click opens it at full size. Notes wrap, so the picture stays narrow.
BOX = 40  # height of a class's box
GAP = 16  # between two rows
INDENT = 48
NAME_SIZE = 19
NOTE_SIZE = 17
NOTE_LINE = 22
NOTE_WRAP = 44  # characters per line of a note
MARGIN = 24

#: Raised by adieu as is, with no subclass of its own.
TRIO_AS_IS: tuple[type[BaseException], ...] = (trio.ClosedResourceError,)
TRIO_AS_IS_NOTE = (
    "Trio's own: use after this side closed or aborted, or a send after send_eof()"
)


def qualified(cls: type) -> str:
    module = cls.__module__
    if module in ("builtins",):
        return cls.__name__
    if module.startswith("trio"):
        return f"trio.{cls.__name__}"
    return f"{module.split('.')[0]}.{cls.__name__}"


def summary(cls: type) -> str:
    """The first sentence of the class's docstring, without markup; a long
    one is cut at its colon."""
    doc = " ".join((cls.__doc__ or "").split()).replace("``", "")
    end = doc.find(". ")
    sentence = doc if end < 0 else doc[: end + 1]
    if len(sentence) > 80 and ": " in sentence:
        sentence = sentence.split(": ")[0] + "."
    return sentence


def adieu_exceptions() -> list[type[BaseException]]:
    return [
        obj
        for name in adieu.__all__
        if isinstance(obj := getattr(adieu, name), type)
        and issubclass(obj, BaseException)
    ]


def rows() -> list[tuple[int, type, str]]:
    """``(depth, class, note)`` in drawing order: each root, then its adieu
    subclasses depth first, in the order of ``adieu.__all__``."""
    ours = adieu_exceptions()
    children: dict[type, list[type]] = {}
    roots: list[type] = []
    for cls in ours:
        parent = cls.__bases__[0]
        children.setdefault(parent, []).append(cls)
        if parent not in ours and parent not in roots:
            roots.append(parent)
    out: list[tuple[int, type, str]] = []

    def visit(cls: type, depth: int) -> None:
        if cls in ours:
            note = summary(cls)
            extra = [qualified(b) for b in cls.__bases__[1:]]
            if extra:
                note = f"(also {', '.join(extra)}) {note}"
        elif cls in TRIO_AS_IS:
            note = TRIO_AS_IS_NOTE
        else:
            note = ""
        out.append((depth, cls, note))
        for child in children.get(cls, []):
            visit(child, depth + 1)

    for root in [*roots, *TRIO_AS_IS]:
        visit(root, 0)
    return out


def render() -> dict[str, bytes]:
    """The picture, as ``{path relative to docs/: bytes}``."""
    items = rows()
    name_w = max(
        depth * INDENT + text_width(qualified(cls), NAME_SIZE)
        for depth, cls, _ in items
    )
    note_x = MARGIN + name_w + 40
    notes = [wrap(note, NOTE_WRAP) if note else [] for *_, note in items]
    width = note_x + max(text_width(line, NOTE_SIZE) for n in notes for line in n)
    width += MARGIN
    heights = [max(BOX, len(n) * NOTE_LINE + 8) + GAP for n in notes]
    height = MARGIN * 2 + sum(heights)
    d = Drawing(width, height, "adieu's exceptions, drawn from the classes")
    ours = set(adieu_exceptions())
    stack: list[tuple[int, float]] = []  # (depth, y) of the open ancestors
    y = float(MARGIN)
    rows_drawn = zip(items, notes, heights, strict=True)
    for (depth, cls, _), note_lines, row_height in rows_drawn:
        x = MARGIN + depth * INDENT
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            _, parent_y = stack[-1]
            px = MARGIN + (depth - 1) * INDENT + 16
            d.line(px, parent_y + BOX, px, y + BOX / 2, color=MUTED)
            d.line(px, y + BOX / 2, x, y + BOX / 2, color=MUTED)
        stack.append((depth, y))
        name = qualified(cls)
        box_w = text_width(name, NAME_SIZE) + 24
        mine = cls in ours
        d.rect(
            x,
            y,
            box_w,
            BOX,
            fill=FILL if mine else "#f6f8fa",
            stroke=ACCENT if mine else MUTED,
            radius=4,
            dashed=not mine,
        )
        d.text(x + 12, y + 27, name, size=NAME_SIZE, bold=mine, color=INK)
        for i, line in enumerate(note_lines):
            d.text(note_x, y + 26 + i * NOTE_LINE, line, size=NOTE_SIZE, color=MUTED)
        y += row_height
    return {OUTPUT: d.render()}


def main() -> None:
    for rel, data in render().items():
        (DOCS / rel).write_bytes(data)
        print(f"wrote docs/{rel}")


if __name__ == "__main__":
    main()
