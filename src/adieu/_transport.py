"""The transport layer: a Trio byte stream, plus what Trio lacks.

Trio streams can be closed or half-closed, but two things a connection needs
at its end are missing:

* a real **abort**: on TCP, ``SO_LINGER {on, 0}`` then close, so the kernel
  sends a reset (RST) and discards both directions at once, synchronously,
  even inside a cancelled scope;
* a **close that does not turn into a reset**: closing a TCP socket whose
  receive buffer still holds unread bytes makes the kernel send RST instead
  of FIN, and the RST makes the peer's kernel throw away data it had
  received but its application had not yet read. :meth:`TransportStream.aclose`
  half-closes, discards input for a bounded linger until the peer's EOF, and
  only then closes (the "lingering close" of HTTP servers).

:class:`TransportStream` wraps any :class:`trio.abc.Stream` (TCP, Unix
sockets, :class:`trio.SSLStream`, memory streams) and is itself a
:class:`trio.abc.HalfCloseableStream`, held to Trio's conformance suite.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as stdlib_socket
import ssl
import struct
from typing import Any, final

import trio

__all__ = [
    "DEFAULT_LINGER",
    "LINGER_RST",
    "TransportStream",
    "is_reset",
    "underlying_socket",
]

#: Seconds :meth:`TransportStream.aclose` waits for the peer's EOF while
#: discarding its input. Two seconds is what Apache's lingering close uses:
#: long enough for a peer that has finished to send its FIN, short enough
#: that a peer that keeps sending cannot hold the socket open.
DEFAULT_LINGER = 2.0

#: Read size of ``receive_some`` on a plain socket when none is given: the
#: same as Trio's SocketStream.
_RECEIVE_SIZE = 65536

#: ``os.read``/``os.write`` work on socket descriptors on POSIX systems.
_RAW_IO = os.name == "posix"

#: Read size while discarding. Arbitrary: large enough to drain fast.
_DISCARD_CHUNK = 65536

#: ``SO_LINGER`` on, with a linger of 0 s: ``close()`` then sends RST (an
#: abort) instead of FIN. Also used by the server, to reset a connection it
#: takes from the listen backlog after its grace period has ended.
LINGER_RST = struct.pack("ii", 1, 0)

_RESET_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN}
)


def underlying_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    """The socket at the bottom of ``stream`` (through TLS layers), if any."""
    seen = 0
    current: Any = stream
    while current is not None and seen < 8:  # 8: any real stack is shallower
        sock = getattr(current, "socket", None)
        if isinstance(sock, trio.socket.SocketType):
            return sock
        current = getattr(current, "transport_stream", None)
        seen += 1
    return None


def is_reset(exc: BaseException) -> bool:
    """Whether a :exc:`trio.BrokenResourceError` means the peer reset (as
    opposed to a transport that ended without a word, such as a TLS stream
    cut without ``close_notify``)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return False
        if isinstance(cause, OSError) and cause.errno in _RESET_ERRNOS:
            return True
        cause = cause.__cause__ or cause.__context__
    # trio.testing memory streams raise a bare BrokenResourceError when the
    # other end is gone: the nearest thing to a reset they have.
    return True


def _fileno(sock: trio.socket.SocketType) -> int:
    fd = sock.fileno()
    if fd < 0:
        raise trio.ClosedResourceError("the socket was closed")
    return fd


