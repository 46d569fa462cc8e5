"""A chat server whose shutdown loses nothing: adieu's main demo.

Run it from the repository root, then join from two more terminals::

    python examples/chat/server.py
    python examples/chat/client.py --name alice
    python examples/chat/client.py --name bob

Press Ctrl+C on the server: every client is told it is shutting down and how
many seconds it has; each client sends what its user already typed and
half-closes; the server keeps relaying until every client has finished, then
prints how each connection ended. A second Ctrl+C aborts at once.

The chat protocol, on top of adieu messages (UTF-8 text, one line each):

* client to server: the first message is the nickname, every later one is a
  line to say to the room;
* server to client: lines to show as they are, ``<alice> hello`` for what
  someone said (the sender gets its own lines back too: that echo is its
  receipt) and ``* bob joined`` for notices;
* a client leaves by half-closing (adieu's END). When the server is not
  shutting down it says ``* alice left`` and closes; while it is shutting
  down, a client that has finished keeps receiving the others' last lines
  until everyone has finished (or one second before the grace period ends).

Every client has a bounded outgoing queue. A client that stops reading
fills it and is then cut off (aborted): it can neither grow the server's
memory nor hold up the others. And no client may talk faster than it
listens: the server reads a client's next line only once the previous one
has been sent back to it, so that one client's flood cannot overflow the
queues of clients that read at the same pace.
"""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from os.path import abspath

import trio
from options import number_in

import adieu

log = logging.getLogger("chat")

# Bounds, and why. A line is a few hundred bytes, not adieu's 1 MiB default.
MAX_MESSAGE = 16 * 1024  # bytes per message, either way: a long line of text
MAX_TEXT = 2000  # characters relayed per line (so at most ~8 KB of UTF-8)
MAX_NICK = 24  # characters
# Lines queued for one client before it is cut off: with every talker paced
# (see handle), a client that reads holds about one line per talker, so 64
# is room for bursts; memory per client stays under 64 lines of ~8 KB.
QUEUE_SIZE = 64
# A client that finished during a shutdown stops waiting for the others this
# many seconds before the deadline, so that its END goes out in time.
FINISH_MARGIN = 1.0


def where(address: object) -> str:
    """``127.0.0.1:7777`` for a TCP address."""
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    return str(address)


def printable(data: bytes, limit: int) -> str:
    """Decode a client's bytes into one line that is safe to show in a
    terminal (no control characters, no escape sequences)."""
    text = data.decode("utf-8", "replace")[:limit]
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


class Member:
    """One client in the room, and its bounded queue of lines to send."""

    def __init__(self, nick: str, conn: adieu.Connection) -> None:
        self.nick = nick
        self.conn = conn
        self.outbox, self.queue = trio.open_memory_channel[str](QUEUE_SIZE)
        self.talking = True  # has not half-closed yet
        self.queued = self.sent = 0  # lines, since it joined
        self.progress = trio.Event()  # set (and replaced) as lines go out
        self.gone = False
        # Lines said in the room after this member stopped waiting for the
        # others at the end of a shutdown: never queued for it.
        self.missed = 0

    def put(self, line: str) -> bool:
        """Queue ``line`` without waiting; ``False`` if the queue is full."""
        try:
            self.outbox.send_nowait(line)
        except trio.WouldBlock:
            return False
        self.queued += 1
        return True

    async def deliver(self) -> None:
        """Send the queued lines to the client, until the queue closes."""
        try:
            async for line in self.queue:
                await self.conn.send(line.encode())
                self.sent += 1
                self.progress.set()
                self.progress = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the connection is gone; handle() notices it and says so
        finally:
            self.gone = True
            self.progress.set()

    @property
    def undelivered(self) -> int:
        """Lines said in the room while this member was in it, or still
        connected during the shutdown, that did not reach it."""
        return self.queued - self.sent + self.missed

    async def caught_up(self) -> None:
        """Wait until every line queued so far has been sent."""
        target = self.queued
        while self.sent < target and not self.gone:
            await self.progress.wait()


