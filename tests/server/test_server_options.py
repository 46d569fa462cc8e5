"""Out-of-range options are refused up front, as a plain ValueError, before
anything is bound or served."""

from __future__ import annotations

from typing import Any

import pytest

import adieu
from adieu.testing import open_memory_server


async def _handler(conn: adieu.Connection) -> None:
    async for _ in conn:
        pass


BAD_SERVER_OPTIONS = [
    {"grace_period": -1.0},
    {"grace_period": float("nan")},
    {"max_connections": 0},
    {"max_message_size": -1},
    {"max_message_size": 1 << 32},
    {"handshake_timeout": -0.5},
    {"receive_buffer_size": 0},
    {"linger": -1.0},
]


@pytest.mark.parametrize("options", BAD_SERVER_OPTIONS)
async def test_open_tcp_server_refuses_bad_options_as_value_error(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="must be") as info:
        async with adieu.open_tcp_server(_handler, "127.0.0.1", 0, **options):
            pytest.fail("the server must not start")  # pragma: no cover
    assert type(info.value) is ValueError


@pytest.mark.parametrize("options", BAD_SERVER_OPTIONS)
async def test_memory_server_refuses_bad_options_as_value_error(
    options: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="must be") as info:
        async with open_memory_server(_handler, **options):
            pytest.fail("the server must not start")  # pragma: no cover
    assert type(info.value) is ValueError


async def test_open_unix_server_refuses_bad_options_before_binding(
    tmp_path: Any,
) -> None:
    path = tmp_path / "sock"
    with pytest.raises(ValueError, match="must be"):
        async with adieu.open_unix_server(_handler, path, grace_period=-1):
            pytest.fail("the server must not start")  # pragma: no cover
    assert not path.exists()
