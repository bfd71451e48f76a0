"""Test-run hooks shared by the unit tests and the notebook run (nbval).

* Notebook cells tagged ``gpu`` are skipped when no CUDA device is present; cells tagged
  ``long-run`` are skipped unless RLDEBUG_LONG=1. Nobody edits cells by hand for this:
  the tag is the switch. (The same cells carry myst-nb's ``skip-execution`` tag, so the
  CPU book build skips them too.)
* After the run, a table says how long each notebook took.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

collect_ignore_glob = ["_build/*", ".venv/*", "chapters/*", "benchmarks/*", "build/*"]

_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)
_NOTEBOOK_STARTED: dict[str, float] = {}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _cell_tags(item) -> list[str]:
    cell = getattr(item, "cell", None)
    if cell is None:
        return []
    return list(cell.get("metadata", {}).get("tags", []))


def pytest_collection_modifyitems(config, items):
    has_cuda = None
    long_runs = os.environ.get("RLDEBUG_LONG") == "1"
    for item in items:
        if hasattr(item, "output_timeout"):
            # nbval waits 5 s for a cell's output after the cell has finished; on a busy
            # 2-core machine (a worker process training beside the kernel, as in chapter 7)
            # the kernel's output can come later than that without anything being wrong.
            item.output_timeout = 60
        tags = _cell_tags(item)
        if "gpu" in tags:
            if has_cuda is None:
                has_cuda = _cuda_available()
            if not has_cuda:
                item.add_marker(pytest.mark.skip(reason="optional GPU cell: no CUDA device"))
        if "long-run" in tags and not long_runs:
            item.add_marker(pytest.mark.skip(reason="optional long run: set RLDEBUG_LONG=1"))


def pytest_runtest_protocol(item, nextitem):
    path = str(item.path)
    if path.endswith(".ipynb"):
        _NOTEBOOK_STARTED.setdefault(path, time.perf_counter())
    return None


def pytest_runtest_logreport(report):
    if report.nodeid.split("::")[0].endswith(".ipynb"):
        _NOTEBOOK_SECONDS[report.nodeid.split("::")[0]] += report.duration


def pytest_terminal_summary(terminalreporter):
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("notebook run times")
    total = 0.0
    for name, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{seconds:8.1f} s  {Path(name).name}")
        total += seconds
    terminalreporter.write_line(f"{total:8.1f} s  total")
