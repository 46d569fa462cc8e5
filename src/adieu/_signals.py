"""Running a server until the process is told to stop."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterable

import trio

from ._frames import encode_shutdown
from ._server import Server, ShutdownReport

__all__ = ["run_until_signal"]

logger = logging.getLogger("adieu")

_DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signal(
    server: Server,
    *,
    signals: Iterable[int] | None = None,
    grace_period: float | None = None,
    reason: str | None = None,
) -> ShutdownReport:
    """Serve until SIGINT or SIGTERM, then shut down gracefully; a second
    signal aborts.

    The first signal starts :meth:`Server.shutdown` (clients are told the
    grace period and ``reason``); a second one (SIGINT or SIGTERM, or the
    same again) while it runs calls :meth:`Server.abort`, as a second Ctrl+C
    should: at any moment of the shutdown, its first step included, the
    connections still open are aborted at once and this returns the
    report, with :attr:`ShutdownReport.aborted` set. Neither signal raises:
    the program goes on from here, so it can print the report and choose
    its exit status (the how-to's example exits 1 when the report is aborted
    or not lossless, 0 otherwise). If the server is shut down some other way
    first, this returns its report.

    Must be called from Trio's main thread (Trio's signal handling), inside
    the server's block::

        async with adieu.open_tcp_server(handler, port=8000) as server:
            report = await adieu.run_until_signal(server)
        print(report)

    Args:
        server: the running server.
        signals: the signals to catch (``None``, the default: SIGINT and
            SIGTERM). While this runs, they do not raise
            :exc:`KeyboardInterrupt`; once it has returned, they act as
            before again (a third Ctrl+C then raises
            :exc:`KeyboardInterrupt` as usual).
        grace_period: as :meth:`Server.shutdown` (default the server's).
        reason: as :meth:`Server.shutdown`.

    Returns:
        The server's :class:`ShutdownReport`.

    Raises:
        ValueError: ``grace_period`` is negative, or ``reason`` is over 255
            bytes of UTF-8 (checked at once, before any signal).
        RuntimeError: called outside Trio's main thread (Python delivers
            signals to the main thread only).

    If cancelled, the server is left as it is (its own block decides: a
    cancellation there aborts it; a shutdown already started goes on). A
    checkpoint.
    """
    if grace_period is not None and not grace_period >= 0:
        raise ValueError(f"grace_period must be >= 0, not {grace_period!r}")
    if reason is not None:
        encode_shutdown(grace_period or 0.0, reason)  # over 255 bytes: now
    if signals is None:
        signals = _DEFAULT_SIGNALS
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                count = 0
                async for signum in received:
                    count += 1
                    name = signal.Signals(signum).name
                    if count == 1:
                        logger.info("%s: shutting down gracefully", name)
                        nursery.start_soon(_shutdown, server, grace_period, reason)
                    else:
                        logger.warning("%s again: aborting every connection", name)
                        server.abort()

            nursery.start_soon(watch)
            report = await server.wait_shut_down()
            nursery.cancel_scope.cancel()
    return report


async def _shutdown(
    server: Server, grace_period: float | None, reason: str | None
) -> None:
    await server.shutdown(grace_period, reason=reason)
