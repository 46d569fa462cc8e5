"""The chat example's parts, without a network: argument checking, the
line editor, and the words of every summary the client prints."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import adieu
from adieu import Initiator, TerminationKind

CHAT = Path(__file__).resolve().parents[2] / "examples" / "chat"


def load(name: str) -> ModuleType:
    """Import examples/chat/<name>.py under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"chat_{name}", CHAT / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(CHAT))  # as when run: its folder is importable
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(CHAT))
    return module


client = load("client")
server = load("server")


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "99999"],
        ["--port", "0"],
        ["--port", "http"],
        ["--name", ""],
        ["--name", "a\x1bb"],
        ["--handshake-timeout", "-1"],
        ["--handshake-timeout", "nan"],
    ],
)
def test_the_client_refuses_bad_arguments(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        client.parse_args(argv)
    assert exited.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_the_client_takes_good_arguments() -> None:
    args = client.parse_args(["--port", "65535", "--name", "alice"])
    assert (args.port, args.name) == (65535, "alice")
    assert args.handshake_timeout == adieu.DEFAULT_HANDSHAKE_TIMEOUT


@pytest.mark.parametrize(
    "argv",
    [["--port", "65536"], ["--port", "-1"], ["--grace", "-1"], ["--grace", "inf"]],
)
def test_the_server_refuses_bad_arguments(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["server.py", *argv])
    with pytest.raises(SystemExit) as exited:
        server.parse_args()
    assert exited.value.code == 2


def test_the_server_takes_port_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["server.py", "--port", "0", "--grace", "0"])
    args = server.parse_args()
    assert (args.port, args.grace) == (0, 0.0)


# ------------------------------------------------------------ the line editor


def editor() -> tuple[Any, Any]:
    screen = client.Screen(None)  # no terminal: nothing is drawn
    return screen, client.LineEditor(screen)


def test_enter_ends_a_line_and_backspace_and_ctrl_u_edit_it() -> None:
    screen, keys = editor()
    assert keys.feed(b"hel\x7flo\r") == ["helo"]
    assert keys.feed(b"drop this\x15kept\n") == ["kept"]
    assert keys.feed(b"half") == []
    assert screen.typing == "half"


def test_escape_sequences_and_control_keys_are_ignored() -> None:
    screen, keys = editor()
    # Up arrow, a function key (ESC O P), a tab, Ctrl+A.
    assert keys.feed(b"\x1b[Aa\x1bOPb\t\x01c\r") == ["abc"]
    assert screen.typing == ""


def test_utf8_split_across_reads_is_one_character() -> None:
    _, keys = editor()
    snowman = "\N{SNOWMAN}".encode()
    assert keys.feed(snowman[:1]) == []
    assert keys.feed(snowman[1:] + b"\r") == ["\N{SNOWMAN}"]


def test_ctrl_d_ends_the_input_only_on_an_empty_line() -> None:
    screen, keys = editor()
    assert keys.feed(b"abc\x04") == []
    assert screen.typing == "abc"
    assert keys.feed(b"\x15\x04") == [None]


def test_piped_lines_keep_the_unfinished_one_until_the_end() -> None:
    lines = client.PipeLines()
    assert lines.feed(b"one\ntw") == ["one"]
    assert lines.unfinished == "tw"
    assert lines.feed(b"o\nthree") == ["two"]
    assert lines.feed(b"") == ["three", None]  # the end: a last line is sent


# ------------------------------------------------------------ what is printed


def ended(
    kind: TerminationKind, sent: int, acknowledged: int | None = None
) -> adieu.Termination:
    confirmed = None if acknowledged is None else acknowledged == sent
    return adieu.Termination(
        kind, Initiator.PEER, sent, 0, 0, confirmed, acknowledged, "detail"
    )


@pytest.mark.parametrize(
    ("end", "text", "status"),
    [
        (
            ended(TerminationKind.CLEAN, 3, 3),
            "clean end: the server confirmed everything you sent: "
            "your name and 2 lines (3 messages)",
            0,
        ),
        (
            ended(TerminationKind.CLEAN, 2, 2),
            "clean end: the server confirmed everything you sent: "
            "your name and 1 line (2 messages)",
            0,
        ),
        (
            ended(TerminationKind.CLEAN, 1, 1),
            "clean end: the server confirmed everything you sent: "
            "your name (you sent no lines)",
            0,
        ),
        (
            ended(TerminationKind.CLEAN, 3, 2),
            "clean end, but the server confirmed only 2 of the messages you "
            "sent: your name and 2 lines (3 messages)",
            3,
        ),
        (
            ended(TerminationKind.RESET, 2),
            "the server reset the connection; you sent your name and 1 line "
            "(2 messages), unconfirmed",
            4,
        ),
        (
            ended(TerminationKind.TIMED_OUT, 2),
            "the server did not end the connection in time, so this client cut "
            "it; you sent your name and 1 line (2 messages), unconfirmed",
            3,
        ),
        (
            ended(TerminationKind.ABORTED, 1),
            "aborted; you had sent your name (you sent no lines)",
            130,
        ),
        (
            ended(TerminationKind.TRUNCATED, 0),
            "connection truncated: detail; you sent nothing",
            3,
        ),
    ],
)
def test_every_client_summary_and_its_exit_status(
    end: adieu.Termination, text: str, status: int
) -> None:
    assert client.summary(end) == (text, status)
    # --help lists every status the summaries give.
    assert f"  {status} " in client.EXIT_CODES


def test_the_server_logs_its_report_once() -> None:
    report = adieu.ShutdownReport((), {}, {}, 1.0, 0.0, False)
    quiet = server.QuietReport()
    dropped = logging.LogRecord("adieu", logging.INFO, "", 0, "%s", (report,), None)
    kept = logging.LogRecord("adieu", logging.INFO, "", 0, "%s", ("SIGINT",), None)
    assert not quiet.filter(dropped)
    assert quiet.filter(kept)
