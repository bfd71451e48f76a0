"""Notebooks are committed clean, the exercise notebooks are generated and current, and
every notebook follows the book's conventions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
ALL_NOTEBOOKS = SOLUTIONS + sorted((ROOT / "chapters").glob("*.ipynb"))


def test_there_are_notebooks():
    assert SOLUTIONS


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"cell {index} of {path.name} has outputs"
            assert cell.execution_count is None, f"cell {index} of {path.name} has a count"


def test_chapters_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_chapters.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solution_conventions(path):
    nb = nbformat.read(path, as_version=4)
    first = nb.cells[0]
    assert "colab-setup" in first.metadata.get("tags", []), "first cell must be the setup cell"
    assert nb.cells[1].source.startswith("# "), "the second cell is the chapter title"
    text = "\n".join(c.source for c in nb.cells)
    assert "colab.research.google.com" in text
    assert "rldebug.set_seed(" in text, "every notebook fixes its seeds"
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "gpu" in tags:
            assert "skip-execution" in tags, "gpu cells also carry skip-execution"
        if "### BEGIN SOLUTION" in cell.source:
            assert cell.metadata["nbgrader"]["solution"] is True


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.name)
def test_exercise_versions_hide_no_solution(path):
    text = path.read_text()
    assert "BEGIN SOLUTION" not in text
    solution = (ROOT / "solutions" / path.name).read_text()
    if "BEGIN SOLUTION" in solution:
        assert "raise NotImplementedError()" in text
