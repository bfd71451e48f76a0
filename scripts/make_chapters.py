"""Regenerate the exercise notebooks in chapters/ from the solutions in solutions/.

``solutions/`` is the source of truth. This script

1. stamps every solution notebook with the shared setup cell and the "Open in Colab"
   links, built from the repository URL and branch in ``_config.yml`` (the one place
   that names them), and adds nbgrader's cell metadata to solution and checker cells;
2. writes ``chapters/<name>.ipynb`` through nbgrader's own ``ClearSolutions`` and
   ``ClearOutput`` preprocessors, used as a library.

Usage::

    python scripts/make_chapters.py          # rewrite solutions/ (stamps) and chapters/
    python scripts/make_chapters.py --check  # exit 1 if anything is out of date
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat
import yaml
from nbgrader.preprocessors import ClearOutput, ClearSolutions

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
CHAPTERS = ROOT / "chapters"

SETUP_TAG = "colab-setup"
LINKS_TAG = "colab-links"
CHECKER_TAG = "checker"
SOLUTION_MARK = "### BEGIN SOLUTION"
ANSWER_OPEN = ":::{admonition} Answer key\n:class: dropdown"

SETUP_TEMPLATE = """\
# Setup: in Colab this installs the course package; anywhere else it does nothing.
import os
import subprocess
import sys

