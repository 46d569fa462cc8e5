"""Every program of the how-to guides runs and does what its guide says;
the deployment files keep their grace period below their kill timeout; the
decision table's promises hold.
"""

from __future__ import annotations

import functools
import re
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from docs_support import DOCS, Process, load

import adieu
import adieu.testing

graceful_server = load("howto/graceful_server.py")
feed_client = load("howto/feed_client.py")
job_client = load("howto/job_client.py")
tls = load("howto/tls.py")
unix = load("howto/unix.py")
migrate_trio = load("howto/migrate_trio.py")
migrate_adieu = load("howto/migrate_adieu.py")
howto_tests = load("howto/test_echo.py")

slow = pytest.mark.slow


# ------------------------------------------------------------ graceful shutdown


@slow
async def test_the_graceful_server_finishes_its_feed_on_sigterm(
    start: Callable[..., Process],
) -> None:
    server = start("howto/graceful_server.py", "--port", "0", "--grace", "5")
    port = int((await trio.to_thread.run_sync(server.wait_for, r"port (\d+)"))[1])
    first_update = trio.Event()
    printed: list[str] = []

    def record(*args: Any, **kwargs: Any) -> None:
        printed.append(" ".join(map(str, args)))
        if args == ("update 1",):
            first_update.set()

    feed_client.print = record  # the module's own print, as a probe
    try:
        async with trio.open_nursery() as nursery:
            results: list[adieu.Termination] = []

            async def run_client() -> None:
                results.append(await feed_client.main(port))

            nursery.start_soon(run_client)
            await first_update.wait()
            server.popen.send_signal(signal.SIGTERM)  # as systemd stops it
    finally:
        del feed_client.print
    [termination] = results
    assert termination.lossless
    assert "server: restarting" in printed
    status, output = await trio.to_thread.run_sync(server.finish)
    assert status == 0, output
    assert "1 connection open: 1 clean" in output


async def _connected_to_the_graceful_server(
    start: Callable[..., Process],
) -> tuple[Process, int]:
    server = start("howto/graceful_server.py", "--port", "0", "--grace", "600")
    port = int((await trio.to_thread.run_sync(server.wait_for, r"port (\d+)"))[1])
    return server, port


async def _exited_aborted(server: Process) -> None:
    """The program ended by its own path: status 1, the aborted report
    printed, no traceback."""
    status, output = await trio.to_thread.run_sync(server.finish)
    assert status == 1, output
    assert "shutdown aborted" in output
    assert "1 connection open: 1 aborted" in output
    assert "Traceback" not in output


async def _receive_forever(conn: adieu.Connection) -> None:
    while True:
        await conn.receive()


async def _until_reset(conn: adieu.Connection) -> None:
    with trio.fail_after(30), pytest.raises(adieu.ConnectionReset):
        await _receive_forever(conn)


@slow
async def test_a_second_ctrl_c_during_the_shutdown_aborts_cleanly(
    start: Callable[..., Process],
) -> None:
    """Ctrl+C starts the shutdown (the client is asked, and holds it open:
    the grace period is 600 s); a second Ctrl+C aborts. The program exits
    through its own path, status 1 (the report says aborted), with no
    traceback."""
    server, port = await _connected_to_the_graceful_server(start)
    async with adieu.connect_tcp("127.0.0.1", port) as conn:
        assert await conn.receive() == b"update 1"
        server.popen.send_signal(signal.SIGINT)
        with trio.fail_after(30):
            await conn.shutdown_requested.wait()
        assert conn.shutdown_reason == "restarting"
        server.popen.send_signal(signal.SIGINT)
        await _until_reset(conn)
    await _exited_aborted(server)


@slow
async def test_two_signals_at_once_abort_cleanly(
    start: Callable[..., Process],
) -> None:
    """Both signals arrive before the shutdown's first step has run: the
    abort comes first, the shutdown then finds the report made."""
    server, port = await _connected_to_the_graceful_server(start)
    async with adieu.connect_tcp("127.0.0.1", port) as conn:
        assert await conn.receive() == b"update 1"
        server.popen.send_signal(signal.SIGINT)
        server.popen.send_signal(signal.SIGTERM)
        await _until_reset(conn)
    await _exited_aborted(server)


