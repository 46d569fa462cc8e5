"""The tutorial, followed as a reader follows it: in a new directory, with a
new virtual environment that has adieu installed as a package (a wheel built
from this checkout), every command the pages show run in order, with the
files the pages tell the reader to save, and the output the pages show.

What is not run exactly as shown, and why:

* ``python3 -m venv .venv`` runs with this test's Python, so that the new
  environment has the same version as the packages it borrows (below);
* ``python -m pip install adieu`` installs the wheel, offline (adieu's
  dependencies, and pytest with pytest-trio for step 4, come from this
  test's own environment through a ``.pth`` file: the suite must not need
  the network). ``python -m pip install pytest pytest-trio`` is checked the
  same way: both import in the new environment;
* the servers listen on a free port the test picks instead of 7000 and
  7777 (other programs may hold those), and the chat clients get it with
  ``--port``;
* Ctrl+C is a SIGINT, and what a person types is written to standard input.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from docs_support import DOCS, ROOT, Process

# Builds a wheel, makes an environment and runs a dozen processes: seconds.
pytestmark = pytest.mark.slow

TUTORIAL = DOCS / "tutorial"
PAGES = ("index", "echo", "shutdown", "chat", "testing")

#: Every command of the tutorial, page by page, in order: the test fails
#: when the pages change, so that whoever changes them looks here too.
COMMANDS = {
    "index": [
        "mkdir adieu-tutorial",
        "cd adieu-tutorial",
        "python3 -m venv .venv",
        ". .venv/bin/activate",
        "python -m pip install adieu",
    ],
    "echo": ["python echo.py"],
    "shutdown": ["python server.py 7000", "python client.py 7000"],
    "chat": [
        "python chat.py 7777",
        "python chat_client.py --name alice",
        "python chat_client.py --name bob",
    ],
    "testing": [
        "python -m pip install pytest pytest-trio",
        "python -m pytest -q test_chat.py",
    ],
}


def blocks(page: str, language: str) -> list[str]:
    """The contents of the page's ``code-block:: <language>`` blocks,
    dedented."""
    text = (TUTORIAL / f"{page}.rst").read_text(encoding="utf-8")
    found = re.findall(
        rf"^\.\. code-block:: {language}\n(?:   :.*\n)*\n((?:(?: {{3}}.*)?\n)+)",
        text,
        re.MULTILINE,
    )
    return [
        "\n".join(line[3:].removeprefix(" ") for line in block.strip("\n").split("\n"))
        for block in found
    ]


def commands(page: str) -> list[str]:
    return [
        line.removeprefix("$ ")
        for block in blocks(page, "console")
        for line in block.splitlines()
        if line.startswith("$ ")
    ]


def output_of(page: str, command: str) -> list[str]:
    """The lines a page shows after ``$ command``, up to the next prompt."""
    for block in blocks(page, "console"):
        lines = block.splitlines()
        if f"$ {command}" in lines:
            after = lines[lines.index(f"$ {command}") + 1 :]
            shown = []
            for line in after:
                if line.startswith("$ "):
                    break
                shown.append(line)
            return shown
    raise AssertionError(f"{page}: no {command!r}")


def saved_files() -> list[str]:
    """The programs the pages show under a caption (a file name) for the
    reader to save."""
    names = []
    for page in PAGES:
        text = (TUTORIAL / f"{page}.rst").read_text(encoding="utf-8")
        names += re.findall(
            r"^\.\. literalinclude:: (\S+)\n(?:   :.*\n)*?   :caption: ``\1``",
            text,
            re.MULTILINE,
        )
    return names


def test_the_test_follows_every_command_of_the_tutorial() -> None:
    assert {page: commands(page) for page in PAGES} == COMMANDS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert isinstance(port, int)
        return port


class Reader:
    """Runs commands in the tutorial's directory, in a shell with the
    environment active, as the pages say to."""

    def __init__(self, home: Path) -> None:
        self.home = home  # the "new directory" in which the reader starts
        self.directory = home
        self.env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
        }
        self.activated = False
        self.started: list[Process] = []

    def shell(self, command: str) -> list[str]:
        prefix = ". .venv/bin/activate && " if self.activated else ""
        return ["bash", "-c", f"{prefix}exec {command}"]

    def attempt(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.shell(command),
            cwd=self.directory,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run(self, command: str) -> str:
        """Run ``command``, which must succeed; return what it printed."""
        result = self.attempt(command)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result.stdout

    def start(self, command: str, *, stdin: bool = False) -> Process:
        process = Process(
            self.shell(command), self.directory, env=self.env, stdin=stdin
        )
        self.started.append(process)
        return process

    def save(self, source: Path, name: str) -> None:
        shutil.copyfile(source, self.directory / name)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """adieu as a package: a wheel built from this checkout, offline."""
    out = tmp_path_factory.mktemp("dist")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    build += ["--no-build-isolation", "--no-index", "-w", str(out), str(ROOT)]
    subprocess.run(
        build,
        check=True,
        timeout=120,
        capture_output=True,
    )
    [built] = out.glob("adieu-*.whl")
    return built


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[Reader]:
    person = Reader(tmp_path)
    try:
        yield person
    finally:
        for process in person.started:
            process.kill()


def setup(reader: Reader, wheel: Path) -> None:
    """The tutorial's index page: a directory, an environment, adieu."""
    mkdir, cd, venv, activate, install = COMMANDS["index"]
    reader.run(mkdir)
    reader.directory = reader.home / shlex.split(cd)[1]
    reader.run(venv.replace("python3", shlex.quote(sys.executable), 1))
    reader.activated = activate == ". .venv/bin/activate"
    assert reader.activated
    # adieu's dependencies (and pytest) from this environment: see above.
    [site] = (reader.directory / ".venv" / "lib").glob("python*/site-packages")
    (site / "borrowed.pth").write_text(str(Path(trio.__file__).parent.parent))
    reader.run(
        install.replace("adieu", f"--no-index --no-deps {shlex.quote(str(wheel))}")
    )
    where = reader.run('python -c "import adieu; print(adieu.__file__)"')
    assert Path(where.strip()).is_relative_to(reader.directory / ".venv"), where
    # The programs the pages show, saved under their captions.
    for name in saved_files():
        reader.save(TUTORIAL / name, name)


