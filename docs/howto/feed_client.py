"""The client of graceful_server.py's feed: print updates until the server
asks to finish, then finish.

    python feed_client.py --port 7000
"""

import argparse
import sys

import trio

import adieu


async def finish_when_asked(conn: adieu.Connection) -> None:
    await conn.shutdown_requested.wait()
    print("server:", conn.shutdown_reason, flush=True)
    await conn.send_eof()  # we send nothing more: END


async def main(port: int) -> adieu.Termination:
    async with (
        adieu.connect_tcp("127.0.0.1", port) as conn,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(finish_when_asked, conn)
        async for update in conn:  # up to the server's END
            print(update.decode(), flush=True)
    assert conn.termination is not None
    print("client:", conn.termination, flush=True)
    return conn.termination


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7000)
    termination = trio.run(main, parser.parse_args().port)
    sys.exit(0 if termination.lossless else 1)