async def test_the_answering_handler_answers_every_request() -> None:
    async with (
        adieu.testing.open_memory_server(graceful_server.answer) as server,
        adieu.testing.connect_memory(server) as conn,
    ):
        await conn.send(b"job")
        assert await conn.receive() == b"done: job"
    assert conn.termination is not None
    assert conn.termination.lossless


async def test_the_feed_stops_pushing_when_the_server_shuts_down(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with (
        adieu.testing.open_memory_server(
            graceful_server.feed, grace_period=60
        ) as server,
        adieu.testing.connect_memory(server) as conn,
    ):
        assert await conn.receive() == b"update 1"
        assert await conn.receive() == b"update 2"  # a second later
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.shutdown)
            await conn.shutdown_requested.wait()
            await conn.send_eof()
            assert [m async for m in conn] == []
    assert server.report is not None
    assert server.report.lossless
    [report] = server.report.connections
    assert report.outcome is not None
    assert report.outcome.unwrap() is None


# ------------------------------------------------------------- job client


async def take_two(conn: adieu.Connection) -> None:
    """A handler that answers two jobs, then returns with the rest unread."""
    answered = 0
    async for job in conn:
        await conn.send(b"done: " + job)
        answered += 1
        if answered == 2:
            return


async def test_the_job_client_resubmits_what_the_server_never_took() -> None:
    jobs = [b"a", b"b", b"c", b"d", b"e"]
    async with adieu.open_tcp_server(take_two, "127.0.0.1", 0) as server:
        results = await job_client.submit_all(server.port, jobs)
    assert results == [b"done: " + job for job in jobs]


async def test_the_job_client_stops_sending_when_asked_to_finish() -> None:
    todo = job_client.deque([b"one", b"two", b"three"])
    sent: list[bytes] = []

    async def ask_first(conn: adieu.Connection) -> None:
        conn.request_shutdown("restarting")
        async for job in conn:
            await conn.send(b"done: " + job)

    async with (
        adieu.testing.open_memory_server(ask_first) as server,
        adieu.testing.connect_memory(server) as conn,
    ):
        await conn.shutdown_requested.wait()
        results = await job_client.submit(conn, todo, sent)
    assert sent == []
    assert results == []
    assert list(todo) == [b"one", b"two", b"three"]
    assert conn.termination is not None
    assert conn.termination.acknowledged == 0


# -------------------------------------------------------------------- TLS


def _tls_files(tmp_path: Path, ca: trustme.CA) -> tuple[str, str, str]:
    tmp_path.mkdir(exist_ok=True)
    cert = ca.issue_cert("localhost")
    certfile, keyfile, cafile = (
        tmp_path / "server.pem",
        tmp_path / "server.key",
        tmp_path / "ca.pem",
    )
    certfile.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    return str(certfile), str(keyfile), str(cafile)


async def test_tls_talk_is_clean_and_confirmed(tmp_path: Path) -> None:
    certfile, keyfile, cafile = _tls_files(tmp_path, trustme.CA())
    context = tls.server_context(certfile, keyfile)
    async with adieu.open_tcp_server(
        tls.echo, "localhost", 0, ssl_context=context
    ) as server:
        termination = await tls.talk(server.port, tls.client_context(cafile))
    assert termination.lossless


async def test_tls_talk_refuses_a_certificate_it_cannot_verify(
    tmp_path: Path,
) -> None:
    certfile, keyfile, _ = _tls_files(tmp_path, trustme.CA())
    _, _, other_cafile = _tls_files(tmp_path / "other", trustme.CA())
    context = tls.server_context(certfile, keyfile)
    async with adieu.open_tcp_server(
        tls.echo, "localhost", 0, ssl_context=context
    ) as server:
        with pytest.raises(trio.BrokenResourceError) as caught:
            await tls.talk(server.port, tls.client_context(other_cafile))
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


