"""REINFORCE with a recurrent (GRU or LSTM) or memoryless policy, for CartPole and CartPoleNoVel.

Chapter 6 of the book. Read it top to bottom:

1. the policy, written for one seed: an observation (scaled by ``OBS_SCALE``) -> a stack of
   recurrent cells (``rldebug.cells``) -> a linear head -> action logits;
2. the rollout: ``collect_episodes`` plays one episode per environment, carrying the hidden
   state from step to step (or not, for a memoryless policy), into a padded ``EpisodeBatch``;
3. the training pass, for one seed: ``episode_log_probs`` re-runs each whole episode from the
   zero state (correct); ``per_step_log_probs`` runs every step as its own length-1 sequence
   from the zero state (the bug of chapter 6);
4. the loss: ``masked_returns`` and ``reinforce_loss``;
5. the loop: ``train`` trains a list of seeds at once. The one-seed policy and loss are
   lifted to S seeds by ``rldebug.seedbatch`` (``SeedBatch``, ``per_seed``); each seed has
   its own environments and its own random numbers, so seed k of ``train(config, [0, 1, 2])``
   is the run of ``train(config, [k])``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import sineroad
import torch
import torch.nn.functional as F
from torch import nn

from rldebug.cells import cell_output, make_cell, unroll
from rldebug.recurrent import State
from rldebug.results import SeedsResult
from rldebug.seedbatch import SeedBatch, freeze_adam_seed, per_seed, seeded

__all__ = [
    "OBSERVED",
    "OBS_SCALE",
    "Policy",
    "EpisodeBatch",
    "collect_episodes",
    "play_episodes",
    "episode_log_probs",
    "per_step_log_probs",
    "masked_returns",
    "reinforce_loss",
    "update_loss",
    "Config",
    "NOVEL_CONFIG",
    "Result",
    "make_policy",
    "train",
    "evaluate",
]

# ----------------------------------------------------------------------------------------
# 1. The policy (one seed)
# ----------------------------------------------------------------------------------------

#: Which entries of CartPole's state (x, x_dot, theta, theta_dot) each id observes.
OBSERVED = {"CartPole-v1": [0, 1, 2, 3], "CartPoleNoVel-v1": [0, 2]}

#: What the policy divides each observation by, its first step: the position and angle at
#: which an episode terminates (2.4 and 12 degrees), and 1 for the velocities. The angle then
#: spans [-1, 1] instead of [-0.21, 0.21]; a GRU whose input weights start at about
#: 1/sqrt(hidden) sees the step-to-step change of the angle (its only clue to the angular
#: velocity when the velocity is hidden) five times larger.
OBS_SCALE = np.array([2.4, 1.0, 12 * 2 * np.pi / 360, 1.0], dtype=np.float32)


class Policy(nn.Module):
    """Observation / ``obs_scale`` -> ``num_layers`` GRU or LSTM cells -> linear -> logits.

    The state is h (layers, B, H) for a GRU and (h, c), each (layers, B, H), for an LSTM,
    as ``nn.GRU`` and ``nn.LSTM`` hold it. Built after ``torch.manual_seed(k)``, its weights
    are those of ``nn.GRU(obs_dim, hidden, num_layers)`` and ``nn.Linear(hidden, n_actions)``
    built after the same seed (same parameters, same order, same initialisation).
    """

    def __init__(self, obs_dim, n_actions, hidden=32, num_layers=1, cell="gru", obs_scale=None):
        super().__init__()
        self.hidden, self.num_layers, self.lstm = hidden, num_layers, cell == "lstm"
        sizes = [obs_dim] + [hidden] * (num_layers - 1)
        self.cells = nn.ModuleList(make_cell(cell, size, hidden) for size in sizes)
        self.head = nn.Linear(hidden, n_actions)
        scale = torch.ones(obs_dim) if obs_scale is None else torch.as_tensor(obs_scale)
        self.register_buffer("obs_scale", scale.float())  # a constant: never trained

    def initial_state(self, batch_size: int) -> State:
        h = torch.zeros(self.num_layers, batch_size, self.hidden)  # (layers, B, H)
        return (h, h.clone()) if self.lstm else h

    def step(self, obs: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One step of B environments: obs (B, D), state -> logits (B, A), new state."""
        x, new_states = obs / self.obs_scale, []
        for layer, cell in enumerate(self.cells):
            layer_state = cell(x, _layer(state, layer))  # (B, H), or (h, c)
            x = cell_output(layer_state)  # this layer's h feeds the next layer
            new_states.append(layer_state)
        return self.head(x), _stack_layers(new_states)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Whole episodes from the zero state: obs (B, T, D) -> the top layer's h (B, T, H)."""
        x = (obs / self.obs_scale).transpose(0, 1)  # (B, T, D) -> (T, B, D), time-major
        zeros = self.initial_state(obs.shape[0])
        for layer, cell in enumerate(self.cells):
            x, _ = unroll(cell, x, _layer(zeros, layer))  # (T, B, H), every step's h
        return x.transpose(0, 1)  # (T, B, H) -> (B, T, H)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Whole episodes from the zero state: obs (B, T, D) -> logits (B, T, A)."""
        return self.head(self.features(obs))


