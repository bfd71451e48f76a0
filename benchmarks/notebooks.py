"""Benchmark: execute every solution notebook and write a table of wall-clock seconds.

This is a benchmark, not a timed test. Run it on the machine you care about (the book's
target is 2 CPU cores) with one torch thread, as the test run does::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/notebooks.py [name-filter ...]

It writes ``benchmarks/results/notebooks.md`` (and ``.csv``), merging with rows already
there, so one notebook can be re-measured on its own.
"""

from __future__ import annotations

import csv
import os
import platform
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SKIP_TAGS = {"gpu", "long-run", "skip-execution"}


def run(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    nb.cells = [c for c in nb.cells if not SKIP_TAGS & set(c.metadata.get("tags", []))]
    client = NotebookClient(
        nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> int:
    filters = sys.argv[1:]
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    RESULTS.mkdir(parents=True, exist_ok=True)
    table_csv = RESULTS / "notebooks.csv"
    rows: dict[str, float] = {}
    if table_csv.exists():
        with table_csv.open() as f:
            rows = {r["notebook"]: float(r["seconds"]) for r in csv.DictReader(f)}
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        if filters and not any(f in path.name for f in filters):
            continue
        seconds = run(path)
        rows[path.name] = seconds
        print(f"{seconds:7.1f} s  {path.name}", flush=True)
        write_tables(rows)  # after each notebook, so a failure later loses nothing
    print(f"wrote {RESULTS / 'notebooks.md'}")
    return 0


def write_tables(rows: dict[str, float]) -> None:
    table_csv = RESULTS / "notebooks.csv"
    with table_csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "seconds"])
        for name, seconds in sorted(rows.items()):
            writer.writerow([name, f"{seconds:.1f}"])
    cores = os.cpu_count()
    lines = [
        f"Measured on {cores} CPU cores, {platform.python_implementation()} "
        f"{platform.python_version()}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
        "GPU and long-run cells skipped.",
        "",
        "| notebook | wall-clock (s) |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in sorted(rows.items())]
    lines.append(f"| **total** | **{sum(rows.values()):.1f}** |")
    (RESULTS / "notebooks.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
