"""DQN (Mnih et al., 2015) with Double DQN (van Hasselt et al., 2016): the book's reference.

Read :func:`train` top to bottom: it is the whole algorithm. The pieces it calls are
importable on their own so the chapters can test and reuse them:

* :func:`epsilon_greedy`: explore with probability epsilon, else act greedily;
* :func:`td_targets`: ``r + gamma * (1 - terminated) * max_a' Q_target(s', a')``
  (Double DQN: the online net picks ``a'``, the target net values it);
* :func:`dqn_loss`: Huber (or squared) error between ``Q(s, a)`` and the target;
* :func:`update_target`: hard copy (``tau = 1``) or Polyak averaging (``tau < 1``).

With ``n_step > 1``, :class:`rldebug.replay.NStepWindow` turns the env's steps into n-step
transitions before they are stored, and the target bootstraps with ``gamma ** n_step``.

Works on a single gymnasium env or a :class:`gymnasium.vector.VectorEnv` with NEXT_STEP
autoreset (gymnasium's default): the step that crosses an autoreset is not stored.
"""

from __future__ import annotations

import copy
import functools
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
from rldebug.parallel import progress_bar, run_parallel, split_seeds
from rldebug.replay import NStepWindow, ReplayBuffer, Transitions, to_torch
from rldebug.training import (
    EvalResult,
    as_vector_env,
    evaluate,
    greedy_policy,
    linear_schedule,
    make_vec_env,
)
from rldebug.utils import agent_rng, set_seed

__all__ = [
    "CARTPOLE_RECIPE",
    "SINE_ROAD_RECIPE",
    "DQNConfig",
    "DQNResult",
    "LossParts",
    "dqn_loss",
    "epsilon_greedy",
    "evaluate_q",
    "td_targets",
    "train",
    "train_population",
    "train_seeds",
    "StackedQNetwork",
    "update_target",
]


@dataclass
class DQNConfig:
    """Every knob of :func:`train`.

    The defaults are close to the RL-Zoo recipe for CartPole-v1, in 30k steps: a wide net, a
    high learning rate decaying linearly to 0 (so that a solved policy stays solved), one
    update per 2 steps, a hard target copy every 64 updates, Huber loss, Double DQN.
    Chapter 3 proves ``DQNConfig(**CARTPOLE_RECIPE)``, which changes five of them.
    """

    env_id: str = "CartPole-v1"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    num_envs: int = 4  # sub-environments stepped together
    wrappers: Sequence[Callable[[gym.Env], gym.Env]] = ()  # per-env observation wrappers
    total_steps: int = 30_000  # environment steps (all sub-environments together)
    seed: int = 0
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
    # Stop updating once the last `solved_episodes` training episodes all returned at least
    # this (None: never stop). Judged on training episodes only, never on evaluations.
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


# Chapter 3's CartPole-v1 recipe: the defaults with these changes (each one measured over
# many seeds, see the chapter and benchmarks/ch03_recipe.py): a narrower net, larger
# batches, a faster epsilon decay, three-step returns, and no more updates once the
# training episodes show the task solved.
CARTPOLE_RECIPE: dict[str, Any] = dict(
    hidden=(128, 128), batch_size=128, eps_fraction=0.1, n_step=3, stop_when_solved=475.0
)


