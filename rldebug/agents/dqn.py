"""DQN (Mnih et al., 2015) with Double DQN (van Hasselt et al., 2016): the book's reference.

Read :func:`train` top to bottom: it is the whole algorithm. The pieces it calls are
importable on their own so the chapters can test and reuse them:

* :func:`epsilon_greedy`: explore with probability epsilon, else act greedily;
* :func:`td_targets`: ``r + gamma * (1 - terminated) * max_a' Q_target(s', a')``
  (Double DQN: the online net picks ``a'``, the target net values it);
* :func:`dqn_loss`: Huber (or squared) error between ``Q(s, a)`` and the target;
* :func:`update_target`: hard copy (``tau = 1``) or Polyak averaging (``tau < 1``).

Works on a single gymnasium env or a :class:`gymnasium.vector.VectorEnv` with NEXT_STEP
autoreset (gymnasium's default): the step that crosses an autoreset is not stored.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import VectorEnv
from torch import nn

from rldebug.nets import grad_norm, q_network
from rldebug.replay import ReplayBuffer, Transitions, to_torch
from rldebug.training import (
    EvalResult,
    as_vector_env,
    evaluate,
    greedy_policy,
    linear_schedule,
    make_vec_env,
)
from rldebug.utils import set_seed

__all__ = [
    "DQNConfig",
    "DQNResult",
    "LossParts",
    "dqn_loss",
    "epsilon_greedy",
    "evaluate_q",
    "td_targets",
    "train",
    "train_seeds",
    "update_target",
]


@dataclass
class DQNConfig:
    """Every knob of :func:`train`.

    The defaults are chapter 3's CartPole-v1 recipe (close to the RL-Zoo one, in 30k steps):
    a wide net, a high learning rate decaying linearly to 0 (so that a solved policy stays
    solved), one update per 2 steps, a hard target copy every 64 updates, Huber loss,
    Double DQN.
    """

    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    num_envs: int = 4  # sub-environments stepped together
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = ()  # per-env observation wrappers
    total_steps: int = 30_000  # environment steps (all sub-environments together)
    seed: int = 0
    hidden: Sequence[int] = (256, 256)
    gamma: float = 0.99
    lr: float = 2.3e-3
    lr_end: float | None = 0.0  # linear decay to lr_end at the end (None: constant)
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1_000  # random-policy steps before the first update
    train_every: int = 2  # environment steps per gradient step
    target_update_every: int = 64  # gradient steps between target updates
    tau: float = 1.0  # 1.0: hard copy; < 1: Polyak averaging at every target update
    eps_start: float = 1.0
    eps_end: float = 0.04
    eps_fraction: float = 0.27  # fraction of total_steps over which epsilon decays
    huber: bool = True  # False: squared error
    huber_delta: float = 1.0  # where the Huber loss turns from quadratic to linear
    max_grad_norm: float | None = 10.0  # None: no clipping
    double: bool = True  # Double DQN targets
    bootstrap_on_truncation: bool = True  # False treats a time limit as a real end
    log_every: int = 500  # environment steps between logged points of the curves
    eval_every: int = 2_500  # environment steps between greedy evaluations (0: never)
    eval_episodes: int = 10
    final_eval_episodes: int = 20
    eval_seed: int = 10_000  # evaluation episodes use seeds eval_seed + i

    def __post_init__(self):
        if self.num_envs < 1 or self.batch_size < 1 or self.train_every < 1:
            raise ValueError("num_envs, batch_size and train_every must be >= 1")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.target_update_every < 1:
            raise ValueError(f"target_update_every must be >= 1, got {self.target_update_every}")


class LossParts(NamedTuple):
    """What :func:`dqn_loss` computed on the way, for the diagnostics."""

    q_values: torch.Tensor  # (B, A) Q(s, .) from the online net
    q_sa: torch.Tensor  # (B,) Q(s, a) of the actions taken
    targets: torch.Tensor  # (B,) TD targets (no gradient)


@dataclass
class DQNResult:
    """A trained agent and every curve the dashboard draws."""

    config: DQNConfig
    q_net: nn.Module
    # logged every ``log_every`` environment steps (means over the updates in between)
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    mean_max_q: list[float] = field(default_factory=list)  # mean over batches of max_a Q(s, a)
    td_errors: list[float] = field(default_factory=list)  # mean |target - Q(s, a)|
    grad_norms: list[float] = field(default_factory=list)  # before clipping
    epsilons: list[float] = field(default_factory=list)
    target_updates: list[int] = field(default_factory=list)  # cumulative count
    # one entry per finished training episode (epsilon-greedy)
    episode_steps: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    episode_discounted_returns: list[float] = field(default_factory=list)
    # greedy evaluations
    eval_steps: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)  # mean over episodes
    eval_q0: list[float] = field(default_factory=list)  # mean max_a Q(s_0, a): predicted
    eval_g0: list[float] = field(default_factory=list)  # mean observed discounted return
    final_eval: EvalResult | None = None
    wall_time: float = 0.0

    @property
    def final_return(self) -> float:
        """Mean greedy return of the final evaluation."""
        return float("nan") if self.final_eval is None else self.final_eval.mean

    def steps_to_reach(self, threshold: float) -> int | None:
        """First evaluation step whose mean return reached ``threshold`` (None: never)."""
        for step, value in zip(self.eval_steps, self.eval_returns):
            if value >= threshold:
                return step
        return None

    def summary(self) -> str:
        return (
            f"seed {self.config.seed}: final greedy return {self.final_return:.1f} "
            f"after {self.config.total_steps} steps ({self.wall_time:.1f} s)"
        )


def epsilon_greedy(
    q_net: nn.Module, obs: np.ndarray, epsilon: float, n_actions: int, rng: np.random.Generator
) -> np.ndarray:
    """One action per row of ``obs`` (N, ...): random with probability epsilon, else greedy."""
    n = obs.shape[0]
    actions = rng.integers(0, n_actions, size=n)  # (N,)
    greedy = rng.random(n) >= epsilon  # (N,) which rows exploit
    if greedy.any():
        with torch.no_grad():
            q = q_net(torch.as_tensor(obs[greedy], dtype=torch.float32))  # (n_greedy, A)
        actions[greedy] = q.argmax(dim=1).numpy()
    return actions


def td_targets(
    q_net: nn.Module,
    target_net: nn.Module,
    batch: Transitions,
    gamma: float,
    *,
    double: bool = False,
    bootstrap_on_truncation: bool = True,
) -> torch.Tensor:
    """``r + gamma * (1 - terminated) * Q_target(s', a')``, shape (B,), without gradient.

    ``a' = argmax Q_target(s', .)`` (DQN) or ``argmax Q_online(s', .)`` (Double DQN, which
    stops the max from picking the actions whose values happen to be overestimated).
    A truncated episode still has a future, so it bootstraps; only ``terminated`` zeroes
    the future (``bootstrap_on_truncation=False`` is the bug, kept for the experiment).
    """
    with torch.no_grad():
        next_q_all = target_net(batch.next_obs)  # (B, A)
        if double:
            next_actions = q_net(batch.next_obs).argmax(dim=1, keepdim=True)  # (B, 1)
        else:
            next_actions = next_q_all.argmax(dim=1, keepdim=True)  # (B, 1)
        next_q = next_q_all.gather(1, next_actions).squeeze(1)  # (B, 1) -> (B,)
        ended = batch.terminated
        if not bootstrap_on_truncation:
            ended = torch.maximum(batch.terminated, batch.truncated)
        return batch.rewards + gamma * (1.0 - ended) * next_q  # (B,)


def dqn_loss(
    q_net: nn.Module,
    target_net: nn.Module,
    batch: Transitions,
    gamma: float,
    *,
    double: bool = False,
    huber: bool = True,
    huber_delta: float = 1.0,
    bootstrap_on_truncation: bool = True,
    return_parts: bool = False,
):
    """The DQN loss on a batch of torch tensors: mean Huber(Q(s, a) - target).

    Only the taken action's output gets an error (``gather``); the target is a constant
    (semi-gradient). Huber is quadratic for errors below 1 and linear above, so one
    surprising target moves the weights by a bounded amount.
    """
    q_values = q_net(batch.obs)  # (B, A)
    q_sa = q_values.gather(1, batch.actions.long().unsqueeze(1)).squeeze(1)  # (B, 1) -> (B,)
    targets = td_targets(
        q_net,
        target_net,
        batch,
        gamma,
        double=double,
        bootstrap_on_truncation=bootstrap_on_truncation,
    )  # (B,), no gradient
    if huber:
        loss = F.huber_loss(q_sa, targets, delta=huber_delta)  # delta=1: F.smooth_l1_loss
    else:
        loss = F.mse_loss(q_sa, targets)
    if return_parts:
        return loss, LossParts(q_values=q_values, q_sa=q_sa, targets=targets)
    return loss


def update_target(target_net: nn.Module, q_net: nn.Module, tau: float = 1.0) -> None:
    """``target <- tau * online + (1 - tau) * target`` (``tau = 1``: a hard copy)."""
    with torch.no_grad():
        for t, p in zip(target_net.parameters(), q_net.parameters()):
            if tau >= 1.0:
                t.copy_(p)
            else:
                t.lerp_(p, tau)


def evaluate_q(
    q_net: nn.Module, envs: VectorEnv, n_episodes: int, *, seed: int, gamma: float
) -> tuple[EvalResult, float]:
    """Greedy evaluation, plus the mean predicted value max_a Q(s_0, a) of the start states.

    Compare the second number with ``result.discounted_returns.mean()``, the discounted
    return the greedy policy actually collected from those states: a predicted value
    far above it is overestimation.
    """
    result = evaluate(greedy_policy(q_net), envs, n_episodes, seed=seed, gamma=gamma)
    with torch.no_grad():
        q0 = q_net(torch.as_tensor(result.first_obs, dtype=torch.float32)).max(dim=1).values
    return result, float(q0.mean())


def train(
    config: DQNConfig | None = None,
    *,
    env: gym.Env | VectorEnv | None = None,
    eval_env: VectorEnv | None = None,
    callback: Callable[[DQNResult], Any] | None = None,
    progress: bool = False,
    **overrides: Any,
) -> DQNResult:
    """Train a DQN; return the network and its curves.

    ``config`` fields can be overridden by keyword (``train(cfg, double=False)``).
    ``env``: a single env or a NEXT_STEP vector env to train on (default: built from
    ``config.env_id``, ``num_envs``, ``wrappers``). ``eval_env``: a vector env for the
    greedy evaluations (default: built the same way with ``final_eval_episodes`` envs).
    ``callback(result)`` is called after each logged point (the live dashboard uses it).
    """
    cfg = replace(config or DQNConfig(), **overrides)
    start_time = time.perf_counter()
    set_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    # --- environments ------------------------------------------------------------------
    if env is None:
        env = make_vec_env(cfg.env_id, cfg.num_envs, wrappers=cfg.wrappers, **cfg.env_kwargs)
    envs = as_vector_env(env)
    if eval_env is None and (cfg.eval_every > 0 or cfg.final_eval_episodes > 0):
        n_eval = max(cfg.eval_episodes, cfg.final_eval_episodes)
        eval_env = make_vec_env(cfg.env_id, n_eval, wrappers=cfg.wrappers, **cfg.env_kwargs)
    n_envs = envs.num_envs
    obs_shape = envs.single_observation_space.shape
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"DQN needs a Discrete action space, got {envs.single_action_space}")
    n_actions = int(envs.single_action_space.n)

    # --- networks, optimiser, replay ---------------------------------------------------
    q_net = q_network(obs_shape, n_actions, cfg.hidden)
    target_net = copy.deepcopy(q_net)  # starts as an exact copy
    target_net.requires_grad_(False)  # only ever changed by update_target
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)
    buffer = ReplayBuffer(cfg.buffer_size, obs_shape, seed=cfg.seed)
    result = DQNResult(config=cfg, q_net=q_net)

    # --- bookkeeping -------------------------------------------------------------------
    obs, _ = envs.reset(seed=cfg.seed)  # (N, *obs_shape); env i gets seed + i
    crossing = np.zeros(n_envs, dtype=bool)  # True: this env's next step is its autoreset
    ep_return = np.zeros(n_envs)
    ep_disc = np.zeros(n_envs)
    ep_len = np.zeros(n_envs, dtype=np.int64)
    n_updates = 0
    n_target_updates = 0
    window: dict[str, list[float]] = {"loss": [], "max_q": [], "td": [], "grad": []}
    n_iterations = -(-cfg.total_steps // n_envs)  # ceil
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iterations * n_envs, desc=f"DQN seed {cfg.seed}", unit="step")

    for iteration in range(n_iterations):
        step = iteration * n_envs  # environment steps taken so far

        # 1. act: epsilon decays linearly, then stays at eps_end
        epsilon = linear_schedule(
            cfg.eps_start, cfg.eps_end, int(cfg.eps_fraction * cfg.total_steps), step
        )
        if step < cfg.learning_starts:
            epsilon = 1.0  # fill the buffer with random play first
        actions = epsilon_greedy(q_net, obs, epsilon, n_actions, rng)  # (N,)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)

        # 2. store: skip the steps that cross an autoreset (their next_obs is a new
        # episode's first observation, their reward 0); with NEXT_STEP autoreset the
        # next_obs of a terminated or truncated step is the episode's true last one.
        keep = ~crossing  # (N,)
        buffer.add(
            obs[keep],
            actions[keep],
            rewards[keep],
            next_obs[keep],
            terminated[keep],
            truncated[keep],
        )
        ep_return += rewards * keep
        ep_disc += (cfg.gamma**ep_len) * rewards * keep
        ep_len += keep
        ended = (terminated | truncated) & keep
        for i in np.flatnonzero(ended):
            result.episode_steps.append(step + n_envs)
            result.episode_returns.append(float(ep_return[i]))
            result.episode_discounted_returns.append(float(ep_disc[i]))
            ep_return[i] = ep_disc[i] = ep_len[i] = 0
        crossing = terminated | truncated
        obs = next_obs

        # 3. learn: one gradient step every train_every environment steps
        step_after = step + n_envs
        if step_after >= cfg.learning_starts:
            if cfg.lr_end is not None:
                lr = linear_schedule(cfg.lr, cfg.lr_end, cfg.total_steps, step_after)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            due = step_after // cfg.train_every - step // cfg.train_every
            for _ in range(due):
                batch = to_torch(buffer.sample(cfg.batch_size, rng))
                loss, parts = dqn_loss(
                    q_net,
                    target_net,
                    batch,
                    cfg.gamma,
                    double=cfg.double,
                    huber=cfg.huber,
                    huber_delta=cfg.huber_delta,
                    bootstrap_on_truncation=cfg.bootstrap_on_truncation,
                    return_parts=True,
                )
                optimizer.zero_grad()
                loss.backward()
                norm = grad_norm(q_net)  # before clipping: what the dashboard shows
                if cfg.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(q_net.parameters(), cfg.max_grad_norm)
                optimizer.step()
                n_updates += 1
                if n_updates % cfg.target_update_every == 0:
                    update_target(target_net, q_net, cfg.tau)
                    n_target_updates += 1
                window["loss"].append(loss.item())
                window["max_q"].append(float(parts.q_values.detach().max(dim=1).values.mean()))
                window["td"].append(float((parts.targets - parts.q_sa.detach()).abs().mean()))
                window["grad"].append(norm)

        # 4. log and evaluate
        if step_after // cfg.log_every > step // cfg.log_every or iteration == n_iterations - 1:
            result.steps.append(step_after)
            for key, curve in (
                ("loss", result.losses),
                ("max_q", result.mean_max_q),
                ("td", result.td_errors),
                ("grad", result.grad_norms),
            ):
                curve.append(float(np.mean(window[key])) if window[key] else float("nan"))
                window[key].clear()
            result.epsilons.append(epsilon)
            result.target_updates.append(n_target_updates)
            is_last = iteration == n_iterations - 1
            if cfg.eval_every > 0 and eval_env is not None and not is_last:
                if step_after // cfg.eval_every > step // cfg.eval_every:
                    _record_eval(result, q_net, eval_env, cfg.eval_episodes, cfg, step_after)
            if callback is not None and not is_last:
                callback(result)
        if bar is not None:
            bar.update(n_envs)

    # --- final greedy evaluation ------------------------------------------------------
    if eval_env is not None and cfg.final_eval_episodes > 0:
        result.final_eval = _record_eval(
            result, q_net, eval_env, cfg.final_eval_episodes, cfg, n_iterations * n_envs
        )
    if bar is not None:
        bar.set_postfix(final_return=f"{result.final_return:.1f}")
        bar.close()
    result.wall_time = time.perf_counter() - start_time
    if callback is not None:
        callback(result)
    return result


def _record_eval(result, q_net, eval_env, n_episodes, cfg, step) -> EvalResult:
    evaluation, q0 = evaluate_q(q_net, eval_env, n_episodes, seed=cfg.eval_seed, gamma=cfg.gamma)
    result.eval_steps.append(step)
    result.eval_returns.append(evaluation.mean)
    result.eval_q0.append(q0)
    result.eval_g0.append(float(evaluation.discounted_returns.mean()))
    return evaluation


def _train_one(args: tuple[DQNConfig, int]) -> DQNResult:
    from rldebug.utils import configure_torch

    configure_torch(1)
    config, seed = args
    return train(config, seed=seed)


def train_seeds(
    config: DQNConfig | None = None,
    seeds: Sequence[int] = range(10),
    *,
    processes: int = 2,
    progress: bool = True,
    **overrides: Any,
) -> list[DQNResult]:
    """Train one agent per seed, ``processes`` at a time (each with one torch thread).

    The runs are independent, so ``processes=2`` on 2 cores halves the wall-clock time.
    ``processes=1`` trains them one after the other in this process.
    """
    cfg = replace(config or DQNConfig(), **overrides)
    jobs = [(cfg, int(s)) for s in seeds]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="seeds", unit="seed")
    results: list[DQNResult] = []
    if processes <= 1:
        for job in jobs:
            results.append(_train_one(job))
            if bar is not None:
                bar.update(1)
    else:
        import multiprocessing as mp

        context = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with context.Pool(processes) as pool:
            for result in pool.imap(_train_one, jobs):
                results.append(result)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return results


def config_dict(config: DQNConfig) -> dict[str, Any]:
    """The config as a plain dict (wrappers shown by name), for tables and logs."""
    d = asdict(config)
    d["wrappers"] = [getattr(w, "__name__", repr(w)) for w in config.wrappers]
    return d
