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
from svg import ACCENT, FILL, INK, MUTED, Drawing, text_width  # noqa: E402

import adieu  # noqa: E402

OUTPUT = "diagrams/errors.svg"

ROW = 46
INDENT = 44
NAME_SIZE = 13
NOTE_SIZE = 12
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
    note_x = MARGIN + name_w + 48
    width = note_x + max(text_width(note, NOTE_SIZE) for *_, note in items) + MARGIN
    height = MARGIN * 2 + len(items) * ROW
    d = Drawing(width, height, "adieu's exceptions, drawn from the classes")
    ours = set(adieu_exceptions())
    stack: list[tuple[int, float]] = []  # (depth, y) of the open ancestors
    for i, (depth, cls, note) in enumerate(items):
        y = MARGIN + i * ROW
        x = MARGIN + depth * INDENT
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            _, parent_y = stack[-1]
            px = MARGIN + (depth - 1) * INDENT + 14
            d.line(px, parent_y + 30, px, y + 15, color=MUTED)
            d.line(px, y + 15, x, y + 15, color=MUTED)
        stack.append((depth, y))
        name = qualified(cls)
        box_w = text_width(name, NAME_SIZE) + 20
        mine = cls in ours
        d.rect(
            x,
            y,
            box_w,
            30,
            fill=FILL if mine else "#f6f8fa",
            stroke=ACCENT if mine else MUTED,
            radius=4,
            dashed=not mine,
        )
        d.text(x + 10, y + 20, name, size=NAME_SIZE, bold=mine, color=INK)
        if note:
            d.text(note_x, y + 20, note, size=NOTE_SIZE, color=MUTED)
    return {OUTPUT: d.render()}


def main() -> None:
    for rel, data in render().items():
        (DOCS / rel).write_bytes(data)
        print(f"wrote docs/{rel}")


if __name__ == "__main__":
    main()