def _layer(state: State, layer: int) -> State:
    return tuple(part[layer] for part in state) if isinstance(state, tuple) else state[layer]


def _stack_layers(states: list) -> State:
    if isinstance(states[0], tuple):  # layers x (h, c) -> (h, c), each (layers, B, H)
        return tuple(torch.stack(parts) for parts in zip(*states))
    return torch.stack(states)  # layers x (B, H) -> (layers, B, H)


# ----------------------------------------------------------------------------------------
# 2. The rollout (S seeds, each with its own vector env)
# ----------------------------------------------------------------------------------------


class EpisodeBatch(NamedTuple):
    """One episode per row, padded to the longest: (S, B, T) for S seeds, (B, T) for one."""

    obs: torch.Tensor  # (..., T, D), the raw observations
    actions: torch.Tensor  # (..., T) int64
    rewards: torch.Tensor  # (..., T); 0 once a seed's episodes have all ended (masked)
    mask: torch.Tensor  # (..., T) 1.0 on the episode's steps, 0.0 on the padding after it
    log_probs: torch.Tensor  # (..., T) log pi(a_t | ...) as the rollout computed it


@torch.no_grad()
def collect_episodes(
    policy: SeedBatch,
    envs: list,
    reset_seeds: list[int],
    *,
    carry_state: bool = True,
    generators: list[torch.Generator] | None = None,
    playing: np.ndarray | None = None,
    max_steps: int = 500,
) -> EpisodeBatch:
    """Play one episode in each environment of ``envs[k]`` (seed k's vector env).

    ``generators`` (one per seed) sample the actions; None plays greedily.
    ``carry_state=False`` starts every step from the zero state: a memoryless policy.
    ``playing`` (S,) bool: the seeds that play; the others (frozen ones) get an empty batch.
    """
    S, B = len(envs), envs[0].num_envs
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, reset_seeds)])  # (S,B,D)
    zeros = policy.call("initial_state", B)  # h (S, layers, B, H), or (h, c)
    state = zeros
    if generators is not None:  # every seed draws its own uniforms, whatever the others do
        uniforms = torch.stack([torch.rand(max_steps, B, generator=g) for g in generators])
    alive = np.ones((S, B), dtype=bool) if playing is None else np.repeat(playing[:, None], B, 1)
    obs_l, act_l, logp_l, rew_l, mask_l = [], [], [], [], []
    for t in range(max_steps):
        x = torch.from_numpy(obs.astype(np.float32))  # a copy: obs[k] is overwritten below
        logits, next_state = policy.call("step", x, state if carry_state else zeros)
        state = next_state if carry_state else zeros
        log_p = F.log_softmax(logits, dim=-1)  # (S, B, A)
        if generators is None:
            action = log_p.argmax(dim=-1)
        else:  # inverse CDF: the first action whose cumulative probability exceeds u
            below = uniforms[:, t, :, None] > log_p.exp().cumsum(dim=-1)  # (S, B, A)
            action = below.sum(dim=-1).clamp(max=logits.shape[-1] - 1)  # (S, B)
        obs_l.append(x)
        act_l.append(action)
        logp_l.append(log_p.gather(-1, action.unsqueeze(-1)).squeeze(-1))  # (S, B)
        mask_l.append(alive.astype(np.float32))  # this step belongs to the episode
        reward, action = np.zeros((S, B), dtype=np.float32), action.numpy()
        for k in np.flatnonzero(alive.any(axis=1)):  # a seed whose episodes all ended rests
            obs[k], reward[k], terminated, truncated, _ = envs[k].step(action[k])
            # The episode ends on either flag. The return never bootstraps, so the two need
            # no different treatment here, but they stay two flags.
            alive[k] &= ~(terminated | truncated)
        rew_l.append(reward)
        if not alive.any():
            break
    return EpisodeBatch(
        obs=torch.stack(obs_l, dim=2),  # T x (S, B, D) -> (S, B, T, D)
        actions=torch.stack(act_l, dim=2),  # T x (S, B) -> (S, B, T)
        rewards=torch.from_numpy(np.stack(rew_l, axis=2)),
        mask=torch.from_numpy(np.stack(mask_l, axis=2)),
        log_probs=torch.stack(logp_l, dim=2),
    )


