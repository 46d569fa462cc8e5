"""Where the server's time and memory go, counted: Trio task steps, Python
function calls and system calls per message, per accepted connection and
per graceful close, and the heap an idle connection holds, adieu against
raw Trio.

``bench/run.py`` measures how far a ratio is from its goal; this says what
the difference is made of. The server runs in this process and its clients
in a child process, as in ``bench/run.py``, so every count is the server's
own. Calls are counted with ``sys.setprofile``, which slows the server
several times: the accept and close counts do not depend on that (their
sequence of events is fixed), but in the echoes the system calls do (a
slower server more often finds the next message already waiting, and then
reads without waiting for it); task steps and Python calls per message are
what to read there. Beside the counts, the server's CPU time per
operation from a second pass without the profiler: a rough figure that the
machine's load moves; the ratios of ``bench/run.py`` are the measured ones.

Run it as ``python bench/anatomy.py`` (about twenty seconds); ``--smoke``
runs every scenario for a moment.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import gc
import select
import socket
import sys
import time
import tracemalloc
import types
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

import adieu

#: Messages of the one-at-a-time echo, and their size: enough round trips
#: that the fixed costs of the run disappear in the division.
MESSAGES = 6400
SIZE = 1024
#: Connections accepted and closed.
CONNECTIONS = 500
GOODBYE = b"bye"
#: The C calls counted, by the type or module they belong to: each is
#: one system call (a socket's methods, ``os.read`` and ``os.write``), or
#: one wait for I/O or change to its registrations (epoll's).
SYSTEM_CALLERS = (socket.socket, select.epoll)
SYSTEM_MODULES = frozenset({"posix"})
#: Socket methods that make no system call.
NOT_SYSTEM_CALLS = frozenset({"fileno", "gettimeout", "family", "type"})


def system_call(function: Any) -> str | None:
    """``type.name`` of a C function that makes a system call, else
    ``None``."""
    owner = getattr(function, "__self__", None)
    if isinstance(owner, SYSTEM_CALLERS):
        if function.__name__ in NOT_SYSTEM_CALLS:
            return None
        return f"{type(owner).__name__}.{function.__name__}"
    if isinstance(owner, types.ModuleType) and owner.__name__ in SYSTEM_MODULES:
        return f"os.{function.__name__}"
    return None


class Counts(trio.abc.Instrument):
    """Task steps (an instrument), calls (a profile function) and, with
    ``memory``, the heap allocated and still held (:mod:`tracemalloc`, by
    the file that allocated it), between :meth:`start` and :meth:`stop`, in
    the thread that installs it."""

    def __init__(self, *, profile: bool = False, memory: bool = False) -> None:
        self.profile = profile
        self.memory = memory
        self.steps = 0
        self.calls = 0
        self.c_calls: collections.Counter[str] = collections.Counter()
        self.heap: collections.Counter[str] = collections.Counter()
        self.cpu = 0.0
        self._counting = False
        self._snapshot: tracemalloc.Snapshot | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._counting:
            self.steps += 1

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            self.calls += 1
        elif event == "c_call":
            name = system_call(arg)
            if name is not None:
                self.c_calls[name] += 1

    def start(self) -> None:
        self._counting = True
        if self.memory:
            gc.collect()
            self._snapshot = _snapshot()
        if self.profile:
            sys.setprofile(self._profile)
        self.cpu = -time.thread_time()

    def stop(self) -> None:
        self.cpu += time.thread_time()
        if self.profile:
            sys.setprofile(None)
        if self._snapshot is not None:
            gc.collect()
            grown = _snapshot().compare_to(self._snapshot, "filename")
            for stat in grown:
                self.heap[heap_owner(stat.traceback[0].filename)] += stat.size_diff
            self._snapshot = None
        self._counting = False


#: Where heap allocations are counted, by the path of the file that made
#: them: the first match names the owner.
HEAP_OWNERS = (
    ("adieu/", "adieu"),
    ("trio/_core/_run.py", "Trio's tasks, nurseries and cancel scopes"),
    ("trio/", "Trio, the rest"),
    ("anatomy.py", "the handler"),
)


def heap_owner(filename: str) -> str:
    for part, owner in HEAP_OWNERS:
        if part in filename:
            return owner
    return "Python and other libraries"


def _snapshot() -> tracemalloc.Snapshot:
    """The traced heap, less tracemalloc's own allocations."""
    return tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),)
    )


