"""The rules of the adieu protocol: who may send what, when.

Theory of operation
===================

A connection has two sides, the client (the side that connected) and the
server (the side that accepted). Each side *sends* a sequence of frames, and
each side's sequence moves through a few states. Both endpoints track both
sides: its own side (checked when the application asks to send something) and
its peer's side (checked when a frame arrives).

A client side::

    PREAMBLE --preamble--> OPEN --message*--> OPEN --end--> DONE

A server side::

    PREAMBLE --preamble--> OPEN --message*--> OPEN --end--> DONE
                             |                               ^
                             +--shutdown--> SHUTTING_DOWN ---+
                                              --message*-->     (end)

Two rules make the terminal handshake *asymmetric*, which is the point of the
protocol (see the docs' explanation of why a symmetric one loses data):

1. Only the server may send SHUTDOWN ("please finish"), at most once. It
   changes nothing about what either side may send: the server keeps
   answering, the client finishes what it is doing and sends END.
2. The server never ends first: its END is only allowed once the client's
   END has been received (the guard in :data:`GUARDS`). A server that wants
   to end asks with SHUTDOWN and waits.

The crossing that breaks TCP's symmetric half-close is harmless here: a
client's END may cross the server's SHUTDOWN on the wire; the client, already
DONE, reads the SHUTDOWN and carries on reading the server's answers.

Everything is in the two tables below. A transition missing from
:data:`TRANSITIONS` is an error: a :exc:`~adieu.LocalProtocolError` when the
local application asks for it, a :exc:`~adieu.ProtocolError` when the peer
sends it. The docs draw their state diagram from these tables
(``docs/_scripts/draw_states.py``), so the picture cannot drift from the code.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

__all__ = [
    "GUARDS",
    "TRANSITIONS",
    "FrameKind",
    "Role",
    "SideState",
]


class Role(enum.Enum):
    """Which end of a connection a side is. The terminal handshake depends on
    it: only a server sends SHUTDOWN, and a server never sends END first."""

    # Members are singletons equal only to themselves, so hashing by identity
    # agrees with equality; Enum's own __hash__ (the name's hash, computed in
    # Python) costs several times more, and these are dict keys looked up for
    # every frame, and for every connection in a server's cut.
    __hash__ = object.__hash__

    CLIENT = "client"
    SERVER = "server"

    @property
    def peer(self) -> Role:
        """The other role."""
        return Role.SERVER if self is Role.CLIENT else Role.CLIENT


class SideState(enum.Enum):
    """Where one side's sequence of frames stands."""

    __hash__ = object.__hash__  # by identity: see Role

    PREAMBLE = "PREAMBLE"
    """Has not sent its preamble yet (nothing else may come first)."""
    OPEN = "OPEN"
    """Sends messages."""
    SHUTTING_DOWN = "SHUTTING_DOWN"
    """Server only: has asked the client to finish; still sends messages."""
    DONE = "DONE"
    """Has sent END: will send nothing more."""


class FrameKind(enum.Enum):
    """What a side can send, in the order of the tables below."""

    __hash__ = object.__hash__  # by identity: see Role

    PREAMBLE = "preamble"
    MESSAGE = "message"
    SHUTDOWN = "shutdown"
    END = "end"


_P, _O, _S, _D = (
    SideState.PREAMBLE,
    SideState.OPEN,
    SideState.SHUTTING_DOWN,
    SideState.DONE,
)

#: ``TRANSITIONS[role][state][frame] -> next state`` for a side of that role.
#: A missing entry is a protocol error.
TRANSITIONS: Mapping[Role, Mapping[SideState, Mapping[FrameKind, SideState]]] = {
    Role.CLIENT: {
        _P: {FrameKind.PREAMBLE: _O},
        _O: {FrameKind.MESSAGE: _O, FrameKind.END: _D},
        _D: {},
    },
    Role.SERVER: {
        _P: {FrameKind.PREAMBLE: _O},
        _O: {FrameKind.MESSAGE: _O, FrameKind.SHUTDOWN: _S, FrameKind.END: _D},
        _S: {FrameKind.MESSAGE: _S, FrameKind.END: _D},
        _D: {},
    },
}

#: ``GUARDS[(role, frame)] = (other role, state)``: a side of ``role`` may
#: send ``frame`` only once the other side has reached ``state``. This is the
#: rule "the server never ends first".
GUARDS: Mapping[tuple[Role, FrameKind], tuple[Role, SideState]] = {
    (Role.SERVER, FrameKind.END): (Role.CLIENT, SideState.DONE),
}