class Room:
    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        # address -> member, for the report (those who left before the
        # shutdown are dropped: the report does not list them)
        self.by_address: dict[object, Member] = {}
        # Members who stopped waiting for the others at the end of a
        # shutdown (see finish): what is said after that misses them.
        self.left_early: list[Member] = []
        self.changed = trio.Event()  # set (and replaced) when someone finishes

    async def handle(self, conn: adieu.Connection) -> str | None:
        """adieu calls this once per connection; returning ends it cleanly."""
        try:
            nick = self.unique(printable(await conn.receive(), MAX_NICK))
        except trio.EndOfChannel:  # adieu.EndOfMessages: left without a name
            return None
        member = self.join(conn, nick)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(member.deliver)
            try:
                async for message in conn:  # until the client half-closes
                    self.say(f"<{nick}> {printable(message, MAX_TEXT)}")
                    # A client may not talk faster than it listens: read its
                    # next line once this one has been sent back to it.
                    await member.caught_up()
            except trio.BrokenResourceError as exc:  # crashed, reset or cut
                how = "reset" if isinstance(exc, adieu.ConnectionReset) else "truncated"
                log.warning("%s: connection %s: %s", nick, how, exc)
                self.leave(member, f"* {nick} lost the connection")
            except trio.ClosedResourceError:
                pass  # cut off by say(): already gone
            else:
                await self.finish(member)
        return nick  # adieu now sends END, counting what we received

    def unique(self, wanted: str) -> str:
        nick = wanted.strip().replace(" ", "_") or "anonymous"
        base, n = nick, 1
        while nick in self.members:
            n += 1
            nick = f"{base}-{n}"
        return nick

    def join(self, conn: adieu.Connection, nick: str) -> Member:
        member = Member(nick, conn)
        others = ", ".join(self.members) or "nobody yet"
        self.members[nick] = member
        self.by_address[conn.remote_address] = member
        log.info("%s joined from %s", nick, where(conn.remote_address))
        member.put(f"* welcome, {nick}! Here: {others}")
        self.say(f"* {nick} joined", skip=member)
        return member

    def say(self, line: str, skip: Member | None = None) -> None:
        """Queue ``line`` for every member: all see the same order. Never
        blocks; a member whose queue is full is cut off."""
        everyone = [m for m in self.members.values() if m is not skip]
        for member in self.left_early:
            member.missed += 1
        too_slow = [member for member in everyone if not member.put(line)]
        for member in too_slow:
            log.warning("%s is not reading: %d lines queued", member.nick, QUEUE_SIZE)
            member.conn.abort()  # the client sees a reset
            self.leave(member, f"* {member.nick} was cut off: not reading")

    async def finish(self, member: Member) -> None:
        """The client half-closed: it will say nothing more."""
        conn = member.conn
        if not conn.shutdown_requested.is_set():
            self.leave(member, f"* {member.nick} left")
            return
        # Shutting down: keep relaying the others' last lines to this client
        # until everyone has finished, or just before the grace period ends.
        log.info("%s finished", member.nick)
        member.talking = False
        self.say(f"* {member.nick} finished")
        self.changed.set()
        self.changed = trio.Event()
        assert conn.shutdown_deadline is not None
        leave_at = conn.shutdown_deadline - FINISH_MARGIN
        if others := [m.nick for m in self.members.values() if m.talking]:
            seconds = max(0.0, leave_at - trio.current_time())
            member.put(f"* waiting for {', '.join(others)} (at most {seconds:.0f} s)")
        with trio.move_on_at(leave_at):
            while any(m.talking for m in self.members.values()):
                await self.changed.wait()
        if any(m.talking for m in self.members.values()):
            self.left_early.append(member)  # the report counts what it missed
        self.leave(member)

    def leave(self, member: Member, notice: str | None = None) -> None:
        if self.members.get(member.nick) is not member:
            return  # already gone
        del self.members[member.nick]
        member.outbox.close()  # deliver() sends what is queued, then ends
        if not member.conn.shutdown_requested.is_set():
            self.by_address.pop(member.conn.remote_address, None)
        if member.talking:
            member.talking = False
            self.changed.set()
            self.changed = trio.Event()
        if notice:
            log.info("%s", notice.removeprefix("* "))
            self.say(notice)


