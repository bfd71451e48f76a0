"""Experience replay: a fixed-size buffer of transitions sampled uniformly at random.

Why replay? Consecutive transitions are strongly correlated (the pole leans left for
twenty steps in a row); a network trained on them in order chases the latest stretch of
experience and forgets the rest. Sampling uniformly from a large buffer makes each batch
look like a draw from the whole recent past, and reuses every transition many times.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch

__all__ = ["NStepWindow", "Transitions", "ReplayBuffer", "sample_from_rollout", "to_torch"]


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


class NStepWindow:
    """Turns the one-step transitions of a batch of sub-environments into n-step ones.

    The transition from ``s_t`` is stored once ``s_{t+n}`` is known, with the reward
    ``r_t + gamma r_{t+1} + ... + gamma^(n-1) r_{t+n-1}`` and ``next_obs = s_{t+n}``; its
    TD target bootstraps with ``gamma ** n``. A reward reaches the state ``n`` steps before
    it in one update instead of ``n``, so values spread back through an episode faster.

    When an episode ends inside a window:

    * **terminated**: the shorter windows that are left are stored too, as terminated. Their
      target has no bootstrap term, so the missing ``gamma ** k`` does not matter.
    * **truncated**: a window of ``k < n`` steps would need ``gamma ** k`` in its target, not
      ``gamma ** n``. It is dropped, not stored with the wrong discount: at most ``n - 1``
      transitions per truncated episode, the last ones before the time limit.

    ``batch_shape`` is the shape of the env axes: ``(N,)`` for a vector env, ``(S, N)`` for
    a population. With ``n = 1`` every transition passes through unchanged.
    """

    def __init__(self, n: int, gamma: float, batch_shape: Sequence[int], obs_shape: Sequence[int]):
        if int(n) < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n, self.gamma = int(n), float(gamma)
        shape = tuple(int(s) for s in batch_shape)
        self.obs = np.zeros((*shape, self.n, *obs_shape), dtype=np.float32)  # (..., n, *obs)
        self.actions = np.zeros((*shape, self.n), dtype=np.int64)  # (..., n)
        self.rewards = np.zeros((*shape, self.n))  # (..., n)
        self.length = np.zeros(shape, dtype=np.int64)  # (...,) steps in each env's window

    def _from_slot(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every env's observation and action at slot ``j`` of its window, and the discounted
        sum of its rewards from there to the window's end: each with the env axes in front."""
        k = np.arange(self.n)
        inside = (k >= j) & (k < self.length[..., None])  # (..., n)
        discount = self.gamma ** np.maximum(k - j, 0)  # (n,)
        rewards = (self.rewards * discount * inside).sum(axis=-1)  # (..., n) -> (...,)
        obs = np.take(self.obs, j, axis=self.length.ndim)  # (..., n, *obs) -> (..., *obs)
        return obs, self.actions[..., j], rewards

    def push(
        self, keep, obs, actions, rewards, next_obs, terminated, truncated
    ) -> Iterator[tuple[np.ndarray, Transitions]]:
        """Add one step of every env (the ones with ``keep`` False are skipped); yield
        ``(stored, transitions)`` pairs: store the rows of ``transitions`` where ``stored``
        is True. Every array has the leading ``batch_shape``."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.length.shape:
            raise ValueError(f"keep must have shape {self.length.shape}, got {keep.shape}")
        if self.n == 1:  # nothing to accumulate
            yield keep, Transitions(obs, actions, rewards, next_obs, terminated, truncated)
            return
        rows = np.nonzero(keep)
        slot = self.length[rows]
        self.obs[(*rows, slot)] = np.asarray(obs)[rows]
        self.actions[(*rows, slot)] = np.asarray(actions)[rows]
        self.rewards[(*rows, slot)] = np.asarray(rewards)[rows]
        self.length[rows] += 1
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        ended = (terminated | truncated) & keep
        full = (self.length == self.n) & keep
        not_ended = np.zeros_like(terminated, dtype=np.float32)

        # a full window that did not end here: its oldest step becomes an n-step transition
        running = full & ~ended
        if running.any():
            yield running, Transitions(*self._from_slot(0), next_obs, not_ended, not_ended)
            for window in (self.obs, self.actions, self.rewards):
                window[running] = np.roll(window[running], -1, axis=1)  # drop the oldest
            self.length[running] -= 1

        # an episode ended: flush its window (a truncated one keeps only the full window)
        if ended.any():
            ended_as = terminated.astype(np.float32), truncated.astype(np.float32)
            for j in range(self.n):
                flush = ended & (self.length > j) & (terminated | (full & (j == 0)))
                if flush.any():
                    yield flush, Transitions(*self._from_slot(j), next_obs, *ended_as)
            self.length[ended] = 0


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
