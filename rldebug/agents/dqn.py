"""DQN (Mnih et al., 2015) with Double DQN (van Hasselt et al., 2016): the book's reference.

Read :func:`train` top to bottom: it is the whole algorithm, for a list of seeds. The model
side is written for ONE seed (a plain Q-network, :func:`dqn_loss`, :func:`greedy_actions`)
and lifted to all seeds at once by :mod:`rldebug.seedbatch`; the environment side carries a
seed axis: seed k has its own vector env, its own replay buffer and its own random
generator, so seed k of ``train(config, seeds=[0, 1, 2])`` is the run ``train(config, [k])``.

* :func:`td_targets`: ``r + gamma * (1 - terminated) * Q_target(s', a')``
  (Double DQN: the online net picks ``a'``, the target net values it);
* :func:`dqn_loss`: Huber (or squared) error between ``Q(s, a)`` and the target;
* :func:`update_target`: hard copy (``tau = 1``) or Polyak averaging (``tau < 1``).

With ``n_step > 1``, :class:`rldebug.replay.NStepWindow` turns the env's steps into n-step
transitions before they are stored, and the target bootstraps with ``gamma ** n_step``.
Environments autoreset on the NEXT_STEP (gymnasium's default): the step that crosses an
autoreset is not stored.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rldebug.agents.dqn_recipes import CARTPOLE_RECIPE, SINE_ROAD_RECIPE
from rldebug.agents.dqn_seeds import (
    SeedReplay,
    check_seeds,
    join_seed_results,
    logged_fields,
    stack_obs,
    step_envs,
    update_log,
    window_means,
)
from rldebug.nets import q_network
from rldebug.parallel import progress_bar, run_parallel, split_seeds
from rldebug.replay import NStepWindow, Transitions
from rldebug.results import SeedsResult
from rldebug.seedbatch import (
    SeedBatch,
    clip_grad_norm_per_seed,
    freeze_adam_seed,
    grad_norm_per_seed,
    seeded,
)
from rldebug.training import as_vector_env, linear_schedule, make_vec_env
from rldebug.utils import agent_rng

__all__ = [
    "CARTPOLE_RECIPE",
    "SINE_ROAD_RECIPE",
    "Config",
    "LossParts",
    "Result",
    "dqn_loss",
    "evaluate",
    "greedy_actions",
    "td_targets",
    "train",
    "update_target",
]


@dataclass
class Config:
    """Every knob of :func:`train`.

    The defaults are close to the RL-Zoo recipe for CartPole-v1, in 30k steps: a wide net, a
    high learning rate decaying linearly to 0 (so that a solved policy stays solved), one
    update per 2 steps, a hard target copy every 64 updates, Huber loss, Double DQN.
    Chapter 3 proves ``Config(**CARTPOLE_RECIPE)``, which changes five of them.
    """

    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    num_envs: int = 4  # sub-environments per seed, stepped together
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = ()  # per-env observation wrappers
    total_steps: int = 30_000  # environment steps per seed (all its sub-environments)
    hidden: Sequence[int] = (256, 256)
    gamma: float = 0.99
    n_step: int = 1  # rewards summed per stored transition; its target bootstraps with gamma**n
    lr: float = 2.3e-3
    lr_end: float | None = 0.0  # linear decay to lr_end (None: constant)
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
    # Stop updating a seed once its last `solved_episodes` training episodes all returned at
    # least this (None: never stop). Judged on training episodes only, never on evaluations.
    stop_when_solved: float | None = None
    solved_episodes: int = 10
    log_every: int = 500  # environment steps between logged points of the curves
    eval_every: int = 2_500  # environment steps between greedy evaluations (0: never)
    eval_episodes: int = 10
    final_eval_episodes: int = 20
    eval_seed: int = 10_000  # evaluation episodes use seeds eval_seed + i

    def __post_init__(self):
        if self.num_envs < 1 or self.batch_size < 1 or self.train_every < 1:
            raise ValueError("num_envs, batch_size and train_every must be >= 1")
        if self.solved_episodes < 1:
            raise ValueError(f"solved_episodes must be >= 1, got {self.solved_episodes}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {self.n_step}")
        if self.target_update_every < 1:
            raise ValueError(f"target_update_every must be >= 1, got {self.target_update_every}")


class LossParts(NamedTuple):
    """What :func:`dqn_loss` computed on the way, for the diagnostics."""

    q_values: torch.Tensor  # (B, A) Q(s, .) from the online net
    q_sa: torch.Tensor  # (B,) Q(s, a) of the actions taken
    targets: torch.Tensor  # (B,) TD targets (no gradient)


@dataclass(kw_only=True)
class Result(SeedsResult):
    """The trained networks and every curve the dashboard draws, with a seed axis (S).

    Logged every ``log_every`` environment steps (L points; means over the updates in
    between, nan where a seed made none): ``losses``, ``mean_max_q`` (max_a Q(s, a) on
    replayed batches), ``td_errors`` (|target - Q(s, a)|), ``grad_norms`` (before
    clipping), each (L, S). ``episode_*[k]``: seed k's finished training episodes.
    ``eval_q0``/``eval_g0`` (E, S): predicted max_a Q(s_0, a) and observed discounted return
    of the greedy evaluations; a prediction far above the observation is overestimation.
    """

    config: Config
    q_nets: list[nn.Module] = field(default_factory=list)  # seed k's plain network
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (L,)
    losses: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (L, S)
    mean_max_q: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (L, S)
    td_errors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (L, S)
    grad_norms: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (L, S)
    epsilons: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (L,)
    target_updates: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (L,)
    episode_steps: list[np.ndarray] = field(default_factory=list)  # per seed
    episode_returns: list[np.ndarray] = field(default_factory=list)
    episode_discounted_returns: list[np.ndarray] = field(default_factory=list)
    eval_q0: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (E, S)
    eval_g0: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (E, S)
    stopped_at: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (S,) nan: never

    def run(self, seed: int) -> SimpleNamespace:
        """One seed's curves under the dashboard's names (1-D arrays), for plotting."""
        if seed not in self.seeds:
            raise ValueError(f"seed {seed} was not trained; this result has seeds {self.seeds}")
        s = self.seeds.index(seed)
        finished = len(self.final_return) > 0
        curves = dict(steps=self.steps, epsilons=self.epsilons, eval_steps=self.eval_steps)
        for name in ("losses", "mean_max_q", "td_errors", "grad_norms"):
            curves[name] = getattr(self, name)[:, s]
        for name in ("eval_returns", "eval_q0", "eval_g0"):
            curves[name] = getattr(self, name)[:, s] if len(self.eval_steps) else []
        for name in ("episode_steps", "episode_returns", "episode_discounted_returns"):
            curves[name] = getattr(self, name)[s]
        final = self.final_return[s] if finished else None
        return SimpleNamespace(config=self.config, final_eval=final, **curves)

    def summary(self) -> str:
        finals = ", ".join(f"{r:.1f}" for r in self.final_return)
        return (
            f"seeds {self.seeds}: final greedy return {finals} "
            f"after {self.config.total_steps} steps each ({self.seconds:.1f} s)"
        )


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
            next_actions = q_net(batch.next_obs).argmax(dim=-1, keepdim=True)  # (B, 1)
        else:
            next_actions = next_q_all.argmax(dim=-1, keepdim=True)  # (B, 1)
        next_q = next_q_all.gather(-1, next_actions).squeeze(-1)  # (B, 1) -> (B,)
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

    Axes count from the right (``dim=-1``) and the mean is over the last axis, so these same
    lines also take S seeds at once: :class:`SeedBatch` networks and batches (S, B, ...)
    give S losses (S,), each seed's mean over its own batch.
    """
    q_values = q_net(batch.obs)  # (B, A)
    q_sa = q_values.gather(-1, batch.actions.long().unsqueeze(-1)).squeeze(-1)  # (B, 1) -> (B,)
    targets = td_targets(
        q_net,
        target_net,
        batch,
        gamma,
        double=double,
        bootstrap_on_truncation=bootstrap_on_truncation,
    )  # (B,), no gradient
    if huber:  # delta=1: F.smooth_l1_loss
        errors = F.huber_loss(q_sa, targets, delta=huber_delta, reduction="none")  # (B,)
    else:
        errors = F.mse_loss(q_sa, targets, reduction="none")  # (B,)
    loss = errors.mean(dim=-1)  # the batch mean: a scalar (S seeds: (S,))
    if return_parts:
        return loss, LossParts(q_values=q_values, q_sa=q_sa, targets=targets)
    return loss


