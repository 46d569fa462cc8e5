"""The benchmark's smoke mode, so that the benchmark cannot rot.

``bench/run.py --smoke`` runs every variant of every section for a moment.
Its figures mean nothing (a test run shares the machine with everything
else), so nothing here looks at a speed; what is checked is that each
variant ran, that the tables were printed, and what must hold whatever the
speed: a graceful shutdown loses no reply, it cuts only the clients that
ignore SHUTDOWN, and the server's report says what each client saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"

SERVERS = (
    "adieu",
    "Trio raw (unframed)",
    "Trio naive length prefix",
    "asyncio readexactly",
)
HEADINGS = (
    "### Throughput",
    "### Graceful shutdown",
    "### Accept rate",
    "### Memory per idle connection",
    "### WebSocket peers",
    "### One message at a time",
    "### Closing idle connections",
    "### Targets",
)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    results = tmp_path_factory.mktemp("bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--json", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(results.read_text())


@pytest.mark.slow
def test_smoke_run_prints_every_table(smoke: tuple[str, dict[str, Any]]) -> None:
    output, _ = smoke
    for heading in HEADINGS:
        assert heading in output
    for mode in ("ping-pong", "pipelined"):
        for server in SERVERS:
            assert any(
                line.startswith(f"| {mode} ") and f"| {server} " in line
                for line in output.splitlines()
            ), (mode, server)


@pytest.mark.slow
def test_smoke_run_exchanges_messages_with_every_throughput_variant(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    _, results = smoke
    cells = {
        (r["mode"], r["size"], r["variant"]): r["messages"]
        for r in results["records"]["throughput"]
    }
    variants = {variant for _, _, variant in cells}
    assert variants == {"adieu", "trio_raw", "trio_naive", "asyncio"}
    assert len(cells) == 2 * 2 * 4  # two modes, two sizes, four servers
    assert all(messages > 0 for messages in cells.values())


@pytest.mark.slow
def test_smoke_shutdowns_lose_no_reply_and_cut_only_stubborn_clients(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    _, results = smoke
    records = results["records"]["shutdown"]
    runs = [r for r in records if r["load"] != "bare cut"]
    assert {r["load"] for r in runs} == {"idle", "busy", "stubborn"}
    for run in runs:
        assert run["block_exit"] >= 0
        assert run["lost_replies"] == 0
        assert run["end_mismatches"] == 0
        # The server's report and every client agree on how each
        # connection ended.
        assert run["disagreements"] == 0, run["disagreement_samples"]
        # Every compliant client ended cleanly or was told it was cut (a
        # slow machine may need more than the grace period); every stubborn
        # one was cut, by a reset.
        assert (
            run["clean"] + run["compliant_cut"] == run["connections"] - run["stubborn"]
        )
        assert run["server"]["counts"]["clean"] == run["clean"]
        assert run["reset"] >= run["stubborn"]
    assert any(r["stubborn"] > 0 for r in runs)
    # The reference next to the stubborn cells: a bare cut of as many
    # connections, every client of which saw the reset.
    bare = [r for r in records if r["load"] == "bare cut"]
    assert {r["n"] for r in bare} == {r["n"] for r in runs}
    assert all(r["reset"] == r["n"] for r in bare)


@pytest.mark.slow
def test_smoke_run_measures_accept_and_memory_for_adieu_and_raw_trio(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    _, results = smoke
    for section in ("accept", "memory"):
        variants = {r["variant"] for r in results["records"][section]}
        assert variants == {"adieu", "trio_raw"}, section


@pytest.mark.slow
def test_smoke_run_echoes_with_the_websocket_peers_and_one_message_at_a_time(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    _, results = smoke
    for section, variants in (
        ("peers", {"adieu", "trio_websocket", "websockets"}),
        ("alone", {"adieu", "trio_raw"}),
    ):
        records = results["records"][section]
        assert {r["variant"] for r in records} == variants, section
        assert all(r["messages"] > 0 for r in records), section


@pytest.mark.slow
def test_smoke_run_closes_every_connection_with_each_closing_handshake(
    smoke: tuple[str, dict[str, Any]],
) -> None:
    _, results = smoke
    records = results["records"]["closing"]
    assert {r["variant"] for r in records} == {
        "adieu",
        "trio_graceful",
        "trio_websocket",
        "websockets",
    }
    for record in records:
        # Every connection ended with its server's handshake, then EOF.
        assert record["clean"] == record["connections"] == record["n"], record


@pytest.mark.slow
def test_smoke_run_of_chosen_sections_prints_only_their_tables(
    tmp_path: Path,
) -> None:
    results = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--smoke",
            "--only",
            "shutdown",
            "--only",
            "closing",
            "--json",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for heading in ("### Graceful shutdown", "### Closing idle connections"):
        assert heading in done.stdout
    for heading in ("### Throughput", "### WebSocket peers", "### One message at a"):
        assert heading not in done.stdout
    records = json.loads(results.read_text())["records"]
    assert {name for name, runs in records.items() if runs} == {"shutdown", "closing"}


ANATOMY = RUN.parent / "anatomy.py"


@pytest.mark.slow
def test_anatomy_smoke_counts_every_scenario_for_both_servers() -> None:
    """``bench/anatomy.py --smoke``: a row for each operation and server,
    each with task steps, Python calls and system calls counted (none of
    them zero: a profile function that stopped counting would show), then
    the heap an idle connection holds, for both servers, in all and by
    owner."""
    done = subprocess.run(
        [sys.executable, str(ANATOMY), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    counts_table, heap_table = done.stdout.split("\n\n", 1)
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in counts_table.splitlines()[2:]
    ]
    operations = {row[0] for row in rows}
    assert len(operations) == 5
    assert {(row[0], row[1]) for row in rows} == {
        (operation, server) for operation in operations for server in ("adieu", "Trio")
    }
    for row in rows:
        steps, calls, system_calls = (float(cell) for cell in row[2:5])
        assert steps > 0
        assert calls > 0
        assert system_calls > 0
    heap_rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in heap_table.splitlines()
        if line.startswith("| adieu") or line.startswith("| Trio")
    ]
    assert [row[0] for row in heap_rows] == ["adieu", "Trio"]
    for row in heap_rows:
        total = float(row[1].replace(",", ""))
        parts = [float(cell.replace(",", "")) for cell in row[2:]]
        assert total > 0
        assert sum(parts) == pytest.approx(total, abs=len(parts))
