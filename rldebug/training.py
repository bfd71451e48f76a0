"""Training utilities: building (vector) environments, seeding, greedy evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from rldebug.utils import set_seed

__all__ = [
    "EvalResult",
    "evaluate",
    "greedy_policy",
    "linear_schedule",
    "make_vec_env",
    "seed_everything",
    "as_vector_env",
]

seed_everything = set_seed  # one name for "seed python, numpy and torch"


def linear_schedule(start: float, end: float, duration: int, t: int) -> float:
    """Go linearly from ``start`` to ``end`` over ``duration`` steps, then stay at ``end``."""
    if duration <= 0:
        return end
    frac = min(max(t / duration, 0.0), 1.0)
    return start + frac * (end - start)


def make_vec_env(
    env_id: str,
    num_envs: int = 1,
    *,
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = (),
    vectorization_mode: str | None = None,
    **env_kwargs: Any,
) -> VectorEnv:
    """``gymnasium.make_vec`` with a sensible mode.

    ``vectorization_mode=None`` picks the environment's native vector env
    (``"vector_entry_point"``, one numpy step for all envs) when the id has one and no
    per-env wrapper is asked for, else ``"sync"`` (a Python loop over single envs, which
    accepts wrappers such as ``gymnasium.wrappers.FrameStackObservation``).
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if vectorization_mode is None:
        spec = gym.spec(env_id)
        native = spec.vector_entry_point is not None and not wrappers
        vectorization_mode = "vector_entry_point" if native else "sync"
    if vectorization_mode == "vector_entry_point" and wrappers:
        raise ValueError(
            "per-env wrappers need vectorization_mode='sync' (a native vector env steps all "
            "envs in one call and cannot wrap them one by one)"
        )
    kwargs: dict[str, Any] = {"num_envs": num_envs, "vectorization_mode": vectorization_mode}
    if wrappers:
        kwargs["wrappers"] = list(wrappers)
    return gym.make_vec(env_id, **kwargs, **env_kwargs)


def as_vector_env(env: gym.Env | VectorEnv) -> VectorEnv:
    """A single env becomes a vector env of one (NEXT_STEP autoreset); a vector env is kept.

    Raises ``ValueError`` for a vector env whose autoreset mode is not NEXT_STEP, since the
    agents here rely on it to recognise the step that crosses an episode boundary.
    """
    if isinstance(env, VectorEnv):
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode != AutoresetMode.NEXT_STEP:
            raise ValueError(
                f"the vector env uses autoreset mode {mode}; this library expects NEXT_STEP "
                "(gymnasium's default): make it with "
                "vector_kwargs={'autoreset_mode': AutoresetMode.NEXT_STEP}"
            )
        return env
    if isinstance(env, gym.Env):
        return gym.vector.SyncVectorEnv([lambda: env])
    raise TypeError(f"expected a gymnasium Env or VectorEnv, got {type(env).__name__}")


def greedy_policy(q_net: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """A policy ``obs (N, ...) -> actions (N,)`` that takes argmax_a Q(s, a)."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            q = q_net(torch.as_tensor(obs, dtype=torch.float32))  # (N, A)
        return q.argmax(dim=1).numpy()

    return act


@dataclass
class EvalResult:
    """Per-episode results of an evaluation, in the order of the seeds used."""

    returns: np.ndarray  # (n_episodes,) undiscounted return
    lengths: np.ndarray  # (n_episodes,) steps
    discounted_returns: np.ndarray  # (n_episodes,) G_0 = sum_t gamma^t r_t
    first_obs: np.ndarray  # (n_episodes, *obs_shape) the observation each episode started from
    gamma: float

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    def __repr__(self) -> str:
        return (
            f"EvalResult(mean={self.mean:.1f}, min={self.returns.min():.1f}, "
            f"max={self.returns.max():.1f}, n={len(self.returns)})"
        )


def evaluate(
    policy: Callable[[np.ndarray], np.ndarray],
    envs: VectorEnv,
    n_episodes: int,
    *,
    seed: int = 0,
    gamma: float = 0.99,
) -> EvalResult:
    """Run ``n_episodes`` seeded episodes, all at once: same seed, same episodes.

    Each wave resets ``envs`` with ``seed + start`` (a sync vector env gives its env ``i``
    the seed ``seed + start + i``; a native vector env seeds its shared generator).

    Each sub-environment of ``envs`` plays one episode per wave; with
    ``envs.num_envs >= n_episodes`` there is one wave and every step is one batched call
    of the policy for all episodes.
    """
    n = envs.num_envs
    returns, lengths, discounted, firsts = [], [], [], []
    for start in range(0, n_episodes, n):
        obs, _ = envs.reset(seed=seed + start)  # env i gets seed + start + i
        first = np.array(obs, copy=True)
        ret = np.zeros(n)
        disc = np.zeros(n)
        length = np.zeros(n, dtype=np.int64)
        running = np.ones(n, dtype=bool)  # still in its first episode
        while running.any():
            actions = np.asarray(policy(obs))
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            ret += rewards * running
            disc += (gamma**length) * rewards * running
            length += running
            running &= ~(terminated | truncated)
        take = min(n, n_episodes - start)
        returns.append(ret[:take])
        lengths.append(length[:take])
        discounted.append(disc[:take])
        firsts.append(first[:take])
    return EvalResult(
        returns=np.concatenate(returns),
        lengths=np.concatenate(lengths),
        discounted_returns=np.concatenate(discounted),
        first_obs=np.concatenate(firsts),
        gamma=gamma,
    )
