"""Discounted returns: the first thing every agent in this book computes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def discounted_returns(
    rewards: Sequence[float], gamma: float, dones: Sequence[bool] | None = None
) -> np.ndarray:
    """Return G_t = r_t + gamma * G_{t+1} for every step t.

    ``dones[t]`` is True when the episode ended at step t; the sum then restarts, so no
    reward leaks from one episode into the return of the previous one.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be 1-D, got shape {rewards.shape}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if dones is None:
        dones = np.zeros(len(rewards), dtype=bool)
    dones = np.asarray(dones, dtype=bool)
    if dones.shape != rewards.shape:
        raise ValueError(f"dones has shape {dones.shape}, rewards has shape {rewards.shape}")
    returns = np.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        # An episode boundary at t: nothing after t belongs to this episode.
        running = rewards[t] + gamma * running * (1.0 - dones[t])
        returns[t] = running
    return returns