def greedy_actions(q_net: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """argmax_a Q(s, a) for each row of ``obs`` (N, ...): (N,) actions; for a
    :class:`SeedBatch`, (S, N, ...) -> (S, N) (it runs a feed-forward net layer by layer)."""
    return q_net(obs).argmax(dim=-1)


def update_target(target_net: nn.Module, q_net: nn.Module, tau: float = 1.0) -> None:
    """``target <- tau * online + (1 - tau) * target`` (``tau = 1``: a hard copy)."""
    with torch.no_grad():
        for t, p in zip(target_net.parameters(), q_net.parameters()):
            if tau >= 1.0:
                t.copy_(p)
            else:
                t.lerp_(p, tau)


def evaluate(q_nets: SeedBatch, envs: list, n_episodes: int, *, seed: int, gamma: float):
    """Greedy episodes ``seed + i`` (i < n_episodes) of every seed, all seeds in lockstep.

    ``envs[k]`` is seed k's vector env with at least ``n_episodes`` sub-envs. Returns
    ``returns``, ``discounted`` (S, n_episodes) and ``q0`` (S,): the mean predicted
    max_a Q(s_0, a) of the start states, to compare with the discounted return collected.
    """
    obs = stack_obs(env.reset(seed=seed)[0] for env in envs)  # (S, N, ...); env i: seed + i
    with torch.no_grad():
        q0 = q_nets(torch.as_tensor(obs)).max(dim=2).values[:, :n_episodes].mean(dim=1)  # (S,)
    returns, discounted = np.zeros(obs.shape[:2]), np.zeros(obs.shape[:2])  # (S, N)
    length = np.zeros(obs.shape[:2], dtype=np.int64)
    running = np.ones(obs.shape[:2], dtype=bool)  # still in its first episode
    while running.any():
        with torch.no_grad():
            actions = greedy_actions(q_nets, torch.as_tensor(obs)).numpy()  # (S, N)
        obs, rewards, terminated, truncated = step_envs(envs, actions)
        returns += rewards * running
        discounted += (gamma**length) * rewards * running
        length += running
        running &= ~(terminated | truncated)
    return returns[:, :n_episodes], discounted[:, :n_episodes], q0.numpy()


def train(
    config: Config,
    seeds: Sequence[int] = (0,),
    *,
    progress: bool | None = None,
    callback: Callable[[Result], Any] | None = None,
    processes: int = 1,
) -> Result:
    """Train one DQN per seed, all seeds at once; return the networks and their curves.

    ``callback(result)`` is called at each logged point (the live dashboard uses it).
    ``processes > 1`` trains groups of consecutive seeds in that many worker processes
    (one core each); the seeds are independent, so the result is the same.
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a dqn.Config, got {type(config).__name__}")
    cfg, seeds = config, check_seeds(seeds)
    if processes > 1 and len(seeds) > 1:
        return _train_in_processes(cfg, seeds, processes, progress)
    start_time = time.perf_counter()
    S, N = len(seeds), cfg.num_envs
    rngs = [agent_rng(s) for s in seeds]  # not default_rng(s): that is the env's stream

    # --- environments: seed k steps its own vector env, reset with seed k ------------
    def make(n):
        return as_vector_env(make_vec_env(cfg.env_id, n, wrappers=cfg.wrappers, **cfg.env_kwargs))

    envs = [make(N) for _ in seeds]
    n_eval = max(cfg.eval_episodes, cfg.final_eval_episodes)
    eval_envs = [make(n_eval) for _ in seeds] if n_eval > 0 else []
    obs_shape = envs[0].single_observation_space.shape
    if not isinstance(envs[0].single_action_space, gym.spaces.Discrete):
        raise ValueError(f"DQN needs a Discrete action space, got {envs[0].single_action_space}")
    n_actions = int(envs[0].single_action_space.n)

    # --- networks (seed k's built after torch.manual_seed(k)), optimiser, replay ------
    q_nets = SeedBatch(seeded(lambda: q_network(obs_shape, n_actions, cfg.hidden), seeds))
    target_nets = copy.deepcopy(q_nets)  # starts as an exact copy
    target_nets.requires_grad_(False)  # only ever changed by update_target
    # S independent Adams; fused: one kernel for all the stacked weights, same arithmetic
    optimizer = torch.optim.Adam(q_nets.parameters(), lr=cfg.lr, fused=True)
    # dqn_loss runs every seed at once as written: its nets take (S, B, ...) batches
    loss_fn = functools.partial(
        dqn_loss,
        double=cfg.double,
        huber=cfg.huber,
        huber_delta=cfg.huber_delta,
        bootstrap_on_truncation=cfg.bootstrap_on_truncation,
        return_parts=True,
    )
    buffer = SeedReplay(S, cfg.buffer_size, obs_shape)
    # holds each env's last n_step steps until they make an n-step transition (n = 1: none)
    n_step_window = NStepWindow(cfg.n_step, cfg.gamma, (S, N), obs_shape)

    # --- bookkeeping, all (S, N) --------------------------------------------------------
    obs = stack_obs(env.reset(seed=s)[0] for env, s in zip(envs, seeds))  # (S, N, *obs_shape)
    crossing = np.zeros((S, N), dtype=bool)  # True: this env's next step is its autoreset
    ep_return, ep_disc = np.zeros((S, N)), np.zeros((S, N))
    ep_len = np.zeros((S, N), dtype=np.int64)
    episodes = [([], [], []) for _ in seeds]  # per seed: steps, returns, discounted returns
    learning = np.ones(S, dtype=bool)  # False once a seed stops updating (solved)
    stopped_at = np.full(S, np.nan)
    n_updates = n_target_updates = 0
    window: list[torch.Tensor] = []  # per update: (5, S) loss, max Q, TD, grad norm, learning
    log: dict[str, list] = {k: [] for k in ("steps", "curves", "eps", "targets", "evals")}
    n_iterations = -(-cfg.total_steps // N)  # ceil
    bar = progress_bar(total=n_iterations * N, desc=f"DQN x {S} seeds", disable=not progress)

    for iteration in range(n_iterations):
        step = iteration * N  # environment steps taken so far, per seed

        # 1. act: random with probability epsilon, else greedy on the seed's own net
        epsilon = linear_schedule(
            cfg.eps_start, cfg.eps_end, int(cfg.eps_fraction * cfg.total_steps), step
        )
        if step < cfg.learning_starts:
            epsilon = 1.0  # fill the buffer with random play first
        actions = np.empty((S, N), dtype=np.int64)
        greedy = np.empty((S, N), dtype=bool)
        for k, rng in enumerate(rngs):  # each seed draws from its own generator
            actions[k] = rng.integers(0, n_actions, size=N)
            greedy[k] = rng.random(N) >= epsilon
        if greedy.any():
            with torch.no_grad():
                best = greedy_actions(q_nets, torch.as_tensor(obs)).numpy()  # (S, N)
            actions = np.where(greedy, best, actions)
        next_obs, rewards, terminated, truncated = step_envs(envs, actions)

        # 2. store: skip the steps that cross an autoreset (their next_obs is a new
        # episode's first observation, their reward 0); with NEXT_STEP autoreset the
        # next_obs of a terminated or truncated step is the episode's true last one.
        # With n_step > 1 the window holds each step until the n after it are known.
        keep = ~crossing  # (S, N)
        ready = n_step_window.push(keep, obs, actions, rewards, next_obs, terminated, truncated)
        for stored, t in ready:
            buffer.add(stored, *t)
        ep_return += rewards * keep
        ep_disc += (cfg.gamma**ep_len) * rewards * keep
        ep_len += keep
        ended = (terminated | truncated) & keep
        for k, i in zip(*np.nonzero(ended)):
            for curve, value in zip(episodes[k], (step + N, ep_return[k, i], ep_disc[k, i])):
                curve.append(value)
            ep_return[k, i] = ep_disc[k, i] = ep_len[k, i] = 0
        crossing = terminated | truncated
        obs = next_obs
        step_after = step + N
        if cfg.stop_when_solved is not None:  # judged on training episodes, not evaluations
            for k in np.flatnonzero(learning & ended.any(axis=1)):
                recent = episodes[k][1][-cfg.solved_episodes :]
                if len(recent) == cfg.solved_episodes and min(recent) >= cfg.stop_when_solved:
                    learning[k], stopped_at[k] = False, step_after
                    freeze_adam_seed(optimizer, k)  # its slice takes no more steps

        # 3. learn: one gradient step per seed every train_every environment steps
        if step_after >= cfg.learning_starts and learning.any():
            if cfg.lr_end is not None:  # linear decay to lr_end
                lr = linear_schedule(cfg.lr, cfg.lr_end, cfg.total_steps, step_after)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            due = step_after // cfg.train_every - step // cfg.train_every
            learners = np.flatnonzero(learning)  # (S',) positions of the seeds still learning
            if len(learners) == S:
                q_learners, target_learners = q_nets, target_nets
            else:  # the stopped seeds leave the computation (their gradient slices stay 0)
                q_learners, target_learners = q_nets.select(learners), target_nets.select(learners)
            for _ in range(due):
                batch = buffer.sample(cfg.batch_size, rngs, learners)  # (S', B, ...)
                # region learn
                # an n-step transition bootstraps n steps ahead: gamma ** n_step
                losses, parts = loss_fn(q_learners, target_learners, batch, cfg.gamma**cfg.n_step)
                optimizer.zero_grad()
                losses.sum().backward()  # slice k of each grad: d loss_k / d theta_k
                if cfg.max_grad_norm is not None:  # each seed clipped on its own
                    norms = clip_grad_norm_per_seed(q_nets.parameters(), cfg.max_grad_norm)
                else:
                    norms = grad_norm_per_seed(q_nets.parameters())  # what the dashboard shows
                optimizer.step()
                n_updates += 1
                if n_updates % cfg.target_update_every == 0:
                    update_target(target_nets, q_nets, cfg.tau)
                    n_target_updates += 1
                # endregion
                window.append(update_log(S, learners, losses, parts, norms))

        # 4. log and evaluate
        is_last = iteration == n_iterations - 1
        if step_after // cfg.log_every > step // cfg.log_every or is_last:
            log["steps"].append(step_after)
            log["curves"].append(window_means(window, S))
            log["eps"].append(epsilon)
            log["targets"].append(n_target_updates)
            window.clear()
            due_eval = cfg.eval_every > 0 and step_after // cfg.eval_every > step // cfg.eval_every
            if due_eval and cfg.eval_episodes > 0 and not is_last:
                evaluation = evaluate(
                    q_nets, eval_envs, cfg.eval_episodes, seed=cfg.eval_seed, gamma=cfg.gamma
                )
                log["evals"].append((step_after, *evaluation))
            if callback is not None and not is_last:
                callback(Result(config=cfg, **logged_fields(seeds, log, episodes, stopped_at)))
        bar.update(N)

    # --- final greedy evaluation ---------------------------------------------------------
    final = np.full(S, np.nan)
    if cfg.final_eval_episodes > 0:
        returns, discounted, q0 = evaluate(
            q_nets, eval_envs, cfg.final_eval_episodes, seed=cfg.eval_seed, gamma=cfg.gamma
        )
        log["evals"].append((n_iterations * N, returns, discounted, q0))
        final = returns.mean(axis=1)
    bar.close()
    result = Result(config=cfg, **logged_fields(seeds, log, episodes, stopped_at))
    result.final_return = final
    result.q_nets = [q_nets.seed(k) for k in range(S)]
    result.seconds = time.perf_counter() - start_time
    if callback is not None:
        callback(result)
    return result


def _train_in_processes(cfg, seeds, processes, progress) -> Result:
    """Groups of consecutive seeds trained in worker processes, joined into one Result."""
    start_time = time.perf_counter()
    jobs = [functools.partial(train, cfg, group) for group in split_seeds(seeds, processes)]
    parts = run_parallel(
        jobs, processes=processes, desc=f"DQN x {len(seeds)} seeds", progress=bool(progress)
    )
    joined = join_seed_results(parts)
    joined.update(seeds=seeds, config=cfg, seconds=time.perf_counter() - start_time)
    return Result(**joined)