# Chapter 4's sine-road configuration, shared with benchmarks/ch04_sine_road_dqn.py so
# that the chapter and its benchmark train the same agent (only logging may differ).
SINE_ROAD_RECIPE: dict[str, Any] = dict(
    env_id="SineRoad-v0",
    num_envs=8,
    total_steps=10_000,
    hidden=(128, 128),
    gamma=0.8,  # a step's reward matters for about 1 / (1 - gamma) = 5 steps
    lr=5e-3,
    lr_end=None,  # a constant learning rate
    batch_size=128,
    buffer_size=20_000,
    learning_starts=1_000,
    train_every=4,
    target_update_every=100,
    eps_fraction=0.3,
    eps_end=0.02,
    final_eval_episodes=20,
)


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
    stopped_at: int | None = None  # environment step at which updates stopped (solved)

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
    Leading axes pass through: a stacked batch ``(S, B, ...)`` gives ``(S, B)`` targets.
    """
    with torch.no_grad():
        next_q_all = target_net(batch.next_obs)  # (..., B, A)
        if double:
            next_actions = q_net(batch.next_obs).argmax(dim=-1, keepdim=True)  # (..., B, 1)
        else:
            next_actions = next_q_all.argmax(dim=-1, keepdim=True)  # (..., B, 1)
        next_q = next_q_all.gather(-1, next_actions).squeeze(-1)  # (..., B, 1) -> (..., B)
        ended = batch.terminated
        if not bootstrap_on_truncation:
            ended = torch.maximum(batch.terminated, batch.truncated)
        return batch.rewards + gamma * (1.0 - ended) * next_q  # (..., B)


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


def anneal_learning_rate(optimizer: torch.optim.Optimizer, cfg: DQNConfig, step: int) -> None:
    """Set the learning rate for ``step``: constant, or linear to ``cfg.lr_end``."""
    if cfg.lr_end is None:
        return
    lr = linear_schedule(cfg.lr, cfg.lr_end, cfg.total_steps, step)
    for group in optimizer.param_groups:
        group["lr"] = lr


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
    rng = agent_rng(cfg.seed)  # not default_rng(cfg.seed): that is env 0's stream

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
    # holds each env's last n_step steps until they make an n-step transition (n = 1: none)
    n_step_window = NStepWindow(cfg.n_step, cfg.gamma, (n_envs,), obs_shape)
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
        bar = progress_bar(total=n_iterations * n_envs, desc=f"DQN seed {cfg.seed}", unit="step")

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
        # With n_step > 1 the window holds each step until the n after it are known.
        keep = ~crossing  # (N,)
        ready = n_step_window.push(keep, obs, actions, rewards, next_obs, terminated, truncated)
        for stored, t in ready:
            buffer.add(
                t.obs[stored],
                t.actions[stored],
                t.rewards[stored],
                t.next_obs[stored],
                t.terminated[stored],
                t.truncated[stored],
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
        step_after = step + n_envs
        stopped = result.stopped_at is not None
        if cfg.stop_when_solved is not None and not stopped and ended.any():
            if _solved(result.episode_returns, cfg):  # training episodes, not evaluations
                result.stopped_at = step_after
                stopped = True

        # 3. learn: one gradient step every train_every environment steps
        if step_after >= cfg.learning_starts and not stopped:
            anneal_learning_rate(optimizer, cfg, step_after)
            due = step_after // cfg.train_every - step // cfg.train_every
            for _ in range(due):
                batch = to_torch(buffer.sample(cfg.batch_size, rng))
                loss, parts = dqn_loss(
                    q_net,
                    target_net,
                    batch,
                    cfg.gamma**cfg.n_step,  # an n-step transition bootstraps n steps ahead
                    double=cfg.double,
                    huber=cfg.huber,
                    huber_delta=cfg.huber_delta,
                    bootstrap_on_truncation=cfg.bootstrap_on_truncation,
                    return_parts=True,
                )
                optimizer.zero_grad()
                loss.backward()
                if cfg.max_grad_norm is not None:  # returns the norm before clipping
                    norm = float(nn.utils.clip_grad_norm_(q_net.parameters(), cfg.max_grad_norm))
                else:
                    norm = grad_norm(q_net)  # what the dashboard shows
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


def train_seeds(
    config: DQNConfig | None = None,
    seeds: Sequence[int] = range(10),
    *,
    processes: int = 2,
    progress: bool = True,
    desc: str = "seeds",
    **overrides: Any,
) -> list[DQNResult]:
    """Train one agent per seed with :func:`train`, ``processes`` at a time (one torch
    thread each); seed ``s`` gives exactly the run of ``train(config, seed=s)``.

    The runs are independent, so ``processes=2`` on 2 cores halves the wall-clock time.
    ``processes=1`` trains them one after the other in this process.
    """
    cfg = replace(config or DQNConfig(), **overrides)
    seeds = [int(s) for s in seeds]
    if processes > 1:
        jobs = [functools.partial(train, cfg, seed=s, progress=progress) for s in seeds]
        return run_parallel(jobs, processes=processes, desc=desc, progress=progress)
    results = []
    for s in progress_bar(seeds, desc=desc, unit="seed", disable=not progress):
        results.append(train(cfg, seed=s))
    return results


def config_dict(config: DQNConfig) -> dict[str, Any]:
    """The config as a plain dict (wrappers shown by name), for tables and logs."""
    d = asdict(config)
    d["wrappers"] = [getattr(w, "__name__", repr(w)) for w in config.wrappers]
    return d


# --------------------------------------------------------------------------------------
# Many seeds at once: the same algorithm, S independent DQNs stepped in lockstep
# --------------------------------------------------------------------------------------


class StackedQNetwork(nn.Module):
    """S independent MLP Q-networks in one module: every weight has a leading seed axis.

    ``forward``: observations ``(S, B, *obs_shape)`` -> Q-values ``(S, B, n_actions)``;
    row ``s`` only ever meets seed ``s``'s weights (one ``torch.baddbmm`` per layer), so
    the gradient of seed ``s``'s loss lands only in slice ``s`` of each parameter.
    Built from S ordinary :func:`~rldebug.nets.q_network` s, so seed ``s`` starts from
    exactly the weights ``train(seed=s)`` starts from.
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        if not nets:
            raise ValueError("StackedQNetwork needs at least one network")
        layers = [[m for m in net.modules() if isinstance(m, nn.Linear)] for net in nets]
        n_layers = len(layers[0])
        self.weights = nn.ParameterList(
            nn.Parameter(torch.stack([ls[k].weight.detach().T for ls in layers]))  # (S, in, out)
            for k in range(n_layers)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.stack([ls[k].bias.detach()[None] for ls in layers]))  # (S, 1, out)
            for k in range(n_layers)
        )

    @property
    def num_seeds(self) -> int:
        return self.weights[0].shape[0]

    def forward(self, obs: torch.Tensor, seeds: torch.Tensor | None = None) -> torch.Tensor:
        """``seeds`` (a LongTensor of seed indices) runs only those networks: ``obs`` is then
        ``(len(seeds), B, ...)``, and the other seeds' slices get no gradient."""
        weights, biases = list(self.weights), list(self.biases)
        if seeds is not None:  # (S, ...) -> (S', ...): the networks still learning
            weights, biases = [w[seeds] for w in weights], [b[seeds] for b in biases]
        n = weights[0].shape[0]
        if obs.ndim < 3 or obs.shape[0] != n:
            raise ValueError(f"expected observations (S={n}, B, ...), got {tuple(obs.shape)}")
        x = obs.flatten(start_dim=2)  # (S, B, *obs_shape) -> (S, B, in)
        for k, (w, b) in enumerate(zip(weights, biases)):
            x = torch.baddbmm(b, x, w)  # (S, B, in) @ (S, in, out) + (S, 1, out)
            if k < len(weights) - 1:
                x = torch.relu(x)
        return x  # (S, B, A)

    def per_seed_grad_norm(self) -> torch.Tensor:
        """``(S,)``: the global gradient norm of each seed's own network."""
        sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in self.parameters() if p.grad is not None)
        return torch.sqrt(torch.as_tensor(sq))

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Clip each seed's gradient to ``max_norm`` on its own, as
        ``nn.utils.clip_grad_norm_`` would on that seed's network. Returns the norms before."""
        norms = self.per_seed_grad_norm()  # (S,)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (S,)
        for p in self.parameters():
            if p.grad is not None:
                p.grad.mul_(coef.view(-1, *([1] * (p.ndim - 1))))  # (S,) -> (S, 1, 1)
        return norms

    def unstack(self, s: int, net: nn.Module) -> nn.Module:
        """Copy seed ``s``'s weights into ``net`` (a :func:`q_network` of the same shape)."""
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, w, b in zip(linears, self.weights, self.biases):
                lin.weight.copy_(w[s].T)
                lin.bias.copy_(b[s, 0])
        return net


