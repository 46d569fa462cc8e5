"""A server with a graceful shutdown: SIGTERM or Ctrl+C asks every client to
finish, a second signal aborts, and the exit status says how it went.

    python graceful_server.py --host 127.0.0.1 --port 7000 --grace 20
"""

import argparse
import sys

import trio

import adieu


async def answer(conn: adieu.Connection) -> None:
    """Request and reply: nothing to add for a graceful shutdown. The loop
    ends at the client's END, which the client sends once it has been asked
    to finish (and has finished)."""
    async for request in conn:
        await conn.send(b"done: " + request)


async def feed(conn: adieu.Connection) -> None:
    """A handler that only sends must watch for the shutdown itself: its
    connection's reader sets ``shutdown_requested`` when the server asks
    every client to finish."""
    n = 0
    while not conn.shutdown_requested.is_set():
        n += 1
        await conn.send(b"update %d" % n)
        with trio.move_on_after(1):
            await conn.shutdown_requested.wait()
    # Returning: adieu waits (within the grace period) for the client's END,
    # then sends ours.


async def main(host: str, port: int, grace: float) -> int:
    async with adieu.open_tcp_server(feed, host, port, grace_period=grace) as server:
        print("listening on port", server.port, flush=True)
        report = await adieu.run_until_signal(server, reason="restarting")
    print(report, flush=True)
    for connection in report.connections:
        print(connection.remote_address, connection.termination, flush=True)
    return 0 if report.lossless and not report.aborted else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--grace", type=float, default=adieu.DEFAULT_GRACE_PERIOD)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    sys.exit(trio.run(main, args.host, args.port, args.grace))