COURSE_PACKAGE = os.environ.get("RLDEBUG_SOURCE", "{source}")
if "google.colab" in sys.modules or os.environ.get("RLDEBUG_FORCE_SETUP") == "1":
    _pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", COURSE_PACKAGE],
        capture_output=True,
        text=True,
    )
    if _pip.returncode != 0:
        raise RuntimeError(
            f"Installing the course package from {{COURSE_PACKAGE!r}} failed "
            f"(pip exit code {{_pip.returncode}}). Check the runtime's internet access, "
            "then run this cell again. The end of pip's message:\\n" + _pip.stderr[-1500:]
        )
    print("Course package installed.")"""


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    return repo["url"].rstrip("/"), repo.get("branch", "main")


def colab_url(path: str) -> str:
    url, branch = repository()
    slug = url.split("github.com/", 1)[1]
    return f"https://colab.research.google.com/github/{slug}/blob/{branch}/{path}"


# Notebooks that need an optional extra of the package (pyproject.toml) in Colab.
EXTRAS = {"ch10_diagnose_your_own.ipynb": "sb3"}


def setup_source(name: str = "") -> str:
    url, branch = repository()
    extra = f"[{EXTRAS[name]}]" if name in EXTRAS else ""
    return SETUP_TEMPLATE.format(source=f"rldebug{extra} @ git+{url}@{branch}")


def links_source(name: str, exercise_version: bool) -> str:
    exercise = colab_url(f"chapters/{name}")
    solution = colab_url(f"solutions/{name}")
    if exercise_version:
        return (
            f"[Open this exercise notebook in Colab]({exercise}) · "
            f"[the worked solutions]({solution}) · [the cheat sheet](../book/cheatsheet.md)"
        )
    return (
        f"[Open the exercise version in Colab]({exercise}) · "
        f"[this page with solutions in Colab]({solution}) · "
        f"[the cheat sheet](../book/cheatsheet.md)"
    )


def _tags(cell) -> list[str]:
    return cell.setdefault("metadata", {}).setdefault("tags", [])


def _grade_id(cell, prefix: str, pattern: str, index: int) -> str:
    match = re.search(pattern, cell.source, re.MULTILINE)
    return f"{prefix}-{match.group(1) if match else index}".replace("_", "-")


def stamp(nb, name: str) -> None:
    """Put the shared setup cell, the links and nbgrader metadata into a solution notebook."""
    cells = nb.cells
    setup = nbformat.v4.new_code_cell(setup_source(name))
    setup.metadata["tags"] = [SETUP_TAG, "hide-cell"]
    if cells and SETUP_TAG in cells[0].get("metadata", {}).get("tags", []):
        setup.id = cells[0].get("id", setup.id)
        cells[0] = setup
    else:
        cells.insert(0, setup)
    links = [i for i, c in enumerate(cells) if LINKS_TAG in c.get("metadata", {}).get("tags", [])]
    if not links:
        raise SystemExit(
            f"{name}: no markdown cell tagged {LINKS_TAG!r}; put one right after the title"
        )
    for i in links:
        cells[i].source = links_source(name, exercise_version=False)
    ids: set[str] = set()
    for index, cell in enumerate(cells):
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            # A written answer. nbgrader grades it by hand, so it must be a grade cell; in
            # the book it sits in a collapsed dropdown, so the reader sees the question first.
            grade_id = cell.metadata["nbgrader"].get("grade_id") or f"answer-{index}"
            cell.metadata["nbgrader"] = {
                "grade": True,
                "grade_id": grade_id,
                "locked": False,
                "points": 1,
                "schema_version": 3,
                "solution": True,
                "task": False,
            }
            if not cell.source.startswith(ANSWER_OPEN):
                cell.source = f"{ANSWER_OPEN}\n{cell.source.strip()}\n:::"
            if grade_id in ids:
                raise SystemExit(f"{name}: two nbgrader cells share the id {grade_id!r}")
            ids.add(grade_id)
            continue
        if cell.cell_type != "code":
            continue
        tags = _tags(cell)
        if SOLUTION_MARK in cell.source:
            grade_id = _grade_id(cell, "solution", r"^(?:def|class) (\w+)", index)
            cell.metadata["nbgrader"] = {
                "grade": False,
                "grade_id": grade_id,
                "locked": False,
                "schema_version": 3,
                "solution": True,
                "task": False,
            }
            if "hide-input" not in tags:
                tags.append("hide-input")
        elif CHECKER_TAG in tags:
            grade_id = _grade_id(cell, "check", r"check_(\w+)\(", index)
            cell.metadata["nbgrader"] = {
                "grade": True,
                "grade_id": grade_id,
                "locked": True,
                "points": 1,
                "schema_version": 3,
                "solution": False,
                "task": False,
            }
        else:
            cell.metadata.pop("nbgrader", None)
            continue
        if grade_id in ids:
            raise SystemExit(f"{name}: two nbgrader cells share the id {grade_id!r}")
        ids.add(grade_id)
        if not tags:
            cell.metadata.pop("tags")


def exercise_version(nb, name: str):
    """The exercise notebook: solutions cleared by nbgrader, outputs cleared."""
    student = copy.deepcopy(nb)
    resources = {"language": "python"}
    student, resources = ClearSolutions().preprocess(student, resources)
    student, resources = ClearOutput().preprocess(student, resources)
    for cell in student.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "hide-input" in tags and "nbgrader" in cell.metadata:
            tags.remove("hide-input")  # the reader writes here: nothing to hide
            if not tags:
                cell.metadata.pop("tags")
        if LINKS_TAG in tags:
            cell.source = links_source(name, exercise_version=True)
    return student


def _dump(nb) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report what is stale")
    args = parser.parse_args(argv)
    stale: list[str] = []
    sources = sorted(SOLUTIONS.glob("*.ipynb"))
    if not sources:
        print("no notebooks in solutions/", file=sys.stderr)
        return 1
    expected_chapters = set()
    for path in sources:
        name = path.name
        nb = nbformat.read(path, as_version=4)
        stamp(nb, name)
        outputs = {path: _dump(nb), CHAPTERS / name: _dump(exercise_version(nb, name))}
        expected_chapters.add(name)
        for target, text in outputs.items():
            if not target.exists() or target.read_text() != text:
                stale.append(str(target.relative_to(ROOT)))
                if not args.check:
                    target.parent.mkdir(exist_ok=True)
                    target.write_text(text)
    for extra in sorted(CHAPTERS.glob("*.ipynb")):
        if extra.name not in expected_chapters:
            stale.append(f"{extra.relative_to(ROOT)} (no solution notebook)")
            if not args.check:
                extra.unlink()
    if args.check and stale:
        print("Out of date; run `python scripts/make_chapters.py`:", *stale, sep="\n  ")
        return 1
    print(
        ("Up to date: " if args.check or not stale else "Wrote: ")
        + (", ".join(stale) or f"{len(sources)} notebooks")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
