"""Step 3: a chat room. The first message of a client is its name, every
later one a line for the room; everyone gets every line.

    python chat.py [PORT]
"""

import contextlib
import sys

import trio

import adieu


class Room:
    def __init__(self) -> None:
        self.members: dict[adieu.Connection, str] = {}

    async def broadcast(self, line: str) -> None:
        for member in list(self.members):
            # A member that is gone: its own handler sees the error and leaves.
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError
            ):
                await member.send(line.encode())

    async def handler(self, conn: adieu.Connection) -> None:
        try:
            name = (await conn.receive()).decode(errors="replace")
        except trio.EndOfChannel:  # adieu.EndOfMessages: left without a name
            return
        self.members[conn] = name
        await self.broadcast(f"* {name} joined")
        try:
            async for line in conn:  # until this client's END
                await self.broadcast(f"<{name}> {line.decode(errors='replace')}")
        finally:
            del self.members[conn]
        await self.broadcast(f"* {name} left")
        # Returning sends our END, counting the lines this handler received.


async def main(port: int) -> None:
    room = Room()
    async with adieu.open_tcp_server(room.handler, "127.0.0.1", port) as server:
        print("chat room on port", server.port, flush=True)
        report = await adieu.run_until_signal(server)
    print(report, flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 7777)
