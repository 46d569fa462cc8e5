"""A client that handles SHUTDOWN: it submits jobs, stops as soon as the
server asks it to finish, and submits the jobs the server's application never
received again, on a new connection (to the restarted server).

    python job_client.py --port 7000 one two three
"""

import argparse
from collections import deque

import trio

import adieu


async def submit(
    conn: adieu.Connection, todo: deque[bytes], sent: list[bytes]
) -> list[bytes]:
    """Send jobs from ``todo`` until none is left or the server asks us to
    finish; return every result, up to the server's END."""
    results: list[bytes] = []

    async def collect() -> None:
        async for result in conn:  # stops at the server's END
            results.append(result)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        while todo and not conn.shutdown_requested.is_set():
            job = todo.popleft()
            sent.append(job)
            await conn.send(job)
        await conn.send_eof()  # END: no more jobs on this connection
    return results


async def submit_all(port: int, jobs: list[bytes]) -> list[bytes]:
    """Submit every job, over as many connections as it takes."""
    todo = deque(jobs)
    results: list[bytes] = []
    while todo:
        sent: list[bytes] = []
        try:
            async with adieu.connect_tcp("127.0.0.1", port) as conn:
                results += await submit(conn, todo, sent)
        except OSError:  # refused: the server is restarting
            await trio.sleep(1)
            continue
        assert conn.termination is not None
        taken = conn.termination.acknowledged
        if taken is None:  # no END from the server: reset, cut, timed out
            raise RuntimeError(
                f"{conn.termination}: the server may or may not have run {sent}"
            )
        # The server's application received exactly the first `taken` jobs
        # sent on this connection; the others never reached it.
        todo.extendleft(reversed(sent[taken:]))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("jobs", nargs="*", default=["one", "two", "three"])
    args = parser.parse_args()
    for result in trio.run(submit_all, args.port, [j.encode() for j in args.jobs]):
        print(result.decode())
