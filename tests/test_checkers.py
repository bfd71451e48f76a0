"""Every checker is honest: it accepts the reference, rejects the blank stub, and rejects
every planted bug by name. This runs over all exercises of all chapters."""

from __future__ import annotations

import pytest

from rldebug.checkers import all_exercises
from rldebug.checking import CheckFailed, not_implemented_stub

EXERCISES = all_exercises()
IDS = [exercise.name for exercise in EXERCISES]
BUGS = [(exercise, bug) for exercise in EXERCISES for bug in exercise.bugs]
BUG_IDS = [f"{exercise.name}:{bug.name}" for exercise, bug in BUGS]


def test_every_exercise_plants_at_least_one_bug():
    assert EXERCISES, "no exercises registered"
    for exercise in EXERCISES:
        assert exercise.bugs, f"{exercise.name} plants no bug"


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accepts_reference(exercise, seed, capsys):
    exercise.check(exercise.reference, seed=seed)
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_rejects_blank_stub(exercise):
    with pytest.raises(CheckFailed, match="not implemented yet"):
        exercise.check(not_implemented_stub, seed=0)


@pytest.mark.parametrize(("exercise", "bug"), BUGS, ids=BUG_IDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rejects_planted_bug_by_name(exercise, bug, seed):
    with pytest.raises(CheckFailed) as caught:
        exercise.check(bug.fn, seed=seed)
    assert bug.name in str(caught.value), str(caught.value)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_rejects_non_callable(exercise):
    with pytest.raises(TypeError, match="expects your function"):
        exercise.check(42)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_fallback_to_reference(exercise, capsys):
    assert exercise.or_reference(not_implemented_stub) is exercise.reference
    assert "note:" in capsys.readouterr().out
    assert exercise.or_reference(exercise.reference) is exercise.reference
