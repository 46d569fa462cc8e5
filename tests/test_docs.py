"""The documentation: it builds offline with no warning, covers every public
name, its pictures and tables are what the scripts draw from the code today,
and every Python snippet in it is a file that a test runs.

The programs themselves are run by ``tests/docs/`` (the tutorial, the how-to
guides, the worked examples of the wire protocol, TIME_WAIT).
"""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

import adieu
import adieu.testing

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCRIPTS = ("draw_states", "draw_sequences", "draw_errors", "write_tables")

# Any attempt to reach the network during the build fails at once.
OFFLINE = {
    name: "http://127.0.0.1:9"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
} | {"no_proxy": "", "NO_PROXY": ""}


def _load(path: Path, name: str) -> ModuleType:
    """Import a script of ``docs/`` by its path (the scripts extend
    ``sys.path`` to find the library and the model checker: undone here)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML documentation, strictly: warnings are errors, and
    references are checked (``-n``)."""
    out = tmp_path_factory.mktemp("html")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-E"]
    command += ["-q", "-b", "html", str(DOCS), str(out)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=os.environ | OFFLINE,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr
    return out


def _inventory(built: Path) -> set[str]:
    """The names of the Python objects the documentation describes."""
    data = (built / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four text lines, then zlib
        header_end = data.index(b"\n", header_end) + 1
    names = set()
    for line in zlib.decompress(data[header_end:]).decode().splitlines():
        name, domain_role = line.split(" ", 2)[:2]
        if domain_role.startswith("py:"):
            names.add(name)
    return names


def test_the_docs_build_offline_with_no_warning(built: Path) -> None:
    for page in ("index", "protocol", "compatibility", "tutorial/index"):
        assert (built / f"{page}.html").is_file()
    saved = list(sys.path)
    try:
        conf = runpy.run_path(str(DOCS / "conf.py"))
    finally:
        sys.path[:] = saved
    assert "sphinx.ext.intersphinx" not in conf["extensions"]
    assert conf["nitpicky"] is True


def test_every_public_name_is_in_the_reference(built: Path) -> None:
    documented = _inventory(built)
    expected = {f"adieu.{name}" for name in adieu.__all__}
    expected |= {f"adieu.testing.{name}" for name in adieu.testing.__all__}
    assert sorted(expected - documented) == []


def _internal(value: object) -> bool:
    """A member of the seam between adieu's own layers: no leading
    underscore (other modules of adieu call it), but marked internal, so it
    stays out of the reference."""
    return ":meta private:" in (getattr(value, "__doc__", None) or "")


def _public_members(cls: type) -> list[str]:
    members = [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_")
        and (callable(value) or isinstance(value, property))
        and not _internal(value)
    ]
    members += [m.name for m in cls] if isinstance(cls, type(adieu.Role)) else []
    members += list(getattr(cls, "__dataclass_fields__", {}))
    return members


def test_every_public_member_is_in_the_reference(built: Path) -> None:
    documented = _inventory(built)
    missing = []
    for module, prefix in ((adieu, "adieu"), (adieu.testing, "adieu.testing")):
        for name in module.__all__:
            obj = getattr(module, name)
            if not isinstance(obj, type):
                continue
            for member in _public_members(obj):
                if f"{prefix}.{name}.{member}" not in documented:
                    missing.append(f"{prefix}.{name}.{member}")
    assert missing == []


def test_the_internal_seam_stays_out_of_the_reference(built: Path) -> None:
    documented = _inventory(built)
    seam = [name for name, value in vars(adieu.Connection).items() if _internal(value)]
    # What the openers, the server and adieu.testing drive a connection with.
    assert {"start", "end_block", "wait_handshake", "set_deadline"} <= set(seam)
    assert [n for n in seam if f"adieu.Connection.{n}" in documented] == []


def test_the_changelog_is_part_of_the_docs(built: Path) -> None:
    page = (built / "compatibility.html").read_text(encoding="utf-8")
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    for heading in re.findall(r"^## (.+)$", changelog, re.MULTILINE):
        assert heading.replace("(", "").split()[0] in page


def test_the_changelog_converter_refuses_what_it_cannot_render() -> None:
    ext = _load(DOCS / "_ext" / "adieu_docs.py", "adieu_docs_ext_under_test")
    rst = ext.markdown_to_rst("# T\n\n## 1.0\n\n- `a` and [b](https://x.org)\n  more\n")
    assert rst == [
        "",
        *("", "1.0", "---", ""),
        "",
        "* ``a`` and `b <https://x.org>`__",
        "  more",
    ]
    with pytest.raises(ValueError, match="unsupported"):
        ext.markdown_to_rst("```\ncode\n```\n")


# ---------------------------------------------------------------- diagrams


@pytest.mark.parametrize("script", SCRIPTS)
def test_checked_in_pictures_and_tables_are_up_to_date(script: str) -> None:
    module = _load(DOCS / "_scripts" / f"{script}.py", f"adieu_docs_{script}")
    for relative, data in module.render().items():
        current = (DOCS / relative).read_bytes()
        assert current == data, (
            f"docs/{relative} is stale: run python docs/_scripts/{script}.py"
        )


def test_every_picture_and_table_has_a_script() -> None:
    scripts = "\n".join(
        (DOCS / "_scripts" / f"{script}.py").read_text() for script in SCRIPTS
    )
    generated = sorted((DOCS / "diagrams").glob("*.svg"))
    generated += sorted((DOCS / "_generated").glob("*.inc"))
    assert generated
    for path in generated:
        assert path.name in scripts or path.stem in scripts, path
        assert "<svg" not in path.read_text() or path.suffix == ".svg"


def test_the_pictures_are_plain_svg() -> None:
    for path in (DOCS / "diagrams").glob("*.svg"):
        text = path.read_text(encoding="utf-8")
        assert text.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
        assert "<image" not in text
        assert "<script" not in text


# ---------------------------------------------------------------- snippets

RST = sorted(DOCS.rglob("*.rst"))
INCLUDE = re.compile(r"^\s*\.\. literalinclude:: (\S+)", re.MULTILINE)
INLINE_PYTHON = re.compile(
    r"^\s*\.\. (?:code-block|code|sourcecode):: (?:python|py|pycon)\b|^\s*>>> |"
    r"^\s*\.\. doctest::",
    re.MULTILINE,
)
TESTS_OF_DOCS = "\n".join(p.read_text() for p in (ROOT / "tests" / "docs").glob("*.py"))
ALL_TESTS = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))


