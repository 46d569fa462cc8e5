"""Before: a line-echo server on trio.serve_tcp. Each line is one message;
at shutdown the handlers are cancelled and the sockets closed, whatever was
in flight."""

import functools

import trio


async def echo_lines(stream: trio.SocketStream) -> None:
    buffer = b""
    while data := await stream.receive_some():
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            await stream.send_all(line + b"\n")


async def main(port: int = 7000, host: str = "127.0.0.1") -> None:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(trio.serve_tcp, host=host)
        listeners = await nursery.start(serve, echo_lines, port)
        print("listening on", listeners[0].socket.getsockname())
        # ... later, to stop: cancel everything.
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
