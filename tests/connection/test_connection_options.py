"""Out-of-range connection options are refused before anything is opened,
and a stream handed to wrap_stream is closed when they are."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import trio

import adieu
import adieu.testing
from adieu._connection import ConnectionOptions
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


@pytest.mark.parametrize(
    "function",
    [
        adieu.serve_tcp,
        adieu.testing.open_connection_pair,
        adieu.testing.open_memory_server,
        adieu.testing.connect_memory,
    ],
    ids=lambda f: f.__name__,
)
def test_public_signatures_name_every_option(function: Callable[..., Any]) -> None:
    """No ``**options: Any``: every option is a typed keyword."""
    kinds = [p.kind for p in inspect.signature(function).parameters.values()]
    assert inspect.Parameter.VAR_KEYWORD not in kinds


def test_serve_tcp_takes_every_keyword_of_open_tcp_server() -> None:
    def keywords(function: Callable[..., Any]) -> set[str]:
        parameters = inspect.signature(function).parameters.values()
        return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}

    assert keywords(adieu.open_tcp_server) <= keywords(adieu.serve_tcp)


async def test_a_client_checks_its_options_once(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.abc.Clock
) -> None:
    """Checked once, when the options object is made, then passed down:
    no layer checks them again."""
    checks: list[object] = []
    check = ConnectionOptions.__post_init__

    def counting(self: ConnectionOptions) -> None:
        checks.append(self)
        check(self)

    async def handler(conn: adieu.Connection) -> None:
        await trio.lowlevel.checkpoint()

    monkeypatch.setattr(ConnectionOptions, "__post_init__", counting)
    async with (
        adieu.testing.open_memory_server(handler) as server,
        adieu.testing.connect_memory(server, max_message_size=100),
    ):
        pass
    # One for the server (all its connections share it), one for the client.
    assert len(checks) == 2


async def test_a_testing_pair_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="must be"):
        async with adieu.testing.open_connection_pair(max_message_size=-1):
            pytest.fail("must not start")  # pragma: no cover
