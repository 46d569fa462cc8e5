"""Options are one checked object: made once from the keywords, refused
with an error that names the bad option, then passed down unchanged (a
server's connections share one), and every public signature names its
options (no ``**options``), so that a misspelt keyword fails at the call and
under the type checker."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import pytest
import trio

import adieu
import adieu.testing
from adieu._options import ConnectionOptions, ServerOptions

# ------------------------------------------------------------ the objects

#: (field, a bad value, the error): every check of ConnectionOptions.
BAD_CONNECTION_FIELDS: list[tuple[str, object, type[Exception]]] = [
    ("max_message_size", -1, ValueError),
    ("max_message_size", 1 << 32, ValueError),
    ("max_message_size", 1.5, TypeError),
    ("max_message_size", True, TypeError),
    ("max_message_size", "1024", TypeError),
    ("receive_buffer_size", 0, ValueError),
    ("receive_buffer_size", 65536.0, TypeError),
    ("grace_period", -1.0, ValueError),
    ("grace_period", math.nan, ValueError),
    ("grace_period", "10", TypeError),
    ("grace_period", False, TypeError),
    ("linger", -0.1, ValueError),
    ("linger", None, TypeError),
    ("handshake_timeout", -1, ValueError),
    ("handshake_timeout", math.nan, ValueError),
    ("handshake_timeout", b"1", TypeError),
]


@pytest.mark.parametrize(("field", "bad", "error"), BAD_CONNECTION_FIELDS)
def test_connection_options_refuse_a_bad_value_naming_it(
    field: str, bad: object, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        ConnectionOptions(**{field: bad})  # type: ignore[arg-type]
    assert type(info.value) is error
    assert str(info.value).startswith(f"{field} must be")


@pytest.mark.parametrize(
    ("bad", "error"), [(0, ValueError), (-5, ValueError), (10.0, TypeError)]
)
def test_server_options_refuse_a_bad_max_connections(
    bad: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match=r"^max_connections must be"):
        ServerOptions(max_connections=bad)  # type: ignore[arg-type]


def test_server_options_refuse_connection_options_of_another_type() -> None:
    with pytest.raises(TypeError, match=r"^connection must be a ConnectionOptions"):
        ServerOptions(connection={"grace_period": 1.0})  # type: ignore[arg-type]


def test_the_limits_themselves_are_accepted() -> None:
    options = ConnectionOptions(
        max_message_size=(1 << 32) - 1,
        receive_buffer_size=1,
        grace_period=0,
        linger=math.inf,
        handshake_timeout=0.0,
    )
    assert options.max_message_size == (1 << 32) - 1
    assert ConnectionOptions(max_message_size=0).max_message_size == 0
    assert ServerOptions(max_connections=1).max_connections == 1


def test_defaults_are_the_documented_constants() -> None:
    options = ServerOptions()
    assert options.max_connections == adieu.DEFAULT_MAX_CONNECTIONS == 1000
    connection = options.connection
    assert connection == ConnectionOptions()
    assert connection.max_message_size == adieu.DEFAULT_MAX_MESSAGE_SIZE
    assert connection.receive_buffer_size == adieu.DEFAULT_RECEIVE_BUFFER_SIZE
    assert connection.grace_period == adieu.DEFAULT_GRACE_PERIOD
    assert connection.linger == adieu.DEFAULT_LINGER
    assert connection.handshake_timeout == adieu.DEFAULT_HANDSHAKE_TIMEOUT


def test_options_are_frozen_slotted_and_keyword_only() -> None:
    options = ConnectionOptions(grace_period=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.grace_period = 4  # type: ignore[misc]
    assert not hasattr(options, "__dict__")
    with pytest.raises(TypeError):
        ConnectionOptions(1024)  # type: ignore[call-arg]  # keyword-only
    # A changed copy is checked like a new object.
    assert dataclasses.replace(options, linger=1.0).linger == 1.0
    with pytest.raises(ValueError, match=r"^linger must be"):
        dataclasses.replace(options, linger=-1.0)
    assert adieu.ConnectionOptions is ConnectionOptions
    assert adieu.ServerOptions is ServerOptions


# ---------------------------------------------- checked once, passed down


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts every check of a ConnectionOptions (its ``__post_init__``)."""
    seen: list[str] = []
    original = ConnectionOptions.__post_init__

    def counting(self: ConnectionOptions) -> None:
        seen.append("checked")
        original(self)

    monkeypatch.setattr(ConnectionOptions, "__post_init__", counting)
    return seen