def _included() -> list[Path]:
    paths = []
    for rst in RST:
        for target in INCLUDE.findall(rst.read_text(encoding="utf-8")):
            paths.append((rst.parent / target).resolve())
    return paths


def test_no_python_is_written_inline_in_the_docs() -> None:
    # Python appears only as files shown with literalinclude, so that a test
    # can run every line of it.
    offenders = [
        str(rst.relative_to(DOCS))
        for rst in RST
        if INLINE_PYTHON.search(rst.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_included_programs_are_cut_by_content_not_by_line_numbers() -> None:
    # ":lines:" would silently show the wrong lines after an edit;
    # ":start-at:", ":pyobject:" and the like fail the build instead.
    offenders = [
        str(rst.relative_to(DOCS))
        for rst in RST
        if re.search(r"^\s*:lines:", rst.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert offenders == []


def test_every_included_file_is_exercised_by_a_test() -> None:
    for path in _included():
        assert path.is_file(), path
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "docs":
            # tests/docs load or read it by its path under docs/.
            name = "/".join(relative.parts[1:])
            assert name in TESTS_OF_DOCS or path.name in TESTS_OF_DOCS, relative
        else:
            assert relative.parts[0] == "examples", relative
            mentions = re.compile(
                r"examples.{1,12}"
                + re.escape(relative.parts[1])
                + ".*"
                + re.escape(relative.stem),
            )
            assert mentions.search(ALL_TESTS), relative


def test_every_program_in_the_docs_is_shown() -> None:
    included = set(_included())
    for folder in ("tutorial", "howto"):
        for path in (DOCS / folder).iterdir():
            if path.suffix == ".rst" or path.name.startswith(("_", ".")):
                continue
            assert path.resolve() in included, path


# ---------------------------------------------------------------- highlighting

LITERALINCLUDE = re.compile(
    r"^\s*\.\. literalinclude:: (\S+)\n((?:[ \t]+:.*\n)*)", re.MULTILINE
)
CODE_BLOCK = re.compile(
    r"^\s*\.\. (?:code-block|code|sourcecode)::\s*(\S*)", re.MULTILINE
)
#: Languages a block may name: shell sessions, program output, config files.
NOT_PYTHON = {"console", "text", "ini", "toml", "yaml", "docker", "none"}
INCLUDED_TEXT = sorted((DOCS / "_generated").glob("*.inc"))


def test_a_block_is_highlighted_as_python_only_if_it_is_python() -> None:
    saved = list(sys.path)
    try:
        conf = runpy.run_path(str(DOCS / "conf.py"))
    finally:
        sys.path[:] = saved
    # A block that names no language is not highlighted at all...
    assert conf["highlight_language"] == "none"
    offenders = []
    for path in [*RST, *INCLUDED_TEXT]:
        text = path.read_text(encoding="utf-8")
        where = str(path.relative_to(DOCS))
        # ...and none is left unnamed: "::" literal blocks are shell or output.
        for line in text.splitlines():
            if line.rstrip().endswith("::") and not line.lstrip().startswith(".. "):
                offenders.append(f"{where}: a literal block with no language: {line}")
        for language in CODE_BLOCK.findall(text):
            if language not in NOT_PYTHON:
                offenders.append(f"{where}: a code block in {language or '?'}")
        for target, options in LITERALINCLUDE.findall(text):
            language = re.search(r":language: (\S+)", options)
            wanted = "python" if target.endswith(".py") else "not python"
            named = language[1] if language else "none"
            if (named == "python") != (wanted == "python") or not language:
                offenders.append(f"{where}: {target} shown as {named}")
    assert offenders == []


def test_the_built_pages_highlight_python_only_in_included_programs(
    built: Path,
) -> None:
    python_includes = sum(
        target.endswith(".py")
        for path in RST
        for target, _ in LITERALINCLUDE.findall(path.read_text(encoding="utf-8"))
    )
    languages: list[str] = []
    for page in built.rglob("*.html"):
        languages += re.findall(r'<div class="[^"]*\bhighlight-(\w+)', page.read_text())
    assert "default" not in languages  # Sphinx's guess: Python, or else nothing
    assert languages.count("python") == python_includes
    assert set(languages) <= NOT_PYTHON | {"python"}


def test_every_diagram_opens_full_size_on_click(built: Path) -> None:
    for name in ("symmetric", "asymmetric", "states", "errors"):
        pages = [p.read_text() for p in built.rglob("*.html")]
        link = re.compile(
            rf'<a class="reference internal image-reference" href="[./]*_images/'
            rf'{name}\.svg"><img'
        )
        assert any(link.search(page) for page in pages), name


def test_included_methods_are_shown_without_their_class_indentation() -> None:
    # ":pyobject: Class.method" shows the method as it sits in its class,
    # indented; ":dedent:" shows it from the left margin, as a reader
    # would paste it.
    offenders = [
        f"{path.relative_to(DOCS)}: {target}"
        for path in RST
        for target, options in LITERALINCLUDE.findall(path.read_text(encoding="utf-8"))
        if re.search(r":pyobject: \w+\.\w+", options) and ":dedent:" not in options
    ]
    assert offenders == []
