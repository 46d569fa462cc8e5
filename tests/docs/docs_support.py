"""Support for the documentation tests: load a program from ``docs/`` by its
path, and run one as a real process whose output a test can wait for."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: Bound of any wait on a process: far beyond what the step needs, only there
#: so that a hang fails the test instead of blocking the suite.
TIMEOUT = 30.0


def load(relative: str, name: str | None = None) -> ModuleType:
    """Import ``docs/<relative>`` as a module (by default under a name that
    cannot clash with another test's module). Its directory is importable
    while it loads, for the programs that import a sibling."""
    path = DOCS / relative
    module_name = name or "adieu_docs_" + re.sub(r"\W", "_", relative[:-3])
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


class Process:
    """A process whose standard output (and error) is collected line by line
    by a thread: a program from ``docs/`` (:meth:`program`), or any command.
    With ``stdin``, its standard input is a pipe (``popen.stdin``)."""

    def __init__(
        self,
        argv: list[str],
        cwd: Path,
        *,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._done = False
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=env,
        )
        assert self.popen.stdout is not None
        self._thread = threading.Thread(target=self._collect, args=(self.popen.stdout,))
        self._thread.start()

    @classmethod
    def program(cls, relative: str, *args: str) -> Process:
        """Run ``docs/<relative>`` with this Python, from its folder."""
        argv = [sys.executable, "-u", str(DOCS / relative), *args]
        return cls(argv, DOCS / Path(relative).parent)

    def _collect(self, pipe: IO[str]) -> None:
        with pipe:
            for line in pipe:
                with self._changed:
                    self.lines.append(line.rstrip("\n"))
                    self._changed.notify_all()
        with self._changed:
            self._done = True
            self._changed.notify_all()

    def wait_for(self, pattern: str) -> re.Match[str]:
        """Block until a line matches ``pattern``; return the match."""
        regex = re.compile(pattern)
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    match = regex.search(line)
                    if match:
                        return match
                seen = len(self.lines)
                if self._done:
                    raise AssertionError(
                        f"the process ended without printing {pattern!r}:\n"
                        + "\n".join(self.lines)
                    )
                if not self._changed.wait(TIMEOUT):
                    raise AssertionError(f"no line matched {pattern!r} in time")

    def finish(self) -> tuple[int, str]:
        """Wait for the process to exit; its exit status and its output."""
        status = self.popen.wait(TIMEOUT)
        self._thread.join(TIMEOUT)
        return status, "\n".join(self.lines)

    def kill(self) -> None:
        """Make sure the process is gone (a test's teardown)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(TIMEOUT)
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        self._thread.join(TIMEOUT)
