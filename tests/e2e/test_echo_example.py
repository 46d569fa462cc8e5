"""``examples/echo.py``: both sides in one process, or a server and a
client in two, as its docstring says."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ECHO = Path(__file__).resolve().parents[2] / "examples" / "echo.py"
TIMEOUT = 30.0  # only there so that a hang fails

pytestmark = pytest.mark.slow

CLIENT_END = (
    "client: CLEAN (begun by this side): sent {n} messages, received {n} "
    "messages, the server confirmed all {n}: both ENDs exchanged"
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ECHO), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_both_sides_in_one_process() -> None:
    result = run()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1:4] == [f"client got b'{w}'" for w in ("one", "two", "three")]
    assert lines[4] == CLIENT_END.format(n=3)
    assert lines[5].startswith("server: shutdown finished in ")


def test_serve_then_talk_to_it_with_the_client_mode() -> None:
    server = subprocess.Popen(
        [sys.executable, str(ECHO), "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.fullmatch(r"echo server on 127\.0\.0\.1 port (\d+)\n", first)
        assert match, first
        result = run("client", match[1], "hello", "adieu")
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "client got b'hello'",
            "client got b'adieu'",
            CLIENT_END.format(n=2),
        ]
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=TIMEOUT)
        assert server.returncode == 0
        assert out.startswith("server: shutdown finished in "), out
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


@pytest.mark.parametrize("args", [["client"], ["client", "99999"], ["what"]])
def test_bad_arguments_print_the_usage(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert "usage: echo.py" in result.stderr
