"""Unix domain sockets: the same adieu connection between processes on one
machine, addressed by a path instead of a port.

    python unix.py echo.sock
"""

import sys

import trio

import adieu


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def main(path: str) -> None:
    # The socket file must not exist; it is removed when the block ends.
    async with adieu.open_unix_server(echo, path) as server:
        async with adieu.connect_unix(path) as conn:
            await conn.send(b"hello over a Unix socket")
            print(await conn.receive())
        print("client:", conn.termination)
        print("server:", await server.shutdown())


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