def make_tls(host: str, cafile: str) -> ssl.SSLContext:
    """A certificate made on the fly by a throwaway CA (demo only); the CA
    goes to ``cafile`` for clients to trust."""
    try:
        import trustme
    except ImportError:
        sys.exit("--tls needs the trustme package: pip install trustme")
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host, "localhost", "127.0.0.1", "::1").configure_cert(context)
    ca.cert_pem.write_to_path(cafile)
    log.info("TLS: clients must trust %s (client.py --cafile FILE)", abspath(cafile))
    return context


async def main(args: argparse.Namespace) -> int:
    room = Room()
    ssl_context = make_tls(args.host, args.cafile) if args.tls else None
    async with adieu.open_tcp_server(
        room.handle,
        args.host,
        args.port,
        grace_period=args.grace,
        max_message_size=MAX_MESSAGE,
        ssl_context=ssl_context,
    ) as server:
        print(f"listening on {args.host}:{server.port}", flush=True)
        log.info("Ctrl+C: shut down gracefully (%g s); twice: abort", args.grace)
        report = await adieu.run_until_signal(
            server, reason="the chat server is shutting down"
        )
        # A Ctrl+C that comes once the shutdown has finished (a second one a
        # moment too late) changes nothing: from now on it is ignored, so
        # that it cannot cut the report short or change the exit status.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return print_report(report, room)


def print_report(report: adieu.ShutdownReport, room: Room) -> int:
    """Print how each connection ended; return the exit status."""
    print(report)
    for connection in report.connections:
        member = room.by_address.get(connection.remote_address)
        line = f"  {member.nick if member else '(no name)'}"
        line += f" ({where(connection.remote_address)}): {connection.termination}"
        if member and member.undelivered:
            line += (
                f"; {plural(member.undelivered, 'line')} said in the room "
                f"did not reach {member.nick}"
            )
        print(line)
    cut = report.counts[adieu.TerminationKind.TIMED_OUT]
    cut += report.counts[adieu.TerminationKind.ABORTED]
    return 1 if cut else 0


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class QuietReport(logging.Filter):
    """Drop adieu's log record of the shutdown report: main() prints the
    report itself, with each client's name, and it should appear once."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(isinstance(arg, adieu.ShutdownReport) for arg in args)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="adieu chat server: a chat room whose shutdown loses nothing.",
        epilog="Ctrl+C or SIGTERM: graceful shutdown (clients get --grace "
        "seconds to finish); a second one aborts. The report of how each "
        "connection ended is printed either way. Exit status: 0 when the "
        "shutdown cut no connection (each client finished, or had lost its "
        "connection itself); 1 when it cut some (the grace period ran out, or "
        "a second Ctrl+C aborted them) or the server could not listen; 2 for "
        "bad arguments.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default %(default)s")
    parser.add_argument(
        "--port",
        type=number_in(int, 0, 65535, "a port (0 to 65535)"),
        default=7777,
        help="default %(default)s; 0: any free port",
    )
    parser.add_argument(
        "--grace",
        type=number_in(float, 0.0, 86400.0, "seconds (0 to 86400)"),
        default=10.0,
        help="seconds (default %(default)g)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="TLS with a certificate made on the fly (needs trustme)",
    )
    parser.add_argument(
        "--cafile",
        default="chat-ca.pem",
        help="with --tls: the CA file to write (default %(default)s)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s.%(msecs)03d %(name)s %(message)s",
        datefmt="%H:%M:%S",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(QuietReport())
    try:
        sys.exit(trio.run(main, arguments))
    except OSError as exc:  # the address is taken, or not ours
        sys.exit(f"cannot listen on {arguments.host}:{arguments.port}: {exc}")
    except KeyboardInterrupt:  # before the server was listening
        sys.exit(130)