def _stacked_loss(q_net, target_net, batch: Transitions, cfg: DQNConfig, seeds=None):
    """Per-seed DQN losses of a stacked batch (every field has a leading ``(S, B)``).

    ``seeds`` (indices): only those seeds' networks run, on a batch of ``(len(seeds), B)``.
    """
    if seeds is not None:
        q_net = functools.partial(q_net, seeds=seeds)
        target_net = functools.partial(target_net, seeds=seeds)
    q_values = q_net(batch.obs)  # (S, B, A)
    q_sa = q_values.gather(2, batch.actions.unsqueeze(2)).squeeze(2)  # (S, B, 1) -> (S, B)
    targets = td_targets(
        q_net,
        target_net,
        batch,
        cfg.gamma**cfg.n_step,
        double=cfg.double,
        bootstrap_on_truncation=cfg.bootstrap_on_truncation,
    )  # (S, B), no gradient
    if cfg.huber:
        per_row = F.huber_loss(q_sa, targets, delta=cfg.huber_delta, reduction="none")
    else:
        per_row = F.mse_loss(q_sa, targets, reduction="none")
    return per_row.mean(dim=1), LossParts(q_values=q_values, q_sa=q_sa, targets=targets)


class _StackedReplay:
    """One circular replay buffer per seed, in arrays with a leading seed axis."""

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
        """Store the rows with ``keep`` (S, N) True; every array is ``(S, N, ...)``."""
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

    def sample(self, batch_size: int, rng: np.random.Generator) -> Transitions:
        """``(S, B)`` transitions, each seed's drawn uniformly with replacement from its own."""
        n_seeds = len(self.size)
        idx = (rng.random((n_seeds, batch_size)) * self.size[:, None]).astype(np.int64)  # (S, B)
        # row (s, i) of an (S, capacity, ...) array is row s * capacity + i of its flat view;
        # np.take on that is several times faster than the fancy index arr[s, idx]
        flat = (np.arange(n_seeds)[:, None] * self.capacity + idx).reshape(-1)  # (S * B,)

        def take(arr: np.ndarray) -> np.ndarray:
            rows = arr.reshape(n_seeds * self.capacity, *arr.shape[2:])
            return np.take(rows, flat, axis=0).reshape(n_seeds, batch_size, *arr.shape[2:])

        return to_torch(
            Transitions(
                obs=take(self.obs),
                actions=take(self.actions),
                rewards=take(self.rewards),
                next_obs=take(self.next_obs),
                terminated=take(self.terminated),
                truncated=take(self.truncated),
            )
        )


