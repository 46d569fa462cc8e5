"""A Sphinx extension for adieu's documentation; everything it does is offline.

* **External references.** Type hints and docstrings mention Trio, Python and
  outcome objects (``trio.abc.Stream``, ``ssl.SSLContext``...). Instead of
  downloading intersphinx inventories at build time, references to those
  projects become plain links to their documentation, built from the
  object's name. A reference to anything else that does not resolve stays a
  warning, so that a broken reference to adieu's own objects fails the
  strict build.
* **Attribute docstrings.** adieu's public classes claim the module
  ``adieu`` (``adieu.TerminationKind``, not
  ``adieu._termination.TerminationKind``), so autodoc looks for attribute
  docstrings (an enum member's, for example) and for the order of members
  in ``adieu/__init__.py``, and finds none. They are taken from the private
  modules that define them.
* **The changelog.** ``.. markdown-changelog:: ../CHANGELOG.md`` includes the
  repository's changelog, written in a small subset of Markdown (headings,
  paragraphs, bullet lists, inline code and links), without a Markdown
  parser dependency.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

TRIO = "https://trio.readthedocs.io/en/stable/"
PYTHON = "https://docs.python.org/3/library/"
OUTCOME = "https://outcome.readthedocs.io/en/latest/api.html"

# Trio's reference is split into pages by topic; these prefixes live on the
# I/O page, trio.lowlevel and trio.testing on their own pages, the rest on the
# core page.
_TRIO_IO = (
    "trio.abc.",
    "trio.socket.",
    "trio.SSLStream",
    "trio.SocketStream",
    "trio.SocketListener",
    "trio.StapledStream",
    "trio.open_tcp",
    "trio.open_unix",
    "trio.open_ssl",
    "trio.open_signal_receiver",
    "trio.serve_",
    "trio.aclose_forcefully",
)

# Standard library modules whose page is library/<module>.html.
_STDLIB = (
    "ssl",
    "os",
    "signal",
    "socket",
    "logging",
    "enum",
    "math",
    "collections.abc",
    "contextlib",
    "dataclasses",
    "typing",
)
_BUILTIN_EXCEPTIONS = {
    "ValueError",
    "RuntimeError",
    "OSError",
    "KeyboardInterrupt",
    "ConnectionResetError",
    "ExceptionGroup",
    "BaseExceptionGroup",
    "StopAsyncIteration",
}


def external_url(target: str) -> str | None:
    """The documentation URL of a Trio, outcome or Python object, or
    ``None`` if ``target`` belongs to none of them."""
    if target.startswith("trio."):
        if target.startswith("trio.lowlevel."):
            page = "reference-lowlevel.html"
        elif target.startswith("trio.testing."):
            page = "reference-testing.html"
        elif target.startswith(_TRIO_IO):
            page = "reference-io.html"
        else:
            page = "reference-core.html"
        return f"{TRIO}{page}#{target}"
    if target.startswith("outcome."):
        return f"{OUTCOME}#{target}"
    if target in _BUILTIN_EXCEPTIONS:
        return f"{PYTHON}exceptions.html#{target}"
    for module in _STDLIB:
        if target.startswith(module + "."):
            return f"{PYTHON}{module}.html#{target}"
    return None


def _missing_reference(
    app: Sphinx, env: Any, node: Any, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    url = external_url(target)
    if url is None:
        return None
    link = nodes.reference("", "", internal=False, refuri=url, reftitle=target)
    link.append(contnode)
    return link


# ----------------------------------------------------- attribute docstrings


def _merge_attribute_docs(app: Sphinx) -> None:
    """Give the analyzer of ``adieu`` (which autodoc consults for classes
    whose ``__module__`` is ``adieu``) the attribute docstrings and the
    source order of adieu's private modules."""
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    import adieu

    public = ModuleAnalyzer.for_module("adieu")
    public.analyze()
    for info in pkgutil.iter_modules(adieu.__path__):
        if info.name.startswith("_"):
            private = ModuleAnalyzer.for_module(f"adieu.{info.name}")
            private.analyze()
            for key, lines in private.attr_docs.items():
                public.attr_docs.setdefault(key, lines)
            # The source order too, for autodoc_member_order = "bysource".
            offset = len(public.tagorder)
            for name, order in private.tagorder.items():
                public.tagorder.setdefault(name, offset + order)


_raw_attribute_docs: dict[str, list[str]] = {}


def _keep_attribute_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """Before napoleon: remember an adieu attribute's docstring as written."""
    if what == "attribute" and name.startswith("adieu."):
        _raw_attribute_docs[name] = list(lines)


def _restore_attribute_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: Any, lines: list[str]
) -> None:
    """After napoleon: put it back. napoleon reads the first line of an
    attribute's docstring as ``type: description`` when it has a colon;
    adieu's are plain sentences ("Both ENDs were exchanged: ...")."""
    raw = _raw_attribute_docs.pop(name, None)
    if raw is not None:
        lines[:] = raw


# --------------------------------------------------------------- changelog

_LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Markdown inline code and links to reStructuredText."""
    parts = re.split(r"(`[^`]+`)", text)
    out = []
    for part in parts:
        code = _CODE.fullmatch(part)
        if code:
            out.append(f"``{code.group(1)}``")
        else:
            out.append(_LINK.sub(r"`\1 <\2>`__", part))
    return "".join(out)


def markdown_to_rst(text: str) -> list[str]:
    """Convert the Markdown subset CHANGELOG.md uses to reStructuredText.

    The ``#`` title is dropped (the page has its own); ``##`` and ``###``
    become section titles; ``- `` starts a bullet whose continuation lines
    are indented by two spaces; anything else is a paragraph.

    Raises:
        ValueError: a construct outside that subset (so that the strict
            build fails instead of rendering it wrongly).
    """
    out: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("# "):
            continue
        if line.startswith("## "):
            title = _inline(line[3:].strip())
            out += ["", title, "-" * max(len(title), 3), ""]
        elif line.startswith("### "):
            title = _inline(line[4:].strip())
            out += ["", title, "~" * max(len(title), 3), ""]
        elif line.startswith("- "):
            out.append("* " + _inline(line[2:]))
        elif line.startswith("  ") and stripped:
            out.append("  " + _inline(stripped))
        elif not stripped:
            out.append("")
        elif line.startswith(("#", "```", ">", "|", "* ", "1.")):
            raise ValueError(f"CHANGELOG.md: unsupported Markdown: {line!r}")
        else:
            out.append(_inline(line))
    return out


class MarkdownChangelog(SphinxDirective):
    """``.. markdown-changelog:: path`` (relative to the current document)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        rel, path = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(rel)
        lines = markdown_to_rst(Path(path).read_text(encoding="utf-8"))
        self.state_machine.insert_input(StringList(lines, source=path), path)
        return []


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("missing-reference", _missing_reference)
    app.connect("builder-inited", _merge_attribute_docs)
    # Around napoleon, which handles the same event at priority 500.
    app.connect("autodoc-process-docstring", _keep_attribute_docstring, priority=400)
    app.connect("autodoc-process-docstring", _restore_attribute_docstring, priority=600)
    app.add_directive("markdown-changelog", MarkdownChangelog)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
