"""An echo server and a client, in one file: the smallest adieu program.

    python examples/echo.py                     # runs both, prints what each saw
    python examples/echo.py serve [PORT]        # only the server (Ctrl+C: graceful)
    python examples/echo.py client PORT [WORD ...]  # only the client

``serve`` listens on 127.0.0.1, on PORT or (without it) a free port it
prints; run ``client`` with that port in another terminal. The client sends
its words (three by default), leaves its block, and prints the Termination:
CLEAN and confirmed, because the server answered everything before its END
and its END counted every message.
"""

from __future__ import annotations

import sys

import trio

import adieu

USAGE = "usage: echo.py [serve [PORT] | client PORT [WORD ...]]"


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:  # ends at the client's END
        await conn.send(message)


async def client(port: int, words: list[str]) -> None:
    async with adieu.connect_tcp("127.0.0.1", port) as conn:
        for word in words:
            await conn.send(word.encode())
        await conn.send_eof()  # "no more requests"
        async for answer in conn:  # every answer, up to the server's END
            print("client got", answer)
    print("client:", conn.termination)


async def serve(port: int) -> None:
    async with adieu.open_tcp_server(echo, "127.0.0.1", port) as server:
        print("echo server on 127.0.0.1 port", server.port, flush=True)
        print("server:", await adieu.run_until_signal(server))


async def both() -> None:
    async with adieu.open_tcp_server(echo, "127.0.0.1", 0) as server:
        print("echo server on 127.0.0.1 port", server.port)
        await client(server.port, ["one", "two", "three"])
        report = await server.shutdown()
    print("server:", report)


def port_argument(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        sys.exit(f"not a port (1 to 65535): {text!r}\n{USAGE}")
    return int(text)


def main(argv: list[str]) -> None:
    match argv[1:]:
        case []:
            trio.run(both)
        case ["serve"]:
            trio.run(serve, 0)
        case ["serve", port]:
            trio.run(serve, port_argument(port))
        case ["client", port, *words]:
            trio.run(client, port_argument(port), words or ["one", "two", "three"])
        case _:
            sys.exit(USAGE)


if __name__ == "__main__":
    main(sys.argv)
