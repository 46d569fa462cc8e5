"""Fixtures of the fault-injection tests.

Every fault injected here is the peer's doing, never a bug in a handler or
in the server: adieu logs each at INFO at most (DESIGN: a peer's reset or
truncation at INFO, without a traceback), so no test may leave an ERROR.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _nothing_logged_at_error(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    yield
    errors = [
        record
        for record in caplog.get_records("call")
        if record.name.startswith("adieu") and record.levelno >= logging.ERROR
    ]
    assert errors == [], [record.getMessage() for record in errors]
