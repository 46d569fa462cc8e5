"""A misbehaving chat client for the end-to-end tests: a raw adieu
connection that joins the chat and then breaks the rules.

    python chat_raw_client.py PORT NAME ignore   # reads, never half-closes
    python chat_raw_client.py PORT NAME stall    # never reads at all
    python chat_raw_client.py PORT NAME late     # as ignore, and says one
                                                 # more line 2.5 s into the
                                                 # server's shutdown

It prints ``joined`` once its nickname is sent, ``shutdown requested`` when
the server's SHUTDOWN arrives (and then ignores it), and ``ended: KIND``
when the connection breaks.
"""

from __future__ import annotations

import sys

import trio

import adieu

#: Seconds into the shutdown at which "late" speaks: past the moment those
#: who finished stop waiting (1 s before the end of the tests' 3 s grace
#: period), before the deadline.
LATE = 2.5


async def main(port: int, name: str, mode: str) -> None:
    # stall: hold at most one message, so the reader stops reading at once
    buffer = 1 if mode == "stall" else adieu.DEFAULT_RECEIVE_BUFFER_SIZE
    async with adieu.connect_tcp("127.0.0.1", port, receive_buffer_size=buffer) as conn:
        await conn.send(name.encode())
        print("joined", flush=True)
        if mode == "stall":
            await trio.sleep_forever()
        async with trio.open_nursery() as nursery:

            async def report_shutdown() -> None:
                await conn.shutdown_requested.wait()
                print("shutdown requested", flush=True)
                if mode == "late":
                    await trio.sleep(LATE)
                    await conn.send(b"too late for the others")
                    print("said it", flush=True)

            nursery.start_soon(report_shutdown)
            try:
                async for message in conn:
                    print(message.decode(), flush=True)
            except trio.BrokenResourceError:
                pass
            nursery.cancel_scope.cancel()
    assert conn.termination is not None
    print(f"ended: {conn.termination.kind.value}", flush=True)


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]), sys.argv[2], sys.argv[3])
