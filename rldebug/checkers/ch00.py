"""Checkers for chapter 0, "How to use this book"."""

from __future__ import annotations

import numpy as np

from rldebug.checking import Exercise, PlantedBug, forced_edge
from rldebug.returns import discounted_returns as _reference

EDGES = ("integer rewards", "gamma = 0", "no dones")


def _make_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, EDGES)
    length = int(rng.integers(1, 30))
    if edge == "integer rewards" or rng.random() < 0.35:  # as in most environments
        rewards = rng.integers(-2, 4, size=length).tolist()
    else:
        rewards = rng.normal(size=length).round(2).tolist()
    dones = (rng.random(length) < 0.15).tolist()
    with_boundaries = edge != "no dones" and rng.random() < 0.7
    return {
        "rewards": rewards,
        "gamma": 0.0 if edge == "gamma = 0" else float(rng.choice([0.0, 0.5, 0.9, 0.99, 1.0])),
        "dones": dones if with_boundaries else None,
    }


def _never_appends(rewards, gamma, dones=None):
    # The classic bug: the running sum is computed but never stored.
    returns = []
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
    return np.array(returns)


def _ignores_boundaries(rewards, gamma, dones=None):
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def _forward_order(rewards, gamma, dones=None):
    # Summing from the start: discounts the past instead of the future.
    returns = np.zeros(len(rewards))
    running = 0.0
    for t in range(len(rewards)):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns


def _integer_buffer(rewards, gamma, dones=None):
    # np.zeros_like of whole-number rewards is an int array: every return is truncated.
    dones = np.zeros(len(rewards)) if dones is None else np.asarray(dones, dtype=float)
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running * (1.0 - dones[t])
        returns[t] = running
    return returns


def _explain(case, got, expected) -> str:
    dones = case["dones"]
    ends = [] if dones is None else [t for t, d in enumerate(dones) if d]
    dtype = getattr(got, "dtype", None)
    if dtype is not None and np.issubdtype(dtype, np.integer):
        return (
            "Your returns are whole numbers: store them in a float array, np.zeros(len(rewards))."
        )
    return (
        f"G_t = r_t + gamma * G_(t+1), restarting after each episode end (dones[t] True at "
        f"steps {ends}), computed from the last step backwards; gamma = {case['gamma']}."
    )


DISCOUNTED_RETURNS = Exercise(
    name="discounted_returns",
    reference=_reference,
    make_case=_make_case,
    explain=_explain,
    reference_path="rldebug.returns.discounted_returns",
    bugs=[
        PlantedBug(
            "the running sum is never appended to the result",
            _never_appends,
            "Inside the loop, store each running sum (returns[t] = running).",
        ),
        PlantedBug(
            "episode boundaries are ignored",
            _ignores_boundaries,
            "When dones[t] is True the return must restart: multiply the carried sum "
            "by (1 - dones[t]).",
        ),
        PlantedBug(
            "the loop runs forwards in time",
            _forward_order,
            "G_t sums the rewards that come after t: loop from the last step backwards.",
        ),
        PlantedBug(
            "the returns are stored in an integer array",
            _integer_buffer,
            "With whole-number rewards, np.zeros_like(rewards) makes an int array, and every "
            "discounted return written into it is truncated. Use np.zeros(len(rewards)) "
            "(float) for the result.",
        ),
    ],
)

EXERCISES = [DISCOUNTED_RETURNS]


def check_discounted_returns(fn, *, seed=None):
    """Check a reader's ``discounted_returns(rewards, gamma, dones=None)``."""
    DISCOUNTED_RETURNS.check(fn, seed=seed)
