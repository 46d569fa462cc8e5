"""A few lines of SVG writing, shared by the drawing scripts.

Plain Python, no graphviz or other binary: the diagrams are laid out here,
with a monospace font so that text widths are known without font metrics.
The output is deterministic (fixed number formatting, elements in the order
they were drawn), so that ``tests/test_docs.py`` can regenerate a picture
and compare it byte for byte with the checked-in one.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', monospace"
#: Width of one character, as a fraction of the font size (monospace fonts
#: are close to 0.6).
CHAR = 0.6

INK = "#1f2328"
MUTED = "#59636e"
ACCENT = "#0b6bcb"
ALARM = "#c62828"
GOOD = "#2e7d32"
PAPER = "#ffffff"
FILL = "#eef4fb"


def num(value: float) -> str:
    """A coordinate, with at most one decimal and no trailing zero."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR


def wrap(text: str, width: int) -> list[str]:
    """Split ``text`` into lines of at most ``width`` characters, at spaces."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines or [""]


class Drawing:
    """An SVG picture built element by element."""

    def __init__(self, width: float, height: float, title: str) -> None:
        self.width = width
        self.height = height
        self.title = title
        self.items: list[str] = []

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        *,
        fill: str = FILL,
        stroke: str = INK,
        radius: float = 6,
        dashed: bool = False,
    ) -> None:
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        self.items.append(
            f'<rect x="{num(x)}" y="{num(y)}" width="{num(w)}" height="{num(h)}" '
            f'rx="{num(radius)}" fill="{fill}" stroke="{stroke}" '
            f'stroke-width="1.5"{dash}/>'
        )

    def circle(self, x: float, y: float, r: float, *, fill: str = INK) -> None:
        self.items.append(
            f'<circle cx="{num(x)}" cy="{num(y)}" r="{num(r)}" fill="{fill}"/>'
        )

    def line(
        self,
        x1: float,
        y1: float,
        x2: float,
        y2: float,
        *,
        color: str = INK,
        arrow: bool = False,
        dashed: bool = False,
        width: float = 1.5,
    ) -> None:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        head = f' marker-end="url(#{self._marker(color)})"' if arrow else ""
        self.items.append(
            f'<line x1="{num(x1)}" y1="{num(y1)}" x2="{num(x2)}" y2="{num(y2)}" '
            f'stroke="{color}" stroke-width="{num(width)}"{dash}{head}/>'
        )

    def path(
        self, d: str, *, color: str = INK, arrow: bool = False, dashed: bool = False
    ) -> None:
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        head = f' marker-end="url(#{self._marker(color)})"' if arrow else ""
        self.items.append(
            f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5"'
            f"{dash}{head}/>"
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        size: float = 12,
        anchor: str = "start",
        color: str = INK,
        bold: bool = False,
        angle: float = 0.0,
    ) -> None:
        weight = ' font-weight="bold"' if bold else ""
        turn = f' transform="rotate({num(angle)} {num(x)} {num(y)})"' if angle else ""
        self.items.append(
            f'<text x="{num(x)}" y="{num(y)}" font-size="{num(size)}" '
            f'text-anchor="{anchor}" fill="{color}"{weight}{turn}>'
            f"{escape(content)}</text>"
        )

    def _marker(self, color: str) -> str:
        return "arrow-" + color.lstrip("#")

    def render(self) -> bytes:
        colors = sorted(
            {
                item.split("url(#arrow-")[1].split(")")[0]
                for item in self.items
                if "url(#arrow-" in item
            }
        )
        markers = "".join(
            f'<marker id="arrow-{c}" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
            f'<path d="M 0 0 L 10 5 L 0 10 z" fill="#{c}"/></marker>'
            for c in colors
        )
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{num(self.width)}" '
            f'height="{num(self.height)}" viewBox="0 0 {num(self.width)} '
            f'{num(self.height)}" font-family="{escape(FONT)}" role="img">\n'
            f"<title>{escape(self.title)}</title>\n"
            f"<defs>{markers}</defs>\n"
            f'<rect width="100%" height="100%" fill="{PAPER}"/>\n'
        )
        return (head + "\n".join(self.items) + "\n</svg>\n").encode("utf-8")


def angle_of(x1: float, y1: float, x2: float, y2: float) -> float:
    """The angle of the segment, in degrees, kept readable (-90..90)."""
    angle = math.degrees(math.atan2(y2 - y1, x2 - x1))
    if angle > 90:
        angle -= 180
    elif angle < -90:
        angle += 180
    return angle
