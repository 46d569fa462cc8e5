"""The servers under test, one per process.

Started by ``run.py`` as ``python servers.py CONFIG`` where CONFIG is a JSON
object (``variant``, ``kind``, ``cpu`` and the options of that kind). The
process pins itself to one core, raises its file-descriptor limit, starts
listening on 127.0.0.1, and prints one JSON line: ``{"port": ..., "pid": ...}``
(plus a memory baseline for the ``memory`` kind). It then reads commands, one
per line, on standard input and answers each with one JSON line on standard
output; end of input makes it stop (aborting any connection left).

Variants (what a user would pick instead of adieu, and adieu itself):

* ``adieu``: :func:`adieu.open_tcp_server` with an echo handler;
* ``trio_raw``: :func:`trio.serve_listeners`, echoing bytes unframed;
* ``trio_naive``: :func:`trio.serve_listeners` with a naive 4-byte length
  prefix, each field read by a loop of ``receive_some``;
* ``asyncio``: :func:`asyncio.start_server` streams with ``readexactly``
  framing (the same 4-byte prefix);
* ``trio_websocket``: :func:`trio_websocket.serve_websocket`, echoing
  binary messages (the peers a Trio user would pick for framed messages with
  a closing handshake, with ``websockets``);
* ``websockets``: :func:`websockets.trio.server.serve`, echoing binary
  messages;
* ``trio_graceful``: :func:`trio.serve_listeners` echoing raw bytes, closed
  gracefully by hand (``close`` kind only): a goodbye message, ``send_eof``,
  read to the client's EOF, close.
* ``bare`` (``cut`` kind only): no Trio, no adieu: plain blocking sockets
  reset in a plain loop, the floor of a shutdown's cut (see
  :func:`serve_bare_cut`).

Kinds:

* ``echo``: serve until end of input (throughput);
* ``shutdown`` (adieu only): command ``shutdown`` runs
  :meth:`adieu.Server.shutdown` and answers with its report, then the
  process ends;
* ``accept``: counts handler starts; command ``wait K`` answers once K
  handlers have started, with the server-side times of the first and the
  K-th start and the CPU time spent between them;
* ``memory``: traces allocations (:mod:`tracemalloc`); command ``wait K`` as
  above, command ``measure`` answers with the heap, the tracing overhead and
  the resident set size once every task is blocked;
* ``close`` (every Trio variant but adieu, whose ``shutdown`` kind is the
  same measurement): command ``wait K`` as above, then command ``close``
  ends every connection with the variant's closing handshake and answers,
  once every handler has returned, with the time and the CPU time it took.

With ``"profile": PATH`` the server runs under :mod:`cProfile` (the
``shutdown`` kind: only the shutdown) and writes its statistics to PATH. With
``"freeze_gc": true`` the ``shutdown`` kind calls :func:`gc.freeze` just
before the shutdown (a diagnostic: what the cyclic garbage collector's full
collections cost).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import os
import resource
import socket
import struct
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

import adieu

#: Bytes asked of a socket per read by the raw Trio echo (Trio's default).
_RAW_READ_SIZE = 65536


def prepare_process(cpu: int | None) -> None:
    """Pin this process to ``cpu`` (if given) and raise the soft limit of
    open files to the hard limit, so that thousands of sockets fit."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def answer(obj: dict[str, Any]) -> None:
    """Write one JSON line to the controlling process."""
    os.write(1, (json.dumps(obj) + "\n").encode())


def rss_bytes() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ----------------------------------------------------------------- handlers


async def adieu_echo(conn: adieu.Connection) -> None:
    async for message in conn:
        await conn.send(message)


async def trio_raw_echo(stream: trio.SocketStream) -> None:
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            while True:
                data = await stream.receive_some(_RAW_READ_SIZE)
                if not data:
                    return
                await stream.send_all(data)


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytearray | None:
    """``size`` bytes, by as many ``receive_some`` calls as it takes; ``None``
    at end of stream before the first byte."""
    buffer = bytearray()
    while len(buffer) < size:
        chunk = await stream.receive_some(size - len(buffer))
        if not chunk:
            if buffer:
                raise trio.BrokenResourceError("end of stream inside a frame")
            return None
        buffer += chunk
    return buffer