async def run_clients(*args: object) -> None:
    """Run this script's client side (``--client ARGS``) in a child process
    and wait for it; raises if it fails."""
    command = [sys.executable, __file__, "--client", *map(str, args)]
    await trio.run_process(command, check=True)


async def clients(count: int, one: Callable[[], Awaitable[None]]) -> None:
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)


# ------------------------------------------------------------------ echo


class Echo:
    """An echo exchange: ``connections`` clients at once, each sending
    ``burst`` messages of ``size`` bytes and then reading their replies,
    until about ``messages`` messages have been echoed in all."""

    def __init__(self, connections: int, burst: int, size: int, messages: int) -> None:
        self.args = (connections, burst, size, messages // (connections * burst))
        self.messages = connections * burst * self.args[3]

    async def adieu_server(self, counts: Counts) -> None:
        async def handler(conn: adieu.Connection) -> None:
            async for message in conn:
                await conn.send(message)

        async with adieu.open_tcp_server(handler, "127.0.0.1", 0) as server:
            counts.start()
            await run_clients("echo-adieu", server.port, *self.args)
            counts.stop()
            await server.shutdown()

    async def raw_server(self, counts: Counts) -> None:
        async def handler(stream: trio.SocketStream) -> None:
            async with stream:
                while data := await stream.receive_some(65536):
                    await stream.send_all(data)

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            counts.start()
            await run_clients("echo-raw", port, *self.args)
            counts.stop()
            nursery.cancel_scope.cancel()


async def echo_adieu_clients(
    port: int, connections: int, burst: int, size: int, rounds: int
) -> None:
    async def one() -> None:
        async with adieu.connect_tcp("127.0.0.1", port) as conn:
            message = b"x" * size
            for _ in range(rounds):
                for _ in range(burst):
                    await conn.send(message)
                for _ in range(burst):
                    await conn.receive()

    await clients(connections, one)


async def echo_raw_clients(
    port: int, connections: int, burst: int, size: int, rounds: int
) -> None:
    async def one() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            message = b"x" * size
            for _ in range(rounds):
                for _ in range(burst):
                    await stream.send_all(message)
                got = 0
                while got < size * burst:
                    got += len(await stream.receive_some(65536))

    await clients(connections, one)


# ------------------------------------------------------- accept and close


async def adieu_close_server(connections: int, accept: Counts, close: Counts) -> None:
    started = 0
    all_started = trio.Event()

    async def handler(conn: adieu.Connection) -> None:
        nonlocal started
        started += 1
        if started == connections:
            all_started.set()
        async for _ in conn:
            pass

    async with (
        adieu.open_tcp_server(handler, "127.0.0.1", 0, backlog=connections) as server,
        trio.open_nursery() as nursery,
    ):
        accept.start()
        nursery.start_soon(run_clients, "close-adieu", server.port, connections)
        await all_started.wait()
        # Every handler has reached its first wait: the connection is idle.
        await trio.testing.wait_all_tasks_blocked()
        accept.stop()
        close.start()
        report = await server.shutdown()
        close.stop()
    if report.clean != connections:
        raise RuntimeError(f"not every connection ended clean: {report.counts}")


async def raw_close_server(connections: int, accept: Counts, close: Counts) -> None:
    streams: set[trio.SocketStream] = set()
    all_started = trio.Event()
    none_left = trio.Event()

    async def handler(stream: trio.SocketStream) -> None:
        streams.add(stream)
        if len(streams) == connections:
            all_started.set()
        try:
            async with stream:
                while await stream.receive_some(65536):
                    pass
        finally:
            streams.discard(stream)
            if not streams:
                none_left.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(
                trio.serve_tcp, handler, 0, host="127.0.0.1", backlog=connections
            )
        )
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as peer:
            accept.start()
            peer.start_soon(run_clients, "close-raw", port, connections)
            await all_started.wait()
            await trio.testing.wait_all_tasks_blocked()
            accept.stop()
            close.start()
            for stream in list(streams):
                # As bench/servers.py does: a client may finish, and its
                # handler close, between the goodbye and the EOF.
                with contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError
                ):
                    await stream.send_all(GOODBYE)
                    await stream.send_eof()
            await none_left.wait()
            close.stop()
        nursery.cancel_scope.cancel()


