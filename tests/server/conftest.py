"""Fixtures of the server tests.

Tiers: memory streams on the ``autojump_clock`` wherever time matters (a
grace period of ten minutes costs milliseconds); real loopback sockets where
the kernel or the transport matters (accepts, backlogs, resets, TLS, Unix
sockets).
"""

from __future__ import annotations

import ssl

import pytest
import trustme


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
