"""The chat example end to end: real processes, real loopback TCP.

Each test starts ``examples/chat/server.py --port 0`` (it prints the port it
got), runs clients as separate processes fed through their standard input,
and reads what every process printed. Processes are killed at teardown,
whatever happened. Every wait has a generous bound, so that a hang fails the
test instead of blocking the suite; none of them measures speed.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
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
    r"^\*\*\* clean end: the server confirmed everything you sent: your name "
    r"(?:and (\d+) lines? \(\d+ messages\)|\(you sent no lines\))$"
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
    """Types numbered lines into a client, every ``interval`` seconds or as
    fast as it takes them (0), until stopped (or until the client stops
    reading and exits)."""

    def __init__(
        self, client: Process, name: str, padding: int = 0, interval: float = 0
    ) -> None:
        self.client = client
        self.name = name
        self.padding = " " + "x" * padding if padding else ""
        self.interval = interval
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._feed)
        self._thread.start()

    def _feed(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                n += 1
                self.client.type(f"{self.name} {n}{self.padding}")
                self.stop.wait(self.interval)
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
    return int(summary.group(1) or 0)


def test_shutdown_mid_conversation_delivers_every_line_to_everyone(
    spawn: Spawn,
) -> None:
    server, port = start_server(spawn)
    names = ["alice", "bob", "carol"]
    clients = {name: join_chat(spawn, port, name) for name in names}
    # Brisk typists, not a flood: a client sends every line entered before
    # the notice, and a backlog of a full pipe would not fit in the grace
    # period (the client would say so, and exit 3).
    feeders = [Feeder(clients[name], name, interval=0.01) for name in names]
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
    assert len(relayed) >= seen_before_signal
    for name, client in clients.items():
        assert chat_lines(client) == relayed
        own = [line for line in relayed if line.startswith(f"<{name}> ")]
        assert own == [f"<{name}> {name} {n}" for n in range(1, sent[name] + 1)]


#: Runs of the race below: each one loses lines if anything drops them.
RACE_RUNS = 4
LINES_EACH = 5


@pytest.mark.parametrize("run", range(RACE_RUNS))
def test_lines_written_just_before_the_signal_all_reach_everyone(
    spawn: Spawn, run: int
) -> None:
    """Three clients each get five lines on their standard input, and the
    server its SIGINT right after: every line was entered before the
    SHUTDOWN notice, so every line is sent, relayed to everyone, and
    confirmed."""
    server, port = start_server(spawn)
    names = ["alice", "bob", "carol"]
    clients = {name: join_chat(spawn, port, name) for name in names}
    clients["alice"].out.wait_for(r"^\* carol joined$")
    for name, client in clients.items():
        client.type(*(f"{name} {n}" for n in range(1, LINES_EACH + 1)))

    server.signal(signal.SIGINT)

    for client in clients.values():
        assert assert_clean_exit(client) == LINES_EACH
        assert not any("not sent" in line for line in client.out.lines)
    assert server.wait() == 0
    for name, client in clients.items():
        for sender in names:
            said = [
                line for line in chat_lines(client) if line.startswith(f"<{sender}>")
            ]
            expected = [f"<{sender}> {sender} {n}" for n in range(1, LINES_EACH + 1)]
            assert said == expected, (name, client.out.lines)
    assert not any("did not reach" in line for line in server.out.lines)


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
    assert server.wait() == 1  # the shutdown cut a connection: --help says 1
    report = server.out.lines
    assert report[1].startswith("shutdown finished in "), report
    assert report[1].endswith(
        " 3 connections were open when the shutdown began: 2 clean, 1 timed out"
    ), report
    assert re.search(r"^  mallory \(.*\): TIMED_OUT", report[-1]), report


def test_the_report_names_who_missed_a_line_said_after_they_left(
    spawn: Spawn,
) -> None:
    """alice finished, waited for mallory as long as the grace period
    allowed, and left; mallory then said one more line. It could not reach
    alice, and the server's report says so."""
    server, port = start_server(spawn)
    alice = join_chat(spawn, port, "alice")
    mallory = spawn(RAW_CLIENT, port, "mallory", "late")
    alice.out.wait_for(r"^\* mallory joined$")

    server.signal(signal.SIGINT)

    mallory.out.wait_for(r"^said it$")
    assert assert_clean_exit(alice) == 0
    assert "<mallory> too late for the others" not in alice.out.lines
    assert mallory.wait() == 0
    assert server.wait() == 1  # mallory was cut at the deadline
    [alice_line] = [line for line in server.out.lines if line.startswith("  alice")]
    assert alice_line.endswith("; 1 line said in the room did not reach alice")
    [mallory_line] = [line for line in server.out.lines if "mallory (" in line]
    assert "did not reach" not in mallory_line  # its own echo was delivered


