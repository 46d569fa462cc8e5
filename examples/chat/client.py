"""The chat client: type lines, see everyone's lines, and know at the end
whether the server got everything you said.

    python examples/chat/client.py --name alice

Each line you enter is sent to the room; the server sends it back with
everyone else's, so you see the room's one true order (your own lines too:
that echo is the server's receipt, so in a terminal the client clears the
line you typed instead of leaving it on the screen twice). Ctrl+D leaves
gracefully; Ctrl+C aborts. When the server shuts down, the client says so
with the seconds left, sends every line entered before that (typed and
Enter pressed, or already written to its standard input), half-closes
(adieu's END), prints the lines still arriving, and ends with a one-line
summary. Whatever it could not send, it names.

In a terminal the client owns the input line: it reads keys itself (Enter,
Backspace, Ctrl+U, Ctrl+D) and redraws what you are typing below the room's
lines, so that nothing you half-typed is left in the shell's input when it
exits. Otherwise (a pipe, a file) it reads lines.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import fcntl
import math
import os
import shutil
import signal
import ssl
import struct
import sys
import termios
from collections.abc import Iterator

import trio
from options import number_in

import adieu

MAX_MESSAGE = 16 * 1024  # the server's limit, in bytes
# Lines entered and not sent yet: more than anyone types ahead; a longer
# paste waits in the pipe or the terminal.
TYPED_AHEAD = 100
STDIN = 0
READ_SIZE = 65536  # bytes per read of stdin: any size works, this is a pipe's
# Schedule points the shutdown notice waits, for the reader to take bytes
# that came with it: the reader needs one for its next read, one to act on
# what it read; one more for good measure.
SETTLE_CHECKPOINTS = 3
# Seconds before the server's deadline at which a finishing client stops
# sending what is left (at most half the grace period): the server stops
# relaying to members who finished 1 s before its deadline, and the END
# needs time too.
SEND_MARGIN = 1.5

CLEAN, ERROR, TRUNCATED, RESET, ABORTED = 0, 1, 3, 4, 130
EXIT_CODES = f"""exit status:
  {CLEAN}    clean end: the server confirmed every message you sent
  {ERROR}    could not connect (or the TLS handshake failed, or the server
       did not answer as an adieu server)
  2    bad arguments
  {TRUNCATED}    the connection was cut or timed out, the server did not confirm
       every message, or a line you entered could not be sent: some may be
       lost
  {RESET}    the server reset the connection (it aborted: its grace period
       ran out, or it cut you off for not reading)
  {ABORTED}  you pressed Ctrl+C (the connection was aborted)"""


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Screen:
    """Where the client writes. In a terminal it keeps the line being typed
    at the bottom: every printed line first erases it, then redraws it."""

    def __init__(self, prompt: str | None) -> None:
        self.prompt = prompt  # None: not a terminal, no input line
        self.typing = ""

    def show(self, text: str) -> None:
        if self.prompt is None:
            print(text, flush=True)
            return
        sys.stdout.write(f"\r\x1b[K{text}\n")
        self.redraw()

    def redraw(self) -> None:
        if self.prompt is None:
            return
        # Show the end of a line longer than the terminal: one row, always.
        room = max(1, shutil.get_terminal_size().columns - len(self.prompt) - 1)
        sys.stdout.write(f"\r\x1b[K{self.prompt}{self.typing[-room:]}")
        sys.stdout.flush()

    def close(self) -> None:
        """Erase the input line for good (the program is leaving)."""
        if self.prompt is not None:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()
            self.prompt = None


def say(screen: Screen, text: str) -> None:
    screen.show(f"*** {text}")


class LineEditor:
    """Turns keys into lines: Enter ends a line, Backspace and Ctrl+U edit
    it, Ctrl+D on an empty line is the end of input; other control keys and
    escape sequences (arrows...) are ignored. ``feed`` returns the lines
    completed, and ``None`` as the last item at Ctrl+D."""

    def __init__(self, screen: Screen) -> None:
        self.screen = screen
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.escape = ""  # an escape sequence being skipped

    def feed(self, data: bytes) -> list[str | None]:
        lines: list[str | None] = []
        for key in self.decoder.decode(data):
            if self.escape:  # ESC [ params final, or ESC O x, or ESC x
                self.escape += key
                second = len(self.escape) == 2
                if key not in "[O" if second else "@" <= key <= "~":
                    self.escape = ""
                continue
            typing = self.screen.typing
            if key == "\x1b":
                self.escape = key
            elif key in "\r\n":
                self.screen.typing = ""
                lines.append(typing)
            elif key in "\x7f\x08":
                self.screen.typing = typing[:-1]
            elif key == "\x15":  # Ctrl+U
                self.screen.typing = ""
            elif key == "\x04":  # Ctrl+D
                if not typing:
                    lines.append(None)
                    break
            elif key.isprintable():
                self.screen.typing = typing + key
        self.screen.redraw()
        return lines


class PipeLines:
    """Lines from a pipe or a file: ``feed`` returns the lines a chunk
    completes (and ``None`` at the end of input, after a last line without
    its newline)."""

    def __init__(self) -> None:
        self.pending = b""

    def feed(self, data: bytes) -> list[str | None]:
        if not data:
            last = self.pending.decode("utf-8", "replace")
            self.pending = b""
            return [last, None] if last else [None]
        *complete, self.pending = (self.pending + data).split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]

    @property
    def unfinished(self) -> str:
        return self.pending.decode("utf-8", "replace")


@contextlib.contextmanager
def keys_one_by_one() -> Iterator[None]:
    """The terminal gives the client each key at once and does not echo it
    (the client draws the line itself); Ctrl+C still sends SIGINT. The old
    settings come back on exit, whatever happens."""
    saved = termios.tcgetattr(STDIN)
    raw = termios.tcgetattr(STDIN)
    raw[3] &= ~(termios.ICANON | termios.ECHO)  # lflags
    raw[6][termios.VMIN], raw[6][termios.VTIME] = 1, 0
    termios.tcsetattr(STDIN, termios.TCSANOW, raw)
    try:
        yield
    finally:
        termios.tcsetattr(STDIN, termios.TCSADRAIN, saved)


def entered_so_far() -> int:
    """Bytes waiting on stdin now (a pipe, a terminal or a file): what was
    entered before this moment, and nothing after."""
    try:
        size = fcntl.ioctl(STDIN, termios.FIONREAD, b"\0\0\0\0")
    except OSError:  # a device that cannot say (/dev/null): nothing waits
        return 0
    return int(struct.unpack("i", size)[0])


async def wait_readable() -> None:
    try:
        await trio.lowlevel.wait_readable(STDIN)
    except OSError as exc:  # a regular file: epoll refuses it, always ready
        if exc.errno != errno.EPERM:
            raise
        await trio.lowlevel.checkpoint()


class Input:
    """Reads what the person enters and hands each line to the sender.

    It never abandons a read: it waits until stdin is readable (a wait that
    can be cancelled without losing anything), then reads what is there.
    ``finish()`` makes it take every byte already entered, hand over the
    lines, and stop; the text after the last Enter is then reported as not
    sent.
    """

    def __init__(self, screen: Screen, lines: LineEditor | PipeLines) -> None:
        self.screen = screen
        self.lines = lines
        self.finishing = trio.Event()
        self.waiting: trio.CancelScope | None = None
        self.ended = False  # end of input (Ctrl+D, or the pipe's end)

    def finish(self) -> None:
        self.finishing.set()
        if self.waiting is not None:
            self.waiting.cancel()

    def unfinished(self) -> str:
        if isinstance(self.lines, PipeLines):
            return self.lines.unfinished
        return self.screen.typing

    async def hand_over(self, data: bytes, out: trio.MemorySendChannel[bytes]) -> None:
        for line in self.lines.feed(data):
            if line is None:
                self.ended = True
                return
            if line.strip():  # blank lines are not sent
                await out.send(line.encode())

    async def run(self, out: trio.MemorySendChannel[bytes]) -> None:
        async with out:
            while not (self.ended or self.finishing.is_set()):
                with trio.CancelScope() as self.waiting:
                    await wait_readable()
                if self.finishing.is_set():
                    break
                await self.hand_over(os.read(STDIN, READ_SIZE), out)
            # Asked to finish: take what was entered until now, then stop
            # (lines written after the notice stay unread: they came too
            # late, and a peer that keeps writing must not hold us here).
            left = entered_so_far()
            while left > 0 and not self.ended:
                data = os.read(STDIN, min(left, READ_SIZE))
                left -= len(data)
                await self.hand_over(data, out)


def stop_sending_at(conn: adieu.Connection) -> float:
    """When a client asked to finish stops sending what is left, so that
    its END still goes out in time and its last lines still reach the
    others (the server stops relaying to those who finished one second
    before its deadline): ``inf`` while no SHUTDOWN has come."""
    if conn.shutdown_deadline is None or conn.shutdown_grace_period is None:
        return math.inf
    margin = min(SEND_MARGIN, conn.shutdown_grace_period / 2)
    return conn.shutdown_deadline - margin


async def send_lines(
    conn: adieu.Connection,
    nick: str,
    to_send: trio.MemoryReceiveChannel[bytes],
    screen: Screen,
) -> tuple[int, str]:
    """Send the nickname, then each line entered until the input is done,
    then END. Return how many lines were not sent, and why."""
    unsent, why = 0, ""
    async with to_send:
        try:
            await conn.send(nick.encode())
            async for line in to_send:
                if unsent or trio.current_time() >= stop_sending_at(conn):
                    # Too late for this line and those after it: count them.
                    unsent, why = unsent + 1, "the server's grace period ran short"
                    continue
                try:
                    await conn.send(line)
                except adieu.MessageTooLarge:  # nothing was sent; carry on
                    say(screen, f"line too long (over {MAX_MESSAGE} bytes), not sent")
            await conn.send_eof()  # END: "I will send no more"
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The connection ended first; print_incoming() says how. The line
            # being sent and those still queued are lost: count them.
            unsent += 1 + to_send.statistics().current_buffer_used
            why = "the connection ended first"
    return unsent, why


async def watch_for_shutdown(
    conn: adieu.Connection, input_: Input, screen: Screen
) -> None:
    await conn.shutdown_requested.wait()
    input_.finish()  # at once: every moment of the grace period counts
    reason = conn.shutdown_reason or "the server is shutting down"
    # A client suspended (Ctrl+Z) while the server shut down reads the notice
    # and the server's abort together when it resumes. Let the connection's
    # reader take what arrived with the notice before saying how much time
    # is left: a few schedule points, no real time.
    for _ in range(SETTLE_CHECKPOINTS):
        await trio.lowlevel.checkpoint()
    if conn.termination is not None or conn.shutdown_deadline is None:
        # No time is left to announce; the summary says how it ended.
        say(screen, f"{reason}, but the connection has already ended")
        return
    left = max(0.0, conn.shutdown_deadline - trio.current_time())
    say(screen, f"{reason}: {left:.0f} s left. Sending what you entered, then leaving.")


async def abort_on_ctrl_c(conn: adieu.Connection, screen: Screen) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            say(screen, "Ctrl+C: aborting")
            conn.abort()  # the server sees a reset
            return


async def print_incoming(conn: adieu.Connection, screen: Screen) -> None:
    """Print every line from the server, up to its END."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async for message in conn:
            screen.show(message.decode("utf-8", "replace"))