async def trio_naive_echo(stream: trio.SocketStream) -> None:
    async with stream:
        with contextlib.suppress(trio.BrokenResourceError):
            while True:
                header = await _receive_exactly(stream, 4)
                if header is None:
                    return
                payload = await _receive_exactly(stream, int.from_bytes(header, "big"))
                if payload is None:
                    return
                await stream.send_all(header + payload)


# ------------------------------------------------------------------ control


class Control:
    """Command lines from standard input, read without blocking Trio."""

    def __init__(self) -> None:
        self._stream = trio.lowlevel.FdStream(os.dup(0))
        self._pending = bytearray()

    async def readline(self) -> str | None:
        while b"\n" not in self._pending:
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                return None
            self._pending += chunk
        line, _, rest = self._pending.partition(b"\n")
        self._pending = bytearray(rest)
        return line.decode().strip()


class Starts:
    """Counts handler starts; wakes whoever waits for a count."""

    def __init__(self, target: int) -> None:
        self.started = 0
        self.live = 0
        self.target = target
        self.first: tuple[float, float] | None = None
        self.at_target: tuple[float, float] | None = None
        self._waiters: list[tuple[int, trio.Event]] = []

    def wrap(self, handler: Callable[[Any], Awaitable[None]]) -> Any:
        async def counted(arg: Any) -> None:
            self.started += 1
            self.live += 1
            if self.started == 1:
                self.first = (time.perf_counter(), time.process_time())
            if self.started == self.target:
                self.at_target = (time.perf_counter(), time.process_time())
            for count, event in self._waiters:
                if self.started >= count:
                    event.set()
            try:
                await handler(arg)
            finally:
                self.live -= 1

        return counted

    async def wait(self, count: int) -> None:
        if self.started >= count:
            await trio.lowlevel.checkpoint()
            return
        event = trio.Event()
        self._waiters.append((count, event))
        await event.wait()
        self._waiters.remove((count, event))


