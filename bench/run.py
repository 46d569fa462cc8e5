"""adieu side by side with raw Trio, asyncio and the WebSocket servers of
Trio (trio-websocket, websockets), in one run.

    python bench/run.py            # the full run (15-20 minutes)
    python bench/run.py --quick    # a short run (4-6 minutes)
    python bench/run.py --smoke    # seconds: every variant runs, nothing measured
    python bench/run.py --json results.json --plot shutdown.png

Each server runs in its own process pinned to one core; this process is the
client, pinned to another (``client.py``: the same minimal client for every
server, so that only the server differs). Variants are interleaved and every
cell repeated; the tables give medians, and ratios are medians of the ratios
measured side by side in the same round. Figures are noisy on a small
machine: compare ratios from one run, never absolute figures across runs.

A cell is flagged † when the server was not the bottleneck: its process used
less than 90% of a core during the measurement (the client, the network
stack or the latency of a round trip limited it, so the figure understates
the server).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import operator
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import client

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers.py"

#: Below this share of a core, the server was not what limited a cell.
SERVER_BOUND = 0.90
FLAG = "†"
#: Above this share of a core used by other processes on the two measured
#: cores during a cell, the cell is flagged as disturbed.
DISTURBED = 0.15
DISTURBED_FLAG = "‡"

THROUGHPUT_VARIANTS = ("adieu", "trio_raw", "trio_naive", "asyncio")
VARIANT_NAMES = {
    "adieu": "adieu",
    "trio_raw": "Trio raw (unframed)",
    "trio_naive": "Trio naive length prefix",
    "asyncio": "asyncio readexactly",
}
SIZE_NAMES = {64: "64 B", 1024: "1 KiB", 10240: "10 KiB", 102400: "100 KiB"}


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    connections: int
    window: int
    #: One request in flight in all, the connections taking turns.
    alone: bool = False


PING_PONG = Mode("ping-pong", connections=10, window=1)
PIPELINED = Mode("pipelined", connections=1, window=16)


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    reps: int
    sizes: tuple[int, ...]
    warmup: float
    duration: float
    shutdown_ns: tuple[int, ...]
    shutdown_reps: int
    #: runs of the stubborn cells, whose figures are bounds checked on the
    #: worst run: a pass must hold more than once
    stubborn_reps: int
    grace: float
    busy_seconds: float
    accept_connections: int
    accept_reps: int
    memory_ns: tuple[int, ...]
    memory_reps: int


FULL = Plan(
    name="full",
    reps=5,
    sizes=(64, 1024, 10240, 102400),
    warmup=0.2,
    duration=1.0,
    shutdown_ns=(1000, 5000, 10000),
    shutdown_reps=5,
    stubborn_reps=5,
    grace=1.0,
    busy_seconds=0.3,
    accept_connections=2000,
    accept_reps=5,
    memory_ns=(1000, 5000),
    memory_reps=5,
)
QUICK = dataclasses.replace(
    FULL,
    name="quick",
    reps=3,
    warmup=0.05,
    duration=0.2,
    shutdown_reps=1,
    stubborn_reps=3,
    busy_seconds=0.2,
    accept_reps=2,
    memory_ns=(1000,),
    memory_reps=1,
)
SMOKE = dataclasses.replace(
    FULL,
    name="smoke",
    reps=1,
    sizes=(64, 102400),
    warmup=0.01,
    duration=0.02,
    shutdown_ns=(20,),
    shutdown_reps=1,
    stubborn_reps=1,
    grace=0.5,
    busy_seconds=0.05,
    accept_connections=50,
    accept_reps=1,
    memory_ns=(20,),
    memory_reps=1,
)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= len(items)
    return list(items[by:]) + list(items[:by])


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


#: The sections of a run, in the order they run.
SECTIONS = (
    "throughput",
    "shutdown",
    "accept",
    "memory",
    "peers",
    "alone",
    "closing",
)


# ------------------------------------------------------------------ processes


class Cores:
    """Which core the server gets and which the client (this process)."""

    def __init__(self) -> None:
        available = sorted(os.sched_getaffinity(0))
        self.pinned = len(available) >= 2
        self.server: int | None = available[0] if self.pinned else None
        self.client: int | None = available[1] if self.pinned else None
        self.measured = available[:2]
        if self.client is not None:
            os.sched_setaffinity(0, {self.client})

    def describe(self) -> str:
        if not self.pinned:
            return "not pinned (fewer than 2 cores available)"
        return f"server on core {self.server}, client on core {self.client}"


#: File descriptors a process needs beyond its sockets: the listener, the
#: epoll instances, Trio's wake-up pipe, the command pipes, the interpreter's
#: own files. 200 is a generous round bound.
_SPARE_FDS = 200


def raise_file_limit(plan: Plan) -> None:
    """Raise the soft limit of open files to the hard one (the servers do
    the same in their processes: the client and the server each hold one
    socket per connection, in separate processes, so each needs the largest
    N plus a few), and refuse to start if the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = (
        max(*plan.shutdown_ns, *plan.memory_ns, plan.accept_connections) + _SPARE_FDS
    )
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(
            f"the {plan.name} run holds up to {needed - _SPARE_FDS:,} connections "
            f"per process and needs {needed:,} open files; the hard limit is "
            f"{hard:,} (raise it: ulimit -Hn {needed})"
        )


class ServerProcess:
    """One server variant in its own process (see ``servers.py``).

    ``wait=False`` returns before the server is ready; call :meth:`wait_ready`
    (so that several servers can start at once)."""

    def __init__(self, cores: Cores, *, wait: bool = True, **config: Any) -> None:
        config["cpu"] = cores.server
        self.config = config
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVERS), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        self.ready = self.read()
        self.port: int = self.ready["port"]
        self.pid: int = self.ready["pid"]

    def read(self) -> dict[str, Any]:
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"server {self.config} exited: {self.proc.wait()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"server {self.config}: {answer['error']}")
        return answer

    def request(self, command: str) -> dict[str, Any]:
        self.stdin.write(command.encode() + b"\n")
        return self.read()

    def close(self) -> None:
        """End of input: the server stops (aborting what is left)."""
        if not self.stdin.closed:
            self.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"server {self.config} did not stop") from None
        self.stdout.close()


# ----------------------------------------------------------------- throughput


