"""Sphinx configuration of adieu's documentation.

The build is offline and strict: ``sphinx-build -W --keep-going -n -b html
docs <out>`` must pass with no warning (``tests/test_docs.py`` runs it).
Nothing is fetched at build time: references to Trio's, Python's and
outcome's documentation are turned into plain links by the local extension
``_ext/adieu_docs.py``, not by intersphinx inventories.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
# Building from a checkout without installing: the library is in src/.
sys.path.insert(0, str(HERE.parent / "src"))

import adieu  # noqa: E402

project = "adieu"
author = "The adieu developers"
copyright = "the adieu developers"
release = adieu.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.extlinks",
    "adieu_docs",
]

root_doc = "index"
exclude_patterns = ["_build", "_generated", "_scripts", "_ext"]
templates_path: list[str] = []
nitpicky = True
default_role = "py:obj"
pygments_style = "sphinx"
# A block that does not name its language is not highlighted: shell sessions
# say "console", program output "text", and Python is only ever included
# from files with ":language: python" (tests/test_docs.py checks all three).
highlight_language = "none"

# -- autodoc: the reference is the docstrings ---------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autodoc_class_signature = "separated"
autodoc_default_options = {"exclude-members": "__init__, __new__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Attributes:" sections become attribute entries, so that they can be
# referred to (:attr:`adieu.Termination.confirmed`).
napoleon_use_ivar = False
napoleon_use_rtype = False

# Private names that public docstrings mention on purpose, without a page of
# their own: the frame decoder (an internal of the core) and the type variable
# of ConnectionReport.
nitpick_ignore = [
    ("py:class", "FrameDecoder"),
    ("py:class", "T"),
]

# -- links to other projects' documentation, as plain URLs --------------------
extlinks = {
    "trio": ("https://trio.readthedocs.io/en/stable/%s", "%s"),
    "pydoc": ("https://docs.python.org/3/%s", "%s"),
}

# -- HTML ----------------------------------------------------------------------
html_theme = "furo"
html_title = f"adieu {release}"
html_static_path = ["_static"]
html_css_files = ["adieu.css"]
html_copy_source = False
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": True,
}