def test_a_second_signal_aborts_and_a_resumed_client_says_no_stale_time(
    spawn: Spawn,
) -> None:
    """carol is suspended (as by Ctrl+Z) when the server shuts down; a
    second SIGINT aborts. The server says it aborted, and exits 1 as its
    --help says; carol, resumed, reads the notice and the reset together
    and announces no time left: it says the server reset the connection,
    and exits 4."""
    server, port = start_server(spawn)
    alice = join_chat(spawn, port, "alice")
    carol = join_chat(spawn, port, "carol")
    carol.signal(signal.SIGSTOP)
    try:
        server.signal(signal.SIGINT)
        alice.out.wait_for(r"^\* alice finished$")  # waiting for carol now
        server.signal(signal.SIGINT)
        assert server.wait() == 1
    finally:
        carol.signal(signal.SIGCONT)
    assert re.match(
        r"^shutdown aborted in [\d.]+ s \(grace period 3 s\): 2 connections were "
        r"open when the shutdown began: 2 aborted$",
        server.out.lines[1],
    ), server.out.lines
    assert alice.wait() == 4
    assert carol.wait() == 4
    assert not any(" s left" in line for line in carol.out.lines), carol.out.lines
    assert carol.out.lines[-1].startswith("*** the server reset the connection; ")


def test_a_second_signal_that_cuts_nothing_changes_nothing(spawn: Spawn) -> None:
    """Two Ctrl+C at once on an idle server (the second lands while the
    instant shutdown runs, or just after it finished), then a third once
    the report is out. Nothing was cut: the report says finished, once, and
    the exit status is 0."""
    server, _ = start_server(spawn)
    wait_until_it_handles_sigterm(server)  # run_until_signal is running
    server.signal(signal.SIGINT)
    server.signal(signal.SIGINT)
    # And one more once the report is out: too late to change anything.
    server.out.wait_for(r"^shutdown ")
    with contextlib.suppress(ProcessLookupError):
        server.signal(signal.SIGINT)
    assert server.wait() == 0, server.err.lines
    reports = [line for line in server.out.lines if line.startswith("shutdown ")]
    assert len(reports) == 1, server.out.lines
    assert reports[0].startswith("shutdown finished "), reports
    assert not any("Traceback" in line for line in server.err.lines)


def wait_until_it_handles_sigterm(process: Process) -> None:
    """Wait until ``process`` has a handler for SIGTERM (Linux: its
    /proc/PID/status lists the signals it catches)."""
    status = Path(f"/proc/{process.popen.pid}/status")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        [caught] = re.findall(r"^SigCgt:\s*([0-9a-f]+)$", status.read_text(), re.M)
        if int(caught, 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)
    pytest.fail("the server never started handling SIGTERM")


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


def visible_rows(output: str) -> list[str]:
    """What a terminal shows for the client's output: each row as its last
    redraw left it (the client only ever returns to the start of a row and
    clears it: ``\\r\\x1b[K``)."""
    rows = output.replace("\r\n", "\n").split("\n")
    return [row.split("\r\x1b[K")[-1].rstrip("\r") for row in rows]


def test_in_a_terminal_the_client_owns_the_input_line(spawn: Spawn) -> None:
    """Through a pseudo-terminal, as a person runs it: a line entered is
    shown once (the server's echo), a half-typed line is not left behind
    for the shell but named as not sent, and the terminal's settings come
    back."""
    server, port = start_server(spawn)
    master, terminal = pty.openpty()
    before = termios.tcgetattr(terminal)
    alice = subprocess.Popen(
        [sys.executable, str(CLIENT), "--port", port, "--name", "alice"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=ROOT,
    )
    screen = Screen(master)
    try:
        screen.wait_for("welcome, alice!")
        os.write(master, b"hello\r")
        screen.wait_for("<alice> hello")
        os.write(master, b"half typed")
        screen.wait_for("alice> half typed")

        server.signal(signal.SIGINT)

        assert alice.wait(TIMEOUT) == 0, screen.text()
        assert server.wait() == 0
        rows = visible_rows(screen.wait_for("clean end"))
        assert [row for row in rows if "hello" in row] == ["<alice> hello"], rows
        assert "*** not sent, you had not pressed Enter: 'half typed'" in rows
        assert rows[-2].startswith("*** clean end: the server confirmed"), rows
        assert rows[-1] == ""  # the input line is gone
        assert termios.tcgetattr(terminal) == before
        # Nothing typed is left for the shell to read after the exit.
        assert not select.select([terminal], [], [], 0)[0]
    finally:
        if alice.poll() is None:
            alice.kill()
            alice.wait()
        os.close(terminal)  # the last slave end: the reader sees EIO
        screen.close()


class Screen:
    """Collects what a program writes to a pseudo-terminal."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.data = b""
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._collect)
        self._thread.start()

    def _collect(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the program closed its end
                chunk = b""
            with self._changed:
                self.data += chunk
                self._changed.notify_all()
            if not chunk:
                return

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def wait_for(self, needle: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while needle not in self.text():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"no {needle!r} in:\n{self.text()}")
                self._changed.wait(remaining)
            return self.text()

    def close(self) -> None:
        self._thread.join(TIMEOUT)
        os.close(self.master)
