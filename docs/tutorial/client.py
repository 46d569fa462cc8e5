"""Step 2: a client that keeps sending until the server asks it to finish.

python client.py [PORT]
"""

import sys

import trio

import adieu


async def print_answers(conn: adieu.Connection) -> None:
    async for answer in conn:  # up to the server's END
        print("answer:", answer.decode(), flush=True)


async def main(port: int) -> adieu.Termination:
    async with (
        adieu.connect_tcp("127.0.0.1", port) as conn,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(print_answers, conn)
        n = 0
        while not conn.shutdown_requested.is_set():
            n += 1
            await conn.send(f"tick {n}".encode())
            # Wait half a second, or less if the server asks us to finish.
            with trio.move_on_after(0.5):
                await conn.shutdown_requested.wait()
        print("the server asks us to finish:", conn.shutdown_reason, flush=True)
        await conn.send_eof()  # our END; print_answers reads the rest
    print("client:", conn.termination, flush=True)
    assert conn.termination is not None
    return conn.termination


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 7000)
