"""The checker framework's messages for the usual ways an answer goes wrong."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch

from rldebug.checkers import ch00
from rldebug.checking import (
    CheckFailed,
    Exercise,
    compare_outputs,
    describe,
    forced_edge,
    type_phrase,
)


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


# --------------------------------------------------------------------------- messages


def test_type_phrase_has_the_right_article():
    assert type_phrase(3) == "an int"
    assert type_phrase(3.0) == "a float"
    assert type_phrase(np.zeros(2)) == "a numpy.ndarray"
    assert type_phrase(torch.zeros(2)) == "a torch.Tensor"


def test_messages_read_well_for_plural_names():
    message = compare_outputs(np.ones(3), np.zeros(3), where="outputs")
    assert message.startswith("the values of your outputs are off by up to 1")
    assert "an int" in compare_outputs(3, torch.zeros(()), where="loss")


def test_describe_shows_shapes_of_tensors_and_named_tuples():
    class Pair(NamedTuple):
        obs: torch.Tensor
        done: np.ndarray

    text = describe({"batch": Pair(torch.zeros(4, 3), np.zeros((4, 2))), "gamma": 0.9})
    assert text == "batch=Pair(obs tensor (4, 3) float32, done array (4, 2) float64), gamma=0.9"
    assert describe({"rewards": [1, 2, 3]}) == "rewards=[1 2 3]"


# --------------------------------------------------------------------------- side effects


def _net_exercise(**kwargs):
    torch.manual_seed(0)
    return Exercise(
        name="forward",
        reference=lambda net, x: net(x),
        make_case=lambda rng: {"net": torch.nn.Linear(2, 1), "x": torch.ones(3, 2)},
        n_cases=2,
        **kwargs,
    )


def test_changed_weights_are_named():
    def steps_the_weights(net, x):
        out = net(x)
        with torch.no_grad():
            net.weight.add_(1.0)  # an optimiser step inside the function
        return out

    with pytest.raises(CheckFailed, match="changes its argument `net.weight` in place"):
        _net_exercise().check(steps_the_weights, seed=0)


def test_drawing_from_a_generator_is_not_a_side_effect():
    exercise = Exercise(
        name="draw",
        reference=lambda rng, n: rng.integers(0, 10, size=n),
        make_case=lambda rng: {"rng": np.random.default_rng(int(rng.integers(99))), "n": 4},
        n_cases=3,
    )
    exercise.check(exercise.reference, seed=0)


def test_wrong_answer_that_also_mutates_says_both():
    def wrong_and_mutates(rewards, gamma, dones=None):
        rewards.append(0.0)
        return np.zeros(len(rewards) - 1) + 99.0

    with pytest.raises(CheckFailed) as caught:
        ch00.check_discounted_returns(wrong_and_mutates, seed=0)
    assert "wrong answer" in str(caught.value)
    assert "also changes its argument `rewards`" in str(caught.value)


# --------------------------------------------------------------------------- gradients


def _square_exercise(**kwargs):
    return Exercise(
        name="square_sum",
        reference=lambda x: (x**2).sum(),
        make_case=lambda rng: {"x": torch.as_tensor(rng.normal(size=4), dtype=torch.float32)},
        grad_inputs=("x",),
        check_gradients=True,
        answer_name="loss",
        n_cases=3,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (lambda x: (x.detach() ** 2).sum(), "carries no gradient"),
        (lambda x: torch.tensor((x**2).sum().item()), "carries no gradient"),
        (lambda x: (x.detach() ** 2).sum() + 0.0 * x.sum(), "no gradient reaches x"),
        (lambda x: (x * x.detach()).sum(), "not the right gradient with respect to x"),
    ],
    ids=["detached", "item", "zero gradient", "half the gradient"],
)
def test_gradient_mistakes_are_described(answer, expected):
    with pytest.raises(CheckFailed, match=expected):
        _square_exercise().check(answer, seed=0)


def test_gradient_to_network_weights_is_compared():
    def frozen_weights(net, x):
        return x @ net.weight.detach().T + net.bias

    with pytest.raises(CheckFailed, match="no gradient reaches net.weight"):
        _net_exercise(check_gradients=True).check(frozen_weights, seed=0)


def test_in_place_edit_on_a_graph_is_reported_not_crashed():
    def edits_its_input(x):
        loss = (x**2).sum()
        with torch.no_grad():
            x.mul_(2.0)  # breaks the graph of the loss as well as the caller's tensor
        return loss

    with pytest.raises(CheckFailed, match="changes its argument `x`"):
        _square_exercise().check(edits_its_input, seed=0)


def test_a_correct_alternative_convention_passes():
    exercise = _square_exercise(alternatives=[lambda x: (x**2).mean()])
    exercise.check(lambda x: (x**2).mean(), seed=0)
    with pytest.raises(CheckFailed):
        exercise.check(lambda x: (x**2).mean() * 2, seed=0)


def test_forced_edges_come_in_turn_between_free_cases():
    edges = ("a", "b")
    assert [forced_edge(i, edges) for i in range(6)] == [None, "a", None, "b", None, None]
