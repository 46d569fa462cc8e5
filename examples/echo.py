"""An echo server and a client, in one file: the smallest adieu program.

    python examples/echo.py            # runs both, prints what each saw
    python examples/echo.py serve      # only the server (Ctrl+C: graceful)

The client sends three messages, leaves its block, and prints the
Termination: CLEAN and confirmed, because the server answered everything
before its END and its END counted all three messages.
"""

from __future__ import annotations

import sys

import trio

import adieu


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:  # ends at the client's END
        await conn.send(message)


async def client(port: int) -> None:
    async with adieu.connect_tcp("127.0.0.1", port) as conn:
        for word in (b"one", b"two", b"three"):
            await conn.send(word)
        await conn.send_eof()  # "no more requests"
        async for answer in conn:  # every answer, up to the server's END
            print("client got", answer)
    print("client:", conn.termination)


async def main(argv: list[str]) -> None:
    async with adieu.open_tcp_server(echo, "127.0.0.1", 0) as server:
        print("echo server on 127.0.0.1 port", server.port)
        if argv[1:2] == ["serve"]:
            print(await adieu.run_until_signal(server))
            return
        await client(server.port)
        report = await server.shutdown()
    print("server:", report)


if __name__ == "__main__":
    trio.run(main, sys.argv)
