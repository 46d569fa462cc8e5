"""Shared test configuration.

Tests run in pytest-trio's trio mode (see pyproject.toml): every ``async def``
test runs under Trio; take the ``autojump_clock`` fixture wherever time
passes, so grace periods of minutes cost no real time.
"""

from __future__ import annotations

import logging
import ssl

import pytest
import trustme


@pytest.fixture(autouse=True)
def _adieu_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    """Keep adieu's log records available to tests (``caplog``)."""
    caplog.set_level(logging.DEBUG, logger="adieu")


# TLS: one certificate authority for the whole run (``trustme``), a server
# certificate for "localhost", and a client context that trusts it.


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def client_ssl_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context