async def close_adieu_clients(port: int, connections: int) -> None:
    async def one() -> None:
        async with adieu.connect_tcp("127.0.0.1", port) as conn:
            await conn.shutdown_requested.wait()

    await clients(connections, one)


async def close_raw_clients(port: int, connections: int) -> None:
    async def one() -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            while data := await stream.receive_some(65536):
                if data.endswith(GOODBYE):
                    break
            await stream.send_eof()
            while await stream.receive_some(65536):
                pass

    await clients(connections, one)


CLIENTS: dict[str, Callable[..., Awaitable[None]]] = {
    "echo-adieu": echo_adieu_clients,
    "echo-raw": echo_raw_clients,
    "close-adieu": close_adieu_clients,
    "close-raw": close_raw_clients,
}


# ------------------------------------------------------------------ report

Scenario = Callable[..., Awaitable[None]]


def measure(
    scenario: Scenario, parts: int, *, profile: bool = False, memory: bool = False
) -> list[Counts]:
    counts = [Counts(profile=profile, memory=memory) for _ in range(parts)]
    if memory:
        tracemalloc.start()
    try:
        trio.run(scenario, *counts, instruments=counts)
    finally:
        tracemalloc.stop()
    return counts


def row(label: str, counts: Counts, cpu: float, per: int) -> list[str]:
    socket_calls = sum(counts.c_calls.values())
    # Calls made less than once in twenty operations (the listener's, the
    # child process's) are left out of the detail, not of the total.
    detail = ", ".join(
        f"{name} {count / per:.2g}"
        for name, count in counts.c_calls.most_common()
        if count / per >= 0.05
    )
    return [
        label,
        f"{counts.steps / per:.2f}",
        f"{counts.calls / per:.0f}",
        f"{socket_calls / per:.2f}",
        f"{cpu / per * 1e6:.0f}",
        detail,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--smoke", action="store_true", help="every scenario for a moment"
    )
    parser.add_argument("--client", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        name, *numbers = args.client
        trio.run(CLIENTS[name], *map(int, numbers))
        return
    messages, connections = (320, 20) if args.smoke else (MESSAGES, CONNECTIONS)
    lines = [
        "| operation | server | task steps | Python calls | system calls "
        "| CPU µs (rough) | system calls in detail |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    plans: list[tuple[int, Scenario, Scenario, list[str]]] = []
    for label, echo in (
        (f"message of {SIZE} B, one at a time", Echo(1, 1, SIZE, messages)),
        (f"message of {SIZE} B, 10 connections", Echo(10, 1, SIZE, messages)),
        (
            "message of 64 B, 10 connections, 32 in flight each",
            Echo(10, 32, 64, messages),
        ),
    ):
        plans.append((echo.messages, echo.adieu_server, echo.raw_server, [label]))
    plans.append(
        (
            connections,
            functools.partial(adieu_close_server, connections),
            functools.partial(raw_close_server, connections),
            ["accept", "close"],
        )
    )
    for per, adieu_side, raw_side, names in plans:
        for server, scenario in (("adieu", adieu_side), ("Trio", raw_side)):
            counted = measure(scenario, len(names), profile=True)
            timed = measure(scenario, len(names))
            for name, counts, plain in zip(names, counted, timed, strict=True):
                cells = row(name, counts, plain.cpu, per)
                lines.append("| " + " | ".join([cells[0], server, *cells[1:]]) + " |")
    owners = [owner for _, owner in HEAP_OWNERS] + ["Python and other libraries"]
    lines += [
        "",
        "Heap held per idle connection (bytes, after a full collection), by the "
        "code that allocated it:",
        "",
        "| server | in all | " + " | ".join(owners) + " |",
        "|---|---:|" + "---:|" * len(owners),
    ]
    _, adieu_side, raw_side, _ = plans[-1]
    for server, scenario in (("adieu", adieu_side), ("Trio", raw_side)):
        accept, _ = measure(scenario, 2, memory=True)
        cells = [f"{accept.heap[owner] / connections:,.0f}" for owner in owners]
        total = sum(accept.heap.values()) / connections
        lines.append(f"| {server} | {total:,.0f} | " + " | ".join(cells) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
