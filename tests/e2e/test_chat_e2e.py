"""The chat example end to end: real processes, real loopback TCP.

Each test starts ``examples/chat/server.py --port 0`` (it prints the port it
got), runs clients as separate processes fed through their standard input,
and reads what every process printed. Processes are killed at teardown,
whatever happened. Every wait has a generous bound, so that a hang fails the
test instead of blocking the suite; none of them measures speed.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "examples" / "chat" / "server.py"
CLIENT = ROOT / "examples" / "chat" / "client.py"
RAW_CLIENT = Path(__file__).with_name("chat_raw_client.py")

# Each test starts Python processes and takes a second or more.
pytestmark = pytest.mark.slow

#: Bound of any single wait: far beyond what the step needs, only there so
#: that a hang fails instead of blocking.
TIMEOUT = 30.0
#: The server's grace period in these tests, in seconds.
GRACE = 3.0

CHAT_LINE = re.compile(r"^<(\w+)> (.*)$")
SUMMARY = re.compile(
    r"^\*\*\* clean end: the server confirmed all \d+ messages "
    r"\(your name and (\d+) lines?\)$"
)


class Output:
    """The lines one pipe carries, collected by a thread as they come."""

    def __init__(self, pipe: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._collect, args=(pipe,))
        self._thread.start()

    def _collect(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """Wait until ``count`` lines match ``pattern``; return the matches."""
        regex = re.compile(pattern)
        matches: list[re.Match[str]] = []
        scanned = 0
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while True:
                for line in self.lines[scanned:]:
                    if match := regex.search(line):
                        matches.append(match)
                scanned = len(self.lines)
                if len(matches) >= count:
                    return matches
                remaining = deadline - time.monotonic()
                if self.closed or remaining <= 0:
                    tail = "\n".join(self.lines[-20:])
                    pytest.fail(f"no {count} lines matching {pattern!r}; last:\n{tail}")
                self._changed.wait(remaining)

    def join(self) -> None:
        self._thread.join(TIMEOUT)


class Process:
    """A child Python process with piped stdin, stdout and stderr."""

    def __init__(self, *args: str | Path) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, *map(str, args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        stdin, stdout, stderr = self.popen.stdin, self.popen.stdout, self.popen.stderr
        assert stdin is not None
        assert stdout is not None
        assert stderr is not None
        self.pipes = (stdin, stdout, stderr)
        self.stdin = stdin
        self.out = Output(stdout)
        self.err = Output(stderr)

    def type(self, *lines: str) -> None:
        self.stdin.write("".join(line + "\n" for line in lines))
        self.stdin.flush()

    def close_stdin(self) -> None:
        """Ctrl+D."""
        self.stdin.close()

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self) -> int:
        """Wait for the exit; return the status once the output is read."""
        status = self.popen.wait(TIMEOUT)
        self.out.join()
        self.err.join()
        return status

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        for pipe in self.pipes:
            # OSError: stdin of a dead process, with unwritten lines buffered
            with contextlib.suppress(OSError):
                pipe.close()
        self.out.join()
        self.err.join()


class Feeder:
    """Types numbered lines into a client, as fast as it takes them, until
    stopped (or until the client stops reading and exits)."""

    def __init__(self, client: Process, name: str, padding: int = 0) -> None:
        self.client = client
        self.name = name
        self.padding = " " + "x" * padding if padding else ""
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._feed)
        self._thread.start()

    def _feed(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                self.client.type(f"{self.name} {n}{self.padding}")
        except (BrokenPipeError, ValueError):
            pass  # the client exited (or its stdin was closed)

    def join(self) -> None:
        self._thread.join(TIMEOUT)


Spawn = Callable[..., Process]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start child processes; kill every one still running at the end."""
    started: list[Process] = []

    def start(*args: str | Path) -> Process:
        process = Process(*args)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.kill()


def start_server(spawn: Spawn, *options: str) -> tuple[Process, str]:
    server = spawn(SERVER, "--port", "0", "--grace", str(GRACE), *options)
    [match] = server.out.wait_for(r"^listening on 127\.0\.0\.1:(\d+)$")
    return server, match.group(1)


def join_chat(spawn: Spawn, port: str, name: str, *options: str) -> Process:
    client = spawn(CLIENT, "--port", port, "--name", name, *options)
    client.out.wait_for(rf"^\* welcome, {name}!")
    return client


def chat_lines(client: Process) -> list[str]:
    return [line for line in client.out.lines if CHAT_LINE.match(line)]


def assert_clean_exit(client: Process) -> int:
    """The client exited 0 and its last line says the server confirmed
    everything; return how many lines it sent."""
    assert client.wait() == 0, client.err.lines
    summary = SUMMARY.match(client.out.lines[-1])
    assert summary, client.out.lines[-1]
    return int(summary.group(1))


