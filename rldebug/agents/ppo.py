"""Recurrent PPO (GRU or LSTM core) and its memoryless control, on vectorised environments.

Read it top to bottom, like a single-file reference implementation:

1. :class:`ActorCritic`: ONE seed's network, separate actor and critic cells, orthogonal init;
2. :func:`~rldebug.agents.ppo_env.collect_rollout` (the environment side, in
   :mod:`rldebug.agents.ppo_env`): T steps of every environment, with the state it started from;
3. :func:`gae`: advantages with the terminated / truncated split;
4. :func:`sequence_minibatches`: minibatches of whole environment sequences;
5. :func:`ppo_loss`: the clipped loss of one minibatch;
6. :func:`train`: the loop, for a list of seeds, with the first-epoch check built in.

**Many seeds.** The network, the loss, GAE and the minibatches are written for one seed.
:func:`train` stacks one network per seed in a :class:`~rldebug.seedbatch.SeedBatch` and lifts
runs the loss on the stacked weights (:meth:`~rldebug.seedbatch.SeedBatch.stacked_module`:
the network's methods and the loss read shapes from the right); every tensor of the loop
carries the seed axis first. Each seed has its own vector env and its own random generator, so seed k of
``train(cfg, seeds=[0, 1, 2])`` is ``train(cfg, seeds=[k])``.

**The state.** The actor and the critic each have a cell; the state of one environment holds
both, actor first: h (B, 2H) for a GRU, (h, c) of two (B, 2H) for an LSTM, so that
:mod:`rldebug.recurrent`'s rules (reset, store, select environments) apply unchanged.

**Autoreset.** In gymnasium 1.x (next-step autoreset) the step after an episode ends is a
*reset step*: the environment ignores its action and returns the next episode's first
observation with reward 0. The rollout marks it invalid (``mask`` False), and the observation
acted on there is the *true final observation* of the finished episode: its value bootstraps
a truncated episode.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import sineroad
import torch
import torch.nn as nn
import torch.nn.functional as F

from rldebug.agents.ppo_env import (
    EnvState,
    ObsNormalizer,
    Rollout,
    collect_rollout,
    evaluate,
    seed_of,
    start_envs,
    train_in_processes,
)
from rldebug.cells import cell_output, make_cell
from rldebug.parallel import progress_bar
from rldebug.recurrent import State, masked_mean, state_of_envs
from rldebug.results import SeedsResult
from rldebug.seedbatch import SeedBatch, clip_grad_norm_per_seed, seeded

__all__ = [
    "ActorCritic",
    "Config",
    "EnvState",
    "Minibatch",
    "ObsNormalizer",
    "Result",
    "Rollout",
    "collect_rollout",
    "evaluate",
    "gae",
    "ppo_loss",
    "seed_of",
    "sequence_minibatches",
    "start_envs",
    "train",
]


@dataclass
class Config:
    """Hyperparameters. The defaults are chapter 8's CartPoleNoVel-v1 setting.

    They follow RL-Zoo's tuned RecurrentPPO for this task (gamma 0.98, lambda 0.8, clip 0.2,
    no entropy bonus, learning rate and clip range decayed linearly to 0), with 16
    environments per seed and four minibatches of 4 whole sequences.
    """

    env_id: str = "CartPoleNoVel-v1"
    recurrent: bool = True  # False: the memoryless control (tanh layers instead of cells)
    cell: str = "gru"  # "gru" or "lstm"
    total_steps: int = 30_000  # environment steps per seed
    num_envs: int = 16  # per seed
    num_steps: int = 32  # T, rollout length
    num_minibatches: int = 4  # the environments are split into this many groups
    epochs: int = 10
    lr: float = 2e-3
    anneal_lr: bool = True  # linear decay to 0 over training
    anneal_clip: bool = True  # linear decay of the clip range to 0 too
    gamma: float = 0.98
    gae_lambda: float = 0.8
    clip: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    normalize_obs: bool = True
    eval_every: int = 3_000  # environment steps per seed between greedy evaluations
    eval_episodes: int = 20
    # Two switches that plant chapter 8's bugs, to measure what they cost; keep both True.
    reset_in_rollout: bool = True  # False: the rollout never resets the state
    reset_in_unroll: bool = True  # False: the training unroll never resets it

    def __post_init__(self):
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f'cell must be "gru" or "lstm", got {self.cell!r}')
        if self.num_envs < 1 or self.num_envs % self.num_minibatches:
            raise ValueError(
                f"num_envs={self.num_envs} cannot be split into "
                f"num_minibatches={self.num_minibatches} equal groups"
            )
        if self.total_steps < 1 or self.num_steps < 1 or self.eval_episodes < 1:
            raise ValueError("total_steps, num_steps and eval_episodes must be >= 1")


# ----------------------------------------------------------------------------- 1. the network
def _orthogonal(weight: torch.Tensor, gain: float, bias: torch.Tensor | None = None):
    nn.init.orthogonal_(weight, gain=gain)
    if bias is not None:
        nn.init.zeros_(bias)


def _linear(n_in: int, n_out: int, gain: float = math.sqrt(2)) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    _orthogonal(layer.weight, gain, layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Observation -> core -> (policy logits, value), for one seed.

    The actor and the critic have *separate* cores, as in sb3-contrib's default: the value
    loss is large early on (returns of tens), and through a shared core its gradient would
    shape the actor's memory. ``recurrent=False`` makes the cores tanh layers (the memoryless
    control; its state is empty). Every layer is orthogonally initialised: gain sqrt(2) for
    hidden layers, 0.01 for the policy output, 1 for the value output; a cell's input weights
    with gain sqrt(gates * H / D), its recurrent weights with gain 1, zero biases.
    """

    # Written for any leading seed axes: a SeedBatch runs them once for all seeds, no vmap.
    seed_first_methods = ("unroll", "step", "act")

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, *, cell: str = "gru",
                 recurrent: bool = True):  # fmt: skip
        super().__init__()
        self.hidden, self.recurrent, self.kind = hidden, recurrent, cell
        if recurrent:
            self.actor_core = make_cell(cell, obs_dim, hidden)
            self.critic_core = make_cell(cell, obs_dim, hidden)
            for core in (self.actor_core, self.critic_core):
                gates = core.weight_ih.shape[0]  # 3H (GRU) or 4H (LSTM)
                _orthogonal(core.weight_ih, math.sqrt(gates / obs_dim), core.bias_ih)
                _orthogonal(core.weight_hh, 1.0, core.bias_hh)
        else:
            self.actor_core = _linear(obs_dim, hidden)
            self.critic_core = _linear(obs_dim, hidden)
        self.actor_head = nn.Sequential(_linear(hidden, hidden), nn.Tanh(),
                                        _linear(hidden, n_actions, gain=0.01))  # fmt: skip
        self.critic_head = nn.Sequential(_linear(hidden, hidden), nn.Tanh(),
                                         _linear(hidden, 1, gain=1.0))  # fmt: skip

    def initial_state(self, batch: int, actor_only: bool = False) -> State:
        """Zeros: h (B, 2H), or (h, c) for an LSTM; (B, 0) for the memoryless control.
        ``actor_only``: the actor's part, (B, H), for :meth:`act`."""
        size = (1 if actor_only else 2) * self.hidden if self.recurrent else 0
        h = self.actor_head[0].weight.new_zeros(batch, size)
        return (h, h.clone()) if self.recurrent and self.kind == "lstm" else h

    def unroll(
        self, obs: torch.Tensor, state: State, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """obs (T, B, D) from ``state``, zeroing it before each episode start (T, B):
        -> logits (T, B, A), values (T, B), the state after the last step.

        The same numbers as :func:`rldebug.cells.unroll` of each cell (the tests compare
        them), in a faster loop: the input projections of all T steps are one matrix
        product, and the actor's and critic's recurrent products one ``baddbmm`` per step.
        Shapes are read from the right, so on a SeedBatch's stacked weights every tensor
        may carry a seed axis first (one pass for all seeds, see ``seed_first_methods``).
        """
        if not self.recurrent:
            actor, critic = torch.tanh(self.actor_core(obs)), torch.tanh(self.critic_core(obs))
            return self.actor_head(actor), self.critic_head(critic).squeeze(-1), state
        *seeds, t_len, b, d = obs.shape  # seeds: (S,) on a SeedBatch's stacked weights
        actor, critic = self.actor_core, self.critic_core
        # Actor and critic side by side on one leading axis K = 2 (or S * 2, seed-major), so
        # that each product below is one batched matrix product for both cells.
        w_ih = _side_by_side(actor.weight_ih, critic.weight_ih, 2).transpose(1, 2)  # (K, D, G)
        w_hh = _side_by_side(actor.weight_hh, critic.weight_hh, 2).transpose(1, 2)  # (K, H, G)
        b_ih = _side_by_side(actor.bias_ih, critic.bias_ih, 1).unsqueeze(1)  # (K, G) -> (K, 1, G)
        b_hh = _side_by_side(actor.bias_hh, critic.bias_hh, 1).unsqueeze(1)
        x = obs.reshape(*seeds, 1, t_len * b, d).expand(*seeds, 2, t_len * b, d)
        x = x.reshape(-1, t_len * b, d)  # (*seeds, T, B, D) -> (K, T*B, D)
        gi = torch.baddbmm(b_ih, x, w_ih).view(-1, t_len, b, w_ih.shape[-1])  # (K, T, B, G)
        # Unbind once, outside the loop: indexing gi[:, t] inside it would make autograd
        # build a zero (K, T, B, G) gradient for every step, O(T^2) work in the backward.
        gi = gi.unbind(1)  # T x (K, B, G)
        keep = (1.0 - starts.to(obs.dtype)).movedim(-2, 0)  # (*seeds, T, B) -> (T, *seeds, B)
        keep = keep.unsqueeze(-2).expand(t_len, *seeds, 2, b)  # both cells of each seed
        keep = keep.reshape(t_len, -1, b, 1)  # (T, *seeds, 2, B) -> (T, K, B, 1)
        lstm, size = isinstance(state, tuple), self.hidden
        parts = state if lstm else (state,)
        parts = [  # (*seeds, B, 2H) -> (*seeds, 2, B, H) -> (K, B, H)
            p.view(*seeds, b, 2, size).transpose(-3, -2).reshape(-1, b, size) for p in parts
        ]
        h, c = parts if lstm else (parts[0], None)
        outputs = []
        for t in range(t_len):
            h = h * keep[t]  # reset before the first step of an episode (h and c alike)
            gh = torch.baddbmm(b_hh, h, w_hh)  # (K, B, H) -> (K, B, G)
            if lstm:
                c = c * keep[t]
                i, f, g, o = (gi[t] + gh).chunk(4, -1)  # 4 x (K, B, H)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                gi_rz, gi_n = gi[t].split([2 * size, size], -1)
                gh_rz, gh_n = gh.split([2 * size, size], -1)
                r, z = torch.sigmoid(gi_rz + gh_rz).chunk(2, -1)  # 2 x (K, B, H)
                n = torch.tanh(torch.addcmul(gi_n, r, gh_n))  # = tanh(gi_n + r * gh_n)
                h = torch.lerp(n, h, z)  # = (1 - z) * n + z * h, one operation
            outputs.append(h)
        out = torch.stack(outputs, 1)  # T x (K, B, H) -> (K, T, B, H)
        out = out.view(*seeds, 2, t_len, b, size)  # (K, ...) -> (*seeds, 2, T, B, H)
        logits = self.actor_head(out.select(-4, 0))  # (*seeds, T, B, A)
        values = self.critic_head(out.select(-4, 1)).squeeze(-1)  # (*seeds, T, B)
        last = [  # (K, B, H) -> (*seeds, 2, B, H) -> (*seeds, B, 2H)
            p.view(*seeds, 2, b, size).transpose(-3, -2).reshape(*seeds, b, 2 * size)
            for p in ((h, c) if lstm else (h,))
        ]
        return logits, values, tuple(last) if lstm else last[0]

    def step(self, obs: torch.Tensor, state: State, start: torch.Tensor):
        """One acting step: obs (B, D), start (B,) -> logits (B, A), value (B,), state."""
        logits, value, state = self.unroll(obs.unsqueeze(-3), state, start.unsqueeze(-2))
        return logits.squeeze(-3), value.squeeze(-2), state  # (..., 1, B, ...) -> (..., B, ...)

    def act(self, obs: torch.Tensor, actor_state: State) -> tuple[torch.Tensor, State]:
        """The actor alone, one step, no reset: obs (B, D) -> logits (B, A), its state.

        Greedy evaluation needs nothing more (each episode starts from zeros), at half the cost.
        """
        if not self.recurrent:
            return self.actor_head(torch.tanh(self.actor_core(obs))), actor_state
        actor_state = self.actor_core(obs, actor_state)
        return self.actor_head(cell_output(actor_state)), actor_state


def _side_by_side(actor: torch.Tensor, critic: torch.Tensor, dims: int) -> torch.Tensor:
    """The actor's and the critic's parameter (``dims`` axes for one seed, seeds first if
    any) side by side: (*seeds, ...) each -> (K, ...), K = 2 per seed, seed-major."""
    both = torch.stack([actor, critic], -dims - 1)  # (*seeds, 2, ...)
    return both.reshape(-1, *both.shape[-dims:])


# ----------------------------------------------------------------------------- 3. GAE
def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """Generalised advantage estimates (T, B) with the terminated / truncated split.

    ``values`` is (T + 1, B): ``values[t + 1]`` is the value of the observation that followed
    step t. Under next-step autoreset, after ``truncated[t]`` that observation is the true
    final observation of the episode (the one the agent acted on during the reset step),
    so a truncated episode bootstraps from it; a terminated one bootstraps from 0. Either
    way the running sum stops at the end of an episode, and reset steps (``mask`` False)
    get advantage 0.
    """
    if values.shape[0] != rewards.shape[0] + 1:
        raise ValueError(
            f"values must have one more row than rewards (the bootstrap value): got values "
            f"{tuple(values.shape)} and rewards {tuple(rewards.shape)}"
        )
    terminated, truncated, mask = terminated.float(), truncated.float(), mask.float()
    advantages = []
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        next_value = values[t + 1] * (1.0 - terminated[t])  # no future after a termination
        delta = rewards[t] + gamma * next_value - values[t]
        ended = torch.maximum(terminated[t], truncated[t])  # the sum stops at an episode end
        running = (delta + gamma * lam * (1.0 - ended) * running) * mask[t]
        advantages.append(running)
    return torch.stack(advantages[::-1])  # T x (B,) -> (T, B), in time order


# ----------------------------------------------------------------------------- 4. minibatches
class Minibatch(NamedTuple):
    """Whole sequences of a few environments: every field (T, b), obs (T, b, D), and h0
    the stored state of those environments, (b, 2H) or (h, c)."""

    obs: torch.Tensor
    starts: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    h0: State


def sequence_minibatches(
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    env_order: torch.Tensor | np.ndarray,
    num_minibatches: int,
) -> list[Minibatch]:
    """Split the B environments (in the order ``env_order``) into ``num_minibatches`` groups.

    Each minibatch holds the full T-step sequence of each of its environments, with the
    stored initial state of *those* environments, so that the training unroll starts from
    exactly the state the rollout started from.
    """
    num_envs = rollout.actions.shape[1]
    if num_envs % num_minibatches:
        raise ValueError(f"{num_envs} environments cannot be split into {num_minibatches} groups")
    order = torch.as_tensor(env_order, dtype=torch.long)
    return [
        Minibatch(
            obs=rollout.obs[:, idx],  # (T, B, D) -> (T, b, D): whole columns
            starts=rollout.starts[:, idx],
            actions=rollout.actions[:, idx],
            logprobs=rollout.logprobs[:, idx],
            advantages=advantages[:, idx],
            returns=returns[:, idx],
            mask=rollout.mask[:, idx],
            h0=state_of_envs(rollout.h0, idx),  # (B, 2H) -> (b, 2H): the same environments
        )
        for idx in order.chunk(num_minibatches)
    ]


# ----------------------------------------------------------------------------- 5. the loss
def ppo_loss(
    agent: ActorCritic, batch: Minibatch, clip: float, cfg: Config
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO loss of one minibatch of one seed; also the ratio check and the KL.

    ``clip`` is the (annealed) clip range. ``stats["ratio_dev"]`` is max |ratio - 1| over
    the valid steps: exactly what the first-epoch check needs on an update's first minibatch.
    Every mean is over the last two axes, (T, b), so ``agent`` may be a SeedBatch's
    ``stacked_module()`` and every field carry a seed axis first: then it returns S losses.
    """
    starts = batch.starts if cfg.reset_in_unroll else torch.zeros_like(batch.starts)
    logits, values, _ = agent.unroll(batch.obs, batch.h0, starts)  # (T, b, A), (T, b)
    logp_all = F.log_softmax(logits, -1)
    new_logp = logp_all.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)  # (T, b)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    mask = batch.mask.float()
    steps = (-2, -1)  # (T, b): one seed's steps
    # Normalised over this minibatch's valid steps (kept (..., 1, 1) to broadcast).
    mean = masked_mean(batch.advantages, mask, steps, keepdim=True)
    std = masked_mean((batch.advantages - mean) ** 2, mask, steps, keepdim=True).sqrt()
    advantages = (batch.advantages - mean) / (std + 1e-8)

    log_ratio = new_logp - batch.logprobs
    ratio = log_ratio.exp()
    policy_loss = -torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)
    value_loss = 0.5 * (values - batch.returns) ** 2
    loss = (
        masked_mean(policy_loss, mask, steps)
        + cfg.vf_coef * masked_mean(value_loss, mask, steps)
        - cfg.ent_coef * masked_mean(entropy, mask, steps)
    )
    with torch.no_grad():
        stats = {
            "approx_kl": masked_mean((ratio - 1) - log_ratio, mask, steps),
            "ratio_dev": ((ratio - 1).abs() * mask).amax(steps),
        }
    return loss, stats


# ----------------------------------------------------------------------------- 6. training
@dataclass(kw_only=True)
class Result(SeedsResult):
    """What :func:`train` measured; arrays are indexed [evaluation or update, seed]."""

    agent: SeedBatch  # the trained networks; ``agent.seed(k)`` is seed k's ActorCritic
    config: Config
    normalizer: ObsNormalizer | None
    first_check: np.ndarray  # (U, S) max |ratio - 1| on the first minibatch of each update
    approx_kl: np.ndarray  # (U, S) approximate KL after each update's last minibatch


def train(
    config: Config,
    seeds: Sequence[int] = (0,),
    *,
    progress: bool | None = None,
    processes: int = 1,
    eval_seed: int = 10_000,
) -> Result:
    """Train one PPO agent per seed, side by side; evaluate them greedily every ``eval_every``.

    ``processes > 1`` trains groups of consecutive seeds in that many worker processes
    (:func:`rldebug.parallel.run_parallel`); each seed's run is the same either way.
    ``progress=False`` hides the progress bar.
    """
    cfg, seeds = config, [int(seed) for seed in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    if processes > 1 and len(seeds) > 1:
        return train_in_processes(train, cfg, seeds, processes, progress, eval_seed)
    started = time.perf_counter()
    s, n = len(seeds), cfg.num_envs
    # One vector env per seed: a native vector env draws every sub-env from one generator.
    envs = [sineroad.make_vec(cfg.env_id, n) for _ in seeds]
    eval_envs = [sineroad.make_vec(cfg.env_id, cfg.eval_episodes) for _ in seeds]
    obs_dim, n_actions = (
        envs[0].single_observation_space.shape[0],
        int(envs[0].single_action_space.n),
    )
    agent = SeedBatch(seeded(lambda: ActorCritic(obs_dim, n_actions, cfg.hidden, cell=cfg.cell,
                                                 recurrent=cfg.recurrent), seeds))  # fmt: skip
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)  # S independent Adams
    advantages_fn = torch.vmap(gae, in_dims=(0, 0, 0, 0, 0, None, None))  # seed axis first
    minibatches_fn = torch.vmap(sequence_minibatches, in_dims=(0, 0, 0, 0, None))
    rngs = [np.random.default_rng(seed) for seed in seeds]  # actions and shuffles, per seed
    normalize = ObsNormalizer(s, obs_dim) if cfg.normalize_obs else None
    carry = start_envs(agent, envs, seeds)

    per_update = cfg.num_steps * n  # environment steps per seed per update
    num_updates = math.ceil(cfg.total_steps / per_update)
    eval_steps, eval_returns, first_check, approx_kl = [], [], [], []
    bar = progress_bar(range(num_updates), desc=f"PPO {cfg.env_id}", disable=progress is False)
    for update in bar:
        if update * per_update >= len(eval_steps) * cfg.eval_every:
            eval_steps.append(update * per_update)
            eval_returns.append(evaluate(agent, eval_envs, normalize, eval_seed))
            bar.set_postfix(eval=f"{np.median(eval_returns[-1]):.0f}")
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.lr * (1.0 - update / num_updates)
        clip = cfg.clip * (1.0 - update / num_updates) if cfg.anneal_clip else cfg.clip

        rollout, carry, raw = collect_rollout(
            agent, envs, carry, cfg.num_steps, rngs, normalize, reset=cfg.reset_in_rollout
        )
        if normalize is not None:
            normalize.update(raw)
        with torch.no_grad():
            advantages = advantages_fn(rollout.rewards, rollout.values, rollout.terminated,
                                       rollout.truncated, rollout.mask,
                                       cfg.gamma, cfg.gae_lambda)  # fmt: skip
            returns = advantages + rollout.values[:, :-1]  # (S, T, B)

        # region update
        for epoch in range(cfg.epochs):
            env_order = torch.as_tensor(np.stack([rng.permutation(n) for rng in rngs]))  # (S, B)
            batches = minibatches_fn(rollout, advantages, returns, env_order, cfg.num_minibatches)
            for k, batch in enumerate(batches):  # each field (S, T, b, ...)
                # (S,) losses, seed k's from seed k's network and minibatch, in one pass
                losses, stats = ppo_loss(agent.stacked_module(), batch, clip, cfg)
                if epoch == 0 and k == 0:  # the weights have not moved yet: ratio must be 1
                    first_check.append(stats["ratio_dev"].numpy())
                optimizer.zero_grad()
                losses.sum().backward()  # the seeds share no weight: each gets its own gradient
                clip_grad_norm_per_seed(agent.parameters(), cfg.max_grad_norm)
                optimizer.step()
        approx_kl.append(stats["approx_kl"].numpy())
        # endregion

    eval_steps.append(num_updates * per_update)
    eval_returns.append(evaluate(agent, eval_envs, normalize, eval_seed))
    for env in envs + eval_envs:
        env.close()
    return Result(
        seeds=seeds,
        eval_steps=np.array(eval_steps),
        eval_returns=np.array(eval_returns),
        final_return=eval_returns[-1],
        seconds=time.perf_counter() - started,
        agent=agent,
        config=cfg,
        normalizer=normalize,
        first_check=np.array(first_check),
        approx_kl=np.array(approx_kl),
    )
