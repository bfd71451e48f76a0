"""The seed axis of :func:`rldebug.agents.dqn.train` on the environment side: one vector env,
one replay buffer and one random generator per seed, in arrays with the seed axis first.

Plumbing only; the algorithm is in :mod:`rldebug.agents.dqn`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rldebug.replay import Transitions, to_torch

__all__ = [
    "SeedReplay",
    "check_seeds",
    "join_seed_results",
    "logged_fields",
    "stack_obs",
    "step_envs",
    "update_log",
    "window_means",
]


def check_seeds(seeds: Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        raise TypeError(f"seeds must be a list of ints, got the int {seeds}: write seeds=[{seeds}]")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("train needs at least one seed")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
        raise TypeError(f"seeds must be ints, got {seeds!r}")
    if len(set(seeds)) < len(seeds):
        raise ValueError(f"seeds must be different from each other, got {seeds}")
    return [int(s) for s in seeds]


def stack_obs(arrays) -> np.ndarray:
    return np.stack(
        [np.asarray(a, dtype=np.float32) for a in arrays]
    )  # S x (N, ...) -> (S, N, ...)


def step_envs(envs: list, actions: np.ndarray):
    """Step each seed's vector env with its row of ``actions`` (S, N); arrays (S, N, ...)."""
    steps = [env.step(a) for env, a in zip(envs, actions)]
    obs, rewards, terminated, truncated, _ = zip(*steps)
    return stack_obs(obs), np.stack(rewards), np.stack(terminated), np.stack(truncated)


def join_seed_results(parts: list) -> dict:
    """The fields of results trained on groups of consecutive seeds, joined along the seed
    axis (the logging grid is the same for every group); seeds, config and seconds are left
    to the caller."""
    joined = {}
    for name in ("steps", "epsilons", "target_updates", "eval_steps"):
        joined[name] = getattr(parts[0], name)
    for name in ("losses", "mean_max_q", "td_errors", "grad_norms"):
        joined[name] = np.concatenate([getattr(p, name) for p in parts], axis=1)  # (L, S)
    for name in ("eval_returns", "eval_q0", "eval_g0"):
        joined[name] = np.concatenate([getattr(p, name) for p in parts], axis=1)  # (E, S)
    for name in ("final_return", "stopped_at"):
        joined[name] = np.concatenate([getattr(p, name) for p in parts])  # (S,)
    for name in ("q_nets", "episode_steps", "episode_returns", "episode_discounted_returns"):
        joined[name] = [x for p in parts for x in getattr(p, name)]  # one entry per seed
    return joined


def update_log(S: int, learners: np.ndarray, losses, parts, norms) -> torch.Tensor:
    """(5, S) loss, max Q, TD error, grad norm and 1 (learning) of one update; zeros for
    the seeds that made none (``learners`` are the S' positions that did)."""
    with torch.no_grad():
        max_q = parts.q_values.max(dim=2).values.mean(dim=1)  # (S', B, A) -> (S',)
        td = (parts.targets - parts.q_sa).abs().mean(dim=1)  # (S', B) -> (S',)
        made = torch.ones_like(td)
        values = torch.stack([losses.detach(), max_q, td, norms[learners], made])  # (5, S')
        if len(learners) == S:
            return values
        logged = torch.zeros(5, S)
        logged[:, learners] = values
    return logged


def window_means(window: list[torch.Tensor], S: int) -> np.ndarray:
    """(4, S) means of loss, max Q, TD error and grad norm over the updates each seed made."""
    if not window:
        return np.full((4, S), np.nan)
    values = torch.stack(window).numpy()  # (U, 5, S)
    made = values[:, 4]  # (U, S): 1 where the seed was still learning
    with np.errstate(invalid="ignore", divide="ignore"):
        return (values[:, :4] * made[:, None]).sum(axis=0) / made.sum(axis=0)  # (4, S)


