"""The instructor's path with nbgrader's own commands (see book/instructors.md).

In a temporary course directory: the solution notebooks are the nbgrader source versions;
`nbgrader generate_assignment` makes the student versions; two submissions are autograded
with `nbgrader autograde`: the completed reference (full marks) and the untouched stub (zero
on every graded cell). Scores are read from the gradebook.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from .conftest import ROOT
from .test_colab_path import fill_in_exercises, light_chapters

pytestmark = pytest.mark.e2e

NBGRADER = Path(sys.executable).parent / "nbgrader"


def _graded(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in nb.cells
        if cell.metadata.get("nbgrader", {}).get("grade")
    ]


SOLUTIONS = sorted((ROOT / "solutions").glob("ch*.ipynb"))
WITH_EXERCISES = [p.name for p in SOLUTIONS if "### BEGIN SOLUTION" in p.read_text()]
GRADED = [p.name for p in SOLUTIONS if _graded(p)]
AUTOGRADED = [name for name in light_chapters(limit=len(GRADED)) if name in GRADED]
AUTOGRADED = AUTOGRADED[:2]  # chapter 0 and the lightest other chapter with exercises


def nbgrader(course: Path, *args: str) -> str:
    result = subprocess.run(
        [str(NBGRADER), *args],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{output[-4000:]}"
    return output


ASSIGNMENT = "book"  # the chapters that are autograded


def make_course(course: Path, assignment: str, names: list[str]) -> None:
    """A course directory whose source version of `assignment` is the solution notebooks."""
    course.mkdir(parents=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(course)!r}\n"
        "c.CourseDirectory.course_id = 'rldebug'\n"
        "c.ExecutePreprocessor.timeout = 900\n"
    )
    (course / "source" / assignment).mkdir(parents=True)
    for name in names:
        shutil.copy(ROOT / "solutions" / name, course / "source" / assignment / name)


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A course directory after generate_assignment and autograde of two submissions."""
    course = tmp_path_factory.mktemp("nbgrader") / "course"
    make_course(course, ASSIGNMENT, AUTOGRADED)
    nbgrader(course, "generate_assignment", ASSIGNMENT, "--force")  # adds it to the gradebook

    # Two submissions per chapter: the completed reference and the untouched stub.
    for name in AUTOGRADED:
        release = nbformat.read(course / "release" / ASSIGNMENT / name, as_version=4)
        solution = nbformat.read(ROOT / "solutions" / name, as_version=4)
        reference = nbformat.from_dict(release)
        assert fill_in_exercises(reference, solution) > 0
        for student, nb in (("reference", reference), ("stub", release)):
            folder = course / "submitted" / student / ASSIGNMENT
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / name)
    nbgrader(course, "autograde", ASSIGNMENT, "--force")  # adds the students too
    return course


def test_generate_assignment_for_every_chapter(tmp_path):
    """One assignment with every chapter that has exercises; its student versions have the
    same stubs as chapters/ and the same graded cells as solutions/."""
    assert WITH_EXERCISES
    course = tmp_path / "course"
    make_course(course, "every-chapter", WITH_EXERCISES)
    nbgrader(course, "generate_assignment", "every-chapter", "--force")
    for name in WITH_EXERCISES:
        release = course / "release" / "every-chapter" / name
        text = release.read_text()
        assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text, name
        ours = nbformat.read(ROOT / "chapters" / name, as_version=4)
        stubs = {
            c.metadata["nbgrader"]["grade_id"]: c.source
            for c in ours.cells
            if c.metadata.get("nbgrader", {}).get("solution")
        }
        for cell in nbformat.read(release, as_version=4).cells:
            grade = cell.metadata.get("nbgrader", {})
            if grade.get("solution"):
                assert cell.source == stubs[grade["grade_id"]], (name, grade["grade_id"])
        assert _graded(release) == _graded(ROOT / "solutions" / name), name


def _gradebook(course: Path):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course / 'gradebook.db'}")


@pytest.mark.parametrize("name", AUTOGRADED)
def test_autograde_gives_the_reference_full_marks(course, name):
    graded = _graded(ROOT / "solutions" / name)
    with _gradebook(course) as gradebook:
        nb = gradebook.find_submission_notebook(Path(name).stem, ASSIGNMENT, "reference")
        scores = {grade.name: grade.score for grade in nb.grades}
        assert nb.max_score == len(graded) > 0
        assert nb.score == nb.max_score, scores


@pytest.mark.parametrize("name", AUTOGRADED)
def test_autograde_gives_the_stub_zero_on_every_graded_cell(course, name):
    graded = _graded(ROOT / "solutions" / name)
    with _gradebook(course) as gradebook:
        for grade_id in graded:
            grade = gradebook.find_grade(grade_id, Path(name).stem, ASSIGNMENT, "stub")
            assert grade.max_score > 0 and grade.score == 0, (grade_id, grade.score)
        nb = gradebook.find_submission_notebook(Path(name).stem, ASSIGNMENT, "stub")
        assert nb.score == 0
