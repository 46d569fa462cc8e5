"""An exception inside a connection's ``async with`` block leaves it as
itself, not wrapped in an ``ExceptionGroup`` by the connection's nursery,
with its traceback; the connection is aborted. A cancellation of the scope
around the block propagates normally and aborts too."""

from __future__ import annotations

import sys
import traceback
from contextlib import AbstractAsyncContextManager

import pytest
import trio
import trio.testing
from connection_support import Handler, Served, tcp_server

import adieu
import adieu.testing
from adieu import Initiator, TerminationKind
from adieu.testing import memory_stream_pair
from shared_support import SERVER_PREAMBLE

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup, ExceptionGroup


class Boom(Exception):
    """The application's own error."""


def explode() -> None:
    raise Boom("the application failed")


async def ping_then_explode(
    block: AbstractAsyncContextManager[adieu.Connection],
    opened: list[adieu.Connection],
) -> None:
    """Use a connection a little, then fail inside its block."""
    async with block as conn:
        opened.append(conn)
        await conn.send(b"ping")
        assert await conn.receive() == b"ping"
        explode()


def assert_raised_as_itself(excinfo: pytest.ExceptionInfo[Boom]) -> None:
    exc = excinfo.value
    assert type(exc) is Boom
    assert not isinstance(exc, BaseExceptionGroup)
    assert str(exc) == "the application failed"
    # The traceback still leads to where it was raised.
    frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].name == "explode"
    assert frames[-1].line == 'raise Boom("the application failed")'


def assert_aborted(conn: adieu.Connection) -> None:
    termination = conn.termination
    assert termination is not None
    assert termination.kind is TerminationKind.ABORTED, termination
    assert termination.initiator is Initiator.LOCAL


def echo_recording(served: Served) -> Handler:
    async def handler(conn: adieu.Connection) -> None:
        served.connections.append(conn)
        try:
            async for data in conn:
                await conn.send(data)
        except adieu.ConnectionReset as exc:
            served.errors.append(exc)
        finally:
            served.done.set()

    return handler


async def test_exception_inside_connect_tcp_propagates_as_itself() -> None:
    served = Served()
    opened: list[adieu.Connection] = []
    async with tcp_server(echo_recording(served)) as server:
        with pytest.raises(Boom) as excinfo:
            await ping_then_explode(adieu.connect_tcp("127.0.0.1", server.port), opened)
        await served.done.wait()
    assert_raised_as_itself(excinfo)
    [conn] = opened
    assert_aborted(conn)
    # Aborted means reset: the server saw it so.
    assert len(served.errors) == 1
    assert served.only.termination is not None
    assert served.only.termination.kind is TerminationKind.RESET


async def test_exception_inside_wrap_stream_propagates_as_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    client_stream, server_stream = memory_stream_pair()
    errors: list[BaseException] = []

    async def serve() -> None:
        async with adieu.wrap_stream(server_stream, "server") as server:
            try:
                async for data in server:
                    await server.send(data)
            except adieu.ConnectionReset as exc:
                errors.append(exc)

    opened: list[adieu.Connection] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        with pytest.raises(Boom) as excinfo:
            await ping_then_explode(adieu.wrap_stream(client_stream, "client"), opened)
    assert_raised_as_itself(excinfo)
    [conn] = opened
    assert_aborted(conn)
    assert len(errors) == 1


async def test_cancellation_around_wrap_stream_propagates_and_aborts(
    autojump_clock: trio.abc.Clock,
) -> None:
    client_stream, server_stream = memory_stream_pair()
    errors: list[BaseException] = []

    async def serve() -> None:
        async with adieu.wrap_stream(server_stream, "server") as server:
            try:
                await server.receive()
            except adieu.ConnectionReset as exc:
                errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        with trio.CancelScope() as outer:
            async with adieu.wrap_stream(client_stream, "client") as conn:
                await trio.testing.wait_all_tasks_blocked()
                outer.cancel()
                await trio.sleep_forever()
        assert outer.cancelled_caught
    assert_aborted(conn)
    assert len(errors) == 1


