"""The checker framework's messages for the usual ways an answer goes wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rldebug.checkers import ch00
from rldebug.checking import CheckFailed, Exercise, compare_outputs


def test_wrong_shape_is_named():
    message = compare_outputs(np.zeros((32, 32)), np.zeros(32))
    assert "(32, 32)" in message and "(32,)" in message


def test_none_return_is_named():
    assert "forget to `return`" in compare_outputs(None, np.zeros(3))


def test_wrong_type_is_named():
    assert "torch.Tensor was expected" in compare_outputs([1.0, 2.0], torch.zeros(2))


def test_non_numeric_is_named():
    assert "cannot be read as numbers" in compare_outputs("abc", np.zeros(3))


def test_crash_reports_exception_and_input():
    def crashes(rewards, gamma, dones=None):
        raise ZeroDivisionError("boom")

    with pytest.raises(CheckFailed, match="raised ZeroDivisionError: boom"):
        ch00.check_discounted_returns(crashes, seed=0)


def test_unknown_bug_still_fails_clearly():
    def off_by_one(rewards, gamma, dones=None):
        return ch00._reference(rewards, gamma, dones) + 1.0

    with pytest.raises(CheckFailed, match="wrong answer"):
        ch00.check_discounted_returns(off_by_one, seed=0)


def test_cases_are_fresh_without_seed():
    seen = []
    exercise = Exercise(
        name="identity",
        reference=lambda x: x,
        make_case=lambda rng: {"x": float(rng.random())},
        n_cases=1,
    )
    for _ in range(2):
        exercise.check(lambda x: seen.append(x) or x)
    assert seen[0] != seen[1]


def test_mutated_argument_is_named():
    def mutates(rewards, gamma, dones=None):
        result = ch00._reference(rewards, gamma, dones)
        rewards.reverse()  # the right answer, but the caller's list is reversed
        return result

    with pytest.raises(CheckFailed, match="changes its argument `rewards` in place"):
        ch00.check_discounted_returns(mutates, seed=0)