def play_episodes(policy, env_id, num_episodes, *, seed=0, carry_state=True, greedy=False):
    """One seed's policy plays ``num_episodes`` episodes of ``env_id``: a (B, T) batch."""
    generators = None if greedy else [torch.Generator().manual_seed(seed)]
    envs = [sineroad.make_vec(env_id, num_episodes)]
    batch = collect_episodes(
        SeedBatch([policy]), envs, [seed], carry_state=carry_state, generators=generators
    )
    return EpisodeBatch(*(field[0] for field in batch))  # (1, B, T, ...) -> (B, T, ...)


# ----------------------------------------------------------------------------------------
# 3. The training pass (one seed): recompute log pi(a_t | ...) with gradients
# ----------------------------------------------------------------------------------------


def _check_batch_shapes(obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> None:
    if obs.dim() != 3:
        raise ValueError(f"obs must be (B, T, D), got shape {tuple(obs.shape)}")
    if actions.shape != obs.shape[:2] or mask.shape != obs.shape[:2]:
        raise ValueError(
            f"actions {tuple(actions.shape)} and mask {tuple(mask.shape)} must both be "
            f"(B, T) = {tuple(obs.shape[:2])}"
        )


def _taken(logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=-1)  # (B, T, A)
    return log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1) * mask  # (B, T, 1) -> (B, T)


def episode_log_probs(policy, obs, actions, mask) -> torch.Tensor:
    """log pi(a_t | o_0..o_t) for every step, each episode unrolled from the zero state.

    This recomputes exactly what a rollout that carried the hidden state saw. Padding is 0.
    """
    _check_batch_shapes(obs, actions, mask)
    logits = policy(obs)  # (B, T, D) -> (B, T, A): one unroll per episode, h_0 = 0
    return _taken(logits, actions, mask)


def per_step_log_probs(policy, obs, actions, mask) -> torch.Tensor:
    """THE BUG: every step is its own length-1 sequence from the zero state.

    The network never sees step t-1 when it computes step t: this is log pi(a_t | o_t) of a
    feed-forward net, not what a rollout that carried the hidden state saw.
    """
    _check_batch_shapes(obs, actions, mask)
    b, t, d = obs.shape
    logits = policy(obs.reshape(b * t, 1, d))  # (B, T, D) -> (B*T, 1, D): T=1 each, h_0 = 0
    return _taken(logits.reshape(b, t, -1), actions, mask)  # (B*T, 1, A) -> (B, T, A)


# ----------------------------------------------------------------------------------------
# 4. The loss (one seed)
# ----------------------------------------------------------------------------------------