@slow
async def test_the_tls_server_program_serves_until_interrupted(
    tmp_path: Path, start: Callable[..., Process]
) -> None:
    certfile, keyfile, cafile = _tls_files(tmp_path, trustme.CA())
    server = start(
        "howto/tls.py", "server", "--cert", certfile, "--key", keyfile, "--port", "0"
    )
    port = int((await trio.to_thread.run_sync(server.wait_for, r"port (\d+)"))[1])
    termination = await tls.talk(port, tls.client_context(cafile))
    assert termination.lossless
    server.popen.send_signal(signal.SIGINT)
    status, output = await trio.to_thread.run_sync(server.finish)
    assert status == 0, output


# -------------------------------------------------------------------- Unix


async def test_unix_echo_is_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "echo.sock"
    await unix.main(str(path))
    out = capsys.readouterr().out
    assert "b'hello over a Unix socket'" in out
    assert re.search(r"client: CLEAN .* confirmed", out)
    assert not path.exists()  # removed when the server's block ended


async def test_an_aborted_unix_connection_is_truncated_for_the_peer(
    tmp_path: Path,
) -> None:
    seen: list[BaseException] = []
    ended = trio.Event()

    async def handler(conn: adieu.Connection) -> None:
        try:
            await conn.send(b"ready")
            async for _ in conn:
                pass
        except trio.BrokenResourceError as exc:
            seen.append(exc)
        finally:
            ended.set()

    path = str(tmp_path / "abort.sock")
    async with adieu.open_unix_server(handler, path):
        async with adieu.connect_unix(path) as conn:
            assert await conn.receive() == b"ready"  # the handler is reading
            conn.abort()
        await ended.wait()
    assert [type(exc) for exc in seen] == [adieu.ConnectionTruncated]


# --------------------------------------------------------------- migration


async def test_the_trio_server_before_the_migration_echoes_lines() -> None:
    await migrate_trio.main(0)  # starts, then stops at once
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host="127.0.0.1")
        listeners = await nursery.start(serve, migrate_trio.echo_lines, 0)
        port = listeners[0].socket.getsockname()[1]
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(b"one\ntwo\n")
            got = b""
            while got.count(b"\n") < 2:
                got += await stream.receive_some()
        assert got == b"one\ntwo\n"
        nursery.cancel_scope.cancel()


async def test_the_adieu_server_after_the_migration_echoes_and_reports() -> None:
    report = await migrate_adieu.main(0)
    assert report.connections == ()
    async with trio.open_nursery() as nursery:
        serve = functools.partial(adieu.serve_tcp, host="127.0.0.1")
        server = await nursery.start(serve, migrate_adieu.echo_messages, 0)
        async with adieu.connect_tcp("127.0.0.1", server.port) as conn:
            await conn.send(b"one")
            assert await conn.receive() == b"one"
        report = await server.shutdown()
    assert conn.termination is not None
    assert conn.termination.lossless
    assert report.lossless
    assert report.clean + report.ended_before[adieu.TerminationKind.CLEAN] == 1


# -------------------------------------------------------------- deployment


def _grace(command: str) -> float:
    match = re.search(r"--grace[\"',\s]+([\d.]+)", command)
    assert match, command
    return float(match[1])


def test_the_systemd_unit_stops_gracefully_before_its_kill_timeout() -> None:
    unit = (DOCS / "howto" / "adieu-echo.service").read_text()
    fields = dict(
        line.split("=", 1) for line in unit.splitlines() if re.match(r"^\w+=", line)
    )
    assert "graceful_server.py" in fields["ExecStart"]
    grace = _grace(fields["ExecStart"])
    assert grace + 5 <= float(fields["TimeoutStopSec"])
    args = fields["ExecStart"].split("graceful_server.py", 1)[1].split()
    assert graceful_server.parse_args(args).grace == grace


