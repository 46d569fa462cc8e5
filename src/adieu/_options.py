"""Options as values: a connection's, and a server's (which contain a
connection's).

Each is checked once, when it is made, and then passed down as it is: the
openers and the server build one from their keyword arguments, and every
connection they make runs with that object. Nothing below them checks an
option again.
"""

from __future__ import annotations

import dataclasses
from typing import Final, final

from ._connection import DEFAULT_GRACE_PERIOD, DEFAULT_RECEIVE_BUFFER_SIZE
from ._frames import DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE_LIMIT
from ._transport import DEFAULT_LINGER

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "ConnectionOptions",
    "ServerOptions",
]

#: Seconds the peer has to send its preamble once the connection (and its
#: TLS handshake) is made, before the connection is aborted: long enough for
#: a TLS handshake over a slow link, short enough that idle port scanners
#: cannot hold a server's connection slots, and that a client facing a
#: server that says nothing (a wrong port, a half-dead proxy) is not held
#: forever.
DEFAULT_HANDSHAKE_TIMEOUT: Final = 10.0

#: Connections served at once. Past it the server stops accepting, so new
#: connections wait in the kernel's listen backlog instead of being dropped.
#: 1000 stays under the common soft limit of 1024 file descriptors.
DEFAULT_MAX_CONNECTIONS: Final = 1000


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    # bool is an int to Python, but True bytes is always a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


def _check_seconds(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(
            f"{name} must be a number of seconds, not {type(value).__name__}"
        )
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be >= 0, not {value!r}")


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionOptions:
    """A connection's options, checked once, when the object is made.

    :func:`connect_tcp`, :func:`connect_unix`, :func:`wrap_stream`, the
    servers and :mod:`adieu.testing` make one from their keyword arguments;
    every connection they open runs with it (:attr:`Connection.options`),
    and a server shares one object among all its connections. It is frozen:
    to change an option, make a new one (:func:`dataclasses.replace`).

    Attributes:
        max_message_size: the largest message sent or accepted, in bytes
            (inclusive; default 1 MiB, at most ``2**32 - 1``).
        receive_buffer_size: bytes of received messages held for the
            application before the connection stops reading (at least 1;
            default 1 MiB).
        grace_period: seconds the graceful close at the block's end and
            :meth:`Connection.shutdown` may take before the connection is
            aborted (``TIMED_OUT``); a client's ``close_timeout``, a
            server's grace period (default 10).
        linger: seconds :meth:`Connection.aclose` waits for the peer's EOF
            (default 2).
        handshake_timeout: seconds the peer has to send its preamble, for
            connections opened by :func:`connect_tcp`, :func:`connect_unix`
            and servers (default 10). :func:`wrap_stream` hands over its
            connection at once and does not use it.

    Raises:
        TypeError: an option is not a number of the right kind (sizes are
            ``int``; seconds are ``int`` or ``float``; never ``bool``).
        ValueError: an option is out of range (the message names it).
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    receive_buffer_size: int = DEFAULT_RECEIVE_BUFFER_SIZE
    grace_period: float = DEFAULT_GRACE_PERIOD
    linger: float = DEFAULT_LINGER
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT

    def __post_init__(self) -> None:
        _check_int("max_message_size", self.max_message_size, 0, MAX_MESSAGE_SIZE_LIMIT)
        _check_int("receive_buffer_size", self.receive_buffer_size, 1)
        _check_seconds("grace_period", self.grace_period)
        _check_seconds("linger", self.linger)
        _check_seconds("handshake_timeout", self.handshake_timeout)


@final
@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """A server's options, checked once, when the object is made: its own,
    and the options of every connection it serves.

    The servers (:func:`open_tcp_server`, :func:`open_unix_server`,
    :func:`open_server`, :func:`serve_tcp`, and
    :func:`adieu.testing.open_memory_server`) make one from their keyword
    arguments (:attr:`Server.options`).

    Attributes:
        connection: the :class:`ConnectionOptions` of every connection the
            server serves (one object, shared). Its ``grace_period`` is also
            the server's default grace period for :meth:`Server.shutdown`,
            and its ``handshake_timeout`` the time a new connection has to
            send its preamble.
        max_connections: connections served at once (at least 1; default
            1000); past it, connections wait in the kernel's listen backlog.

    Raises:
        TypeError: an option is not of the right type.
        ValueError: an option is out of range (the message names it).
    """

    connection: ConnectionOptions = ConnectionOptions()
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not isinstance(self.connection, ConnectionOptions):
            raise TypeError(
                "connection must be a ConnectionOptions, "
                f"not {type(self.connection).__name__}"
            )
        _check_int("max_connections", self.max_connections, 1)


def server_options(
    *,
    grace_period: float,
    max_message_size: int,
    max_connections: int,
    handshake_timeout: float,
    receive_buffer_size: int,
    linger: float,
) -> ServerOptions:
    """A :class:`ServerOptions` from the servers' flat keyword arguments
    (the servers spell every option out, as Trio's functions do).

    Raises:
        TypeError, ValueError: as :class:`ServerOptions`.
    """
    connection = ConnectionOptions(
        max_message_size=max_message_size,
        receive_buffer_size=receive_buffer_size,
        grace_period=grace_period,
        linger=linger,
        handshake_timeout=handshake_timeout,
    )
    return ServerOptions(connection=connection, max_connections=max_connections)
