"""Step 2: a server that runs until Ctrl+C (or SIGTERM), then shuts down
gracefully.

    python server.py [PORT]
"""

import sys

import trio

import adieu


async def echo(conn: adieu.Connection) -> None:
    print("connection from", conn.remote_address, flush=True)
    async for message in conn:
        await conn.send(message)


async def main(port: int) -> None:
    async with adieu.open_tcp_server(echo, "127.0.0.1", port, grace_period=5) as server:
        print("listening on port", server.port, flush=True)
        report = await adieu.run_until_signal(server, reason="restarting")
    print(report, flush=True)
    for connection in report.connections:
        print("  ", connection.termination, flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 7000)