class Timeline(trio.abc.Instrument):
    """When the server got to act after its deadline, seen from Trio's
    scheduler (a diagnostic installed only during the shutdown). A deadline
    can be acted on only between task steps: not before the step running
    when it passes has finished, and a woken task runs only in the
    scheduler's next batch (the task steps run between two waits for I/O).
    Times are ``time.perf_counter()``."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        #: the first moment past the deadline at which the scheduler
        #: resumed: a task step began or the wait for I/O ended
        self.resumed: float | None = None
        #: the task step running when the deadline passed: (start,
        #: seconds, task name)
        self.deadline_step: tuple[float, float, str] | None = None
        #: the longest task step: (start, seconds, task name)
        self.longest_step: tuple[float, float, str] = (0.0, 0.0, "")
        #: the batch running when the deadline passed: (start, seconds,
        #: task steps)
        self.deadline_batch: tuple[float, float, int] | None = None
        # Installed in the middle of a batch and of a task step: the first
        # of each counts from here.
        self._batch_started = self._step_started = time.perf_counter()
        self._batch_steps = 0

    def _passed(self, now: float) -> None:
        if self.resumed is None and now >= self.deadline:
            self.resumed = now

    def after_io_wait(self, timeout: float) -> None:
        now = self._batch_started = time.perf_counter()
        self._batch_steps = 0
        self._passed(now)

    def before_io_wait(self, timeout: float) -> None:
        now = time.perf_counter()
        if self.deadline_batch is None and now >= self.deadline:
            started = self._batch_started
            self.deadline_batch = (started, now - started, self._batch_steps)

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        now = self._step_started = time.perf_counter()
        self._batch_steps += 1
        self._passed(now)

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        now = time.perf_counter()
        started = self._step_started
        step = (started, now - started, task.name)
        if step[1] > self.longest_step[1]:
            self.longest_step = step
        if self.deadline_step is None and started < self.deadline <= now:
            self.deadline_step = step

    def summary(self, started_at: float) -> dict[str, Any]:
        """Seconds relative to the deadline, or to ``started_at`` (the
        shutdown's start) for the longest step; ``None`` where nothing was
        seen. ``deadline_step`` and ``longest_step``: [start, seconds, task
        name]; ``deadline_batch``: [start, seconds, task steps]."""
        deadline = self.deadline
        step, batch, longest = (
            self.deadline_step,
            self.deadline_batch,
            self.longest_step,
        )
        return {
            "resumed_after_deadline": None
            if self.resumed is None
            else self.resumed - deadline,
            "deadline_step": None if step is None else [step[0] - deadline, *step[1:]],
            "deadline_batch": None
            if batch is None
            else [batch[0] - deadline, *batch[1:]],
            "longest_step": [longest[0] - started_at, *longest[1:]],
        }


class GcTimer:
    """Time spent in the garbage collector while the block runs, per
    generation."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.collections = [0, 0, 0]
        #: the full (generation 2) collections: (start, seconds), in
        #: ``time.perf_counter()`` time
        self.full: list[tuple[float, float]] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            seconds = time.perf_counter() - self._started
            generation = info["generation"]
            self.seconds[generation] += seconds
            self.collections[generation] += 1
            if generation == 2:
                self.full.append((self._started, seconds))

    def around(self, moment: float) -> float | None:
        """How long the full collection running at ``moment`` took, if one
        was."""
        for started, seconds in self.full:
            if started <= moment <= started + seconds:
                return seconds
        return None

    def __enter__(self) -> GcTimer:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)


def memory_now() -> dict[str, int]:
    gc.collect()
    return {
        "heap": tracemalloc.get_traced_memory()[0],
        "tracing": tracemalloc.get_tracemalloc_memory(),
        "rss": rss_bytes(),
    }


async def settle() -> None:
    """Wait until every task is blocked (handlers and readers parked)."""
    await trio.testing.wait_all_tasks_blocked(cushion=0.01)


async def command_loop(
    control: Control,
    starts: Starts | None,
    server: adieu.Server | None,
    config: dict[str, Any],
) -> bool:
    """Answer commands until end of input (returns ``False``) or a shutdown
    has run (returns ``True``)."""
    while True:
        line = await control.readline()
        if line is None:
            return False
        command, _, argument = line.partition(" ")
        if command == "wait" and starts is not None:
            await starts.wait(int(argument))
            result: dict[str, Any] = {"started": starts.started, "live": starts.live}
            if starts.first is not None and starts.at_target is not None:
                result["seconds"] = starts.at_target[0] - starts.first[0]
                result["cpu"] = starts.at_target[1] - starts.first[1]
            answer(result)
        elif command == "measure":
            await settle()
            answer(memory_now())
        elif command == "top" and _baseline_snapshot:
            # Where the memory measured since the baseline went, by line.
            await settle()
            gc.collect()
            now = tracemalloc.take_snapshot().filter_traces(_NOT_TRACEMALLOC)
            stats = now.compare_to(_baseline_snapshot[0], "lineno")
            answer(
                {
                    "top": [
                        [str(s.traceback), s.size_diff, s.count_diff]
                        for s in stats[: int(argument or 25)]
                    ]
                }
            )
        elif command == "shutdown" and server is not None:
            profiler = None
            if config.get("profile"):
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            if config.get("freeze_gc"):
                # Diagnostic: move every object alive now out of the
                # collector's reach, so that only what the shutdown itself
                # allocates is scanned.
                gc.freeze()
            rss_before = rss_bytes()
            cpu = time.process_time()
            # CLOCK_MONOTONIC, which the client reads too (Trio's clock has
            # an offset of its own): the client places the deadline on its
            # own timeline with it.
            started_at = time.perf_counter()
            start = trio.current_time()
            timeline = Timeline(started_at + float(config["grace"]))
            trio.lowlevel.add_instrument(timeline)
            try:
                with GcTimer() as gc_timer:
                    report = await server.shutdown(float(config["grace"]))
            finally:
                trio.lowlevel.remove_instrument(timeline)
            elapsed = trio.current_time() - start
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(config["profile"])
            answering = time.perf_counter()
            terminations = [c.termination for c in report.connections]
            answer(
                {
                    "peers": [peer_entry(c) for c in report.connections],
                    "started_at": started_at,
                    "timeline": {
                        **timeline.summary(started_at),
                        "full_gc_at_deadline": gc_timer.around(timeline.deadline),
                    },
                    "grace": report.grace_period,
                    "duration": report.duration,
                    "elapsed": elapsed,
                    "cpu": time.process_time() - cpu,
                    "connections": len(report.connections),
                    "counts": {k.value: n for k, n in report.counts.items()},
                    "lossless": report.lossless,
                    "received": sum(t.messages_received for t in terminations),
                    "sent": sum(t.messages_sent for t in terminations),
                    "discarded": sum(t.messages_discarded for t in terminations),
                    "gc": gc_timer.seconds,
                    "gc_collections": gc_timer.collections,
                    # the resident set's growth during the shutdown (full
                    # collections are deferred meanwhile)
                    "rss_growth": rss_bytes() - rss_before,
                }
            )
            # When the report was built, on this clock, and how long this
            # answer took (no handler could unwind meanwhile).
            _reported.append(started_at + report.duration)
            _reported.append(time.perf_counter() - answering)
            return True
        else:
            answer({"error": f"unknown command {line!r}"})


