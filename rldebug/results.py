"""What every agent's ``train`` returns: the same curves under the same names.

Each agent module (``rldebug.agents.dqn``, ``drqn``, ``reinforce``, ``ppo``) has a ``Result``
built on :class:`SeedsResult`, so that one plotting cell, one claim and one benchmark read
them all the same way:

* ``eval_steps`` (E,): environment steps per seed at each greedy evaluation;
* ``eval_returns`` (E, S): the mean greedy return of each seed at each evaluation;
* ``final_return`` (S,): the mean greedy return of the final evaluation;
* ``steps_to(threshold)`` (S,): the first evaluation step at or above the bar (nan: never);
* ``kept(threshold)`` (S,): at or above the bar at every evaluation of the last 20%.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["SeedsResult", "first_reached", "kept_to_end"]


def first_reached(eval_steps, eval_returns, threshold: float) -> np.ndarray:
    """(S,) first step of ``eval_steps`` (E,) at which each column of ``eval_returns`` (E, S)
    reached ``threshold``; nan where it never did. Works on any agent's evaluation curve."""
    eval_steps, eval_returns = np.asarray(eval_steps), np.asarray(eval_returns, dtype=float)
    if eval_returns.ndim == 1:
        eval_returns = eval_returns[:, None]  # (E,) -> (E, 1): one seed
    if eval_returns.shape[0] != len(eval_steps):
        raise ValueError(
            f"eval_returns has {eval_returns.shape[0]} rows for {len(eval_steps)} eval_steps"
        )
    hit = eval_returns >= threshold  # (E, S)
    first = np.where(hit.any(0), hit.argmax(0), -1)
    return np.where(first >= 0, eval_steps[np.maximum(first, 0)], np.nan)


def kept_to_end(
    eval_steps, eval_returns, threshold: float, last_fraction: float = 0.2
) -> np.ndarray:
    """(S,) bool: the return (E, S) is >= ``threshold`` at *every* evaluation in the last
    ``last_fraction`` of training, the final evaluation included."""
    eval_steps, eval_returns = np.asarray(eval_steps), np.asarray(eval_returns, dtype=float)
    if eval_returns.ndim == 1:
        eval_returns = eval_returns[:, None]
    if not 0.0 < last_fraction <= 1.0:
        raise ValueError(f"last_fraction must be in (0, 1], got {last_fraction}")
    late = eval_steps >= (1.0 - last_fraction) * eval_steps[-1]
    return (eval_returns[late] >= threshold).all(0)


@dataclass(kw_only=True)
class SeedsResult:
    """The common part of every agent's ``Result``: greedy evaluations, seed by seed."""

    seeds: list[int]
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (E,)
    eval_returns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (E, S)
    final_return: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (S,)
    seconds: float = 0.0

    def steps_to(self, threshold: float) -> np.ndarray:
        """(S,) first evaluation step at which each seed reached ``threshold`` (nan: never)."""
        return first_reached(self.eval_steps, self.eval_returns, threshold)

    def kept(self, threshold: float, last_fraction: float = 0.2) -> np.ndarray:
        """(S,) bool: see :func:`kept_to_end`."""
        return kept_to_end(self.eval_steps, self.eval_returns, threshold, last_fraction)