def what_was_sent(sent: int) -> str:
    """``your name and 2 lines (3 messages)``."""
    if sent == 0:
        return "nothing"
    if sent == 1:
        return "your name (you sent no lines)"
    return f"your name and {plural(sent - 1, 'line')} ({plural(sent, 'message')})"


def summary(end: adieu.Termination) -> tuple[str, int]:
    """The last line the client prints, and its exit status."""
    kind = adieu.TerminationKind
    what = what_was_sent(end.messages_sent)
    if end.kind is kind.CLEAN and end.confirmed:
        return f"clean end: the server confirmed everything you sent: {what}", CLEAN
    if end.kind is kind.CLEAN:
        return (
            f"clean end, but the server confirmed only {end.acknowledged} of the "
            f"messages you sent: {what}",
            TRUNCATED,
        )
    if end.kind is kind.ABORTED:
        return f"aborted; you had sent {what}", ABORTED
    if end.kind is kind.RESET:
        return f"the server reset the connection; you sent {what}, unconfirmed", RESET
    if end.kind is kind.TIMED_OUT:
        return (
            "the server did not end the connection in time, so this client cut "
            f"it; you sent {what}, unconfirmed",
            TRUNCATED,
        )
    return f"connection {end.kind.value}: {end.detail}; you sent {what}", TRUNCATED