async def test_cancellation_around_connect_tcp_propagates_and_aborts() -> None:
    served = Served()
    async with tcp_server(echo_recording(served)) as server:
        with trio.CancelScope() as outer:
            async with adieu.connect_tcp("127.0.0.1", server.port) as conn:
                await conn.send(b"ping")
                assert await conn.receive() == b"ping"
                outer.cancel()
                await trio.sleep_forever()
        assert outer.cancelled_caught
        await served.done.wait()
    assert_aborted(conn)
    assert len(served.errors) == 1


async def test_cancellation_during_the_graceful_exit_propagates_and_aborts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A cancellation that arrives while the block's normal exit waits for
    the peer's END propagates as a plain cancellation, and aborts."""
    client_stream, peer = memory_stream_pair()
    start = trio.current_time()
    with trio.move_on_after(5) as outer:
        async with adieu.wrap_stream(client_stream, "client", grace_period=60) as conn:
            await peer.send_all(SERVER_PREAMBLE)
            # Leaving now: END, then waiting for the server's END, which
            # never comes; the outer scope's deadline cuts that short.
    assert outer.cancelled_caught
    assert trio.current_time() == start + 5
    assert conn.termination is not None
    assert conn.termination.initiator is Initiator.LOCAL
    assert conn.termination.kind in (TerminationKind.ABORTED, TerminationKind.TIMED_OUT)
    # Aborted: the peer sees a reset after the client's preamble and END.
    with pytest.raises(trio.BrokenResourceError):
        await peer.receive_some()


def group_raised() -> BaseExceptionGroup[Exception]:
    return ExceptionGroup("the application's own group", [KeyError("k")])


def assert_group_as_itself(raised: BaseException, group: BaseException) -> None:
    assert raised is group
    assert isinstance(raised, BaseExceptionGroup)
    [inner] = raised.exceptions
    assert type(inner) is KeyError


async def test_an_exception_group_inside_connect_tcp_leaves_as_itself() -> None:
    served = Served()
    group = group_raised()
    opened: list[adieu.Connection] = []

    async def client(port: int) -> None:
        async with adieu.connect_tcp("127.0.0.1", port) as conn:
            opened.append(conn)
            await conn.send(b"ping")
            assert await conn.receive() == b"ping"
            raise group

    async with tcp_server(echo_recording(served)) as server:
        with pytest.raises(BaseExceptionGroup) as excinfo:
            await client(server.port)
        with trio.fail_after(10):
            await served.done.wait()
    assert_group_as_itself(excinfo.value, group)
    [conn] = opened
    assert_aborted(conn)


async def test_an_exception_group_inside_open_tcp_server_leaves_as_itself() -> None:
    group = group_raised()

    async def serve() -> None:
        async with tcp_server(echo_recording(Served())):
            raise group

    with pytest.raises(BaseExceptionGroup) as excinfo:
        await serve()
    assert_group_as_itself(excinfo.value, group)


async def test_an_exception_group_inside_a_testing_pair_leaves_as_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    group = group_raised()
    opened: list[adieu.Connection] = []

    async def talk() -> None:
        async with adieu.testing.open_connection_pair() as (client, server):
            opened.extend((client, server))
            await client.send(b"ping")
            assert await server.receive() == b"ping"
            raise group

    with pytest.raises(BaseExceptionGroup) as excinfo:
        await talk()
    assert_group_as_itself(excinfo.value, group)
    for conn in opened:
        assert_aborted(conn)


async def test_an_exception_group_inside_a_memory_client_leaves_as_itself(
    autojump_clock: trio.abc.Clock,
) -> None:
    group = group_raised()
    opened: list[adieu.Connection] = []

    async def talk() -> None:
        async with (
            adieu.testing.open_memory_server(echo_recording(Served())) as server,
            adieu.testing.connect_memory(server) as conn,
        ):
            opened.append(conn)
            await conn.send(b"ping")
            assert await conn.receive() == b"ping"
            raise group

    with pytest.raises(BaseExceptionGroup) as excinfo:
        await talk()
    assert_group_as_itself(excinfo.value, group)
    [conn] = opened
    assert_aborted(conn)
