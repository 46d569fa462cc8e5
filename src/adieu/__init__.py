"""adieu: Trio connections that end without losing data.

Four ways to end a connection, each with its own promise (``abort``,
``aclose``, ``send_eof`` and the graceful asymmetric ``shutdown``), a server
whose shutdown is in-band and bounded by a grace period, and a report of how
each connection actually ended.

Layers, bottom up: the sans-I/O protocol core (:class:`Protocol`, the rules
in ``adieu._state``), the transport (:class:`TransportStream`), the Trio
connection (:class:`Connection`), the server (:class:`Server`).
"""

from contextlib import suppress as _suppress

from ._connection import DEFAULT_GRACE_PERIOD, DEFAULT_RECEIVE_BUFFER_SIZE, Connection
from ._errors import (
    ConnectionReset,
    ConnectionTruncated,
    EndOfMessages,
    HandshakeTimeout,
    LocalProtocolError,
    MessageTooLarge,
    ProtocolError,
)
from ._frames import DEFAULT_MAX_MESSAGE_SIZE
from ._frames import VERSION as PROTOCOL_VERSION
from ._open import connect_tcp, connect_unix, wrap_stream
from ._options import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionOptions,
    ServerOptions,
)
from ._protocol import End, Event, Message, Protocol, ShutdownRequest
from ._server import (
    ConnectionReport,
    Server,
    ShutdownReport,
    open_server,
    open_tcp_server,
    open_unix_server,
    serve_tcp,
)
from ._signals import run_until_signal
from ._state import Role, SideState
from ._termination import Initiator, Termination, TerminationKind
from ._transport import DEFAULT_LINGER, TransportStream

__version__ = "0.1.0.dev0"

__all__ = [
    # client
    "connect_tcp",
    "connect_unix",
    "wrap_stream",
    # server
    "open_tcp_server",
    "open_unix_server",
    "open_server",
    "serve_tcp",
    "run_until_signal",
    "Server",
    "ShutdownReport",
    "ConnectionReport",
    # connection
    "Connection",
    "Termination",
    "TerminationKind",
    "Initiator",
    # options
    "ConnectionOptions",
    "ServerOptions",
    # errors
    "ConnectionReset",
    "ConnectionTruncated",
    "EndOfMessages",
    "ProtocolError",
    "MessageTooLarge",
    "HandshakeTimeout",
    "LocalProtocolError",
    # sans-I/O core
    "Protocol",
    "Role",
    "SideState",
    "Event",
    "Message",
    "End",
    "ShutdownRequest",
    "PROTOCOL_VERSION",
    # transport
    "TransportStream",
    # defaults
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_RECEIVE_BUFFER_SIZE",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_LINGER",
]

# Public names claim the public module, so that reprs and docs say
# ``adieu.Connection`` rather than ``adieu._connection.Connection``.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("adieu._"):
        with _suppress(AttributeError, TypeError):
            _obj.__module__ = __name__
del _name, _obj, _suppress