def _any_duration(line: str) -> str:
    """``line`` with a report's duration (``in 0.004 s``) made neutral."""
    return re.sub(r"\bin \d+\.\d{3} s\b", "in N s", line)


def test_the_tutorial_runs_as_written(reader: Reader, wheel: Path) -> None:
    setup(reader, wheel)

    # Step 1: the echo server and its client.
    [echo] = COMMANDS["echo"]
    shown = output_of("echo", echo)
    printed = reader.run(echo).splitlines()
    assert printed[:4] == shown[:4]
    # The duration is the machine's, not the page's: compare the rest.
    assert _any_duration(printed[4]) in (
        _any_duration(shown[4]),
        _any_duration(shown[4]).replace(
            "no connection was open when the shutdown began; "
            "1 connection had ended before: 1 clean",
            "1 connection was open when the shutdown began: 1 clean",
        ),
    )

    # Step 2: a server that runs until Ctrl+C, and a client.
    run_server, run_client = COMMANDS["shutdown"]
    port = str(free_port())
    server = reader.start(run_server.replace("7000", port))
    server.wait_for(rf"^listening on port {port}$")
    client = reader.start(run_client.replace("7000", port))
    client.wait_for(r"^answer: tick 3$")  # as the page shows
    server.popen.send_signal(signal.SIGINT)  # Ctrl+C
    status, client_output = client.finish()
    assert status == 0, client_output
    text = (TUTORIAL / "shutdown.rst").read_text(encoding="utf-8")
    client_end, server_end = (b.splitlines() for b in blocks("shutdown", "text"))
    assert client_output.splitlines()[-2:] == client_end, text
    status, server_output = server.finish()
    assert status == 0, server_output
    lines = server_output.splitlines()
    assert lines[-2].endswith(server_end[1].split(" s): ", 1)[1])
    assert lines[-1] == server_end[2]

    # Step 3: the chat room, with the repository's client saved beside it.
    run_room, alice_joins, bob_joins = COMMANDS["chat"]
    reader.save(ROOT / "examples" / "chat" / "client.py", "chat_client.py")
    reader.save(ROOT / "examples" / "chat" / "options.py", "options.py")
    port = str(free_port())
    room = reader.start(run_room.replace("7777", port))
    room.wait_for(rf"^chat room on port {port}$")
    people = []
    for command, name in ((alice_joins, "alice"), (bob_joins, "bob")):
        person = reader.start(f"{command} --port {port}", stdin=True)
        person.wait_for(rf"^\* {name} joined$")
        people.append(person)
    for person, line in zip(people, ("hello bob", "hi alice"), strict=True):
        assert person.popen.stdin is not None
        person.popen.stdin.write(line + "\n")
        person.popen.stdin.flush()
    for person in people:
        person.wait_for(r"^<alice> hello bob$")
        person.wait_for(r"^<bob> hi alice$")
    room.popen.send_signal(signal.SIGINT)
    for person in people:
        status, said = person.finish()
        assert status == 0, said
        assert said.splitlines()[-1] == (
            "*** clean end: the server confirmed everything you sent: your name "
            "and 1 line (2 messages)"
        )
    status, room_output = room.finish()
    assert status == 0, room_output

    # Step 4: the room's tests, with the configuration the page shows.
    install_pytest, run_tests = COMMANDS["testing"]
    assert install_pytest.split()[-2:] == ["pytest", "pytest-trio"]
    reader.run('python -c "import pytest, pytest_trio"')  # already at hand
    # Without the configuration, pytest says what the page quotes.
    without = reader.attempt(run_tests)
    assert without.returncode != 0
    page = (TUTORIAL / "testing.rst").read_text(encoding="utf-8")
    [quoted] = re.findall(r'"(async def functions are not natively supported)"', page)
    assert quoted in without.stdout + without.stderr
    [ini, _toml] = blocks("testing", "ini") + blocks("testing", "toml")
    (reader.directory / "pytest.ini").write_text(ini + "\n")
    shown = output_of("testing", run_tests)
    printed = reader.run(run_tests).splitlines()
    assert printed[0].startswith(shown[0].split()[0])  # the dots
    assert re.sub(r" in [\d.]+s", "", printed[-1]) == re.sub(
        r" in [\d.]+s", "", shown[-1]
    )