#: When the shutdown's report was built (``time.perf_counter()``), then the
#: seconds its answer took to build and write.
_reported: list[float] = []


def peer_entry(report: adieu.ConnectionReport[Any]) -> list[Any]:
    """One connection of a shutdown report, for the client to check against
    what it saw: the client's port (its local port, the server's remote
    address), how the connection ended, the messages the server received
    and sent, and the detail."""
    address = report.remote_address
    termination = report.termination
    return [
        address[1] if isinstance(address, tuple) else None,
        termination.kind.value,
        termination.messages_received,
        termination.messages_sent,
        termination.detail,
    ]


# ------------------------------------------------------------------ serving


async def serve_trio(config: dict[str, Any]) -> None:
    variant = config["variant"]
    kind = config["kind"]
    control = Control()
    counting = kind in ("accept", "memory")
    starts = Starts(int(config.get("target", 0))) if counting else None
    if variant == "adieu":
        handler: Any = adieu_echo
        if starts is not None:
            handler = starts.wrap(handler)
        exit_gc = GcTimer()
        async with adieu.open_tcp_server(
            handler,
            "127.0.0.1",
            0,
            max_connections=int(config.get("max_connections", 1000)),
            grace_period=float(config.get("grace", 10.0)),
        ) as server:
            announce(server.port, kind, bool(config.get("snapshot")))
            if not await command_loop(control, starts, server, config):
                server.abort()
            exit_gc.__enter__()  # left below, once the block has exited
            exit_profiler = None
            if config.get("profile_exit"):
                import cProfile

                exit_profiler = cProfile.Profile()
                exit_profiler.enable()
        exit_gc.__exit__()
        if exit_profiler is not None:
            exit_profiler.disable()
            exit_profiler.dump_stats(config["profile_exit"])
        if _reported:
            # After the report's answer: how long leaving the server's block
            # took from the report (handlers unwinding after a cut), less
            # the time the answer above took, and the collector's share of
            # it from the answer.
            reported, answering = _reported
            answer(
                {
                    "block_exit": time.perf_counter() - reported - answering,
                    "gc": exit_gc.seconds,
                    "gc_collections": exit_gc.collections,
                }
            )
        return
    raw = {"trio_raw": trio_raw_echo, "trio_naive": trio_naive_echo}[variant]
    if starts is not None:
        raw = starts.wrap(raw)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, raw, listeners)
        announce(
            listeners[0].socket.getsockname()[1], kind, bool(config.get("snapshot"))
        )
        await command_loop(control, starts, None, config)
        nursery.cancel_scope.cancel()