def test_shutdown_mid_conversation_delivers_every_line_to_everyone(
    spawn: Spawn,
) -> None:
    server, port = start_server(spawn)
    names = ["alice", "bob", "carol"]
    clients = {name: join_chat(spawn, port, name) for name in names}
    feeders = [Feeder(clients[name], name) for name in names]
    # Everyone is talking: each client has seen lines from each one.
    for client in clients.values():
        for name in names:
            client.out.wait_for(rf"^<{name}> {name} \d+$", count=10)
    seen_before_signal = len(chat_lines(clients["alice"]))

    server.signal(signal.SIGINT)

    for client in clients.values():
        client.out.wait_for(r"^\*\*\* the chat server is shutting down: 3 s left")
    sent = {name: assert_clean_exit(client) for name, client in clients.items()}
    assert server.wait() == 0
    for feeder in feeders:
        feeder.join()
    report = server.out.lines
    assert report[1].startswith("shutdown finished in "), report  # not aborted
    assert report[1].endswith(
        " 3 connections were open when the shutdown began: 3 clean"
    ), report
    # Every client saw the same lines in the same order, and in it every
    # line that each client sent, in order: nothing was lost.
    relayed = chat_lines(clients["alice"])
    assert len(relayed) > seen_before_signal  # lines flowed during shutdown
    for name, client in clients.items():
        assert chat_lines(client) == relayed
        own = [line for line in relayed if line.startswith(f"<{name}> ")]
        assert own == [f"<{name}> {name} {n}" for n in range(1, sent[name] + 1)]


def test_client_that_ignores_shutdown_is_aborted_at_the_deadline(
    spawn: Spawn,
) -> None:
    server, port = start_server(spawn)
    alice = join_chat(spawn, port, "alice")
    bob = join_chat(spawn, port, "bob")
    mallory = spawn(RAW_CLIENT, port, "mallory", "ignore")
    alice.out.wait_for(r"^\* mallory joined$")
    alice.type("hello")
    bob.type("hi")
    for client in (alice, bob):
        client.out.wait_for(r"^<alice> hello$")
        client.out.wait_for(r"^<bob> hi$")

    server.signal(signal.SIGINT)

    mallory.out.wait_for(r"^shutdown requested$")
    assert assert_clean_exit(alice) == 1
    assert assert_clean_exit(bob) == 1
    assert mallory.wait() == 0
    assert mallory.out.lines[-1] == "ended: reset"  # aborted by the server
    assert server.wait() == 0
    report = server.out.lines
    assert report[1].startswith("shutdown finished in "), report
    assert report[1].endswith(
        " 3 connections were open when the shutdown began: 2 clean, 1 timed out"
    ), report
    assert re.search(r"^  mallory \(.*\): TIMED_OUT", report[-1]), report


def test_killed_client_is_logged_and_the_others_chat_on(spawn: Spawn) -> None:
    server, port = start_server(spawn)
    alice = join_chat(spawn, port, "alice")
    bob = join_chat(spawn, port, "bob")
    carol = join_chat(spawn, port, "carol")
    carol.type("bye, cruel world")
    alice.out.wait_for(r"^<carol> bye, cruel world$")

    carol.signal(signal.SIGKILL)

    server.err.wait_for(r"chat carol: connection (truncated|reset)")
    alice.out.wait_for(r"^\* carol lost the connection$")
    alice.type("still here?")
    bob.type("yes")
    for client in (alice, bob):
        client.out.wait_for(r"^<alice> still here\?$")
        client.out.wait_for(r"^<bob> yes$")
    alice.close_stdin()
    bob.close_stdin()
    assert assert_clean_exit(alice) == 1
    assert assert_clean_exit(bob) == 1
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_client_that_stops_reading_is_cut_off(spawn: Spawn) -> None:
    server, port = start_server(spawn)
    alice = join_chat(spawn, port, "alice")
    bob = join_chat(spawn, port, "bob")
    spawn(RAW_CLIENT, port, "sloth", "stall")
    bob.out.wait_for(r"^\* sloth joined$")

    # alice floods the room with long lines until sloth's buffers and then
    # its queue on the server are full.
    flood = Feeder(alice, "alice", padding=1900)
    server.err.wait_for(r"chat sloth is not reading")
    flood.stop.set()
    flood.join()
    alice.type("alice done")
    bob.out.wait_for(r"^\* sloth was cut off: not reading$")
    bob.out.wait_for(r"^<alice> alice done$")
    alice.close_stdin()
    bob.close_stdin()
    sent = assert_clean_exit(alice)
    assert assert_clean_exit(bob) == 0
    # Neither alice nor bob lost a line: all of alice's, in order.
    for client in (alice, bob):
        lines = [line.split(" x")[0] for line in chat_lines(client)]
        expected = [f"<alice> alice {n}" for n in range(1, sent)]
        assert lines == [*expected, "<alice> alice done"]
    server.signal(signal.SIGINT)
    assert server.wait() == 0


def test_chat_over_tls(spawn: Spawn, tmp_path: Path) -> None:
    cafile = str(tmp_path / "ca.pem")
    server, port = start_server(spawn, "--tls", "--cafile", cafile)
    alice = join_chat(spawn, port, "alice", "--cafile", cafile)
    alice.type("over TLS")
    alice.out.wait_for(r"^<alice> over TLS$")
    alice.close_stdin()
    assert assert_clean_exit(alice) == 1
    server.signal(signal.SIGINT)
    assert server.wait() == 0