def test_the_container_stops_gracefully_before_its_kill_timeout() -> None:
    dockerfile = (DOCS / "howto" / "Dockerfile").read_text()
    [cmd] = [line for line in dockerfile.splitlines() if line.startswith("CMD ")]
    docker_stop_default = 10.0  # seconds: docker stop's default timeout
    assert _grace(cmd) + 2 <= docker_stop_default
    compose = (DOCS / "howto" / "compose.yaml").read_text()
    stop = re.search(r"stop_grace_period:\s*(\d+)s", compose)
    assert stop
    [command] = [line for line in compose.splitlines() if "command:" in line]
    assert _grace(command) + 5 <= float(stop[1])
    for args in (cmd, command):
        argv = re.findall(r'"([^"]+)"', args)
        options = argv[argv.index("/app/graceful_server.py") + 1 :]
        assert graceful_server.parse_args(options).grace == _grace(args)


# ---------------------------------------------------------- decision table


async def test_abort_is_aborted_here_and_a_reset_there() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        client.abort()
        assert client.termination is not None
        assert client.termination.kind is adieu.TerminationKind.ABORTED
        with pytest.raises(adieu.ConnectionReset):
            await server.receive()
        client.abort()  # idempotent
    assert server.termination is not None
    assert server.termination.kind is adieu.TerminationKind.RESET


async def test_a_server_aclose_before_the_clients_end_truncates_the_client() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        await server.aclose()
        with pytest.raises(adieu.ConnectionTruncated):
            await client.receive()
        await server.aclose()  # idempotent
    assert client.termination is not None
    assert client.termination.kind is adieu.TerminationKind.TRUNCATED


async def test_a_client_aclose_ends_its_messages_cleanly_for_the_server() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        await client.send(b"last")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)  # END first, then the linger
            assert await server.receive() == b"last"
            with pytest.raises(adieu.EndOfMessages):
                await server.receive()
            await server.aclose()  # after the client's END: the server's END
    assert client.termination is not None
    assert server.termination is not None
    assert client.termination.kind is adieu.TerminationKind.CLEAN
    assert server.termination.kind is adieu.TerminationKind.CLEAN


async def test_send_eof_is_a_half_close() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        await client.send_eof()
        await client.send_eof()  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await client.send(b"more")
        await server.send(b"still answering")
        assert await client.receive() == b"still answering"


async def test_a_client_shutdown_counts_what_it_throws_away() -> None:
    async with adieu.testing.open_connection_pair() as (client, server):
        await server.send(b"unread 1")
        await server.send(b"unread 2")

        async def serve_to_the_end() -> None:
            assert [m async for m in server] == []  # up to the client's END
            await server.shutdown()  # the server's END

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_to_the_end)
            termination = await client.shutdown()
        assert await client.shutdown() is termination  # idempotent
    assert termination.kind is adieu.TerminationKind.CLEAN
    assert termination.messages_discarded == 2
    assert termination.confirmed
    assert not termination.lossless


async def test_both_sides_shutting_down_at_once_end_clean_every_time() -> None:
    # The decision table promises that shutdown() loses nothing, whichever
    # side starts. Trio runs ready tasks in a shuffled order, so the race
    # (the client's END and FIN arriving while the server's SHUTDOWN is still
    # being written, its END queued behind it) is played many times.
    for _ in range(40):
        async with adieu.testing.open_connection_pair() as (client, server):
            await server.send(b"unread")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.shutdown)
                await client.shutdown()
        assert client.termination is not None
        assert server.termination is not None
        assert client.termination.kind is adieu.TerminationKind.CLEAN
        assert server.termination.kind is adieu.TerminationKind.CLEAN
        assert client.termination.confirmed
        assert client.termination.messages_discarded == 1


# The guide's own tests, run as part of this suite.
test_guide_echo_over_a_connection_pair = howto_tests.test_echo_over_a_connection_pair
test_guide_ignoring_shutdown_times_out = (
    howto_tests.test_a_client_that_ignores_shutdown_is_aborted_at_the_deadline
)
test_guide_crossing_request_is_answered = (
    howto_tests.test_the_last_request_crossing_shutdown_is_answered
)
test_guide_cut_is_truncated = howto_tests.test_a_cut_connection_is_reported_as_truncated
test_guide_reset_is_reported = howto_tests.test_a_reset_is_reported_as_such
