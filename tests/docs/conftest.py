"""Fixtures of the documentation tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from docs_support import Process


@pytest.fixture
def start() -> Iterator[Callable[..., Process]]:
    """Start a program from ``docs/`` as a process; it is killed at the end
    of the test, whatever happened."""
    started: list[Process] = []

    def run(relative: str, *args: str) -> Process:
        process = Process.program(relative, *args)
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()
