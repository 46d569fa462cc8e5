"""Step 1: an echo server and its client, in one program.

python echo.py
"""

import trio

import adieu


async def echo(conn: adieu.Connection) -> None:
    async for message in conn:  # stops exactly at the client's END
        await conn.send(message)
    # Returning ends the connection: the server's END follows the client's.


async def main() -> None:
    async with adieu.open_tcp_server(echo, "127.0.0.1", 0) as server:
        async with adieu.connect_tcp("127.0.0.1", server.port) as conn:
            for word in (b"one", b"two", b"three"):
                await conn.send(word)
            await conn.send_eof()  # END: "I will send nothing more"
            async for answer in conn:  # every answer, up to the server's END
                print("answer:", answer.decode())
        print("client:", conn.termination)
        report = await server.shutdown()
    print("server:", report)


if __name__ == "__main__":
    trio.run(main)
