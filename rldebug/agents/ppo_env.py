"""The environment side of :mod:`rldebug.agents.ppo`: rollouts and evaluations of many seeds.

Every tensor here carries the seed axis first: seed k acts in its own vector env (a native
vector env draws all its sub-environments from one generator, so seeds cannot share one)
and samples from its own generator, so that its run does not depend on the other seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import VectorEnv

from rldebug.parallel import run_parallel, split_seeds
from rldebug.recurrent import State, store_state
from rldebug.seedbatch import SeedBatch

__all__ = [
    "EnvState",
    "ObsNormalizer",
    "Rollout",
    "collect_rollout",
    "evaluate",
    "seed_of",
    "start_envs",
    "train_in_processes",
]


def seed_of(batch, k: int):
    """Seed k's slice of a seed-first rollout, minibatch or state (tuples are followed)."""
    if isinstance(batch, torch.Tensor):
        return batch[k]
    parts = [seed_of(part, k) for part in batch]
    return type(batch)(*parts) if hasattr(batch, "_fields") else tuple(parts)


class ObsNormalizer:
    """Running mean and variance of each seed's observations (like sb3's VecNormalize).

    CartPole's angle moves by hundredths of a radian: unnormalised, it barely reaches the
    cell. The statistics, (S, 1, D), are updated once per rollout, *after* it, and the
    rollout stores the observations as the agent saw them: re-normalising stored raw
    observations with updated statistics would break the first-epoch check (ratio != 1).
    """

    def __init__(self, num_seeds: int, obs_dim: int, clip: float = 10.0):
        self.mean = torch.zeros(num_seeds, 1, obs_dim)
        self.var = torch.ones(num_seeds, 1, obs_dim)
        self.count, self.clip = 1e-4, clip

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (S, B, D) -> normalised (S, B, D)."""
        return ((obs - self.mean) / (self.var + 1e-8).sqrt()).clamp(-self.clip, self.clip)

    def update(self, raw: torch.Tensor) -> None:
        """Fold raw observations (S, T, B, D) into each seed's statistics."""
        x = raw.flatten(1, 2)  # (S, T, B, D) -> (S, T*B, D)
        n = x.shape[1]
        mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        self.count = total


class Rollout(NamedTuple):
    """T steps of B environments (one seed; the training loop stacks seeds in front)."""

    obs: torch.Tensor  # (T, B, D) the observation acted on, as the agent saw it
    starts: torch.Tensor  # (T, B) bool: obs[t] is the first observation of an episode
    actions: torch.Tensor  # (T, B) long
    logprobs: torch.Tensor  # (T, B) log pi(a_t | history) at rollout time
    values: torch.Tensor  # (T + 1, B) V(obs[t]); values[T] bootstraps the last step
    rewards: torch.Tensor  # (T, B)
    terminated: torch.Tensor  # (T, B) bool
    truncated: torch.Tensor  # (T, B) bool
    mask: torch.Tensor  # (T, B) bool: False on reset steps (the env ignored the action)
    h0: State  # the state before obs[0], stored: h (B, 2H) or (h, c)


class EnvState(NamedTuple):
    """What carries over from one rollout to the next, seed axis first."""

    obs: torch.Tensor  # (S, B, D) the next raw observation to act on
    start: torch.Tensor  # (S, B) bool: it starts an episode
    state: State  # (S, B, 2H), or (h, c): the agent's state before it
    done: torch.Tensor  # (S, B) bool: the last step ended an episode (next is a reset step)


def start_envs(agent: SeedBatch, envs: Sequence[VectorEnv], seeds: Sequence[int]) -> EnvState:
    """Reset seed k's vector env with seed k; every state starts at zeros."""
    obs = np.stack([env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds)])
    s, b = obs.shape[:2]
    return EnvState(
        obs=torch.as_tensor(obs, dtype=torch.float32),
        start=torch.ones(s, b, dtype=torch.bool),
        state=agent.call("initial_state", b),
        done=torch.zeros(s, b, dtype=torch.bool),
    )


