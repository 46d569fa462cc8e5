"""The chat client: type lines, see everyone's lines, and know at the end
whether the server got everything you said.

    python examples/chat/client.py --name alice

Each line you type is sent to the room; the server sends it back with
everyone else's, so you see the room's one true order. Ctrl+D leaves
gracefully; Ctrl+C aborts. When the server shuts down, the client says so
with the seconds left, sends what you already typed, half-closes (adieu's
END), prints the lines still arriving, and ends with a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import ssl
import sys

import trio

import adieu

MAX_MESSAGE = 16 * 1024  # the server's limit, in bytes
# Lines read from stdin and not sent yet: more than anyone types ahead; a
# longer paste waits in the pipe.
TYPED_AHEAD = 100

CLEAN, ERROR, TRUNCATED, RESET, ABORTED = 0, 1, 3, 4, 130
EXIT_CODES = f"""exit status:
  {CLEAN}    clean end: the server confirmed every message you sent
  {ERROR}    could not connect (or the TLS handshake failed)
  {TRUNCATED}    the connection was cut or timed out, or the server did not confirm
       every message: some may be lost
  {RESET}    the server reset the connection (it aborted: its grace period
       ran out, or it cut you off for not reading)
  {ABORTED}  you pressed Ctrl+C (the connection was aborted)"""


def say(text: str) -> None:
    print(f"*** {text}", flush=True)


async def read_stdin(
    typed: trio.MemorySendChannel[bytes], stop: trio.CancelScope
) -> None:
    """Pass each line typed on stdin to ``typed``; close it at Ctrl+D or
    when ``stop`` is cancelled.

    A thread does the blocking read. It reads the file descriptor directly
    (not ``sys.stdin``) so that an abandoned read holds no lock at exit.
    """
    async with typed:
        with stop:
            pending = b""
            while chunk := await trio.to_thread.run_sync(
                os.read, 0, 65536, abandon_on_cancel=True
            ):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():  # blank lines are not sent
                        await typed.send(line)
            if pending.strip():
                await typed.send(pending)


async def send_typed(
    conn: adieu.Connection, nick: str, stdin_scope: trio.CancelScope
) -> None:
    """Send the nickname, then each typed line; at Ctrl+D or once the server
    asks (``stdin_scope`` is cancelled), send what was already typed, then
    half-close."""
    typed, to_send = trio.open_memory_channel[bytes](TYPED_AHEAD)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_stdin, typed, stdin_scope)
        # If the connection breaks, print_incoming() reports it.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await conn.send(nick.encode())
            async for line in to_send:
                try:
                    await conn.send(line)
                except adieu.MessageTooLarge:  # nothing was sent; carry on
                    say(f"line too long (over {MAX_MESSAGE} bytes), not sent")
            if not conn.shutdown_requested.is_set():
                say("end of input (Ctrl+D): leaving")
            await conn.send_eof()  # END: "I will send no more"
        stdin_scope.cancel()


async def watch_for_shutdown(
    conn: adieu.Connection, stdin_scope: trio.CancelScope
) -> None:
    await conn.shutdown_requested.wait()
    seconds = conn.shutdown_grace_period or 0.0
    say(
        f"{conn.shutdown_reason or 'the server is shutting down'}: "
        f"{seconds:.0f} s left. Sending what you typed, then leaving."
    )
    stdin_scope.cancel()


async def abort_on_ctrl_c(conn: adieu.Connection) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            say("Ctrl+C: aborting")
            conn.abort()  # the server sees a reset
            return


async def print_incoming(conn: adieu.Connection) -> None:
    """Print every line from the server, up to its END."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async for message in conn:
            print(message.decode("utf-8", "replace"), flush=True)


def summary(end: adieu.Termination) -> tuple[str, int]:
    kind = adieu.TerminationKind
    lines = max(0, end.messages_sent - 1)
    what = f"{end.messages_sent} messages (your name and {lines} line"
    what += ")" if lines == 1 else "s)"
    if end.kind is kind.CLEAN and end.confirmed:
        return f"clean end: the server confirmed all {what}", CLEAN
    if end.kind is kind.CLEAN:
        return (
            f"clean end, but the server confirmed only {end.acknowledged} of {what}",
            TRUNCATED,
        )
    if end.kind is kind.ABORTED:
        return f"aborted after sending {what}", ABORTED
    if end.kind is kind.RESET:
        return f"the server reset the connection; sent {what}, unconfirmed", RESET
    return f"connection {end.kind.value}: {end.detail}; sent {what}", TRUNCATED


async def main(args: argparse.Namespace, ssl_context: ssl.SSLContext | None) -> int:
    try:
        async with adieu.connect_tcp(
            args.host, args.port, ssl_context=ssl_context, max_message_size=MAX_MESSAGE
        ) as conn:
            say(f"connected to {args.host}:{args.port} (Ctrl+D: leave, Ctrl+C: abort)")
            stdin_scope = trio.CancelScope()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(abort_on_ctrl_c, conn)
                nursery.start_soon(watch_for_shutdown, conn, stdin_scope)
                nursery.start_soon(send_typed, conn, args.name, stdin_scope)
                await print_incoming(conn)
                nursery.cancel_scope.cancel()
    except (OSError, trio.BrokenResourceError) as exc:  # TLS: a broken resource
        cause = exc.__cause__ or exc
        # trio groups the errors of each address it tried: show the first
        cause = getattr(cause, "exceptions", [cause])[0]
        print(f"cannot connect to {args.host}:{args.port}: {cause}", file=sys.stderr)
        return ERROR
    assert conn.termination is not None
    text, status = summary(conn.termination)
    say(text)
    return status


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="adieu chat client: each line you type goes to the room;\n"
        "everyone's lines are printed as they arrive.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="default %(default)s")
    parser.add_argument("--port", type=int, default=7777, help="default %(default)s")
    parser.add_argument(
        "--name", default=os.environ.get("USER", "anonymous"), help="default: $USER"
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument(
        "--cafile",
        help="the CA certificate to trust (implies --tls; default with --tls: "
        "chat-ca.pem, the file server.py --tls writes)",
    )
    return parser.parse_args()


def tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if not (args.tls or args.cafile):
        return None
    cafile = args.cafile or "chat-ca.pem"
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        sys.exit(f"cannot load the CA certificate {cafile}: {exc}")


if __name__ == "__main__":
    arguments = parse_args()
    try:
        sys.exit(trio.run(main, arguments, tls_context(arguments)))
    except KeyboardInterrupt:  # Ctrl+C while connecting
        sys.exit(ABORTED)