#: With ``"snapshot": true`` (memory kind), the allocation snapshot taken at
#: the baseline, for the ``top`` command. Off in the benchmark: the snapshot
#: itself would count in the heap measured.
_baseline_snapshot: list[tracemalloc.Snapshot] = []
_NOT_TRACEMALLOC = (tracemalloc.Filter(False, tracemalloc.__file__),)


def announce(port: int, kind: str, snapshot: bool = False) -> None:
    ready: dict[str, Any] = {"port": port, "pid": os.getpid()}
    if kind == "memory":
        ready["baseline"] = memory_now()
        if snapshot:
            _baseline_snapshot.append(
                tracemalloc.take_snapshot().filter_traces(_NOT_TRACEMALLOC)
            )
    answer(ready)


async def serve_asyncio(config: dict[str, Any]) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(4)
                payload = await reader.readexactly(int.from_bytes(header, "big"))
                writer.write(header + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    announce(server.sockets[0].getsockname()[1], config["kind"])
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(commands), os.fdopen(os.dup(0), "rb")
    )
    while await commands.readline():
        answer({"error": "the asyncio server takes no commands"})
    server.close()


# ------------------------------------------------- peers and graceful close
#
# The servers adieu is compared with for framed messages with a closing
# handshake (trio-websocket, websockets), and raw Trio closed gracefully by
# hand: the ``close`` kind ends every connection with its handshake and
# measures what that costs the server.

#: What the raw Trio graceful close sends before its EOF.
GOODBYE = b"bye"


class Live:
    """The connections of a ``close`` kind server, and a wait for none."""

    def __init__(self) -> None:
        self.items: set[Any] = set()
        self._empty: trio.Event | None = None

    def add(self, item: Any) -> None:
        self.items.add(item)

    def discard(self, item: Any) -> None:
        self.items.discard(item)
        if not self.items and self._empty is not None:
            self._empty.set()

    async def wait_empty(self) -> None:
        if self.items:
            self._empty = trio.Event()
            await self._empty.wait()
        else:
            await trio.lowlevel.checkpoint()


async def trio_graceful_echo(stream: trio.SocketStream, live: Live) -> None:
    """Raw echo; the closer sends the goodbye and the EOF, this loop reads on
    to the client's EOF and closes."""
    live.add(stream)
    try:
        await trio_raw_echo(stream)
    finally:
        live.discard(stream)


