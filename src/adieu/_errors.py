"""The exceptions adieu raises, in one tree.

Every error a connection raises is a subclass of the Trio exception that a
Trio stream would raise in the same situation, so code written for Trio
streams keeps working when it is handed an adieu connection::

    trio.BrokenResourceError            the connection can no longer be used
     ├── ConnectionReset                the peer aborted (TCP RST)
     ├── ConnectionTruncated            the transport ended without the peer's END
     └── ProtocolError                  the peer sent bytes that break the protocol
          ├── MessageTooLarge           (also a ValueError) a message over the limit
          └── HandshakeTimeout          (also a trio.TooSlowError) a server that
                                        sent no preamble in time

    trio.EndOfChannel
     └── EndOfMessages                  the peer sent END: a clean end of its messages

    RuntimeError
     └── LocalProtocolError             the caller asked the sans-I/O core for
                                        something the protocol forbids (a bug in
                                        the code driving the core)

    trio.ClosedResourceError            (Trio's own) use after this side closed or
                                        aborted, or a send after send_eof()

Naming: adieu calls a violation by the peer ``ProtocolError`` (what users
catch) and a violation by the local caller ``LocalProtocolError`` (what a bug
raises), as h11 does with ``RemoteProtocolError``/``LocalProtocolError``. The
remote one keeps the short name because it is the one applications meet.

Errors raised because of an operating-system error are chained to it
(``raise ... from exc``), so ``__cause__`` holds the original ``OSError``.
"""

from __future__ import annotations

import trio

__all__ = [
    "ConnectionReset",
    "ConnectionTruncated",
    "EndOfMessages",
    "HandshakeTimeout",
    "LocalProtocolError",
    "MessageTooLarge",
    "ProtocolError",
]


class ConnectionReset(trio.BrokenResourceError):
    """The peer aborted the connection: a TCP reset, or its equivalent on
    another transport.

    Whatever the peer had not yet read was thrown away by the peer's kernel,
    and whatever it sent after the last message already delivered is gone.
    The connection's :attr:`~adieu.Connection.termination` is
    :attr:`~adieu.TerminationKind.RESET`.
    """


class ConnectionTruncated(trio.BrokenResourceError):
    """The transport ended without the peer's END frame.

    A crash, a cut cable, a proxy that gave up, or a server that closed before
    the client's END: the peer's messages may have stopped anywhere, so this
    is never taken for a clean end. The connection's
    :attr:`~adieu.Connection.termination` is
    :attr:`~adieu.TerminationKind.TRUNCATED`.
    """


class ProtocolError(trio.BrokenResourceError):
    """The peer sent bytes that break the adieu wire protocol.

    For example a wrong preamble (the peer speaks HTTP), an unknown frame
    type, a frame the peer's role may not send, or data after its END. The
    message says what was wrong. The connection ends as
    :attr:`~adieu.TerminationKind.PROTOCOL_ERROR`.

    Attributes:
        events: when raised by :meth:`adieu.Protocol.receive_data`, the events
            decoded from the same bytes before the offending frame, in order
            (an I/O layer delivers them before the error); otherwise empty.
    """

    events: tuple[object, ...] = ()


class MessageTooLarge(ProtocolError, ValueError):
    """A message is larger than the connection's ``max_message_size``.

    Raised by ``receive()`` when the peer announces a message over the limit
    (checked from the frame header, before any of the payload is buffered);
    the connection then ends as :attr:`~adieu.TerminationKind.PROTOCOL_ERROR`.

    Raised by ``send()`` before anything is written, when the application
    tries to send a message over the limit; the connection stays usable. It
    is a :exc:`ValueError` too, since on that path it is a bad argument.

    The limit is inclusive: a message of exactly ``max_message_size`` bytes
    is allowed.

    Attributes:
        size: the size of the offending message, in bytes.
        limit: the limit it broke, in bytes.
    """

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class HandshakeTimeout(ProtocolError, trio.TooSlowError):
    """The server did not send adieu's preamble within the client's
    ``handshake_timeout``.

    Raised by :func:`adieu.connect_tcp` and :func:`adieu.connect_unix`
    before their block starts, so a client never waits forever on a peer
    that does not speak: a wrong port (an HTTP server waits for a request
    and says nothing), a half-dead proxy, a stopped server process whose
    socket is still open. The connection is aborted. The exception is
    chained to the :exc:`trio.TooSlowError` of the expired bound, and is a
    :exc:`trio.TooSlowError` itself, so code that already bounds the
    connect with :func:`trio.fail_after` catches it the same way.

    Attributes:
        timeout: the bound that expired, in seconds.
    """

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class EndOfMessages(trio.EndOfChannel):
    """The peer sent END: it will send no more messages.

    Raised by ``receive()`` once every message sent before the END has been
    delivered. This is a clean end, not a broken connection (a message may be
    empty bytes, so ``b""`` cannot mark the end). ``async for`` over a
    connection stops here without raising.
    """


class LocalProtocolError(RuntimeError):
    """The code driving the sans-I/O core asked for a transition the protocol
    forbids: sending after its own END, a client sending SHUTDOWN, a server
    sending END before the client's END, a second SHUTDOWN.

    :class:`adieu.Connection` never lets this escape: it checks first and
    raises :exc:`trio.ClosedResourceError` for use after close. Seeing this
    exception means a bug in the code that drives :class:`adieu.Protocol`.
    """
