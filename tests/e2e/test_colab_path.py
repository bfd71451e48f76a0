"""The Colab path as a new reader takes it.

A fresh virtual environment holds only what Colab has preinstalled (torch, numpy, matplotlib,
ipywidgets, tqdm, ipykernel). An exercise notebook from chapters/ runs top to bottom in its
kernel: its setup cell installs the course package exactly as in Colab, except that
RLDEBUG_SOURCE points at this checkout instead of the repository URL; the exercises are filled
in from the reference solutions. pip must leave the preinstalled torch alone.

The environment is cached in _build/e2e-colab-venv (what the course package added is
uninstalled before each run, so every run starts from the preinstalled set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import BUILD, ROOT

pytestmark = pytest.mark.e2e

VENV = BUILD / "e2e-colab-venv"
COLAB_PREINSTALLED = ["torch", "numpy", "matplotlib", "ipywidgets", "tqdm", "ipykernel"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def light_chapters(limit: int = 1) -> list[str]:
    """Chapter 0 and the `limit` fastest other chapters, by benchmarks/results/notebooks.csv
    (chapters not measured yet are taken in order, after the measured ones)."""
    names = sorted(path.name for path in (ROOT / "chapters").glob("ch*.ipynb"))
    seconds: dict[str, float] = {}
    table = ROOT / "benchmarks" / "results" / "notebooks.csv"
    if table.exists():
        for line in table.read_text().splitlines()[1:]:
            name, _, value = line.partition(",")
            try:
                seconds[name.strip()] = float(value)
            except ValueError:
                pass
    first = [name for name in names if name.startswith("ch00")]
    others = sorted(
        (name for name in names if name not in first),
        key=lambda name: (name not in seconds, seconds.get(name, 0.0), name),
    )
    return first + others[:limit]


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    result = subprocess.run([str(a) for a in args], **kwargs)
    assert result.returncode == 0, (
        f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _freeze(python: Path) -> dict[str, str]:
    out = _run(python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check").stdout
    return {row["name"].lower(): row["version"] for row in json.loads(out)}


def _torch_version(python: Path) -> str:
    return _run(python, "-c", "import torch; print(torch.__version__)", cwd=BUILD).stdout.strip()


@pytest.fixture(scope="session")
def colab_venv() -> Path:
    """A venv with Colab's preinstalled packages only (made once, then reused)."""
    pins = _pins()
    wanted = [f"{name}=={pins[name]}" if name in pins else name for name in COLAB_PREINSTALLED]
    python = VENV / "bin" / "python"
    stamp = VENV / "e2e-preinstalled.json"
    base_python = getattr(sys, "_base_executable", sys.executable)
    key = {"wanted": wanted, "python": base_python}
    if not (python.exists() and stamp.exists() and json.loads(stamp.read_text())["key"] == key):
        shutil.rmtree(VENV, ignore_errors=True)
        _run(base_python, "-m", "venv", VENV)
        _run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *wanted)
        stamp.write_text(json.dumps({"key": key, "packages": _freeze(python)}))
    base = json.loads(stamp.read_text())["packages"]
    # Back to the preinstalled set: remove what an earlier run's course package brought.
    extra = sorted(set(_freeze(python)) - set(base))
    if extra:
        _run(python, "-m", "pip", "uninstall", "--yes", "--quiet", *extra)
    now = _freeze(python)
    assert now == base, "the cached Colab venv drifted; delete _build/e2e-colab-venv"
    for name in ("gymnasium", "rldebug"):
        assert name not in now, f"{name} must not be preinstalled"
    return python


def fill_in_exercises(chapter, solution) -> int:
    """Put the reference solution into every nbgrader solution cell (by grade_id)."""
    reference = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in solution.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    filled = 0
    for cell in chapter.cells:
        grade = cell.metadata.get("nbgrader", {})
        if grade.get("solution") and cell.cell_type == "code":
            assert "raise NotImplementedError()" in cell.source, "the stub is not a stub"
            cell.source = reference[grade["grade_id"]]
            filled += 1
    return filled


@pytest.mark.parametrize("name", light_chapters())
def test_exercise_notebook_runs_in_a_fresh_colab_like_runtime(
    colab_venv, tmp_path, name, monkeypatch
):
    torch_before = _torch_version(colab_venv)
    chapter = nbformat.read(ROOT / "chapters" / name, as_version=4)
    solution = nbformat.read(ROOT / "solutions" / name, as_version=4)
    assert "colab-setup" in chapter.cells[0].metadata.get("tags", [])
    filled = fill_in_exercises(chapter, solution)

    # A kernel that runs the venv's Python, as Colab's runtime does.
    kernels = tmp_path / "jupyter" / "kernels" / "colab-like"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(colab_venv), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Colab-like",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RLDEBUG_FORCE_SETUP", "1")
    # The same requirement form as the setup cell's `rldebug @ git+<url>@<branch>`.
    monkeypatch.setenv("RLDEBUG_SOURCE", f"rldebug @ {ROOT.as_uri()}")
    monkeypatch.setenv("PATH", f"{colab_venv.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for variable in ("MPLBACKEND", "PYTHONPATH", "VIRTUAL_ENV"):
        monkeypatch.delenv(variable, raising=False)
    workdir = tmp_path / "content"  # not the checkout: `import rldebug` must find the install
    workdir.mkdir()

    client = NotebookClient(
        chapter,
        kernel_name="colab-like",
        timeout=900,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error

    def text(cell) -> str:
        return "".join(
            output.get("text", "") + "".join(output.get("data", {}).get("text/plain", ""))
            for output in cell.get("outputs", [])
        )

    assert "Course package installed." in text(chapter.cells[0])
    checkers = [c for c in chapter.cells if "checker" in c.metadata.get("tags", [])]
    assert len(checkers) >= filled
    for cell in checkers:
        assert "✓" in text(cell), f"checker cell did not pass:\n{cell.source}\n{text(cell)}"
    for cell in chapter.cells:
        if ".or_reference(" in cell.source:
            assert "Using your" in text(cell), f"the reference was swapped in:\n{text(cell)}"

    assert _torch_version(colab_venv) == torch_before, "pip replaced Colab's torch"
    where = _run(
        colab_venv, "-c", "import rldebug, sineroad; print(rldebug.__file__)", cwd=workdir
    ).stdout
    assert str(VENV) in where, f"rldebug was imported from {where}"