def _evaluate_stacked(q_net, envs: VectorEnv, n_seeds: int, n_episodes: int, cfg: DQNConfig):
    """Greedy evaluation of every seed on its own ``n_episodes`` sub-envs of ``envs``."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32).view(n_seeds, n_episodes, -1)
            return q_net(x).argmax(dim=2).reshape(-1).numpy()  # (S, E) -> (S * E,)

    res = evaluate(act, envs, n_seeds * n_episodes, seed=cfg.eval_seed, gamma=cfg.gamma)
    with torch.no_grad():
        first = torch.as_tensor(res.first_obs, dtype=torch.float32)
        q0 = q_net(first.view(n_seeds, n_episodes, -1)).max(dim=2).values.mean(dim=1)  # (S,)
    per_seed = []
    for s in range(n_seeds):
        rows = slice(s * n_episodes, (s + 1) * n_episodes)
        per_seed.append(
            EvalResult(
                returns=res.returns[rows],
                lengths=res.lengths[rows],
                discounted_returns=res.discounted_returns[rows],
                first_obs=res.first_obs[rows],
                gamma=cfg.gamma,
            )
        )
    return per_seed, q0.numpy()


def train_population(
    config: DQNConfig | None = None,
    seeds: Sequence[int] = range(10),
    *,
    processes: int = 1,
    progress: bool = False,
    **overrides: Any,
) -> list[DQNResult]:
    """Train one DQN per seed, all at once; return one :class:`DQNResult` per seed.

    The same algorithm as :func:`train` (read that one first), with a leading seed axis on
    everything: a :class:`StackedQNetwork` and its target, one replay buffer per seed, and
    ``S * num_envs`` sub-environments in one native vector env (seed ``s`` steps its own
    ``num_envs`` of them). One Adam steps the stacked weights; Adam works element by
    element, so the seeds stay independent, and gradient clipping is computed per seed.
    The loss summed over seeds has, in slice ``s`` of each weight, exactly seed ``s``'s
    gradient. Random numbers (env resets, exploration, replay sampling) come from shared
    generators seeded by ``seeds``, so seed ``s`` does not replay ``train(seed=s)`` draw for
    draw; it is an equally valid run. Only envs with a native vector env (CartPole-v1) and
    no wrappers are supported.

    ``processes > 1`` splits the seeds into that many groups of consecutive seeds and trains
    each group as its own population in a worker process (:func:`rldebug.parallel.run_parallel`),
    about ``processes`` times faster on as many cores. The random streams belong to the
    population, so the split is part of the run: ``processes=2`` on seeds 0-9 gives the runs
    of ``train_population(config, range(5))`` and ``train_population(config, range(5, 10))``.
    """
    cfg = replace(config or DQNConfig(), **overrides)
    seeds = [int(s) for s in seeds]
    if processes > 1 and len(seeds) > 1:
        jobs = [
            functools.partial(train_population, cfg, group, progress=progress)
            for group in split_seeds(seeds, processes)
        ]
        start_time = time.perf_counter()
        parts = run_parallel(
            jobs, processes=processes, desc=f"DQN x {len(seeds)} seeds", progress=progress
        )
        results = [r for part in parts for r in part]
        for r in results:
            r.wall_time = (time.perf_counter() - start_time) / len(results)
        return results
    n_seeds, n_envs = len(seeds), cfg.num_envs
    if n_seeds < 1:
        raise ValueError("train_population needs at least one seed")
    if cfg.wrappers:
        raise ValueError("train_population steps a native vector env: wrappers are not supported")
    start_time = time.perf_counter()
    seed_seq = np.random.SeedSequence(seeds)
    master = int(seed_seq.generate_state(1)[0])  # one seed for all
    set_seed(master)
    rng = agent_rng(seeds)  # not default_rng(master): that is the envs' stream

    # --- environments: seed s steps sub-envs [s * N, (s + 1) * N) --------------------
    envs = make_vec_env(
        cfg.env_id, n_seeds * n_envs, vectorization_mode="vector_entry_point", **cfg.env_kwargs
    )
    envs = as_vector_env(envs)  # checks NEXT_STEP autoreset
    obs_shape = envs.single_observation_space.shape
    if not isinstance(envs.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"DQN needs a Discrete action space, got {envs.single_action_space}")
    n_actions = int(envs.single_action_space.n)
    eval_envs = {}
    for n_eval in {cfg.eval_episodes, cfg.final_eval_episodes}:
        if n_eval > 0:
            eval_envs[n_eval] = make_vec_env(
                cfg.env_id, n_seeds * n_eval, vectorization_mode="vector_entry_point",
                **cfg.env_kwargs,
            )  # fmt: skip

    # --- networks (seed s starts where train(seed=s) starts), optimiser, replay ------
    nets = []
    for s in seeds:
        set_seed(s)
        nets.append(q_network(obs_shape, n_actions, cfg.hidden))
    q_net = StackedQNetwork(nets)
    target_net = copy.deepcopy(q_net)
    target_net.requires_grad_(False)
    try:  # one fused kernel for all the stacked weights (same arithmetic as plain Adam)
        optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)
    buffer = _StackedReplay(n_seeds, cfg.buffer_size, obs_shape)
    n_step_window = NStepWindow(cfg.n_step, cfg.gamma, (n_seeds, n_envs), obs_shape)
    results = [DQNResult(config=replace(cfg, seed=s), q_net=net) for s, net in zip(seeds, nets)]

    # --- bookkeeping, all (S, N) ------------------------------------------------------
    obs, _ = envs.reset(seed=master)
    obs = obs.reshape(n_seeds, n_envs, *obs_shape)  # (S * N, ...) -> (S, N, ...)
    crossing = np.zeros((n_seeds, n_envs), dtype=bool)
    ep_return = np.zeros((n_seeds, n_envs))
    ep_disc = np.zeros((n_seeds, n_envs))
    ep_len = np.zeros((n_seeds, n_envs), dtype=np.int64)
    n_updates = n_target_updates = 0
    window: dict[str, list[np.ndarray]] = {"loss": [], "max_q": [], "td": [], "grad": []}
    learning = np.ones(n_seeds, dtype=bool)  # False once a seed stops updating (solved)
    n_iterations = -(-cfg.total_steps // n_envs)  # ceil
    bar = None
    if progress:
        bar = progress_bar(total=n_iterations * n_envs, desc=f"DQN x {n_seeds} seeds", unit="step")

    for iteration in range(n_iterations):
        step = iteration * n_envs  # environment steps taken so far, per seed

        # 1. act: the same epsilon for every seed, each seed greedy on its own net
        epsilon = linear_schedule(
            cfg.eps_start, cfg.eps_end, int(cfg.eps_fraction * cfg.total_steps), step
        )
        if step < cfg.learning_starts:
            epsilon = 1.0
        actions = rng.integers(0, n_actions, size=(n_seeds, n_envs))  # (S, N)
        greedy = rng.random((n_seeds, n_envs)) >= epsilon  # (S, N)
        if greedy.any():
            with torch.no_grad():
                q = q_net(torch.as_tensor(obs))  # (S, N, A)
            actions = np.where(greedy, q.argmax(dim=2).numpy(), actions)
        next_obs, rewards, terminated, truncated, _ = envs.step(actions.reshape(-1))
        next_obs = next_obs.reshape(n_seeds, n_envs, *obs_shape)  # (S * N, ...) -> (S, N, ...)
        rewards, terminated, truncated = (
            x.reshape(n_seeds, n_envs) for x in (rewards, terminated, truncated)
        )

        # 2. store, skipping the steps that cross an autoreset
        keep = ~crossing  # (S, N)
        ready = n_step_window.push(keep, obs, actions, rewards, next_obs, terminated, truncated)
        for stored, t in ready:
            buffer.add(stored, *t)
        ep_return += rewards * keep
        ep_disc += (cfg.gamma**ep_len) * rewards * keep
        ep_len += keep
        ended = (terminated | truncated) & keep
        for s, i in zip(*np.nonzero(ended)):
            results[s].episode_steps.append(step + n_envs)
            results[s].episode_returns.append(float(ep_return[s, i]))
            results[s].episode_discounted_returns.append(float(ep_disc[s, i]))
            ep_return[s, i] = ep_disc[s, i] = ep_len[s, i] = 0
        crossing = terminated | truncated
        obs = next_obs
        step_after = step + n_envs
        if cfg.stop_when_solved is not None:
            for s in np.flatnonzero(learning & ended.any(axis=1)):
                if _solved(results[s].episode_returns, cfg):
                    learning[s] = False
                    results[s].stopped_at = step_after
                    _freeze_adam_slice(optimizer, s)

        # 3. learn: one gradient step per seed every train_every environment steps
        if step_after >= cfg.learning_starts and learning.any():
            anneal_learning_rate(optimizer, cfg, step_after)
            due = step_after // cfg.train_every - step // cfg.train_every
            # Seeds that stopped are left out of the forward and backward passes: their
            # slices get a zero gradient, and with Adam's moments zeroed, a zero step.
            active = None if learning.all() else torch.as_tensor(np.flatnonzero(learning))
            for _ in range(due):
                batch = buffer.sample(cfg.batch_size, rng)  # (S, B, ...), every seed draws
                if active is not None:
                    batch = Transitions(*(x[active] for x in batch))  # (S, B, ...) -> (S', B, ...)
                losses, parts = _stacked_loss(q_net, target_net, batch, cfg, active)  # (S',)
                optimizer.zero_grad()
                losses.sum().backward()  # slice s of each grad = d loss_s / d theta_s
                if cfg.max_grad_norm is not None:
                    norms = q_net.clip_grad_norm_(cfg.max_grad_norm)
                else:
                    norms = q_net.per_seed_grad_norm()
                optimizer.step()
                n_updates += 1
                if n_updates % cfg.target_update_every == 0:
                    update_target(target_net, q_net, cfg.tau)
                    n_target_updates += 1
                with torch.no_grad():  # each (S',), spread to (S,): a seed that stopped logs nan
                    logged = {
                        "loss": losses.detach(),
                        "max_q": parts.q_values.max(dim=2).values.mean(dim=1),
                        "td": (parts.targets - parts.q_sa).abs().mean(dim=1),
                        "grad": norms if active is None else norms[active],  # norms are (S,)
                    }
                    for key, values in logged.items():
                        window[key].append(_spread(values, active, n_seeds))

        # 4. log and evaluate
        is_last = iteration == n_iterations - 1
        if step_after // cfg.log_every > step // cfg.log_every or is_last:
            means = {
                k: torch.stack(v).nanmean(dim=0).numpy() if v else np.full(n_seeds, np.nan)
                for k, v in window.items()
            }
            for v in window.values():
                v.clear()
            for s, r in enumerate(results):
                r.steps.append(step_after)
                r.losses.append(float(means["loss"][s]))
                r.mean_max_q.append(float(means["max_q"][s]))
                r.td_errors.append(float(means["td"][s]))
                r.grad_norms.append(float(means["grad"][s]))
                r.epsilons.append(epsilon)
                r.target_updates.append(n_target_updates)
            due_eval = step_after // max(cfg.eval_every, 1) > step // max(cfg.eval_every, 1)
            if cfg.eval_every > 0 and cfg.eval_episodes > 0 and due_eval and not is_last:
                _record_stacked_eval(results, q_net, eval_envs, cfg.eval_episodes, cfg, step_after)
        if bar is not None:
            bar.update(n_envs)

    # --- final greedy evaluation, then one ordinary q_network per seed ------------------
    if cfg.final_eval_episodes > 0:
        finals = _record_stacked_eval(
            results, q_net, eval_envs, cfg.final_eval_episodes, cfg, n_iterations * n_envs
        )
        for r, final in zip(results, finals):
            r.final_eval = final
    for s, r in enumerate(results):
        q_net.unstack(s, r.q_net)
    wall = time.perf_counter() - start_time
    for r in results:
        r.wall_time = wall / n_seeds  # each seed's share of the joint run
    if bar is not None:
        kept = sum(r.final_return >= 475 for r in results)
        bar.set_postfix(final_at_least_475=f"{kept}/{n_seeds}")
        bar.close()
    return results


def _spread(values: torch.Tensor, seeds: torch.Tensor | None, n_seeds: int) -> torch.Tensor:
    """(S',) values of the seeds ``seeds`` -> (S,), nan for the others."""
    if seeds is None:
        return values
    full = torch.full((n_seeds,), float("nan"), dtype=values.dtype)
    full[seeds] = values
    return full


def _solved(episode_returns: list[float], cfg: DQNConfig) -> bool:
    recent = episode_returns[-cfg.solved_episodes :]
    return len(recent) == cfg.solved_episodes and min(recent) >= cfg.stop_when_solved


def _freeze_adam_slice(optimizer: torch.optim.Optimizer, s: int) -> None:
    """Zero Adam's moments of seed ``s``: with a zero gradient from then on, Adam's step
    for that slice is exactly 0 (momentum would otherwise keep moving it)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][s].zero_()


def _record_stacked_eval(results, q_net, eval_envs, n_episodes, cfg, step) -> list[EvalResult]:
    per_seed, q0 = _evaluate_stacked(q_net, eval_envs[n_episodes], len(results), n_episodes, cfg)
    for r, ev, q in zip(results, per_seed, q0):
        r.eval_steps.append(step)
        r.eval_returns.append(ev.mean)
        r.eval_q0.append(float(q))
        r.eval_g0.append(float(ev.discounted_returns.mean()))
    return per_seed