def _sample(logits: torch.Tensor, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
    """One action per row of logits (S, B, A), seed k drawing from its own generator."""
    cdf = F.softmax(logits.double(), -1).cumsum(-1).numpy()  # (S, B, A)
    u = np.stack([rng.random(cdf.shape[1]) for rng in rngs])[..., None]  # (S, B, 1)
    return torch.as_tensor(np.minimum((u > cdf).sum(-1), cdf.shape[-1] - 1))  # (S, B)


def collect_rollout(
    agent: SeedBatch,
    envs: Sequence[VectorEnv],
    carry: EnvState,
    num_steps: int,
    rngs: Sequence[np.random.Generator],
    normalize: ObsNormalizer | None = None,
    reset: bool = True,
) -> tuple[Rollout, EnvState, torch.Tensor]:
    """Act ``num_steps`` steps in every environment of every seed.

    Returns the rollout (every field seed-first, (S, T, B, ...)), the carry for the next
    one, and the raw observations (S, T, B, D) for the normaliser. The state of an
    environment is reset (inside ``agent.step``) where its observation starts an episode;
    ``h0`` stores the state the rollout started from, so that the training unroll
    recomputes exactly the same outputs. ``reset=False`` never resets the state while
    acting (a bug, kept to measure its cost); ``starts`` still records the episode starts.
    """
    h0 = store_state(carry.state)
    normalize = normalize or (lambda x: x)
    steps: dict[str, list] = {name: [] for name in Rollout._fields if name not in ("h0",)}
    raw = []
    obs, start, state, done = carry
    with torch.no_grad():
        for _ in range(num_steps):
            seen = normalize(obs)
            logits, value, state = agent.call("step", seen, state, start & reset)
            action = _sample(logits, rngs)  # (S, B)
            results = [env.step(a) for env, a in zip(envs, action.numpy())]
            next_obs, reward, terminated, truncated = (np.stack(r) for r in list(zip(*results))[:4])
            raw.append(obs)
            steps["obs"].append(seen)
            steps["starts"].append(start)
            steps["actions"].append(action)
            steps["logprobs"].append(
                F.log_softmax(logits, -1).gather(-1, action[..., None])[..., 0]
            )
            steps["values"].append(value)
            steps["rewards"].append(torch.as_tensor(reward, dtype=torch.float32))
            steps["terminated"].append(torch.as_tensor(terminated))
            steps["truncated"].append(torch.as_tensor(truncated))
            steps["mask"].append(~done)  # a step after a done is a reset step: action ignored
            start = done  # the observation after a reset step starts an episode
            done = torch.as_tensor(terminated | truncated)
            obs = torch.as_tensor(next_obs, dtype=torch.float32)
        # The bootstrap value of the last step: V(next obs), without advancing the state.
        _, last_value, _ = agent.call("step", normalize(obs), state, start & reset)
    steps["values"].append(last_value)
    fields = {name: torch.stack(xs, 1) for name, xs in steps.items()}  # T x (S, B) -> (S, T, B)
    rollout = Rollout(**fields, h0=h0)
    return rollout, EnvState(obs, start, state, done), torch.stack(raw, 1)


def evaluate(
    agent: SeedBatch,
    envs: Sequence[VectorEnv],
    normalize: ObsNormalizer | None = None,
    seed: int = 10_000,
) -> np.ndarray:
    """Mean greedy return of each seed: one episode in each env of ``envs[k]`` -> (S,).

    Every seed plays the same episodes (each vector env is reset with ``seed``); the
    actor carries each episode's state from step to step, from zeros.
    """
    if not isinstance(agent, SeedBatch):
        agent = SeedBatch([agent])  # one plain network: one seed
    if len(envs) != agent.num_seeds:
        raise ValueError(
            f"evaluate needs one vector env per seed: {len(envs)} for {agent.num_seeds}"
        )
    obs = np.stack([env.reset(seed=seed)[0] for env in envs])  # (S, E, D)
    s, e = obs.shape[:2]
    state = agent.call("initial_state", e, actor_only=True)
    returns, running = np.zeros((s, e)), np.ones((s, e), dtype=bool)
    with torch.no_grad():
        while running.any():
            o = torch.as_tensor(obs, dtype=torch.float32)
            logits, state = agent.call("act", normalize(o) if normalize else o, state)
            results = [env.step(a) for env, a in zip(envs, logits.argmax(-1).numpy())]
            obs, reward, terminated, truncated = (np.stack(r) for r in list(zip(*results))[:4])
            returns += reward * running
            running &= ~(terminated | truncated)  # only each env's first episode counts
    return returns.mean(1)


def train_in_processes(train, cfg, seeds, processes: int, progress, eval_seed: int):
    """``train`` on groups of consecutive seeds in worker processes, joined in seed order.

    Each seed's run is the same either way: it has its own envs and generators.
    """
    started = time.perf_counter()
    groups = split_seeds(seeds, processes)
    jobs = [lambda g=g: train(cfg, g, progress=False, eval_seed=eval_seed) for g in groups]
    parts = run_parallel(jobs, processes=processes, desc=f"PPO {cfg.env_id}",
                         progress=progress is not False)  # fmt: skip
    joined = None
    if parts[0].normalizer is not None:  # each seed's statistics, (S, 1, D)
        joined = copy.copy(parts[0].normalizer)
        joined.mean = torch.cat([p.normalizer.mean for p in parts])
        joined.var = torch.cat([p.normalizer.var for p in parts])
    return dataclasses.replace(
        parts[0],
        seeds=list(seeds),
        eval_returns=np.concatenate([p.eval_returns for p in parts], axis=1),  # (E, S)
        final_return=np.concatenate([p.final_return for p in parts]),
        seconds=time.perf_counter() - started,
        agent=SeedBatch([p.agent.seed(k) for p in parts for k in range(p.agent.num_seeds)]),
        normalizer=joined,
        first_check=np.concatenate([p.first_check for p in parts], axis=1),  # (U, S)
        approx_kl=np.concatenate([p.approx_kl for p in parts], axis=1),
    )