def run_throughput(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    servers = {
        v: ServerProcess(cores, variant=v, kind="echo", wait=False)
        for v in THROUGHPUT_VARIANTS
    }
    for server in servers.values():
        server.wait_ready()
    records: list[dict[str, Any]] = []
    try:
        cells = [(mode, size) for mode in (PING_PONG, PIPELINED) for size in plan.sizes]
        for rep in range(plan.reps):
            for index, (mode, size) in enumerate(cells):
                for variant in rotated(THROUGHPUT_VARIANTS, rep + index):
                    records.append(
                        measure_cell(
                            "throughput",
                            plan,
                            cores,
                            servers[variant],
                            variant,
                            mode,
                            size,
                            rep,
                        )
                    )
    finally:
        for server in servers.values():
            server.close()
    return records


def measure_cell(
    section: str,
    plan: Plan,
    cores: Cores,
    server: ServerProcess,
    variant: str,
    mode: Mode,
    size: int,
    rep: int,
) -> dict[str, Any]:
    """One throughput cell: the echo of ``size``-byte messages in ``mode``."""
    result = client.throughput(
        server.port,
        server.pid,
        client.FRAMINGS[variant],
        size,
        connections=mode.connections,
        window=mode.window,
        warmup=plan.warmup,
        duration=plan.duration,
        cores=cores.measured,
        alone=mode.alone,
    )
    rtts = sorted(result.rtts)
    record = {
        "rep": rep,
        "mode": mode.name,
        "size": size,
        "variant": variant,
        "messages": result.messages,
        "seconds": result.seconds,
        "msgs_per_s": result.messages / result.seconds,
        "p50_us": percentile(rtts, 0.50) * 1e6,
        "p99_us": percentile(rtts, 0.99) * 1e6,
        "server_cpu_s": result.server_cpu,
        "client_cpu_s": result.client_cpu,
        "others_cpu_s": result.others_cpu,
    }
    progress(
        f"{section} {rep + 1}/{plan.reps} {mode.name} "
        f"{SIZE_NAMES.get(size, size)} {variant}: "
        f"{record['msgs_per_s']:,.0f} msg/s, server CPU "
        f"{result.server_cpu / result.seconds:.0%}"
    )
    return record


def cpu_per_message(record: dict[str, Any]) -> float:
    seconds: float = record["server_cpu_s"]
    messages: int = record["messages"]
    return seconds / max(1, messages)


def summarize_throughput(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        cells.setdefault((r["mode"], r["size"]), {}).setdefault(
            r["variant"], []
        ).append(r)
    rows = []
    for (mode, size), by_variant in cells.items():
        adieu_runs = {r["rep"]: r for r in by_variant["adieu"]}
        adieu_share = median(
            r["server_cpu_s"] / r["seconds"] for r in adieu_runs.values()
        )
        for variant in [v for v in VARIANT_NAMES if v in by_variant]:
            runs = by_variant[variant]
            msgs = median(r["msgs_per_s"] for r in runs)
            ratios = [
                adieu_runs[r["rep"]]["msgs_per_s"] / r["msgs_per_s"] for r in runs
            ]
            cpu_ratios = [
                cpu_per_message(r) / cpu_per_message(adieu_runs[r["rep"]]) for r in runs
            ]
            share = median(r["server_cpu_s"] / r["seconds"] for r in runs)
            rows.append(
                {
                    "mode": mode,
                    "size": size,
                    "variant": variant,
                    "msgs_per_s": msgs,
                    "mb_per_s": msgs * size / 1e6,
                    "p50_us": median(r["p50_us"] for r in runs),
                    "p99_us": median(r["p99_us"] for r in runs),
                    "server_cpu_us_per_msg": median(cpu_per_message(r) for r in runs)
                    * 1e6,
                    "server_cpu_share": share,
                    "client_cpu_share": median(
                        r["client_cpu_s"] / r["seconds"] for r in runs
                    ),
                    "others_share": median(
                        r["others_cpu_s"] / r["seconds"] for r in runs
                    ),
                    "adieu_ratio": median(ratios),
                    "cpu_ratio": median(cpu_ratios),
                    "server_bound": share >= SERVER_BOUND,
                    "both_bound": min(share, adieu_share) >= SERVER_BOUND,
                }
            )
    return rows


# ------------------------------------------------------------------- shutdown

SHUTDOWN_LOADS = ("idle", "busy", "stubborn")


def run_shutdown(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    records = []
    for rep in range(max(plan.shutdown_reps, plan.stubborn_reps)):
        for index, n in enumerate(plan.shutdown_ns):
            if rep < plan.stubborn_reps:
                record = bare_cut_cell(cores, n)
                record["rep"] = rep
                records.append(record)
                progress(
                    f"bare cut {rep + 1}/{plan.stubborn_reps} N={n}: "
                    f"{record['seconds'] * 1000:,.1f} ms "
                    f"({record['seconds'] / n * 1e6:.1f} µs per connection; "
                    f"CPU {record['cpu'] * 1000:,.1f} ms, waited for its core "
                    f"{record['waited'] * 1000:,.1f} ms), "
                    f"{record['reset']:,} of {n:,} clients saw the reset"
                )
            for load in rotated(SHUTDOWN_LOADS, rep + index):
                reps = plan.stubborn_reps if load == "stubborn" else plan.shutdown_reps
                if rep >= reps:
                    continue
                record = shutdown_cell(plan, cores, n, load)
                record["rep"] = rep
                records.append(record)
                progress(f"shutdown {rep + 1}/{reps} {describe(record)}")
                for sample in record["disagreement_samples"]:
                    progress(f"  disagreement: {json.dumps(sample)}")
    return records


def shutdown_cell(
    plan: Plan, cores: Cores, n: int, load: str, **server_options: Any
) -> dict[str, Any]:
    """One shutdown of ``n`` connections under ``load`` (one of
    :data:`SHUTDOWN_LOADS`); ``server_options`` go to ``servers.py`` (a
    profile's path, for one)."""
    # Only the stubborn clients reach the grace period; the others get a
    # long one, so that their time is their own.
    grace = plan.grace if load == "stubborn" else 30.0
    server = ServerProcess(
        cores,
        variant="adieu",
        kind="shutdown",
        max_connections=n + 100,
        grace=grace,
        **server_options,
    )
    try:
        bench = client.ShutdownClient(
            server.port,
            n,
            busy=load != "idle",
            stubborn_every=10 if load == "stubborn" else 0,
        )
        bench.connect_all()
        result = bench.run_shutdown(
            server.stdin.fileno(),
            server.stdout.fileno(),
            traffic_seconds=plan.busy_seconds,
            timeout=grace + 60,
            server_pid=server.pid,
            cores=cores.measured,
        )
        # The server's next line, once it has left its block.
        line = bench.answer_rest
        if b"\n" not in line:
            line += server.stdout.readline()
        exit_figures = json.loads(line)
    finally:
        server.close()
    record = dataclasses.asdict(result)
    record.update(
        n=n,
        load=load,
        grace=grace,
        block_exit=exit_figures["block_exit"],
        block_exit_gc=sum(exit_figures["gc"]),
    )
    return record


#: What each client of the bare cut sends before the cut and the server
#: leaves unread (a stubborn client's request is 69 bytes).
_BARE_CUT_REQUEST = b"x" * 64


def bare_cut_cell(cores: Cores, n: int) -> dict[str, Any]:
    """The reference next to the stubborn cells: the floor of the cut, ``n``
    accepted loopback connections reset by a plain Python loop of
    ``setsockopt(SO_LINGER {1, 0})`` and ``close``, without Trio (see
    ``servers.serve_bare_cut``). Each client sends 64 bytes first, left
    unread; after the cut each client checks that it saw the reset."""
    server = ServerProcess(cores, variant="bare", kind="cut", target=n)
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(_BARE_CUT_REQUEST)
            socks.append(sock)
        server.read()  # every connection accepted
        waited = client.process_wait_seconds(server.pid)
        result = server.request("cut")
        waited = client.process_wait_seconds(server.pid) - waited
        reset = 0
        for sock in socks:
            try:
                data = sock.recv(1)
            except ConnectionResetError:
                reset += 1
            else:
                assert not data, "the bare server sends nothing"
    finally:
        for sock in socks:
            sock.close()
        server.close()
    return {
        "n": n,
        "load": "bare cut",
        "seconds": result["seconds"],
        "cpu": result["cpu"],
        # what the server waited for its core meanwhile (an upper bound:
        # counted from before the command to after the answer)
        "waited": waited,
        "reset": reset,
    }


def describe(record: dict[str, Any]) -> str:
    """One shutdown run in a line."""
    srv = record["server"]
    window = record["window_seconds"]
    past = (
        f", {(srv['duration'] - record['grace']) * 1000:+,.0f} ms past the grace"
        if record["load"] == "stubborn"
        else ""
    )
    timeline = srv.get("timeline") or {}
    if (
        record["load"] == "stubborn"
        and timeline.get("resumed_after_deadline") is not None
    ):
        past += (
            f" (the server resumed {timeline['resumed_after_deadline'] * 1000:+,.0f} "
            "ms after the deadline"
        )
        if timeline.get("deadline_step") is not None:
            _, seconds, name = timeline["deadline_step"]
            past += f", after a task step of {seconds * 1000:,.0f} ms ({name})"
        if timeline.get("full_gc_at_deadline") is not None:
            past += (
                ", a full garbage collection of "
                f"{timeline['full_gc_at_deadline'] * 1000:,.0f} ms running at the "
                "deadline"
            )
        if timeline.get("deadline_batch") is not None:
            _, seconds, steps = timeline["deadline_batch"]
            past += (
                f"; the scheduler batch running at the deadline took "
                f"{seconds * 1000:,.0f} ms for {steps:,} task steps"
            )
        past += ")"
    return (
        f"N={record['n']} {record['load']}: {srv['duration'] * 1000:,.0f} ms{past}, "
        f"{srv['counts']['clean']} clean, {record['compliant_cut']} compliant cut, "
        f"{record['disagreements']} disagreements, "
        f"resident set {srv['rss_growth'] / 2**20:+,.1f} MiB during the shutdown, "
        f"{record['lost_replies'] + record['end_mismatches']} lost, "
        f"last SHUTDOWN seen after {record['last_shutdown_seen'] * 1000:,.0f} ms, "
        f"server waited {record['server_wait'] / window:.0%}, "
        f"client waited {record['client_wait'] / window:.0%} for their cores, "
        f"others used {record['others_cpu'] / window:.0%} of a core"
    )


def worst_timeline(runs: list[dict[str, Any]], key: str) -> float | None:
    """The worst run's figure of the server's scheduler timeline, in ms
    (``None`` if no run has it: a server without a task of that name)."""
    values = [
        r["server"]["timeline"][key]
        for r in runs
        if r["server"].get("timeline", {}).get(key) is not None
    ]
    return max(values) * 1000 if values else None


def cut_pass_us(record: dict[str, Any]) -> float | None:
    """About what the cut's pass took per connection it ended, in µs: past
    the grace less the moment the scheduler resumed, divided by the
    connections whose clients saw them end at or after the deadline (reset,
    or closed quietly by the pass once both ENDs were exchanged; ``None`` if
    there were none)."""
    server = record["server"]
    cut = record["ended_after_deadline"]
    if not cut:
        return None
    resumed = server.get("timeline", {}).get("resumed_after_deadline") or 0.0
    return (server["duration"] - record["grace"] - resumed) / cut * 1e6


def summarize_shutdown(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells: dict[tuple[int, str], list[dict[str, Any]]] = {}
    bare: dict[int, list[dict[str, Any]]] = {}
    for r in records:
        if r["load"] == "bare cut":
            bare.setdefault(r["n"], []).append(r)
        else:
            cells.setdefault((r["n"], r["load"]), []).append(r)
    rows = []
    for (n, load), runs in sorted(
        cells.items(), key=lambda kv: (kv[0][0], SHUTDOWN_LOADS.index(kv[0][1]))
    ):
        durations = [r["server"]["duration"] for r in runs]
        grace = runs[0]["grace"]
        clean = [r["server"]["counts"]["clean"] for r in runs]
        passes = [p for p in map(cut_pass_us, runs) if p is not None]
        floor = bare.get(n, []) if load == "stubborn" else []
        rows.append(
            {
                "block_exit_ms": max(r["block_exit"] for r in runs) * 1000,
                "cut_pass_us": median(passes) if passes else None,
                "bare_cut_ms": median(b["seconds"] for b in floor) * 1000
                if floor
                else None,
                "bare_cut_cpu_ms": median(b["cpu"] for b in floor) * 1000
                if floor
                else None,
                "n": n,
                "load": load,
                "grace": grace,
                "duration_ms": median(durations) * 1000,
                "min_ms": min(durations) * 1000,
                "max_ms": max(durations) * 1000,
                "past_grace_ms": (median(durations) - grace) * 1000,
                "worst_past_grace_ms": (max(durations) - grace) * 1000,
                "client_past_grace_ms": max(r["client_past_deadline"] for r in runs)
                * 1000,
                "client_ms": median(r["client_seconds"] for r in runs) * 1000,
                "disagreements": max(r["disagreements"] for r in runs),
                "resumed_ms": worst_timeline(runs, "resumed_after_deadline"),
                "worst_compliant_cut": max(r["compliant_cut"] for r in runs),
                "others_share": max(
                    r["others_cpu"] / r["window_seconds"] for r in runs
                ),
                "server_wait_share": max(
                    r["server_wait"] / r["window_seconds"] for r in runs
                ),
                "client_wait_share": max(
                    r["client_wait"] / r["window_seconds"] for r in runs
                ),
                "clean": median(clean),
                "not_clean": median(
                    r["connections"] - c for r, c in zip(runs, clean, strict=True)
                ),
                "kinds": runs[-1]["server"]["counts"],
                "requests": median(r["requests"] for r in runs),
                "lost_replies": max(r["lost_replies"] for r in runs),
                "end_mismatches": max(r["end_mismatches"] for r in runs),
                "cut_requests": median(r["cut_requests"] for r in runs),
                "compliant_cut": median(r["compliant_cut"] for r in runs),
                "cpu_ms": median(r["server"]["cpu"] for r in runs) * 1000,
                "gc_ms": median(sum(r["server"]["gc"]) for r in runs) * 1000,
                "full_gcs": median(r["server"]["gc_collections"][2] for r in runs),
                "server_cpu_share": median(
                    r["server"]["cpu"] / r["server"]["elapsed"] for r in runs
                ),
            }
        )
    return rows


# --------------------------------------------------------------------- accept

ACCEPT_VARIANTS = ("adieu", "trio_raw")


def run_accept(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    records = []
    m = plan.accept_connections
    for rep in range(plan.accept_reps):
        for variant in rotated(ACCEPT_VARIANTS, rep):
            server = ServerProcess(
                cores, variant=variant, kind="accept", target=m, max_connections=m + 100
            )
            socks = []
            try:
                socks = client.connect_many(server.port, m, client.FRAMINGS[variant])
                answer = server.request(f"wait {m}")
            finally:
                server.close()
                client.close_all(socks)
            rate = (m - 1) / answer["seconds"]
            records.append(
                {
                    "rep": rep,
                    "variant": variant,
                    "connections": m,
                    "seconds": answer["seconds"],
                    "accepts_per_s": rate,
                    "server_cpu_s": answer["cpu"],
                }
            )
            progress(f"accept {rep + 1}/{plan.accept_reps} {variant}: {rate:,.0f}/s")
    return records


def summarize_accept(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    adieu_by_rep = {r["rep"]: r for r in records if r["variant"] == "adieu"}

    def cpu_per_accept(record: dict[str, Any]) -> float:
        seconds: float = record["server_cpu_s"]
        connections: int = record["connections"]
        return seconds / (connections - 1)

    rows = []
    for variant in ACCEPT_VARIANTS:
        runs = [r for r in records if r["variant"] == variant]
        share = median(r["server_cpu_s"] / r["seconds"] for r in runs)
        rows.append(
            {
                "variant": variant,
                "accepts_per_s": median(r["accepts_per_s"] for r in runs),
                "server_cpu_share": share,
                "server_bound": share >= SERVER_BOUND,
                "cpu_us_per_accept": median(cpu_per_accept(r) for r in runs) * 1e6,
                "adieu_ratio": median(
                    adieu_by_rep[r["rep"]]["accepts_per_s"] / r["accepts_per_s"]
                    for r in runs
                ),
                "cpu_ratio": median(
                    cpu_per_accept(r) / cpu_per_accept(adieu_by_rep[r["rep"]])
                    for r in runs
                ),
            }
        )
    return rows


# --------------------------------------------------------------------- memory

#: Connects between two waits for the server: below the listen backlog.
_MEMORY_BATCH = 1000


def run_memory(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    records = []
    for rep in range(plan.memory_reps):
        for index, n in enumerate(plan.memory_ns):
            for variant in rotated(ACCEPT_VARIANTS, rep + index):
                server = ServerProcess(
                    cores, variant=variant, kind="memory", max_connections=n + 100
                )
                socks: list[Any] = []
                try:
                    base = server.ready["baseline"]
                    while len(socks) < n:
                        batch = min(_MEMORY_BATCH, n - len(socks))
                        socks += client.connect_many(
                            server.port, batch, client.FRAMINGS[variant]
                        )
                        server.request(f"wait {len(socks)}")
                    now = server.request("measure")
                finally:
                    server.close()
                    client.close_all(socks)
                heap = (now["heap"] - base["heap"]) / n
                rss = (
                    now["rss"] - base["rss"] - (now["tracing"] - base["tracing"])
                ) / n
                records.append(
                    {
                        "rep": rep,
                        "variant": variant,
                        "n": n,
                        "heap_per_conn": heap,
                        "rss_per_conn": rss,
                    }
                )
                progress(
                    f"memory {rep + 1}/{plan.memory_reps} N={n} {variant}: "
                    f"{heap:,.0f} B heap, {rss:,.0f} B RSS per connection"
                )
    return records


def summarize_memory(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for n in sorted({r["n"] for r in records}):
        raw = {
            r["rep"]: r["heap_per_conn"]
            for r in records
            if r["n"] == n and r["variant"] == "trio_raw"
        }
        for variant in ACCEPT_VARIANTS:
            runs = [r for r in records if r["n"] == n and r["variant"] == variant]
            rows.append(
                {
                    "n": n,
                    "variant": variant,
                    "heap_per_conn": median(r["heap_per_conn"] for r in runs),
                    "rss_per_conn": median(r["rss_per_conn"] for r in runs),
                    "heap_vs_raw": median(
                        r["heap_per_conn"] / raw[r["rep"]] for r in runs
                    ),
                }
            )
    return rows


# ------------------------------------------------- peers, alone, closing
#
# What adieu is weighed against beyond raw Trio: the WebSocket servers a
# Trio user would pick for framed messages with a closing handshake
# (trio-websocket, websockets), a client that sends each message alone (so
# that nothing batches on the server), and the cost of closing every idle
# connection against those servers and a raw Trio graceful close.

VARIANT_NAMES.update(
    trio_websocket="trio-websocket",
    websockets="websockets (Trio)",
    trio_graceful="Trio graceful close",
)
PEER_VARIANTS = ("adieu", "trio_websocket", "websockets")
#: The peers' cell: 1 KiB ping-pong on 10 connections.
PEER_CELL = (PING_PONG, 1024)
ALONE = Mode("one at a time", connections=10, window=1, alone=True)
ALONE_VARIANTS = ("adieu", "trio_raw")
WS_VARIANTS = ("trio_websocket", "websockets")
CLOSE_VARIANTS = ("adieu", "trio_graceful", *WS_VARIANTS)


@dataclasses.dataclass(frozen=True)
class PeerPlan:
    """How much of the peers, alone and closing sections a plan runs."""

    alone_sizes: tuple[int, ...]
    #: N for adieu and the raw Trio graceful close
    close_ns: tuple[int, ...]
    #: N at which the WebSocket servers close too
    ws_close_ns: tuple[int, ...]
    close_reps: int


PEER_PLANS = {
    "full": PeerPlan((64, 1024, 10240), (1000, 5000, 10000), (1000, 5000), 3),
    "quick": PeerPlan((64, 1024, 10240), (1000, 5000, 10000), (1000, 5000), 1),
    "smoke": PeerPlan((64,), (20,), (20,), 1),
}


def run_peers(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    """adieu, trio-websocket and websockets echoing 1 KiB ping-pong."""
    mode, size = PEER_CELL
    servers = {
        v: ServerProcess(cores, variant=v, kind="echo", wait=False)
        for v in PEER_VARIANTS
    }
    for server in servers.values():
        server.wait_ready()
    records = []
    try:
        for rep in range(plan.reps):
            for variant in rotated(PEER_VARIANTS, rep):
                records.append(
                    measure_cell(
                        "peers", plan, cores, servers[variant], variant, mode, size, rep
                    )
                )
    finally:
        for server in servers.values():
            server.close()
    return records


def run_alone(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    """adieu and raw Trio with one message in flight in all."""
    servers = {
        v: ServerProcess(cores, variant=v, kind="echo", wait=False)
        for v in ALONE_VARIANTS
    }
    for server in servers.values():
        server.wait_ready()
    records = []
    try:
        for rep in range(plan.reps):
            for index, size in enumerate(PEER_PLANS[plan.name].alone_sizes):
                for variant in rotated(ALONE_VARIANTS, rep + index):
                    records.append(
                        measure_cell(
                            "alone",
                            plan,
                            cores,
                            servers[variant],
                            variant,
                            ALONE,
                            size,
                            rep,
                        )
                    )
    finally:
        for server in servers.values():
            server.close()
    return records


def run_closing(plan: Plan, cores: Cores) -> list[dict[str, Any]]:
    """Close N idle connections, each server with its own closing handshake:
    adieu's ``shutdown()``, a raw Trio graceful close, trio-websocket's and
    websockets' close handshakes."""
    peer_plan = PEER_PLANS[plan.name]
    records = []
    for rep in range(peer_plan.close_reps):
        for index, n in enumerate(peer_plan.close_ns):
            variants = [
                v
                for v in CLOSE_VARIANTS
                if n in peer_plan.ws_close_ns or v not in WS_VARIANTS
            ]
            for variant in rotated(variants, rep + index):
                records.append(close_cell(cores, variant, n, rep))
    return records


def close_cell(cores: Cores, variant: str, n: int, rep: int) -> dict[str, Any]:
    adieu_server = variant == "adieu"
    server = ServerProcess(
        cores,
        variant=variant,
        kind="shutdown" if adieu_server else "close",
        max_connections=n + 100,
        grace=60.0,
    )
    try:
        bench = client.CloseClient(server.port, n, client.FRAMINGS[variant])
        bench.connect_all()
        if not adieu_server:
            # Every handler has started (adieu's preamble says as much).
            server.request(f"wait {n}")
        result = bench.run_close(
            b"shutdown" if adieu_server else b"close",
            server.stdin.fileno(),
            server.stdout.fileno(),
            timeout=120,
        )
    finally:
        server.close()
    srv = result.server
    record = {
        "rep": rep,
        "n": n,
        "variant": variant,
        "connections": result.connections,
        "clean": result.clean,
        "cut": result.cut,
        "client_seconds": result.client_seconds,
        "duration_s": srv["duration"],
        "cpu_s": srv["cpu"],
        "gc_s": sum(srv["gc"]),
    }
    progress(
        f"closing {rep + 1} N={n} {variant}: {srv['cpu'] / n * 1e6:,.0f} µs CPU "
        f"per connection, {srv['duration'] * 1000:,.0f} ms, {result.clean} clean"
    )
    return record


def summarize_closing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for n in sorted({r["n"] for r in records}):
        adieu_by_rep = {
            r["rep"]: r for r in records if r["n"] == n and r["variant"] == "adieu"
        }
        for variant in CLOSE_VARIANTS:
            runs = [r for r in records if r["n"] == n and r["variant"] == variant]
            if not runs:
                continue
            rows.append(
                {
                    "n": n,
                    "variant": variant,
                    "cpu_us_per_conn": median(r["cpu_s"] / n for r in runs) * 1e6,
                    "cpu_ms": median(r["cpu_s"] for r in runs) * 1000,
                    "duration_ms": median(r["duration_s"] for r in runs) * 1000,
                    "gc_ms": median(r["gc_s"] for r in runs) * 1000,
                    "clean": median(r["clean"] for r in runs),
                    # adieu's CPU per connection divided by this server's
                    "adieu_ratio": median(
                        adieu_by_rep[r["rep"]]["cpu_s"] / r["cpu_s"] for r in runs
                    ),
                }
            )
    return rows


def render_peers(summary: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """The tables of the peers, alone and closing sections that ran."""
    out: list[str] = []
    if summary.get("peers"):
        out += [
            "",
            f"### WebSocket peers (echo, {PEER_CELL[0].name} "
            f"{SIZE_NAMES[PEER_CELL[1]]}, {PEER_CELL[0].connections} connections; "
            f"median of {info['reps']})",
            "",
            "The same client speaks WebSocket to trio-websocket and websockets "
            "(its `websockets.trio` server): binary frames, masked with the key 0. "
            "CPU ÷: that server's CPU per message divided by adieu's (above 1: "
            "adieu spends less).",
            "",
        ]
        out.append(throughput_table(summary["peers"]))
    if summary.get("alone"):
        out += [
            "",
            f"### One message at a time ({ALONE.connections} connections taking "
            f"turns, one message in flight in all; median of {info['reps']})",
            "",
            "Nothing batches: the server wakes up for every message. The server "
            "is never the bottleneck here (the round trip is), so compare CPU per "
            "message (CPU ÷).",
            "",
        ]
        out.append(throughput_table(summary["alone"]))
    if not summary.get("closing"):
        return out
    out += [
        "",
        "### Closing idle connections (server CPU from the command to the "
        f"last handler's end; median of {info['close_reps']})",
        "",
        "adieu: `server.shutdown()` (SHUTDOWN, the client's END and FIN, the "
        "server's END and FIN). Trio graceful close: a goodbye message, "
        "`send_eof`, read to the client's EOF, close. trio-websocket: "
        "`aclose()` of every connection (Close frame, the client's Close, "
        "TCP close). websockets: `Server.aclose()`. adieu ÷: adieu's CPU "
        "divided by that server's (below 1: adieu spends less).",
        "",
    ]
    rows = [
        [
            f"{r['n']:,}",
            VARIANT_NAMES[r["variant"]],
            f"{r['cpu_us_per_conn']:,.0f}",
            f"{r['cpu_ms']:,.0f}",
            f"{r['duration_ms']:,.0f}",
            f"{r['gc_ms']:,.0f}",
            f"{r['clean']:,.0f}",
            versus(r, "adieu_ratio"),
        ]
        for r in summary["closing"]
    ]
    out.append(
        table(
            [
                "N",
                "server",
                "srv CPU µs/conn",
                "srv CPU ms",
                "wall ms",
                "GC ms",
                "clean",
                "adieu ÷",
            ],
            rows,
            "rlrrrrrr",
        )
    )
    return out


#: The columns of a throughput table: heading, alignment, the cell from a
#: summary row, and whether only the wide table (the main section) has it.
THROUGHPUT_COLUMNS: tuple[
    tuple[str, str, Callable[[dict[str, Any]], str], bool], ...
] = (
    ("mode", "l", lambda r: str(r["mode"]), False),
    ("size", "r", lambda r: SIZE_NAMES.get(r["size"], str(r["size"])), False),
    ("server", "l", lambda r: VARIANT_NAMES[r["variant"]], False),
    (
        "msg/s",
        "r",
        lambda r: flagged(f"{r['msgs_per_s']:,.0f}", r["server_bound"]),
        False,
    ),
    ("MB/s", "r", lambda r: f"{r['mb_per_s']:,.1f}", True),
    ("p50", "r", lambda r: f"{r['p50_us']:,.0f}", False),
    ("p99", "r", lambda r: f"{r['p99_us']:,.0f}", True),
    ("srv CPU µs/msg", "r", lambda r: f"{r['server_cpu_us_per_msg']:,.1f}", False),
    ("srv CPU", "r", lambda r: f"{r['server_cpu_share']:.0%}", False),
    ("client CPU", "r", lambda r: f"{r['client_cpu_share']:.0%}", True),
    (
        "others",
        "r",
        lambda r: disturbed(f"{r['others_share']:.0%}", r["others_share"]),
        False,
    ),
    (
        "adieu ÷",
        "r",
        lambda r: (
            "—"
            if r["variant"] == "adieu"
            else flagged(f"{r['adieu_ratio']:.2f}x", r["both_bound"])
        ),
        True,
    ),
    ("CPU ÷", "r", lambda r: versus(r, "cpu_ratio"), False),
)


def throughput_table(rows_in: list[dict[str, Any]], wide: bool = False) -> str:
    """The echo figures of summary rows: every column if ``wide``, else the
    server's rate, latency and CPU (the peers and one-at-a-time sections)."""
    columns = [c for c in THROUGHPUT_COLUMNS if wide or not c[3]]
    return table(
        [heading for heading, _, _, _ in columns],
        [[cell(r) for _, _, cell, _ in columns] for r in rows_in],
        "".join(align for _, align, _, _ in columns),
    )


def evaluate_lifecycle_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of the connection lifecycle's rebuild, each by server CPU
    (a ratio of CPU per message or per connection), which a busy machine
    disturbs far less than a rate."""
    targets: list[dict[str, Any]] = []

    def add(
        name: str,
        goal: str,
        check: Callable[[float], bool],
        value: float | None,
        measured: float | None = None,
    ) -> None:
        targets.append(
            {
                "target": name,
                "goal": goal,
                "measured": "" if measured is None else _shown(measured, "x"),
                "met": None if measured is None else check(measured),
                "cpu_measured": _shown(value, "x"),
                "cpu_met": None if value is None else check(value),
            }
        )

    def at_least(goal: float) -> Callable[[float], bool]:
        return functools.partial(operator.le, goal)

    def at_most(goal: float) -> Callable[[float], bool]:
        return functools.partial(operator.ge, goal)

    # CPU ÷ is that server's CPU per message over adieu's; adieu's speed
    # relative to it is the same ratio.
    cells = {(r["mode"], r["size"], r["variant"]): r for r in summary["throughput"]}
    for mode, size, variant, goal in (
        ("ping-pong", 64, "trio_raw", 0.95),
        ("ping-pong", 1024, "trio_raw", 0.95),
        ("pipelined", 64, "trio_raw", 0.8),
    ):
        row = cells.get((mode, size, variant))
        if row is not None:
            add(
                f"{mode} {SIZE_NAMES[size]}: adieu ÷ {VARIANT_NAMES[variant]}",
                f"≥ {goal:g}x",
                at_least(goal),
                row["cpu_ratio"],
                row["adieu_ratio"],
            )
    for row in summary["alone"]:
        if row["variant"] != "adieu":
            add(
                f"one at a time {SIZE_NAMES[row['size']]}: adieu ÷ Trio raw",
                "≥ 0.9x",
                at_least(0.9),
                row["cpu_ratio"],
            )
    for row in summary["peers"]:
        if row["variant"] != "adieu":
            add(
                f"ping-pong 1 KiB: adieu ahead of {VARIANT_NAMES[row['variant']]}",
                "> 1x",
                functools.partial(operator.lt, 1.0),
                row["cpu_ratio"],
            )
    closing = {(r["n"], r["variant"]): r for r in summary["closing"]}
    for (n, variant), row in sorted(closing.items()):
        if variant in WS_VARIANTS:
            add(
                f"closing {n:,}: adieu ahead of {VARIANT_NAMES[variant]} (adieu ÷ it)",
                "< 1x",
                functools.partial(operator.gt, 1.0),
                row["adieu_ratio"],
            )
        elif variant == "trio_graceful":
            add(
                f"closing {n:,}: adieu ÷ Trio graceful close, CPU per connection",
                "≤ 1.5x",
                at_most(1.5),
                row["adieu_ratio"],
            )
    small, large = closing.get((1000, "adieu")), closing.get((10000, "adieu"))
    if small is not None and large is not None:
        add(
            "closing: adieu's CPU at N=10,000 ÷ at N=1,000",
            "≤ 11x",
            at_most(11),
            large["cpu_ms"] / small["cpu_ms"],
        )
    for row in summary["memory"]:
        if row["variant"] == "adieu":
            add(
                f"idle heap per connection, N={row['n']:,}: adieu ÷ Trio raw",
                "≤ 1.3x",
                at_most(1.3),
                None,
                row["heap_vs_raw"],
            )
    return targets


# -------------------------------------------------------------------- targets


def _shown(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    if unit == "x":
        return f"{value:,.3f}{unit}"
    return f"{value:,.0f}{unit}" if abs(value) >= 100 else f"{value:,.1f}{unit}"


def undisturbed(row: dict[str, Any]) -> bool:
    """Whether a shutdown cell ran on a quiet machine: neither the server
    nor the client waited much for its core, and other processes stayed
    below the disturbance threshold on the measured cores (worst runs)."""
    shares = (row["server_wait_share"], row["client_wait_share"], row["others_share"])
    return all(share <= DISTURBED for share in shares)


def evaluate_targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue, measured as the issue states it (wall
    clock), and where it has one, its equivalent in server CPU time, which a
    busy machine disturbs far less."""
    targets: list[dict[str, Any]] = []

    def add(
        name: str,
        goal: str,
        check: Callable[[float], bool],
        unit: str,
        measured: float | None,
        by_cpu: float | None = None,
        server_bound: bool = True,
        quiet: bool = True,
    ) -> None:
        if measured is None:
            return  # that cell was not run (a smoke run, or --only)
        targets.append(
            {
                "target": name,
                "goal": goal,
                "measured": _shown(measured, unit)
                + ("" if server_bound else FLAG)
                + ("" if quiet else DISTURBED_FLAG),
                "met": None if measured is None else check(measured),
                "cpu_measured": "" if by_cpu is None else _shown(by_cpu, unit),
                "cpu_met": None if by_cpu is None else check(by_cpu),
            }
        )

    cells = {(r["mode"], r["size"], r["variant"]): r for r in summary["throughput"]}
    for mode, size, variant, goal in (
        ("ping-pong", 1024, "trio_naive", 1.0),
        ("ping-pong", 10240, "trio_raw", 0.95),
        ("ping-pong", 102400, "trio_raw", 0.90),
        ("ping-pong", 1024, "asyncio", 1.1),
        ("pipelined", 64, "trio_naive", 2.0),
    ):
        row = cells.get((mode, size, variant))
        add(
            f"{mode} {SIZE_NAMES[size]}: adieu ÷ {VARIANT_NAMES[variant]}",
            f"≥ {goal:g}x",
            functools.partial(operator.le, goal),
            "x",
            None if row is None else float(row["adieu_ratio"]),
            None if row is None else float(row["cpu_ratio"]),
            row is None or bool(row["both_bound"]),
        )

    shutdown = {(r["n"], r["load"]): r for r in summary["shutdown"]}
    busy = shutdown.get((1000, "busy"))
    if busy is not None:
        add(
            "shutdown of 1,000 busy connections",
            "≤ 300 ms",
            lambda v: v <= 300,
            " ms",
            busy["duration_ms"],
            busy["cpu_ms"],
        )
    if summary["shutdown"]:
        lost = int(
            sum(r["lost_replies"] + r["end_mismatches"] for r in summary["shutdown"])
        )
        add("lost replies, every shutdown run", "0", lambda v: v == 0, "", lost)
    for load in ("busy", "idle"):
        small, large = shutdown.get((1000, load)), shutdown.get((5000, load))
        if small is not None and large is not None:
            add(
                f"shutdown time N=5,000 ÷ N=1,000, {load}",
                "≤ 5x",
                lambda v: v <= 5,
                "x",
                large["duration_ms"] / small["duration_ms"],
                large["cpu_ms"] / small["cpu_ms"],
            )
    if summary["shutdown"]:
        add(
            "disagreements between the server's report and the clients, "
            "every shutdown run",
            "0",
            lambda v: v == 0,
            "",
            int(sum(r["disagreements"] for r in summary["shutdown"])),
        )
    for row in summary["shutdown"]:
        if row["load"] == "stubborn":
            add(
                f"10% stubborn clients, N={row['n']:,}: last connection ended "
                "past the grace period (worst run)",
                "≤ 50 ms",
                lambda v: v <= 50,
                " ms",
                row["worst_past_grace_ms"],
                quiet=undisturbed(row),
            )
    stubborn = shutdown.get((1000, "stubborn"))
    if stubborn is not None:
        add(
            f"10% stubborn clients, N=1,000, grace {stubborn['grace']:g} s: "
            "compliant clients cut (worst run)",
            "0",
            lambda v: v == 0,
            "",
            int(stubborn["worst_compliant_cut"]),
            quiet=undisturbed(stubborn),
        )
    accept = {r["variant"]: r for r in summary["accept"]}
    if "trio_raw" in accept:
        add(
            "accept rate: adieu ÷ trio.serve_listeners",
            "≥ 0.8x",
            lambda v: v >= 0.8,
            "x",
            accept["trio_raw"]["adieu_ratio"],
            accept["trio_raw"]["cpu_ratio"],
        )
    for row in summary["memory"]:
        if row["variant"] == "adieu":
            add(
                f"idle heap per connection, N={row['n']:,}",
                "≤ 10 KiB",
                lambda v: v <= 10,
                " KiB",
                row["heap_per_conn"] / 1024,
            )
    return targets


# -------------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A Markdown table; ``align`` has one letter per column, l or r."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (w + 1) + (":" if a == "r" else "-")
            for w, a in zip(widths, align, strict=True)
        )
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def flagged(text: str, bound: bool) -> str:
    return text if bound else text + FLAG


def versus(row: dict[str, Any], ratio: str) -> str:
    """A ratio to adieu, in the row of another server; a dash in adieu's."""
    return "—" if row["variant"] == "adieu" else f"{row[ratio]:.2f}x"


def disturbed(text: str, share: float) -> str:
    return text + DISTURBED_FLAG if share > DISTURBED else text


def render(
    summary: dict[str, Any], targets: list[dict[str, Any]], info: dict[str, Any]
) -> str:
    out = [
        f"## Run: {info['plan']} — {info['date']}",
        "",
        f"{info['machine']}; Python {info['python']}, trio {info['trio']}, "
        f"adieu {info['adieu']} ({info['commit']}); {info['cores']}. "
        f"Took {info['elapsed']:.0f} s; other processes used "
        f"{info['others_share']:.0%} of a core on average meanwhile (load "
        f"average {info['load_before']} before, {info['load_after']} after).",
        "",
    ]
    if summary.get("throughput"):
        out += [
            f"### Throughput (echo; median of {info['reps']}; ratio = adieu ÷ that "
            "server, median of per-round ratios)",
            "",
            f"Ping-pong: {PING_PONG.connections} connections, one message in flight on "
            f"each. Pipelined: {PIPELINED.connections} connection, {PIPELINED.window} "
            "messages in flight. MB/s counts payload one way. Round trips in µs. "
            "CPU: share of one core. "
            f"{FLAG}: the server used less than {SERVER_BOUND:.0%} of its core, so it "
            "was not the bottleneck (or could not get its core). Others: CPU used "
            "on the two cores by anything but the server and the client "
            f"(other processes, interrupts); {DISTURBED_FLAG}: above {DISTURBED:.0%}, "
            "the cell was disturbed. adieu ÷: adieu's msg/s divided by that "
            f"server's ({FLAG} if either server was below {SERVER_BOUND:.0%}). "
            "CPU ÷: that server's CPU per message divided by adieu's (above 1: "
            "adieu spends less CPU per message), less sensitive to a busy machine.",
            "",
        ]
        out.append(throughput_table(summary["throughput"], wide=True))
    if summary.get("shutdown"):
        out += [
            "",
            f"### Graceful shutdown (adieu; median of {info['shutdown_reps']} "
            f"runs, {info['stubborn_reps']} for the stubborn cells; "
            "worst run where it says so)",
            "",
            "`server.shutdown()` from the call to the end of the last connection "
            "(the server's report). Idle: clients only answer SHUTDOWN. Busy: every "
            "client keeps a 64 B request in flight. Both get a 30 s grace period, "
            "which they never reach, so that their time is their own. Stubborn: "
            "10% of the clients ignore SHUTDOWN and keep sending, grace period "
            f"{info['grace']:g} s: the last connections end when the server cuts "
            "them at the deadline. Past grace: the shutdown's duration less the "
            "grace period, median (worst run); client: when the client saw the "
            "last connection end, relative to the server's deadline (the same "
            "monotonic clock in both processes; it includes the client's own "
            "delay in noticing, worst run). Resumed: the first moment past the "
            "deadline at which the server's scheduler could act (a task step "
            "began, or its wait for I/O ended), from Trio's instrument hooks in "
            "the server (worst run): past grace less resumed is about what the "
            "cut's pass took. Pass µs/conn: that, divided by the connections it "
            "ended (those whose clients saw them end at or after the deadline: "
            "reset, or closed quietly once both ENDs were exchanged; median). "
            "Bare cut: the reference, the floor of that pass on "
            "this machine: as many loopback connections, accepted by a plain "
            "Python process without Trio (each client's 64 bytes left unread), "
            "reset in a plain loop of setsockopt(SO_LINGER 0) and close (median; "
            "in brackets its CPU time). Block exit: from the report to the end "
            "of the server's `async with` block, the handlers unwinding after the "
            "cut (worst run; less the time the benchmark's own answer took). "
            "Compliant cut: "
            "clients that answered SHUTDOWN but did not get the server's END and "
            "EOF (worst run). Disagreements: connections where the server's report "
            "and the client's experience differ (server CLEAN without the client "
            "getting the server's END and EOF, or the reverse; matched by the "
            "client's port; worst run). Lost replies: requests a compliant client "
            "sent without receiving the reply on a connection that ended with the "
            "server's END, plus server END counts that differ from the client's "
            "count (worst run). Srv CPU: share of a core the server used during "
            "the shutdown. Srv waited: share of the traffic and the shutdown the "
            "server spent runnable but waiting for its core (worst run; "
            f"{DISTURBED_FLAG} above {DISTURBED:.0%}: other processes took it). "
            "Others: CPU used "
            "on the two measured cores by other processes during the traffic and "
            "the shutdown "
            f"(worst run; {DISTURBED_FLAG} above {DISTURBED:.0%}: disturbed). GC "
            "ms: time in the garbage collector during the shutdown (in brackets: "
            "full collections).",
            "",
        ]
        rows = []
        for r in summary["shutdown"]:
            stubborn = r["load"] == "stubborn"
            rows.append(
                [
                    f"{r['n']:,}",
                    r["load"],
                    f"{r['grace']:g}",
                    f"{r['duration_ms']:,.0f}",
                    f"{r['min_ms']:,.0f}-{r['max_ms']:,.0f}",
                    f"{r['past_grace_ms']:+,.0f} ({r['worst_past_grace_ms']:+,.0f})"
                    if stubborn
                    else "",
                    f"{r['client_past_grace_ms']:+,.0f}" if stubborn else "",
                    f"{r['resumed_ms']:+,.0f}"
                    if stubborn and r["resumed_ms"] is not None
                    else "",
                    f"{r['cut_pass_us']:,.1f}"
                    if stubborn and r["cut_pass_us"] is not None
                    else "",
                    f"{r['bare_cut_ms']:,.1f} ({r['bare_cut_cpu_ms']:,.1f})"
                    if stubborn and r["bare_cut_ms"] is not None
                    else "",
                    f"{r['block_exit_ms']:,.0f}",
                    f"{r['worst_compliant_cut']:,}",
                    f"{r['disagreements']:,}",
                    f"{r['lost_replies'] + r['end_mismatches']}",
                    f"{r['clean']:,.0f}",
                    f"{r['not_clean']:,.0f}",
                    f"{r['requests']:,.0f}",
                    f"{r['cpu_ms']:,.0f}",
                    f"{r['server_cpu_share']:.0%}",
                    disturbed(f"{r['server_wait_share']:.0%}", r["server_wait_share"]),
                    disturbed(f"{r['others_share']:.0%}", r["others_share"]),
                    f"{r['gc_ms']:,.0f} ({r['full_gcs']:.0f})",
                ]
            )
        out.append(
            table(
                [
                    "N",
                    "load",
                    "grace s",
                    "shutdown ms",
                    "min-max",
                    "past grace ms",
                    "client: past grace ms",
                    "resumed ms",
                    "pass µs/conn",
                    "bare cut ms (CPU)",
                    "block exit ms",
                    "compliant cut",
                    "disagreements",
                    "lost replies",
                    "clean",
                    "not clean",
                    "requests",
                    "srv CPU ms",
                    "srv CPU",
                    "srv waited",
                    "others",
                    "GC ms (full)",
                ],
                rows,
                "rlrrrrrrrrrrrrrrrrrrrr",
            )
        )
    if summary.get("accept"):
        out += [
            "",
            f"### Accept rate (median of {info['accept_reps']}; "
            f"{info['accept_connections']:,} connections, timed in the server from "
            "the first handler start to the last)",
            "",
        ]
        rows = [
            [
                "adieu" if r["variant"] == "adieu" else "trio.serve_listeners",
                flagged(f"{r['accepts_per_s']:,.0f}", r["server_bound"]),
                f"{r['cpu_us_per_accept']:,.0f}",
                f"{r['server_cpu_share']:.0%}",
                versus(r, "adieu_ratio"),
                versus(r, "cpu_ratio"),
            ]
            for r in summary["accept"]
        ]
        out.append(
            table(
                [
                    "server",
                    "connections/s",
                    "srv CPU µs/conn",
                    "srv CPU",
                    "adieu ÷",
                    "CPU ÷",
                ],
                rows,
                "lrrrrr",
            )
        )
    if summary.get("memory"):
        out += [
            "",
            f"### Memory per idle connection (median of {info['memory_reps']})",
            "",
            "Heap: tracemalloc's traced memory; RSS: resident set growth less "
            "tracemalloc's own. Both divided by N. Kernel socket buffers are not "
            "included.",
            "",
        ]
        rows = [
            [
                f"{r['n']:,}",
                "adieu" if r["variant"] == "adieu" else "Trio raw",
                f"{r['heap_per_conn']:,.0f}",
                f"{r['rss_per_conn']:,.0f}",
                f"{r['heap_vs_raw']:.2f}x",
            ]
            for r in summary["memory"]
        ]
        out.append(
            table(
                ["N", "server", "heap B/conn", "RSS B/conn", "heap ÷ Trio raw"],
                rows,
                "rlrrr",
            )
        )
    out += render_peers(summary, info)
    out += [
        "",
        "### Targets",
        "",
        "Measured as the issue states them (throughput and accept rate: ratios "
        "of rates; shutdown: wall-clock time), and where there is one, the same "
        "figure from the server's CPU time (ratios of CPU per message or per "
        "connection; CPU ms of the shutdown), which other load on the machine "
        f"disturbs far less. {FLAG}: a server of that cell was not the "
        f"bottleneck, so trust the CPU figure. {DISTURBED_FLAG}: a shutdown "
        f"cell where the server or the client waited for its core more than "
        f"{DISTURBED:.0%} of the time or other processes used more than "
        f"{DISTURBED:.0%} of a core: "
        "a time measured there includes waiting for the CPU; repeat the run "
        "on a quiet machine before reading a miss as the server's.",
        "",
    ]
    verdict = {True: "met", False: "MISSED", None: ""}
    rows = [
        [
            t["target"],
            t["goal"],
            t["measured"],
            verdict[t["met"]],
            t["cpu_measured"],
            verdict[t["cpu_met"]],
        ]
        for t in targets
    ]
    out.append(
        table(
            ["target", "goal", "measured", "", "by server CPU", ""],
            rows,
            "llrlrl",
        )
    )
    return "\n".join(out)


def plot(summary: dict[str, Any], path: Path) -> bool:
    """Shutdown time against N; ``False`` if matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    labels = {
        "idle": "idle",
        "busy": "busy (requests in flight)",
        "stubborn": "10% stubborn: time past the grace period",
    }
    for load in SHUTDOWN_LOADS:
        rows = [r for r in summary["shutdown"] if r["load"] == load]
        if not rows:
            continue
        values = [
            r["past_grace_ms"] if load == "stubborn" else r["duration_ms"] for r in rows
        ]
        ax.plot(
            [r["n"] for r in rows],
            [max(v, 0.1) for v in values],
            marker="o",
            label=labels[load],
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections (N)")
    ax.set_ylabel("ms")
    ax.set_title("adieu: graceful shutdown time against N")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def own_cpu_seconds() -> float:
    """CPU time of this process and of its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def environment(plan: Plan, cores: Cores) -> dict[str, Any]:
    machine = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    machine = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    commit = "unknown commit"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        commit = f"commit {head}" + (" with local changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "plan": plan.name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{machine}, {os.cpu_count()} cores, Linux {platform.release()}",
        "python": platform.python_version(),
        "trio": metadata.version("trio"),
        "adieu": metadata.version("adieu"),
        "commit": commit,
        "cores": cores.describe(),
        "reps": plan.reps,
        "shutdown_reps": plan.shutdown_reps,
        "stubborn_reps": plan.stubborn_reps,
        "accept_reps": plan.accept_reps,
        "memory_reps": plan.memory_reps,
        "accept_connections": plan.accept_connections,
        "grace": plan.grace,
        "close_reps": PEER_PLANS[plan.name].close_reps,
        "load_before": load_average(),
    }


def load_average() -> str:
    """The kernel's 1, 5 and 15 minute load averages (runnable tasks: on 2
    cores, anything above about 2 means the run competed for CPU)."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


#: The cells the profile runs: the throughput targets.
PROFILE_CELLS = ((PING_PONG, 1024), (PIPELINED, 64), (PING_PONG, 102400))


def profile(cores: Cores, path: Path, seconds: float) -> None:
    """Run the adieu echo server under cProfile through the target cells and
    print where its time goes."""
    server = ServerProcess(cores, variant="adieu", kind="echo", profile=str(path))
    try:
        for mode, size in PROFILE_CELLS:
            result = client.throughput(
                server.port,
                server.pid,
                client.ADIEU,
                size,
                connections=mode.connections,
                window=mode.window,
                warmup=0.1,
                duration=seconds,
            )
            progress(
                f"profiled {mode.name} {SIZE_NAMES[size]}: "
                f"{result.messages / result.seconds:,.0f} msg/s under the profiler"
            )
    finally:
        server.close()
    print_profile(path, "the adieu echo server")


def print_profile(path: Path, what: str) -> None:
    """The top functions of the cProfile statistics at ``path``."""
    import pstats

    stats = pstats.Stats(str(path))
    print(f"## Profile of {what} ({path})\n")
    print("By own time:")
    stats.sort_stats("tottime").print_stats(25)
    print("By cumulative time, adieu's functions:")
    stats.sort_stats("cumulative").print_stats("adieu", 25)


def profile_shutdown(
    plan: Plan, cores: Cores, path: Path, n: int, load: str = "stubborn"
) -> None:
    """Run one shutdown cell with the server's shutdown under cProfile and
    print where its time goes."""
    record = shutdown_cell(plan, cores, n, load, profile=str(path))
    progress(f"profiled shutdown {describe(record)} (under the profiler)")
    print_profile(path, f"the adieu server's shutdown, N={n:,} {load}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quick",
        action="store_true",
        help="a short run (4-6 minutes): every cell, fewer and shorter rounds",
    )
    group.add_argument(
        "--smoke", action="store_true", help="seconds: check that every variant runs"
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write every figure as JSON"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="shutdown time against N as PNG (needs matplotlib; default for the "
        "full run: bench/shutdown_time.png)",
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
        metavar="SECTION",
        help=f"run only this section ({', '.join(SECTIONS)}); repeatable",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="PATH",
        help="instead of the benchmark: profile the adieu server (cProfile) "
        "through the throughput targets' cells, write the stats to PATH and "
        "print the top functions",
    )
    parser.add_argument(
        "--profile-shutdown",
        type=int,
        metavar="N",
        help="with --profile: profile the server's shutdown of N connections, "
        "10%% of them stubborn (the plan's grace period), instead",
    )
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    cores = Cores()
    raise_file_limit(plan)
    if args.profile is not None and args.profile_shutdown is not None:
        profile_shutdown(plan, cores, args.profile, args.profile_shutdown)
        return 0
    if args.profile is not None:
        profile(cores, args.profile, seconds=0.5 if args.smoke else 3.0)
        return 0
    started = time.monotonic()
    busy_before, own_before = (
        client.cores_busy_seconds(cores.measured),
        own_cpu_seconds(),
    )
    info = environment(plan, cores)
    progress(
        f"{plan.name} run; {cores.describe()}; load average "
        f"{info['load_before']} before starting"
    )

    sections = {
        "throughput": run_throughput,
        "shutdown": run_shutdown,
        "accept": run_accept,
        "memory": run_memory,
        "peers": run_peers,
        "alone": run_alone,
        "closing": run_closing,
    }
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in SECTIONS}
    for name in SECTIONS:
        if args.only and name not in args.only:
            continue
        begun = time.monotonic()
        records[name] = sections[name](plan, cores)
        info[f"{name}_seconds"] = time.monotonic() - begun
        progress(f"{name}: {info[f'{name}_seconds']:.1f} s")
    summaries: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
        "throughput": summarize_throughput,
        "shutdown": summarize_shutdown,
        "accept": summarize_accept,
        "memory": summarize_memory,
        "peers": summarize_throughput,
        "alone": summarize_throughput,
        "closing": summarize_closing,
    }
    summary = {
        name: summaries[name](runs) if runs else [] for name, runs in records.items()
    }
    targets = evaluate_targets(summary) + evaluate_lifecycle_targets(summary)
    info["elapsed"] = time.monotonic() - started
    others = client.cores_busy_seconds(cores.measured) - busy_before
    others -= own_cpu_seconds() - own_before
    info["others_share"] = max(0.0, others) / info["elapsed"]
    info["load_after"] = load_average()
    print(render(summary, targets, info))

    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "environment": info,
                    "records": records,
                    "summary": summary,
                    "targets": targets,
                },
                indent=1,
            )
        )
    plot_path = (
        args.plot
        if args.plot is not None
        else (HERE / "shutdown_time.png" if plan is FULL else None)
    )
    if plot_path is not None and not plot(summary, plot_path):
        progress("matplotlib is not installed (pip install -e '.[bench]'): no plot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
