"""The termination report: how a connection actually ended.

One API cannot give every ending the same guarantee, so adieu says which one
was achieved. A :class:`Termination` is built by the sans-I/O core when the
connection's transport has been released, and never changes afterwards.
"""

from __future__ import annotations

import dataclasses
import enum

__all__ = ["Initiator", "Termination", "TerminationKind"]


class TerminationKind(enum.Enum):
    """How a connection ended."""

    # Members are singletons equal only to themselves, so hashing by identity
    # agrees with equality; Enum's own __hash__ (the name's hash, computed in
    # Python) costs several times more, and these are dict keys looked up for
    # every frame, and for every connection in a server's cut.
    __hash__ = object.__hash__

    CLEAN = "clean"
    """Both ENDs were exchanged: nothing either side sent was lost in transit.
    Whether each application took every message is in
    :attr:`Termination.confirmed` and :attr:`Termination.messages_discarded`."""
    ABORTED = "aborted"
    """This side aborted (``abort()``, an exception or a cancellation)."""
    RESET = "reset"
    """The peer aborted: a TCP reset or its equivalent."""
    TRUNCATED = "truncated"
    """The transport ended before the terminal handshake completed: the peer
    vanished without END (initiator ``PEER``), or this side closed before the
    peer's END (initiator ``LOCAL``, e.g. ``aclose()``)."""
    TIMED_OUT = "timed_out"
    """A grace period or close timeout expired, so this side aborted."""
    PROTOCOL_ERROR = "protocol_error"
    """The peer broke the wire protocol (initiator ``PEER``), or sent a
    message over the size limit."""


class Initiator(enum.Enum):
    """Which side caused the ending."""

    __hash__ = object.__hash__  # by identity: see TerminationKind

    LOCAL = "local"
    PEER = "peer"


@dataclasses.dataclass(frozen=True)
class Termination:
    """How one connection ended, seen from one side.

    Attributes:
        kind: how it ended (:class:`TerminationKind`).
        initiator: who caused it. For ``CLEAN``, the side that started the
            terminal handshake: the server if it asked with SHUTDOWN before
            the client's END arrived, otherwise the client.
        messages_sent: messages this side sent (whole frames handed to the
            transport).
        messages_received: messages that arrived whole from the peer,
            including those later discarded.
        messages_discarded: of those, how many this side threw away without
            handing them to the application: unread when the application
            asked to close, shut down or abort. Messages still waiting after
            the *peer* broke the connection are not counted here: the
            application can still read them.
        confirmed: on a client whose server sent END, ``True`` when the
            server's count equals :attr:`messages_sent` (every message this
            client sent reached the server's application), ``False`` when it
            is lower; ``None`` on a server, or where no END came.
        acknowledged: the count carried by the server's END (client side
            only), else ``None``.
        detail: one human sentence: what happened, for logs.
    """

    kind: TerminationKind
    initiator: Initiator
    messages_sent: int
    messages_received: int
    messages_discarded: int
    confirmed: bool | None
    acknowledged: int | None
    detail: str

    @property
    def clean(self) -> bool:
        """``True`` if the terminal handshake completed (``kind is CLEAN``)."""
        return self.kind is TerminationKind.CLEAN

    @property
    def lossless(self) -> bool:
        """``True`` if nothing sent by either side was lost, as far as this
        side can know: a clean end, nothing discarded here, and (on a client)
        the server confirmed every message."""
        return (
            self.kind is TerminationKind.CLEAN
            and self.messages_discarded == 0
            and self.confirmed is not False
        )

    def __str__(self) -> str:
        """One line for a person: how it ended, who began or caused it (in
        words: "this side" is the program printing it), the message counts,
        whether the server confirmed them, and :attr:`detail`. For example
        ``CLEAN (begun by this side): sent 3 messages, received 3 messages,
        the server confirmed all 3: both ENDs exchanged``."""
        side = "this side" if self.initiator is Initiator.LOCAL else "the peer"
        verb = "begun" if self.kind is TerminationKind.CLEAN else "caused"
        parts = [
            f"sent {_count(self.messages_sent, 'message')}",
            f"received {_count(self.messages_received, 'message')}",
        ]
        if self.messages_discarded:
            parts.append(f"discarded {self.messages_discarded} unread")
        if self.confirmed and self.messages_sent == 1:
            parts.append("the server confirmed it")
        elif self.confirmed and self.messages_sent:
            parts.append(f"the server confirmed all {self.messages_sent}")
        elif self.confirmed is False:
            parts.append(
                f"the server confirmed only {self.acknowledged} of {self.messages_sent}"
            )
        return f"{self.kind.name} ({verb} by {side}): {', '.join(parts)}: {self.detail}"


def _count(n: int, noun: str) -> str:
    """``1 message``, ``2 messages``, ``0 messages``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