def logged_fields(seeds, log, episodes, stopped_at) -> dict:
    """The fields of a ``dqn.Result`` from the lists the training loop appends to."""
    curves = np.array(log["curves"]).reshape(-1, 4, len(seeds))  # (L, 4, S)
    evals = log["evals"]  # per evaluation: (step, returns (S, n), discounted (S, n), q0 (S,))
    return dict(
        seeds=list(seeds),
        steps=np.array(log["steps"], dtype=int),
        losses=curves[:, 0],
        mean_max_q=curves[:, 1],
        td_errors=curves[:, 2],
        grad_norms=curves[:, 3],
        epsilons=np.array(log["eps"]),
        target_updates=np.array(log["targets"], dtype=int),
        episode_steps=[np.array(e[0], dtype=int) for e in episodes],
        episode_returns=[np.array(e[1]) for e in episodes],
        episode_discounted_returns=[np.array(e[2]) for e in episodes],
        eval_steps=np.array([e[0] for e in evals], dtype=int),
        eval_returns=np.array([e[1].mean(axis=1) for e in evals]).reshape(-1, len(seeds)),
        eval_g0=np.array([e[2].mean(axis=1) for e in evals]).reshape(-1, len(seeds)),
        eval_q0=np.array([e[3] for e in evals]).reshape(-1, len(seeds)),
        stopped_at=stopped_at.copy(),
    )


class SeedReplay:
    """One circular replay buffer per seed, in arrays with a leading seed axis (S, capacity)."""

    def __init__(self, n_seeds: int, capacity: int, obs_shape: Sequence[int]):
        self.capacity = int(capacity)
        self.obs = np.zeros((n_seeds, self.capacity, *obs_shape), dtype=np.float32)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros((n_seeds, self.capacity), dtype=np.int64)
        self.rewards = np.zeros((n_seeds, self.capacity), dtype=np.float32)
        self.terminated = np.zeros((n_seeds, self.capacity), dtype=np.float32)
        self.truncated = np.zeros((n_seeds, self.capacity), dtype=np.float32)
        self.pos = np.zeros(n_seeds, dtype=np.int64)
        self.size = np.zeros(n_seeds, dtype=np.int64)

    def add(self, keep, obs, actions, rewards, next_obs, terminated, truncated) -> None:
        """Store the rows with ``keep`` (S, N) True, in env order; arrays are (S, N, ...)."""
        slot = (self.pos[:, None] + np.cumsum(keep, axis=1) - 1) % self.capacity  # (S, N)
        s, n = np.nonzero(keep)  # (k,), (k,)
        at = slot[s, n]
        self.obs[s, at] = obs[s, n]
        self.next_obs[s, at] = next_obs[s, n]
        self.actions[s, at] = actions[s, n]
        self.rewards[s, at] = rewards[s, n]
        self.terminated[s, at] = terminated[s, n]
        self.truncated[s, at] = truncated[s, n]
        count = keep.sum(axis=1)  # (S,)
        self.pos = (self.pos + count) % self.capacity
        self.size = np.minimum(self.size + count, self.capacity)

    def sample(self, batch_size: int, rngs: list, seeds: np.ndarray) -> Transitions:
        """(S', B) transitions for the S' seed positions in ``seeds``: seed k's drawn
        uniformly with replacement by ``rngs[k]``.

        The seeds left out do not draw, so a seed that stopped learning leaves its generator
        where its run alone would leave it.
        """
        seeds = np.asarray(seeds, dtype=np.int64)
        idx = np.zeros((len(seeds), batch_size), dtype=np.int64)  # (S', B)
        for row, k in enumerate(seeds):
            idx[row] = rngs[k].integers(0, self.size[k], size=batch_size)
        # row (k, i) of an (S, capacity, ...) array is row k * capacity + i of its flat view:
        # one np.take for all seeds, several times faster than the fancy index arr[k, idx]
        flat = (seeds[:, None] * self.capacity + idx).reshape(-1)  # (S' * B,)

        def take(arr: np.ndarray) -> np.ndarray:
            rows = arr.reshape(-1, *arr.shape[2:])  # (S, capacity, ...) -> (S * capacity, ...)
            return np.take(rows, flat, axis=0).reshape(len(seeds), batch_size, *arr.shape[2:])

        return to_torch(Transitions(*(take(a) for a in self._arrays())))

    def _arrays(self):
        return self.obs, self.actions, self.rewards, self.next_obs, self.terminated, self.truncated
