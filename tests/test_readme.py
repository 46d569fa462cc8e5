"""The README's quick start is what CI runs: keep the two in step."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_is_two_commands() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _quick_start_commands()[1]
    assert "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_ci_type_checks_every_python_file() -> None:
    # .ci/run runs mypy --strict on src, then on the *.py files of each
    # folder its loop names; a file one level deeper would be skipped.
    ci = (ROOT / ".ci" / "run").read_text()
    assert "mypy --strict src" in ci
    [folders] = re.findall(r"^for folder in (.+); do$", ci, re.MULTILINE)
    reached = {
        folder.resolve()
        for pattern in folders.split()
        for folder in ROOT.glob(pattern.rstrip("/"))
        if folder.is_dir()
    }
    python = [
        path
        for top in ("examples", "tests", "docs")
        for path in (ROOT / top).rglob("*.py")
        if "_build" not in path.parts
    ]
    assert python
    assert sorted(str(p) for p in python if p.parent.resolve() not in reached) == []


def test_readme_links_are_rendered_pages_that_exist() -> None:
    # The README is also the package's description on an index, where a
    # link to a file of the repository leads nowhere: every link goes to the
    # rendered documentation (the Documentation URL of pyproject.toml), to a
    # page that the docs' sources build.
    readme = (ROOT / "README.md").read_text()
    [docs_url] = re.findall(
        r'^Documentation = "(.+)"$',
        (ROOT / "pyproject.toml").read_text(),
        re.MULTILINE,
    )
    links = re.findall(r"\]\(([^)]+)\)", readme)
    assert links
    base = docs_url.rstrip("/") + "/en/latest/"
    for link in links:
        if link.rstrip("/") == docs_url.rstrip("/") or link == base:
            continue
        assert link.startswith(base), link
        page = link.removeprefix(base).removesuffix(".html")
        assert (ROOT / "docs" / f"{page}.rst").is_file(), link


def readme_program() -> str:
    """The README's Python program (its one ``python`` block)."""
    readme = (ROOT / "README.md").read_text()
    programs: list[str] = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    [program] = programs
    return program


def test_the_readme_program_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    (tmp_path / "fifteen.py").write_text(readme_program())
    result = subprocess.run(
        [sys.executable, "fifteen.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    hello, termination, report = result.stdout.splitlines()
    assert hello == "b'hello'"
    # What the comments promise.
    assert termination.startswith("CLEAN ")
    assert termination.endswith(", the server confirmed it: both ENDs exchanged")
    assert report.startswith("shutdown finished in ")


if __name__ == "__main__":  # .ci/run type-checks the README's program
    if sys.argv[1:] == ["--print-program"]:
        print(readme_program(), end="")
