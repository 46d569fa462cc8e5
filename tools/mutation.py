"""Mutation testing of the sans-I/O core with cosmic-ray.

Usage (from the top of the tree, with cosmic-ray installed in the
environment that runs the tests)::

    python tools/mutation.py                     # every mutant, one job
    python tools/mutation.py --jobs 2            # split over two processes
    python tools/mutation.py --resume            # finish an interrupted run
    python tools/mutation.py --rerun-survivors   # only the last run's survivors

The configuration (files, test command, per-mutant timeout) is
``tools/mutation.toml``. cosmic-ray rewrites a source file in place while it
tests a mutant, so every job works in its own scratch copy of the working
tree (uncommitted changes included) and the tree you work in is never left
mutated. The session is kept in ``mutation.sqlite`` at the top of the tree
(ignored by git): ``cr-report --surviving-only --show-diff mutation.sqlite``
prints it again. ``--rerun-survivors`` tests the survivors of that session
again against the current tests (a mutant that was killed stays killed when
tests are only added), which is how new tests are checked against them.

Mutants inside type annotations are skipped, not tested: every module of
the core starts with ``from __future__ import annotations``, so annotations
are never evaluated and such a mutant cannot change behaviour (cosmic-ray
would turn each ``int | None`` into ten survivors).
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "tools/mutation.toml"
SESSION = ROOT / "mutation.sqlite"


def _copy_tree(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def _env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy's src/ comes first on the path, ahead of an editable install,
    # and the test command's "python" is this interpreter.
    env["PYTHONPATH"] = str(scratch / "src")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return env


def _cosmic_ray(scratch: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "cosmic_ray.cli", *args],
        cwd=scratch,
        env=_env(scratch),
    )


def _pending(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT job_id FROM work_items WHERE job_id NOT IN "
            "(SELECT job_id FROM work_results) ORDER BY job_id"
        ).fetchall()
    return [row[0] for row in rows]


def _keep_only(db: Path, jobs: set[str]) -> None:
    """Drop from ``db`` the pending work items not in ``jobs``."""
    with sqlite3.connect(db) as conn:
        others = [(j,) for j in _pending(db) if j not in jobs]
        conn.executemany("DELETE FROM mutation_specs WHERE job_id = ?", others)
        conn.executemany("DELETE FROM work_items WHERE job_id = ?", others)


def _annotation_spans(path: Path) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The (start, end) positions, (line, column), of every annotation."""
    spans = []
    for node in ast.walk(ast.parse(path.read_text())):
        found: list[ast.expr | None] = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.append(node.returns)
        elif isinstance(node, (ast.arg, ast.AnnAssign)):
            found.append(node.annotation)
        for ann in filter(None, found):
            end = (ann.end_lineno or ann.lineno, ann.end_col_offset or 0)
            spans.append(((ann.lineno, ann.col_offset), end))
    return spans


def _skip_annotations(db: Path, tree: Path) -> int:
    """Record every mutant inside an annotation as skipped (whether it was
    tested before or not)."""
    spans: dict[str, list[tuple[tuple[int, int], tuple[int, int]]]] = {}
    skipped = []
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT job_id, module_path, start_pos_row, start_pos_col "
            "FROM mutation_specs"
        ).fetchall()
        for job, module, row, col in rows:
            if module not in spans:
                spans[module] = _annotation_spans(tree / module)
            if any(start <= (row, col) < end for start, end in spans[module]):
                skipped.append(job)
        conn.executemany(
            "INSERT OR REPLACE INTO work_results (job_id, worker_outcome, output) "
            "VALUES (?, 'SKIPPED', 'in an annotation: never evaluated')",
            [(job,) for job in skipped],
        )
    return len(skipped)


def _merge(db: Path, shard: Path, jobs: set[str]) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("ATTACH DATABASE ? AS shard", (str(shard),))
        rows = conn.execute("SELECT * FROM shard.work_results").fetchall()
        columns = [c[1] for c in conn.execute("PRAGMA shard.table_info(work_results)")]
        job = columns.index("job_id")
        marks = ", ".join("?" * len(columns))
        conn.executemany(
            f"INSERT OR REPLACE INTO work_results ({', '.join(columns)}) "
            f"VALUES ({marks})",
            [row for row in rows if row[job] in jobs],
        )
        conn.commit()
        conn.execute("DETACH DATABASE shard")


def _summary(db: Path) -> tuple[int, int, int, int]:
    """Mutants in all, skipped, tested, and of those survived."""
    with sqlite3.connect(db) as conn:
        total = conn.execute("SELECT count(*) FROM work_items").fetchone()[0]
        outcomes = dict(
            conn.execute(
                "SELECT coalesce(test_outcome, worker_outcome), count(*) "
                "FROM work_results GROUP BY 1"
            ).fetchall()
        )
    skipped = outcomes.pop("SKIPPED", 0)
    return total, skipped, sum(outcomes.values()), outcomes.get("SURVIVED", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="parallel processes")
    again = parser.add_mutually_exclusive_group()
    again.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="test the survivors of the last session again (and nothing else)",
    )
    again.add_argument(
        "--resume",
        action="store_true",
        help="test the mutants the last session did not reach",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="adieu-mutation-") as tmp:
        scratches = [Path(tmp) / f"job{k}" for k in range(args.jobs)]
        for scratch in scratches:
            _copy_tree(scratch)
        main_db = Path(tmp) / "session.sqlite"
        only: set[str] | None = None
        if args.rerun_survivors or args.resume:
            shutil.copy2(SESSION, main_db)
            if args.rerun_survivors:
                with sqlite3.connect(main_db) as conn:
                    where = "FROM work_results WHERE test_outcome = 'SURVIVED'"
                    only = {r[0] for r in conn.execute(f"SELECT job_id {where}")}
                    conn.execute(f"DELETE {where}")
        else:
            init = _cosmic_ray(scratches[0], "init", CONFIG, str(main_db))
            if init.wait() != 0:
                return 1
            baseline = _cosmic_ray(scratches[0], "baseline", CONFIG)
            if baseline.wait() != 0:
                print("the tests fail without any mutation", file=sys.stderr)
                return 1
        _skip_annotations(main_db, scratches[0])
        pending = [j for j in _pending(main_db) if only is None or j in only]
        shards = [set(pending[k :: args.jobs]) for k in range(args.jobs)]
        procs = []
        for scratch, jobs in zip(scratches, shards, strict=True):
            shard_db = scratch / "shard.sqlite"
            shutil.copy2(main_db, shard_db)
            _keep_only(shard_db, jobs)
            procs.append(_cosmic_ray(scratch, "exec", CONFIG, str(shard_db)))
        failed = [p.wait() for p in procs]
        for scratch, jobs in zip(scratches, shards, strict=True):
            _merge(main_db, scratch / "shard.sqlite", jobs)
        shutil.copy2(main_db, SESSION)
        if any(failed):
            print("a cosmic-ray job failed", file=sys.stderr)
            return 1
    report = Path(sys.executable).parent / "cr-report"
    subprocess.run([report, "--surviving-only", "--show-diff", SESSION], check=True)
    total, skipped, done, survived = _summary(SESSION)
    killed = done - survived
    print(
        f"\n{total} mutants, {skipped} in annotations skipped, {done} tested: "
        f"{killed} killed ({100 * killed / max(done, 1):.1f}%), {survived} survived"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