async def _echo(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def test_a_server_checks_its_options_once_and_shares_them(
    checks: list[str], autojump_clock: trio.abc.Clock
) -> None:
    served: list[adieu.Connection] = []

    async def handler(conn: adieu.Connection) -> None:
        served.append(conn)
        await _echo(conn)

    with trio.fail_after(60):
        async with adieu.testing.open_memory_server(
            handler, grace_period=7, max_message_size=4096
        ) as server:
            assert checks == ["checked"]
            # Fixed with the options: every connection gets the same.
            with pytest.raises(AttributeError):
                server.grace_period = 1  # type: ignore[misc]
            for _ in range(3):
                async with adieu.testing.connect_memory(server) as client:
                    await client.send(b"hi")
                    assert await client.receive() == b"hi"
    # One check for the server, one for each client; none for the
    # connections the server made.
    assert len(checks) == 1 + 3
    assert len(served) == 3
    shared = server.options.connection
    assert all(conn.options is shared for conn in served)
    assert shared.grace_period == server.grace_period == 7
    assert all(conn.max_message_size == 4096 for conn in served)


async def test_connect_tcp_checks_its_options_once(checks: list[str]) -> None:
    with trio.fail_after(30):
        async with adieu.open_tcp_server(_echo, "127.0.0.1", 0) as server:
            checks.clear()
            async with adieu.connect_tcp(
                "127.0.0.1", server.port, close_timeout=5, max_message_size=100
            ) as conn:
                await conn.send(b"x")
                assert await conn.receive() == b"x"
                assert checks == ["checked"]
                assert conn.options.grace_period == conn.grace_period == 5
                assert conn.options.max_message_size == 100


async def test_a_pair_shares_one_options_object(checks: list[str]) -> None:
    with trio.fail_after(30):
        async with adieu.testing.open_connection_pair(grace_period=2) as (a, b):
            assert a.options is b.options
            assert a.options.grace_period == 2
    assert checks == ["checked"]


# ------------------------------------------------ wrong types at the call


async def test_wrap_stream_refuses_a_wrong_type_and_closes_the_stream() -> None:
    ours, peer = adieu.testing.memory_stream_pair()
    with pytest.raises(TypeError, match=r"^max_message_size must be an int"):
        async with adieu.wrap_stream(ours, max_message_size=1.5):  # type: ignore[arg-type]
            pytest.fail("must not start")  # pragma: no cover
    assert await peer.receive_some() == b""


async def test_connect_tcp_refuses_a_wrong_type_before_connecting() -> None:
    # Nothing listens on port 9: a connect attempt would raise OSError.
    with pytest.raises(TypeError, match=r"^grace_period must be a number"):
        async with adieu.connect_tcp("127.0.0.1", 9, close_timeout="5"):  # type: ignore[arg-type]
            pytest.fail("must not connect")  # pragma: no cover


async def test_connect_memory_checks_before_telling_the_server(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(60):
        async with adieu.testing.open_memory_server(_echo) as server:
            with pytest.raises(ValueError, match=r"^linger must be"):
                async with adieu.testing.connect_memory(server, linger=-1):
                    pytest.fail("must not connect")  # pragma: no cover
            assert server.connections == []
        report = await server.wait_shut_down()
    assert sum(report.ended_before.values()) == 0


# ---------------------------------------- every option a typed keyword

PUBLIC_FUNCTIONS: list[Callable[..., Any]] = [
    getattr(module, name)
    for module in (adieu, adieu.testing)
    for name in module.__all__
    if inspect.isfunction(getattr(module, name))
]


def test_no_public_function_takes_arbitrary_keywords() -> None:
    assert len(PUBLIC_FUNCTIONS) >= 10
    takes_any = [
        f.__qualname__
        for f in PUBLIC_FUNCTIONS
        if any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(f).parameters.values()
        )
    ]
    assert takes_any == []


def _keywords(function: Callable[..., Any]) -> dict[str, object]:
    return {
        p.name: p.default
        for p in inspect.signature(function).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def test_serve_tcp_and_the_memory_helpers_take_the_same_options() -> None:
    def without(keywords: dict[str, object], *names: str) -> dict[str, object]:
        return {k: v for k, v in keywords.items() if k not in names}

    assert without(_keywords(adieu.serve_tcp), "task_status", "host") == _keywords(
        adieu.open_tcp_server
    )
    assert _keywords(adieu.testing.open_memory_server) == without(
        _keywords(adieu.open_server), "ssl_context"
    )
    client = _keywords(adieu.wrap_stream)
    assert without(_keywords(adieu.testing.connect_memory), "capacity") == client
    pair = _keywords(adieu.testing.open_connection_pair)
    assert without(pair, "capacity") == client


async def _never(conn: adieu.Connection) -> None:
    raise AssertionError("not reached")  # pragma: no cover


def test_a_misspelt_keyword_is_refused_at_the_call() -> None:
    # Each ``type: ignore`` below is also a test: mypy --strict reports an
    # unused ignore if the keyword stopped being an error to the checker
    # (as it was while these functions took ``**options: Any``).
    with pytest.raises(TypeError, match="grace_priod"):
        adieu.serve_tcp(_never, 0, grace_priod=1)  # type: ignore[call-arg,unused-coroutine]
    with pytest.raises(TypeError, match="grace_priod"):
        adieu.testing.open_memory_server(_never, grace_priod=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="close_timeout"):
        adieu.testing.open_connection_pair(close_timeout=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="max_connections"):
        adieu.testing.connect_memory(  # type: ignore[call-arg]
            None,  # type: ignore[arg-type]
            max_connections=1,
        )
    with pytest.raises(TypeError, match="max_message"):
        adieu.open_tcp_server(_never, max_message=1)  # type: ignore[call-arg]