def _stream_error(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """Translate a socket error, as trio.SocketStream does."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the socket was closed")
    return trio.BrokenResourceError(f"socket connection broken: {exc}")


def _drain_nowait(sock: trio.socket.SocketType) -> int:
    """Read and drop whatever the kernel holds for ``sock``, without
    blocking. Returns the number of bytes dropped."""
    dropped = 0
    try:
        fd = sock.fileno()
        if fd < 0:
            return 0
        while True:
            chunk = os.read(fd, _DISCARD_CHUNK)
            if not chunk:
                return dropped
            dropped += len(chunk)
    except OSError:  # BlockingIOError (nothing more), or the socket is gone
        return dropped


@final
class TransportStream(trio.abc.HalfCloseableStream):
    """A byte stream with a real abort and a close that never resets.

    Args:
        stream: the stream to wrap. It is owned from now on: closing this
            closes it.
        linger: seconds :meth:`aclose` waits for the peer's EOF while
            discarding its input (default :data:`DEFAULT_LINGER`, 2 s).

    Attributes:
        stream: the wrapped stream.
        linger: the bound of :meth:`aclose`'s wait, in seconds.
        socket: the socket at the bottom of the stream (through TLS), or
            ``None`` (memory streams).

    ``send_all``, ``receive_some`` and ``wait_send_all_might_not_block``
    behave as the wrapped stream's. ``send_eof`` half-closes where the wrapped
    stream can (TCP, Unix sockets, memory streams); over a stream that has no
    half-close (TLS) it only stops further sends, which is why adieu carries
    its half-close in-band as the END frame.
    """

    __slots__ = (
        "_closed",
        "_drained",
        "_eof_received",
        "_eof_sent",
        "_lingering",
        "_raw",
        "_receive_conflict",
        "_send_conflict",
        "discarded_bytes",
        "linger",
        "socket",
        "stream",
    )

    def __init__(
        self, stream: trio.abc.Stream, *, linger: float = DEFAULT_LINGER
    ) -> None:
        self.stream = stream
        self.linger = linger
        self.socket = underlying_socket(stream)
        self._drained = False
        # A plain socket stream (no TLS above it) is driven directly.
        self._raw = (
            self.socket if _RAW_IO and type(stream) is trio.SocketStream else None
        )
        self._closed = False
        self._eof_sent = False
        self._eof_received = False
        # aclose() is reading the peer's input to its EOF (it waits on the
        # socket outside receive_some()).
        self._lingering = False
        #: Bytes thrown away by :meth:`aclose` and :meth:`abort` while
        #: closing (input that arrived and was never read).
        self.discarded_bytes = 0
        self._send_conflict = _ConflictDetector(
            "another task is sending on this stream"
        )
        self._receive_conflict = _ConflictDetector(
            "another task is receiving on this stream"
        )

    @property
    def supports_half_close(self) -> bool:
        """``True`` if ``send_eof`` reaches the peer as an EOF."""
        return isinstance(self.stream, trio.abc.HalfCloseableStream)

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`aclose` or :meth:`abort` began."""
        return self._closed

    @property
    def eof_received(self) -> bool:
        """``True`` once ``receive_some`` returned ``b""``."""
        return self._eof_received

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``: see :meth:`trio.abc.SendStream.send_all`.

        Raises:
            trio.BusyResourceError: another task is sending.
            trio.BrokenResourceError: the transport broke (a reset, a
                cancelled send that left the stream unusable).
            trio.ClosedResourceError: this stream was closed, aborted or
                half-closed.

        A checkpoint. If cancelled, some of ``data`` may have been sent.
        """
        with self._send_conflict:
            if self._closed or self._eof_sent:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the transport is closed for sending")
            if self._raw is None:
                await self.stream.send_all(data)
            else:
                await self._raw_send_all(self._raw, data)

    async def _raw_send_all(
        self, sock: trio.socket.SocketType, data: bytes | bytearray | memoryview
    ) -> None:
        # The fast path for a plain socket: the same system calls and the
        # same checkpoints as trio.SocketStream.send_all, with fewer layers
        # between them. The descriptor is read again after every wait: once
        # the socket is closed its number may belong to another file.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = os.write(_fileno(sock), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise _stream_error(exc) from exc
        if sent == len(data):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        view = memoryview(data).cast("B")[sent:]
        while view:
            try:
                await trio.lowlevel.wait_writable(_fileno(sock))
                view = view[os.write(_fileno(sock), view) :]
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _stream_error(exc) from exc

    def try_send(self, data: bytes | bytearray | memoryview) -> int:
        """Write what the kernel takes of ``data`` at once, without waiting
        and without yielding.

        Returns:
            How many bytes were written: 0 if the kernel's buffer is full,
            and always 0 where the wrapped stream is not a plain socket (TLS,
            memory streams), whose bytes go only through :meth:`send_all`.
            The caller sends the rest with :meth:`send_all`.

        Raises:
            trio.BrokenResourceError: the transport broke.
            trio.ClosedResourceError: the socket was closed.

        Not a checkpoint: the caller provides the schedule points.
        """
        sock = self._raw
        if sock is None or self._closed or self._eof_sent or self._send_conflict.held:
            return 0
        try:
            return os.write(_fileno(sock), data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise _stream_error(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        """See :meth:`trio.abc.SendStream.wait_send_all_might_not_block`."""
        with self._send_conflict:
            if self._closed:
                raise trio.ClosedResourceError("the transport is closed")
            await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Receive some bytes: see :meth:`trio.abc.ReceiveStream.receive_some`.

        Returns ``b""`` at the peer's EOF (and every time after).

        Raises:
            trio.BusyResourceError: another task is receiving.
            trio.BrokenResourceError: the transport broke.
            trio.ClosedResourceError: this stream was closed or aborted,
                possibly by another task while this call was waiting.
        """
        with self._receive_conflict:
            if self._closed:
                await trio.lowlevel.checkpoint()
                raise trio.ClosedResourceError("the transport is closed")
            if self._eof_received:
                await trio.lowlevel.checkpoint()
                return b""
            if self._raw is None:
                data = await self.stream.receive_some(max_bytes)
            else:
                data = await self._raw_receive_some(self._raw, max_bytes)
            if not data:
                self._eof_received = True
            return data

    async def _raw_receive_some(
        self, sock: trio.socket.SocketType, max_bytes: int | None
    ) -> bytes:
        # See _raw_send_all. A read that succeeds at once is followed by a
        # schedule point; one that had to wait returns at once, as Trio's.
        if max_bytes is None:
            max_bytes = _RECEIVE_SIZE
        elif max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if not self._drained:
            # The last read filled its buffer: more may be waiting already.
            # (Otherwise the wait below is the cancel point.)
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                data = os.read(_fileno(sock), max_bytes)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise _stream_error(exc) from exc
            else:
                self._drained = len(data) < max_bytes
                await trio.lowlevel.cancel_shielded_checkpoint()
                return data
        # A short read emptied the kernel's buffer: wait before reading,
        # which saves the read that would only say "nothing yet".
        while True:
            try:
                await trio.lowlevel.wait_readable(_fileno(sock))
                data = os.read(_fileno(sock), max_bytes)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise _stream_error(exc) from exc
            self._drained = len(data) < max_bytes
            return data

    async def send_eof(self) -> None:
        """Half-close: no more sends; the peer reads EOF after what was sent.

        Idempotent. Over a stream without half-close (TLS) only this side's
        sending stops. A checkpoint.

        Raises:
            trio.BusyResourceError: another task is sending.
            trio.BrokenResourceError: the transport broke.
            trio.ClosedResourceError: this stream was closed or aborted.
        """
        with self._send_conflict:
            if self._closed:
                raise trio.ClosedResourceError("the transport is closed")
            if self._eof_sent or not isinstance(
                self.stream, trio.abc.HalfCloseableStream
            ):
                self._eof_sent = True
                await trio.lowlevel.checkpoint()
                return
            self._eof_sent = True
            raw = self._raw
            if raw is None:
                await self.stream.send_eof()
                return
            # A plain socket, driven directly (what trio.SocketStream.send_eof
            # does, without its layers): a server's shutdown half-closes
            # thousands of connections.
            await trio.lowlevel.checkpoint()
            try:
                raw.shutdown(stdlib_socket.SHUT_WR)
            except OSError as exc:
                raise _stream_error(exc) from exc

    def abort(self) -> None:
        """Close at once, discarding data in both directions.

        On a socket (TCP, or TLS over TCP) this sets ``SO_LINGER {1, 0}`` and
        closes, so the kernel sends RST: the peer sees a reset. On a stream
        with a synchronous ``abort()`` or ``close()`` (adieu's and Trio's
        memory streams) that is called. Any other stream is released by the
        next :meth:`aclose`, which then skips its linger.

        Synchronous, never blocks, idempotent, and works inside a cancelled
        scope. Tasks blocked on this stream (in its receive, its send or its
        :meth:`aclose`) get :exc:`trio.ClosedResourceError`. This stream owns
        the one it wraps: no task should wait on the wrapped socket other
        than through it (on a plain socket, Trio is told of the close only
        when a task of this stream may be waiting, which saves a system call
        per connection in a server's cut of thousands).
        """
        fd = self.abort_untold()
        if fd is not None:
            trio.lowlevel.notify_closing(fd)

    def abort_untold(self) -> int | None:
        """:meth:`abort`, without telling Trio yet that a descriptor a task
        of this stream waits on was closed.

        Returns:
            That descriptor's number, or ``None`` if no task of this stream
            can be waiting on it (or the stream is not a plain socket: then
            :meth:`abort` was done whole). The caller must pass the number
            to :func:`trio.lowlevel.notify_closing` before its next
            checkpoint (Trio allows the notice after the close when no
            checkpoint comes between them), even if something raises in
            between; until then the waiting task is not woken.

        Why: a server's cut resets thousands of connections in one pass
        and builds its report before waking anything. Trio's notice (an
        ``epoll_ctl`` and a wake-up) took about 7 us of the 19 us a reset
        cost per connection in a cut of 10,000, and the tasks it wakes can
        only run after the pass anyway.

        Synchronous, never blocks, idempotent; never raises.

        :meta private:
        """
        if self._closed and self.socket is None:
            return None
        self._closed = True
        raw = self._raw
        if raw is not None:
            # (A plain try/except, not contextlib.suppress: a server's cut
            # runs this for thousands of connections in one pass.)
            fd = raw.fileno()
            if fd < 0:
                return None
            try:  # noqa: SIM105 (cheaper than contextlib.suppress, see above)
                raw.setsockopt(
                    stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, LINGER_RST
                )
            except OSError:
                pass
            # Only this stream's receive, its send and aclose()'s linger wait
            # on the descriptor (it drives the socket itself). When none of
            # them is waiting, Trio keeps no registration for it, so the
            # close needs no notice: the cut of thousands of idle
            # connections saves Trio's epoll_ctl for each of them.
            waited_on = (
                self._receive_conflict.held
                or self._send_conflict.held
                or self._lingering
            )
            os.close(raw.detach())
            return fd if waited_on else None
        sock = self.socket
        if sock is not None:
            if sock.fileno() >= 0:
                with contextlib.suppress(OSError):
                    sock.setsockopt(
                        stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, LINGER_RST
                    )
                sock.close()  # Trio's socket tells Trio itself
            return None
        _close_sync(self.stream)
        return None

    async def aclose(self) -> None:
        """Close without turning into a reset because of unread input.

        Half-closes (where the stream can), then reads and discards the
        peer's input until its EOF or until :attr:`linger` seconds pass, then
        closes. What was discarded is counted in :attr:`discarded_bytes`.
        If the peer's EOF already arrived, closes at once.

        Trio's :class:`~trio.abc.AsyncResource` contract: idempotent, and if
        cancelled (or called in a cancelled scope) the stream is still
        released: the linger is skipped, input already in the kernel is
        dropped without blocking so that it cannot cause a reset, and the
        stream is closed.

        If another task is blocked sending or receiving on this stream, the
        linger is skipped too: the stream is closed at once and that task
        gets :exc:`trio.ClosedResourceError`, as with Trio's own streams.
        """
        if self._closed:
            await self.aclose_now()
            return
        self._closed = True
        in_use = self._send_conflict.held or self._receive_conflict.held
        try:
            if not self._eof_received and not in_use:
                self._lingering = True
                with trio.move_on_after(self.linger):
                    if not self._eof_sent and self.supports_half_close:
                        self._eof_sent = True
                        with contextlib.suppress(
                            trio.BrokenResourceError, trio.ClosedResourceError
                        ):
                            await self.stream.send_eof()  # type: ignore[attr-defined]
                    while True:
                        try:
                            chunk = await self.stream.receive_some(_DISCARD_CHUNK)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            break
                        if not chunk:
                            self._eof_received = True
                            break
                        self.discarded_bytes += len(chunk)
        finally:
            self._lingering = False
            await self.aclose_now()

    async def aclose_now(self) -> None:
        """Close without a linger: drop whatever input the kernel already
        holds, without blocking (so that it cannot turn the close into a
        reset), then close. Use it once the peer has nothing more to send.

        Idempotent; releases the stream even if cancelled. A checkpoint.
        """
        if self.close_now():
            await trio.lowlevel.checkpoint()  # released already if cancelled
            return
        self._closed = True
        if self.socket is not None:
            self.discarded_bytes += _drain_nowait(self.socket)
        # A TLS stream says goodbye (close_notify) when it can do so at once;
        # whatever cannot be done within the linger is done forcefully.
        with trio.move_on_after(self.linger):
            await self.stream.aclose()
            return
        await trio.aclose_forcefully(self.stream)

    def close_now(self) -> bool:
        """:meth:`aclose_now` without waiting, where the stream allows it: a
        plain socket closes synchronously (no TLS ``close_notify`` to send).

        Returns:
            ``True`` if the stream is now closed; ``False`` if it needs
            :meth:`aclose_now` (then nothing was done).
        """
        sock = self._raw
        if sock is None:
            return False
        self._closed = True
        self.discarded_bytes += _drain_nowait(sock)
        sock.close()
        return True

    def close_quietly(self) -> bool:
        """Close at once without a reset where the stream allows it: a plain
        socket (as :meth:`close_now`) or a stream with a synchronous
        ``close()`` (memory streams).

        Returns:
            ``True`` if the stream is now closed; ``False`` if it can only
            be closed asynchronously (TLS) or by :meth:`abort`.
        """
        if self.close_now():
            return True
        close = getattr(self.stream, "close", None)
        if not callable(close):
            return False
        self._closed = True
        close()
        return True

    def try_receive(self, max_bytes: int = _RECEIVE_SIZE) -> bytes | None:
        """Take what the kernel already holds, without waiting and without
        yielding.

        Returns:
            Up to ``max_bytes`` bytes (``b""`` at the peer's EOF), or
            ``None`` if nothing is there yet, if the last read already
            emptied the kernel's buffer, or where the wrapped stream is not
            a plain socket: then use :meth:`receive_some`.

        Raises:
            trio.BrokenResourceError: the transport broke.
            trio.ClosedResourceError: the socket was closed.

        Not a checkpoint: the caller provides the schedule points.
        """
        sock = self._raw
        if (
            sock is None
            or self._drained
            or self._closed
            or self._eof_received
            or self._receive_conflict.held
        ):
            return None
        try:
            data = os.read(_fileno(sock), max_bytes)
        except BlockingIOError:
            self._drained = True
            return None
        except OSError as exc:
            raise _stream_error(exc) from exc
        self._drained = len(data) < max_bytes
        if not data:
            self._eof_received = True
        return data


def _close_sync(stream: Any) -> None:
    """Close ``stream`` synchronously if it offers a way; abort first."""
    for name in ("abort", "close"):
        method = getattr(stream, name, None)
        if callable(method):
            method()
            return
    send = getattr(stream, "send_stream", None)
    receive = getattr(stream, "receive_stream", None)
    if send is not None and receive is not None:  # a trio.StapledStream
        _close_sync(send)
        _close_sync(receive)


class _ConflictDetector:
    """Raise :exc:`trio.BusyResourceError` on overlapping use, as Trio's own
    streams do (the conformance suite checks it).

    Attributes:
        held: ``True`` while a task is inside the guarded operation (a
            plain attribute, not a property: read on every send and in a
            server's cut of thousands of connections).
    """

    __slots__ = ("_message", "held")

    def __init__(self, message: str) -> None:
        self._message = message
        self.held = False

    def __enter__(self) -> None:
        if self.held:
            raise trio.BusyResourceError(self._message)
        self.held = True

    def __exit__(self, *exc_info: object) -> None:
        self.held = False
