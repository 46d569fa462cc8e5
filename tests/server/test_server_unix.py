"""Unix domain sockets: the same graceful shutdown as over TCP, and the
socket file is gone afterwards."""

from __future__ import annotations

import os
import pathlib
import stat
import tempfile
from collections.abc import Iterator

import outcome
import pytest
import trio
from server_support import Arrivals, counting, finish_when_asked

import adieu
from adieu import open_unix_server
from shared_support import answer, reply_to


@pytest.fixture
def socket_path(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    # A Unix socket path is limited to about 100 bytes; pytest's temporary
    # directories can be longer.
    path = tmp_path / "adieu.sock"
    if len(os.fsencode(path)) < 100:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="adieu") as short:
        yield pathlib.Path(short) / "adieu.sock"


async def test_graceful_shutdown_over_a_unix_socket(socket_path: pathlib.Path) -> None:
    clients = 3
    arrivals = Arrivals(clients)
    terminations: list[adieu.Termination] = []

    async def client(n: int) -> None:
        async with adieu.connect_unix(socket_path) as conn:
            requests = [b"%d-%d" % (n, i) for i in range(n + 1)]
            for request in requests:
                await conn.send(request)
            assert await finish_when_asked(conn) == [reply_to(r) for r in requests]
        assert conn.termination is not None
        terminations.append(conn.termination)

    with trio.fail_after(30):
        async with (
            trio.open_nursery() as nursery,
            open_unix_server(counting(answer, arrivals), socket_path) as server,
        ):
            assert stat.S_ISSOCK((await trio.Path(socket_path).stat()).st_mode)
            assert server.addresses == [str(socket_path)]
            with pytest.raises(RuntimeError):
                _ = server.port
            for n in range(clients):
                nursery.start_soon(client, n)
            await arrivals.all_here.wait()
            report = await server.shutdown()
            # A connect after the listener closed is refused.
            with pytest.raises(ConnectionRefusedError):
                await trio.open_unix_socket(os.fspath(socket_path))

    assert not await trio.Path(socket_path).exists()
    assert [t.kind for t in terminations] == [adieu.TerminationKind.CLEAN] * clients
    assert all(t.confirmed for t in terminations)
    assert report.counts[adieu.TerminationKind.CLEAN] == clients
    assert sorted(
        c.outcome.unwrap()
        for c in report.connections
        if isinstance(c.outcome, outcome.Value)
    ) == [1, 2, 3]


async def test_socket_file_is_removed_when_the_server_is_aborted(
    socket_path: pathlib.Path,
) -> None:
    with trio.fail_after(30), trio.CancelScope() as scope:
        async with open_unix_server(answer, socket_path):
            assert await trio.Path(socket_path).exists()
            scope.cancel()
            await trio.sleep_forever()
    assert not await trio.Path(socket_path).exists()


async def test_connections_in_a_unix_backlog_are_served_by_the_shutdown(
    socket_path: pathlib.Path,
) -> None:
    """No queue length to read on a Unix socket: the drain accepts until the
    queue is empty. The connections waiting there are told and finish."""
    arrivals = Arrivals(1)
    waiting = 2
    queued = Arrivals(1 + waiting)
    results: list[tuple[list[bytes], adieu.Termination]] = []

    async def client(name: bytes) -> None:
        async with adieu.connect_unix(socket_path) as conn:
            await conn.send(name)  # sent before it is accepted
            queued.arrive()
            replies = await finish_when_asked(conn)
        assert conn.termination is not None
        results.append((replies, conn.termination))

    with trio.fail_after(30):
        async with (
            trio.open_nursery() as nursery,
            open_unix_server(
                counting(answer, arrivals), socket_path, max_connections=1
            ) as server,
        ):
            nursery.start_soon(client, b"served")
            await arrivals.all_here.wait()
            for n in range(waiting):
                nursery.start_soon(client, b"waiting %d" % n)
            await queued.all_here.wait()
            assert arrivals.count == 1
            report = await server.shutdown()

    names = [b"served"] + [b"waiting %d" % n for n in range(waiting)]
    assert sorted(replies for replies, _ in results) == sorted(
        [reply_to(name)] for name in names
    )
    assert [t.kind for _, t in results] == [adieu.TerminationKind.CLEAN] * 3
    assert report.counts[adieu.TerminationKind.CLEAN] == 3
    assert arrivals.count == 3
