"""Shared test configuration.

Tests run in pytest-trio's trio mode (see pyproject.toml): every ``async def``
test runs under Trio; take the ``autojump_clock`` fixture wherever time
passes, so grace periods of minutes cost no real time.
"""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _adieu_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Keep adieu's log records available to tests (``caplog``)."""
    caplog.set_level(logging.DEBUG, logger="adieu")