def masked_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1} inside each episode, 0 on the padding. Shapes (..., T)."""
    if rewards.shape != mask.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and mask {tuple(mask.shape)} differ")
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        # mask[t] = 0 after the episode's end: the sum restarts, nothing leaks backwards.
        running = mask[..., t] * (rewards[..., t] + gamma * running)
        returns[..., t] = running
    return returns


def reinforce_loss(log_probs, rewards, mask, gamma: float) -> torch.Tensor:
    """REINFORCE over a padded batch (B, T): -mean over real steps of log pi(a_t) * A_t.

    The advantage A_t is the return G_t normalised to mean 0 and standard deviation 1 over
    the real steps.
    """
    if log_probs.shape != rewards.shape or mask.shape != rewards.shape:
        raise ValueError(
            f"log_probs {tuple(log_probs.shape)}, rewards {tuple(rewards.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape"
        )
    with torch.no_grad():
        returns = masked_returns(rewards, mask, gamma)  # (B, T)
        n = mask.sum().clamp(min=1.0)  # real steps (none for a frozen seed: loss 0)
        mean = returns.sum() / n
        std = (((returns - mean) ** 2 * mask).sum() / n).sqrt()
        advantages = (returns - mean) / (std + 1e-8) * mask
    return -(log_probs * advantages * mask).sum() / n


def update_loss(policy, batch: EpisodeBatch, gamma: float, log_probs_of) -> torch.Tensor:
    """One seed's loss for one update: ``log_probs_of`` is one of the two training passes."""
    log_probs = log_probs_of(policy, batch.obs, batch.actions, batch.mask)  # (B, T)
    return reinforce_loss(log_probs, batch.rewards, batch.mask, gamma)


# ----------------------------------------------------------------------------------------
# 5. The loop (a list of seeds)
# ----------------------------------------------------------------------------------------


@dataclass
class Config:
    """Settings of one training run (all seeds share them)."""

    env_id: str = "CartPole-v1"
    cell: str = "gru"  # "gru" or "lstm"
    hidden: int = 32
    num_layers: int = 1
    carry_state: bool = True  # the rollout feeds h_t into step t+1
    unroll: str = "episode"  # training pass: "episode" (correct) or "per_step" (the bug)
    episodes: int = 16  # episodes per update, per seed
    updates: int = 100
    lr: float = 1e-2
    gamma: float = 0.99
    eval_every: int = 5  # greedy evaluation every this many updates
    eval_episodes: int = 10
    solved_at: float = 475.0
    stop_when_solved: bool = True  # freeze a seed once its greedy evaluation reaches solved_at


#: The settings chapter 6 uses on CartPoleNoVel-v1 (10 seeds: 8 or more solve).
NOVEL_CONFIG = Config(env_id="CartPoleNoVel-v1", episodes=64, lr=2e-2, updates=150)


@dataclass(kw_only=True)
class Result(SeedsResult):
    """``eval_steps`` counts updates here: each seed's episodes have their own lengths, so
    the environment steps differ from seed to seed (``eval_env_steps``, ``steps``)."""

    train_returns: np.ndarray  # (U, S) mean return of each update's training episodes
    steps: np.ndarray  # (U, S) environment steps so far (training episodes only)
    losses: np.ndarray  # (U, S)
    eval_env_steps: np.ndarray  # (E, S) environment steps at each evaluation
    solved_steps: np.ndarray  # (S,) training steps when first solved, nan when never
    policy: SeedBatch | None = None  # the trained policies; .seed(k) is seed k's Policy

    @property
    def solved(self) -> np.ndarray:
        return ~np.isnan(self.solved_steps)


def make_policy(config: Config, env_id: str | None = None) -> Policy:
    """One seed's policy for ``config`` (call it after ``torch.manual_seed``)."""
    env_id = env_id or config.env_id
    if env_id not in OBSERVED:
        raise ValueError(f"env_id must be one of {sorted(OBSERVED)}, got {env_id!r}")
    keep = OBSERVED[env_id]
    return Policy(len(keep), 2, config.hidden, config.num_layers, config.cell, OBS_SCALE[keep])


def evaluate(policy, env_id: str, episodes: int, *, carry_state=True, seed=0) -> np.ndarray:
    """Greedy mean return per seed (S,). ``policy``: a ``SeedBatch`` (or one ``Policy``);
    ``seed``: the environments' seed, one for all or one per seed."""
    policy = policy if isinstance(policy, SeedBatch) else SeedBatch([policy])
    seeds = [seed] * policy.num_seeds if np.ndim(seed) == 0 else list(seed)
    envs = [sineroad.make_vec(env_id, episodes) for _ in seeds]
    batch = collect_episodes(policy, envs, seeds, carry_state=carry_state)
    return (batch.rewards * batch.mask).sum(dim=-1).mean(dim=-1).numpy()  # (S, B, T) -> (S,)


