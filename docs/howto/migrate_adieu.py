"""After: the same server on adieu.serve_tcp. The framing is adieu's, and
stopping is a graceful shutdown with a report."""

import functools

import trio

import adieu


async def echo_messages(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def main(port: int = 7000, host: str = "127.0.0.1") -> adieu.ShutdownReport:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(adieu.serve_tcp, host=host)
        server: adieu.Server = await nursery.start(serve, echo_messages, port)
        print("listening on port", server.port)
        # ... later, to stop: ask every client to finish, within 10 s.
        return await server.shutdown(grace_period=10)


if __name__ == "__main__":
    print(trio.run(main))
