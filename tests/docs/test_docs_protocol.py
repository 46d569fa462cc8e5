"""The worked examples of the wire protocol specification, decoded by the
real sans-I/O core.

``docs/protocol.rst`` shows conversations as blocks of hex with the class
``adieu-wire``. Each block is replayed here with two :class:`adieu.Protocol`
objects, one per role:

* ``C> hex  comment`` / ``S> hex  comment``: one frame (or a preamble) sent
  by the client / the server. The sender's core must produce exactly these
  bytes (the test calls the method the frame stands for); the bytes are then
  in flight to the other side.
* ``C! hex  comment`` / ``S! hex  comment``: bytes from a peer that breaks
  the rules; not produced by a core, only delivered.
* ``C> EOF`` / ``S> EOF``: that side's transport EOF (a FIN).
* ``S: discards N``: the server's application threw N received messages
  away unread (:meth:`adieu.Protocol.discard`).
* ``=> server: ...`` / ``=> client: ...``: the bytes in flight (then the EOF,
  if any) are fed to that side's core, which must report exactly the events
  written, in order, then ``; Error: text`` if it raises (an error alone is
  ``Error: text``, no event and no error ``(nothing)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import adieu
from adieu import Protocol, Role
from adieu._frames import END, MESSAGE, SHUTDOWN, decode_shutdown

SPEC = Path(__file__).resolve().parents[2] / "docs" / "protocol.rst"

BLOCK = re.compile(
    r"^\.\. code-block:: text\n   :class: adieu-wire\n(?:   :\w+:.*\n)*\n"
    r"((?:   .*\n|\n)+)",
    re.MULTILINE,
)
HEX = re.compile(r"^((?:[0-9A-F]{2})(?: [0-9A-F]{2})*)(?:  +(.*))?$")
SIDES = {"C": Role.CLIENT, "S": Role.SERVER}


def examples() -> list[tuple[int, list[str]]]:
    """``(line number, lines)`` of every wire example in the spec."""
    text = SPEC.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        body = [line[3:] for line in match.group(1).rstrip("\n").splitlines()]
        found.append((text[: match.start()].count("\n") + 1, body))
    return found


@dataclass
class Wire:
    """Two cores and the bytes in flight between them."""

    cores: dict[Role, Protocol] = field(
        default_factory=lambda: {role: Protocol(role) for role in Role}
    )
    in_flight: dict[Role, bytearray] = field(
        default_factory=lambda: {role: bytearray() for role in Role}
    )
    eof: dict[Role, bool] = field(default_factory=lambda: dict.fromkeys(Role, False))
    preamble_sent: dict[Role, bool] = field(
        default_factory=lambda: dict.fromkeys(Role, False)
    )

    def send(self, sender: Role, data: bytes, *, honest: bool) -> None:
        """``data`` goes towards ``sender``'s peer; an honest sender's core
        must produce exactly these bytes."""
        if honest:
            assert self._produce(sender, data) == data
        self.in_flight[sender.peer] += data

    def _produce(self, sender: Role, data: bytes) -> bytes:
        core = self.cores[sender]
        if not self.preamble_sent[sender]:
            self.preamble_sent[sender] = True
            return core.preamble()
        ftype = data[0]
        payload = data[5:]
        assert int.from_bytes(data[1:5], "big") == len(payload), "length field"
        if ftype == MESSAGE:
            return core.send_message(payload)
        if ftype == END:
            return core.send_end()
        assert ftype == SHUTDOWN, f"not a frame a core sends: {data.hex()}"
        grace, reason = decode_shutdown(payload)
        return core.send_shutdown(grace, reason)

    def deliver(self, receiver: Role) -> str:
        """Feed what is in flight to ``receiver``; describe what it reports."""
        core = self.cores[receiver]
        data = bytes(self.in_flight[receiver])
        self.in_flight[receiver].clear()
        events: list[object] = []
        try:
            if data:
                events += core.receive_data(data)
            if self.eof[receiver]:
                self.eof[receiver] = False
                core.receive_eof()
        except adieu.ProtocolError as exc:
            events += exc.events
            return _describe(events, exc)
        except adieu.ConnectionTruncated as exc:
            return _describe(events, exc)
        return _describe(events, None)


def _describe(events: list[object], error: BaseException | None) -> str:
    """``Message(...), End(...)``, then ``; Error: text``; an error alone
    is ``Error: text``; nothing at all is ``(nothing)``."""
    parts = [", ".join(repr(e) for e in events)] if events else []
    if error is not None:
        parts.append(f"{type(error).__name__}: {error}")
    return "; ".join(parts) or "(nothing)"


def run(lines: list[str]) -> list[tuple[str, str]]:
    """Replay one example; return ``(written, reported)`` for each ``=>``."""
    wire = Wire()
    checks = []
    for line in lines:
        if not line.strip():
            continue
        if line.startswith("=> "):
            who, _, expected = line[3:].partition(": ")
            checks.append((expected, wire.deliver(Role(who))))
            continue
        if line[1:2] == ":":
            count = int(line.split("discards ")[1].split()[0])
            wire.cores[SIDES[line[0]]].discard(count)
            continue
        side, mark, rest = line[0], line[1], line[3:]
        sender = SIDES[side]
        if rest.split("  ")[0].strip() == "EOF":
            wire.eof[sender.peer] = True
            continue
        match = HEX.match(rest)
        assert match, f"not a hex line: {line!r}"
        data = bytes.fromhex(match.group(1))
        wire.send(sender, data, honest=mark == ">")
    return checks


ALL = examples()


def test_the_spec_has_worked_examples() -> None:
    assert len(ALL) >= 8
    # Every frame type appears in a correct conversation, and each direction.
    text = "\n".join(line for _, lines in ALL for line in lines)
    for needed in (
        "Message(",
        "End(acknowledged=None)",
        "End(acknowledged=",
        "ShutdownRequest(",
    ):
        assert needed in text


@pytest.mark.parametrize(("line", "lines"), ALL, ids=[f"line {n}" for n, _ in ALL])
def test_worked_example_decodes_as_documented(line: int, lines: list[str]) -> None:
    checks = run(lines)
    assert checks, f"the example at docs/protocol.rst:{line} checks nothing"
    for expected, reported in checks:
        assert reported == expected