def _check(config: Config, seeds: list[int]) -> None:
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if config.unroll not in ("episode", "per_step"):
        raise ValueError(f"unroll must be 'episode' or 'per_step', got {config.unroll!r}")
    if config.cell not in ("gru", "lstm"):
        raise ValueError(f'cell must be "gru" or "lstm", got {config.cell!r}')
    for name in ("episodes", "updates", "eval_every", "eval_episodes", "hidden", "num_layers"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")


def train(config: Config, seeds=(0,), *, progress=None) -> Result:
    """Train one policy per seed with REINFORCE, all seeds at once; return the ``Result``.

    Seed k builds its policy after ``torch.manual_seed(k)``, samples its actions from its own
    generator and plays its own vector env (reset with seeds derived from k alone).
    ``progress`` is an optional tqdm-like factory, for example ``tqdm.auto.tqdm``.
    """
    seeds = [int(s) for s in seeds]
    _check(config, seeds)
    S, B = len(seeds), config.episodes
    policy = SeedBatch(seeded(lambda: make_policy(config), seeds))  # (S, ...) weights
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    envs = [sineroad.make_vec(config.env_id, B) for _ in seeds]
    eval_envs = [sineroad.make_vec(config.env_id, config.eval_episodes) for _ in seeds]
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)  # = S independent Adams
    log_probs_of = episode_log_probs if config.unroll == "episode" else per_step_log_probs
    losses_of = per_seed(update_loss)  # one seed's loss, S seeds at once -> (S,)
    train_returns, steps, losses = [], [], []  # one row per update
    eval_updates, eval_returns, eval_env_steps = [], [], []  # one row per evaluation
    solved_steps, total = np.full(S, np.nan), np.zeros(S)
    start = time.perf_counter()
    bar = progress(range(config.updates), leave=False) if progress else range(config.updates)
    for update in bar:
        solved = ~np.isnan(solved_steps)  # (S,) frozen seeds play no training episodes
        reset_seeds = [seed * 100_003 + update for seed in seeds]
        batch = collect_episodes(
            policy,
            envs,
            reset_seeds,
            carry_state=config.carry_state,
            generators=generators,
            playing=~solved,
        )
        lengths = batch.mask.sum(dim=-1)  # (S, B, T) -> (S, B); CartPole: return = length
        total += lengths.sum(dim=1).numpy()
        train_returns.append(np.where(solved, np.nan, lengths.mean(dim=1).numpy()))
        steps.append(total.copy())
        loss = losses_of(policy, batch, config.gamma, log_probs_of)  # (S,)
        optimizer.zero_grad()
        loss.sum().backward()  # the seeds share no weights: each gets its own gradient
        optimizer.step()
        losses.append(loss.detach().numpy())
        if (update + 1) % config.eval_every == 0 or update + 1 == config.updates:
            eval_seeds = [10**6 + seed * 1009 + update for seed in seeds]
            played = collect_episodes(policy, eval_envs, eval_seeds, carry_state=config.carry_state)
            scores = (played.rewards * played.mask).sum(dim=-1).mean(dim=-1).numpy()  # (S,)
            eval_updates.append(update + 1)
            eval_returns.append(scores)
            eval_env_steps.append(total.copy())
            newly = np.isnan(solved_steps) & (scores >= config.solved_at)
            if config.stop_when_solved:
                solved_steps[newly] = total[newly]
                for k in np.flatnonzero(newly):  # no more steps: it keeps the weights that solved
                    freeze_adam_seed(optimizer, int(k))  # (its loss is 0: it plays no episodes)
                if not np.isnan(solved_steps).any():
                    break
        if progress:
            bar.set_postfix(ret=f"{float(np.nanmean(train_returns[-1])):.0f}")
    return Result(
        seeds=seeds,
        eval_steps=np.array(eval_updates),
        eval_returns=np.array(eval_returns),
        final_return=eval_returns[-1],
        seconds=time.perf_counter() - start,
        train_returns=np.array(train_returns),
        steps=np.array(steps),
        losses=np.array(losses),
        eval_env_steps=np.array(eval_env_steps),
        solved_steps=solved_steps,
        policy=policy,
    )
