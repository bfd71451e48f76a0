"""Experience replay: a fixed-size buffer of transitions sampled uniformly at random.

Why replay? Consecutive transitions are strongly correlated (the pole leans left for
twenty steps in a row); a network trained on them in order chases the latest stretch of
experience and forgets the rest. Sampling uniformly from a large buffer makes each batch
look like a draw from the whole recent past, and reuses every transition many times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["Transitions", "ReplayBuffer", "sample_from_rollout", "to_torch"]


class Transitions(NamedTuple):
    """A batch of transitions (s, a, r, s', terminated, truncated); the leading axis is B.

    ``terminated`` means the episode really ended (no future reward: do not bootstrap);
    ``truncated`` means it was cut off by a time limit (the future still exists:
    bootstrap). ``bootstrap_mask`` is the mask the TD target multiplies by.
    """

    obs: np.ndarray | torch.Tensor  # (B, *obs_shape)
    actions: np.ndarray | torch.Tensor  # (B,) int64
    rewards: np.ndarray | torch.Tensor  # (B,) float32
    next_obs: np.ndarray | torch.Tensor  # (B, *obs_shape)
    terminated: np.ndarray | torch.Tensor  # (B,) float32, 1.0 where the episode ended
    truncated: np.ndarray | torch.Tensor  # (B,) float32, 1.0 where a time limit cut it

    @property
    def bootstrap_mask(self):
        """1.0 where the target bootstraps from ``next_obs`` (not terminated), else 0.0."""
        return 1.0 - self.terminated


def to_torch(batch: Transitions, device: str | torch.device = "cpu") -> Transitions:
    """The same batch as torch tensors (actions int64, everything else float32)."""
    return Transitions(
        obs=torch.as_tensor(batch.obs, dtype=torch.float32, device=device),
        actions=torch.as_tensor(batch.actions, dtype=torch.int64, device=device),
        rewards=torch.as_tensor(batch.rewards, dtype=torch.float32, device=device),
        next_obs=torch.as_tensor(batch.next_obs, dtype=torch.float32, device=device),
        terminated=torch.as_tensor(batch.terminated, dtype=torch.float32, device=device),
        truncated=torch.as_tensor(batch.truncated, dtype=torch.float32, device=device),
    )


class ReplayBuffer:
    """A circular buffer of transitions in preallocated numpy arrays.

    ``add`` stores a batch of ``N`` transitions at once (one per sub-environment of a
    vector env; ``N = 1`` for a single env). When full, the oldest transitions are
    overwritten. ``sample`` draws uniformly *with replacement*, so it works from the
    first transition on and every batch has exactly ``batch_size`` rows.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int],
        obs_dtype: np.dtype | type = np.float32,
        seed: int | None = None,
    ):
        if int(capacity) < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.obs = np.zeros((self.capacity, *self.obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(self.capacity, dtype=np.int64)
        self.rewards = np.zeros(self.capacity, dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.truncated = np.zeros(self.capacity, dtype=np.float32)
        self.pos = 0  # where the next transition goes
        self.size = 0  # how many transitions are stored
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ReplayBuffer({self.size}/{self.capacity} transitions, obs_shape={self.obs_shape})"

    def add(self, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Store ``N`` transitions: ``obs``/``next_obs`` are ``(N, *obs_shape)``, the rest ``(N,)``."""
        obs = np.asarray(obs)
        next_obs = np.asarray(next_obs)
        if obs.shape[1:] != self.obs_shape or obs.ndim != len(self.obs_shape) + 1:
            raise ValueError(
                f"obs must have shape (N, {', '.join(map(str, self.obs_shape))}), got {obs.shape}"
                " (pass a batch: for a single transition use obs[None])"
            )
        if next_obs.shape != obs.shape:
            raise ValueError(f"next_obs has shape {next_obs.shape}, obs has shape {obs.shape}")
        n = obs.shape[0]
        columns = {
            "actions": np.asarray(actions),
            "rewards": np.asarray(rewards),
            "terminated": np.asarray(terminated),
            "truncated": np.asarray(truncated),
        }
        for name, value in columns.items():
            if value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},) to match obs, got {value.shape}")
        if n > self.capacity:
            raise ValueError(f"cannot add {n} transitions to a buffer of capacity {self.capacity}")
        if n == 0:
            return
        idx = (self.pos + np.arange(n)) % self.capacity  # wraps around when full
        self.obs[idx] = obs
        self.next_obs[idx] = next_obs
        self.actions[idx] = columns["actions"]
        self.rewards[idx] = columns["rewards"]
        self.terminated[idx] = columns["terminated"]
        self.truncated[idx] = columns["truncated"]
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> Transitions:
        """``batch_size`` transitions drawn uniformly with replacement (numpy arrays)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer: add transitions first")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = self.rng if rng is None else rng
        idx = rng.integers(0, self.size, size=int(batch_size))  # (B,), with replacement
        return Transitions(
            obs=self.obs[idx],
            actions=self.actions[idx],
            rewards=self.rewards[idx],
            next_obs=self.next_obs[idx],
            terminated=self.terminated[idx],
            truncated=self.truncated[idx],
        )


def sample_from_rollout(obs, actions, rewards, terminated, truncated, batch_size, rng):
    """Sample transitions from a vector-env rollout stored step by step (NEXT_STEP autoreset).

    ``obs`` is ``(T + 1, N, *obs_shape)``: ``obs[t]`` is what the ``N`` envs showed before
    step ``t`` and ``obs[t + 1]`` what they showed after it. ``actions``, ``rewards``,
    ``terminated``, ``truncated`` are ``(T, N)``.

    With gymnasium's NEXT_STEP autoreset, the step after an episode ends is the *reset*
    step of that env: its action is ignored, its reward is 0 and ``obs[t + 1]`` is the
    first observation of a new episode. That step is not a transition of the game (it
    jumps from the last state of one episode to the first of the next), so it is never
    sampled.

    Draws ``batch_size`` of the valid (t, env) pairs uniformly with replacement, exactly as
    ``rng.integers(0, n_valid, size=batch_size)`` picks among ``np.nonzero(valid)``.
    """
    obs = np.asarray(obs)
    done = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)  # (T, N)
    if obs.shape[0] != done.shape[0] + 1 or obs.shape[1] != done.shape[1]:
        raise ValueError(
            f"obs must be (T + 1, N, ...) for flags of shape (T, N) = {done.shape}, got {obs.shape}"
        )
    valid = np.ones_like(done)  # (T, N)
    valid[1:] = ~done[:-1]  # the step after an end is the autoreset step: skip it
    valid_t, valid_n = np.nonzero(valid)  # (n_valid,), (n_valid,)
    pick = rng.integers(0, len(valid_t), size=batch_size)  # (B,) with replacement
    t, n = valid_t[pick], valid_n[pick]
    return Transitions(
        obs=obs[t, n],
        actions=np.asarray(actions)[t, n],
        rewards=np.asarray(rewards)[t, n],
        next_obs=obs[t + 1, n],  # the observation right after step t, same env
        terminated=np.asarray(terminated)[t, n],
        truncated=np.asarray(truncated)[t, n],
    )