async def chat(conn: adieu.Connection, args: argparse.Namespace, screen: Screen) -> int:
    """Run the chat on ``conn``; return how many entered lines were not
    sent."""
    lines: LineEditor | PipeLines
    lines = LineEditor(screen) if screen.prompt is not None else PipeLines()
    input_ = Input(screen, lines)
    out, to_send = trio.open_memory_channel[bytes](TYPED_AHEAD)
    unsent, why = 0, ""

    async def sender() -> None:
        nonlocal unsent, why
        unsent, why = await send_lines(conn, args.name, to_send, screen)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(abort_on_ctrl_c, conn, screen)
        nursery.start_soon(watch_for_shutdown, conn, input_, screen)
        nursery.start_soon(input_.run, out)
        nursery.start_soon(sender)
        await print_incoming(conn, screen)
        nursery.cancel_scope.cancel()
    if input_.ended and not conn.shutdown_requested.is_set():
        say(screen, "end of input (Ctrl+D): you left the room")
    if unsent:
        say(
            screen,
            f"{plural(unsent, 'line')} you entered could not be sent: {why}",
        )
    if text := input_.unfinished().strip():
        say(screen, f"not sent, you had not pressed Enter: {text!r}")
    return unsent


async def main(args: argparse.Namespace, ssl_context: ssl.SSLContext | None) -> int:
    interactive = os.isatty(STDIN) and sys.stdout.isatty()
    screen = Screen(f"{args.name}> " if interactive else None)
    try:
        async with adieu.connect_tcp(
            args.host,
            args.port,
            ssl_context=ssl_context,
            max_message_size=MAX_MESSAGE,
            handshake_timeout=args.handshake_timeout,
        ) as conn:
            say(
                screen,
                f"connected to {args.host}:{args.port} (Ctrl+D: leave, Ctrl+C: abort)",
            )
            with keys_one_by_one() if interactive else contextlib.nullcontext():
                try:
                    unsent = await chat(conn, args, screen)
                finally:
                    screen.close()
    except (OSError, trio.BrokenResourceError) as exc:  # TLS: a broken resource
        cause = exc if isinstance(exc, adieu.HandshakeTimeout) else exc.__cause__ or exc
        # trio groups the errors of each address it tried: show the first
        cause = getattr(cause, "exceptions", [cause])[0]
        print(f"cannot connect to {args.host}:{args.port}: {cause}", file=sys.stderr)
        return ERROR
    assert conn.termination is not None
    text, status = summary(conn.termination)
    say(screen, text)
    return TRUNCATED if unsent and status == CLEAN else status


def nickname(text: str) -> str:
    if not text.strip() or not text.isprintable():
        raise argparse.ArgumentTypeError("a name must be printable and not blank")
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="adieu chat client: each line you enter goes to the room;\n"
        "everyone's lines are printed as they arrive.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="default %(default)s")
    parser.add_argument(
        "--port",
        type=number_in(int, 1, 65535, "a port (1 to 65535)"),
        default=7777,
        help="default %(default)s",
    )
    parser.add_argument(
        "--name",
        type=nickname,
        default=os.environ.get("USER") or "anonymous",
        help="default: $USER",
    )
    parser.add_argument("--tls", action="store_true", help="connect with TLS")
    parser.add_argument(
        "--cafile",
        help="the CA certificate to trust (implies --tls; default with --tls: "
        "chat-ca.pem, the file server.py --tls writes)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=number_in(float, 0.0, 3600.0, "seconds (0 to 3600)"),
        default=adieu.DEFAULT_HANDSHAKE_TIMEOUT,
        help="seconds the server has to answer as an adieu server "
        "(default %(default)g)",
    )
    return parser.parse_args(argv)


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
