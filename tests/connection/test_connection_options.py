"""Out-of-range connection options are refused before anything is opened,
and a stream handed to wrap_stream is closed when they are."""

from __future__ import annotations

from typing import Any

import pytest
import trio

import adieu
from adieu.testing import memory_stream_pair

BAD_OPTIONS = [
    {"max_message_size": -1},
    {"receive_buffer_size": 0},
    {"linger": -1.0},
]


@pytest.mark.parametrize("options", [*BAD_OPTIONS, {"close_timeout": -1.0}])
async def test_connect_tcp_refuses_bad_options_before_connecting(
    options: dict[str, Any],
) -> None:
    # Nothing listens on this port: had the call tried to connect first, it
    # would have raised OSError instead.
    with pytest.raises(ValueError, match="must be"):
        async with adieu.connect_tcp("127.0.0.1", 9, **options):
            pytest.fail("must not connect")  # pragma: no cover


@pytest.mark.parametrize("options", [*BAD_OPTIONS, {"grace_period": -1.0}])
async def test_wrap_stream_refuses_bad_options_and_closes_the_stream(
    options: dict[str, Any],
) -> None:
    ours, peer = memory_stream_pair()
    with pytest.raises(ValueError, match="must be"):
        async with adieu.wrap_stream(ours, "client", **options):
            pytest.fail("must not start")  # pragma: no cover
    # The stream was closed: the peer reads EOF at once.
    assert await peer.receive_some() == b""
    with pytest.raises(trio.ClosedResourceError):
        await ours.send_all(b"x")