async def close_trio_graceful(live: Live) -> None:
    for stream in list(live.items):
        try:
            await stream.send_all(GOODBYE)
            await stream.send_eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def serve_peer(config: dict[str, Any]) -> None:
    """The ``trio_websocket``, ``websockets`` and ``trio_graceful`` variants."""
    import trio_websocket
    import websockets
    import websockets.trio.server

    variant, kind = config["variant"], config["kind"]
    control = Control()
    starts = Starts(int(config.get("target", 0)))
    live = Live()
    async with trio.open_nursery() as nursery:
        if variant == "trio_websocket":

            async def tw_handler(request: trio_websocket.WebSocketRequest) -> None:
                ws = await request.accept()
                live.add(ws)
                try:
                    while True:
                        await ws.send_message(await ws.get_message())
                except trio_websocket.ConnectionClosed:
                    pass
                finally:
                    live.discard(ws)

            server = await nursery.start(
                functools.partial(
                    trio_websocket.serve_websocket,
                    starts.wrap(tw_handler),
                    "127.0.0.1",
                    0,
                    ssl_context=None,
                )
            )
            port = server.port

            async def close_all() -> None:
                async with trio.open_nursery() as closing:
                    for ws in list(live.items):
                        closing.start_soon(ws.aclose, 1001)
                await live.wait_empty()

        elif variant == "websockets":

            async def ws_handler(conn: websockets.trio.server.ServerConnection) -> None:
                live.add(conn)
                try:
                    async for message in conn:
                        await conn.send(message)
                finally:
                    live.discard(conn)

            ws_server = await nursery.start(
                functools.partial(
                    websockets.trio.server.serve,
                    starts.wrap(ws_handler),
                    0,
                    host="127.0.0.1",
                    # No keepalive pings: the other servers send none.
                    ping_interval=None,
                )
            )
            port = ws_server.listeners[0].socket.getsockname()[1]

            async def close_all() -> None:
                # The library's own way to end every connection (close code
                # 1001, going away) and wait for the handlers.
                await ws_server.aclose()

        else:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            nursery.start_soon(
                trio.serve_listeners,
                starts.wrap(functools.partial(trio_graceful_echo, live=live)),
                listeners,
            )
            port = listeners[0].socket.getsockname()[1]

            async def close_all() -> None:
                await close_trio_graceful(live)
                await live.wait_empty()

        announce(port, kind)
        while (line := await control.readline()) is not None:
            command, _, argument = line.partition(" ")
            if command == "wait":
                await starts.wait(int(argument))
                answer({"started": starts.started, "live": len(live.items)})
            elif command == "close":
                connections = len(live.items)
                cpu = time.process_time()
                start = trio.current_time()
                with GcTimer() as gc_timer:
                    await close_all()
                answer(
                    {
                        "duration": trio.current_time() - start,
                        "cpu": time.process_time() - cpu,
                        "connections": connections,
                        "gc": gc_timer.seconds,
                        "gc_collections": gc_timer.collections,
                    }
                )
            else:
                answer({"error": f"unknown command {line!r}"})
        nursery.cancel_scope.cancel()


PEERS = ("trio_websocket", "websockets", "trio_graceful")

#: ``SO_LINGER`` on, timeout 0: close sends RST (as adieu's abort does).
_LINGER_RST = struct.pack("ii", 1, 0)


def serve_bare_cut(config: dict[str, Any]) -> None:
    """The ``bare`` variant (``cut`` kind): the floor of a shutdown's cut on
    this machine. Plain blocking sockets, no Trio: accept ``target``
    connections (each client sends a few bytes, left unread, as a stubborn
    client's request would be), answer, then on the command ``cut`` reset
    every one in a plain loop of ``setsockopt(SO_LINGER {1, 0})`` and
    ``close`` and answer with the time and the CPU time that took."""
    target = int(config["target"])
    with socket.create_server(("127.0.0.1", 0), backlog=4096) as listener:
        announce(listener.getsockname()[1], config["kind"])
        accepted = [listener.accept()[0] for _ in range(target)]
    answer({"accepted": len(accepted)})
    if sys.stdin.readline().strip() != "cut":
        return
    gc.disable()  # as in adieu's cut: no collection inside the loop
    cpu = time.process_time()
    start = time.perf_counter()
    for sock in accepted:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        sock.close()
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    gc.enable()
    answer({"seconds": seconds, "cpu": cpu, "connections": len(accepted)})
    sys.stdin.readline()  # end of input


def main() -> None:
    config = json.loads(sys.argv[1])
    prepare_process(config.get("cpu"))
    if config["kind"] == "memory":
        tracemalloc.start()
    if config.get("profile") and config["kind"] != "shutdown":
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            trio.run(serve_trio, config)
        finally:
            profiler.disable()
            profiler.dump_stats(config["profile"])
        return
    if config["variant"] == "bare":
        serve_bare_cut(config)
    elif config["variant"] == "asyncio":
        asyncio.run(serve_asyncio(config))
    elif config["variant"] in PEERS:
        trio.run(serve_peer, config)
    else:
        trio.run(serve_trio, config)


if __name__ == "__main__":
    main()
