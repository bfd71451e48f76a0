"""DRQN: a recurrent DQN trained on sequences from episode replay (chapter 7).

Hausknecht & Stone (2015) replaced DQN's first dense layer by an LSTM and trained it on
sequences replayed from whole episodes; Kapturowski et al. (2019, R2D2) showed how to start
those sequences: from the hidden state the actor had (the *stored state*), after a
*burn-in* that unrolls a prefix without gradient. Read top to bottom:

* :class:`QNetwork`: obs -> [encoder] -> GRU or LSTM cell -> Q-values, the state in and out;
* :func:`drqn_loss`: burn-in without gradient, a masked TD loss over the sequence, and a
  target network unrolled over the *same* sequence from the *same* initial state;
* :func:`train`: collect with many environments, store whole episodes, learn from
  sequences.

The network and the loss are written for one seed. ``train(config, seeds=[0, 1, ...])``
trains one independent agent per seed side by side: :class:`~rldebug.seedbatch.SeedBatch`
stacks the seeds' networks and ``per_seed`` lifts the loss; each seed has its own
environments, exploration, replay and optimiser state, so seed k of a batched run is the
run on ``seeds=[k]``.

The switches of :class:`Config` marked *mistake* plant the bugs of a recurrent DQN that does
not learn, one at a time, so that their cost can be measured.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sineroad
import torch
import torch.nn.functional as F
from torch import nn

from rldebug.cells import LSTMCell, cell_output, make_cell, unroll
from rldebug.episode_replay import EpisodeReplay, SequenceBatch, stack_batches, to_torch
from rldebug.parallel import progress_bar
from rldebug.recurrent import State, reset_state
from rldebug.results import SeedsResult
from rldebug.seedbatch import SeedBatch, clip_grad_norm_per_seed, per_seed, seeded
from rldebug.training import linear_schedule
from rldebug.utils import agent_rng

__all__ = [
    "Config",
    "QNetwork",
    "Result",
    "agent_input",
    "drqn_loss",
    "evaluate",
    "pack_state",
    "train",
    "unpack_state",
]


class QNetwork(nn.Module):
    """obs (B, T, D) -> [encoder] -> recurrent cell -> Q (B, T, A); the state in and out.

    ``forward(obs, state=None, episode_start=None) -> (q, state)``: ``state`` is the state
    *before* ``obs[:, 0]`` (h (B, H) for a GRU, (h, c) for an LSTM; None: zeros) and
    ``episode_start`` (B, T) zeroes it before every step that starts an episode.
    ``encoder=E`` puts ``Linear(D, E) + ReLU`` before the cell (None: the cell reads the
    observation itself). ``zero_state_every_step=True`` is the mistake of calling the
    network one step at a time without its state: a feed-forward network.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden_size: int = 64, cell: str = "gru",
                 *, encoder: int | None = None, zero_state_every_step: bool = False):  # fmt: skip
        super().__init__()
        self.obs_dim = obs_dim
        # A dense layer lets the cell read features of the observation: with the cell's
        # gates alone, a Q-value that bends sharply in the observation is slow to learn.
        self.encoder = nn.Identity()
        if encoder is not None:
            self.encoder = nn.Sequential(nn.Linear(obs_dim, encoder), nn.ReLU())
        self.cell = make_cell(cell, encoder or obs_dim, hidden_size)
        self.head = nn.Linear(hidden_size, n_actions)  # uniform ±1/sqrt(H), like the cell
        self.zero_state_every_step = zero_state_every_step

    def initial_state(self, batch_size: int) -> State:
        return self.cell.initial_state(batch_size)

    def forward(self, obs: torch.Tensor, state: State = None, episode_start=None):
        if obs.dim() != 3 or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"obs must be (B, T, D) with D = {self.obs_dim}, got "
                f"{tuple(obs.shape)}; for one step use .step(obs (B, D), state)"
            )
        batch, steps = obs.shape[:2]
        if state is None:
            state = self.initial_state(batch)
        if steps == 0:  # a burn-in of length 0: the state passes through
            return obs.new_zeros(batch, 0, self.head.out_features), state
        if self.zero_state_every_step:  # the mistake: every step starts from nothing
            episode_start = obs.new_ones(batch, steps)
        starts = None if episode_start is None else episode_start.transpose(0, 1)  # (T, B)
        features = self.encoder(obs).transpose(0, 1)  # (B, T, E) -> (T, B, E)
        out, state = unroll(self.cell, features, state, starts)  # (T, B, H)
        return self.head(out.transpose(0, 1)), state  # (T, B, H) -> (B, T, H) -> (B, T, A)

    def step(self, obs: torch.Tensor, state: State, episode_start=None):
        """One acting step: obs (B, D) -> (q (B, A), state); ``episode_start`` (B,) or None.

        The same arithmetic as ``forward`` on a sequence of one step, with fewer calls:
        the actor runs it at every environment step.
        """
        if self.zero_state_every_step:
            state = self.initial_state(obs.shape[0])  # the mistake
        elif episode_start is not None:
            state = reset_state(state, episode_start)  # zero before an episode's first obs
        state = self.cell(self.encoder(obs), state)
        return self.head(cell_output(state)), state


def pack_state(state: State) -> torch.Tensor:
    """The state as one tensor for the replay: h (..., H), or (h, c) -> (..., 2H)."""
    return torch.cat(state, dim=-1) if isinstance(state, tuple) else state


def unpack_state(packed: torch.Tensor, q_net: QNetwork) -> State:
    """Undo :func:`pack_state` for ``q_net``'s cell: (..., 2H) -> (h, c) for an LSTM."""
    if isinstance(q_net.cell, LSTMCell):
        h, c = packed.chunk(2, dim=-1)  # (..., 2H) -> 2 x (..., H)
        return h, c
    return packed


def drqn_loss(q_net: QNetwork, target_net: QNetwork, batch: SequenceBatch, gamma: float,
              burn_in: int, *, double: bool = False, huber: bool = True, per_step: bool = False):  # fmt: skip
    """Masked TD loss over B sequences of ``burn_in + T`` steps (one seed, torch tensors).

    ``batch.obs`` is (B, burn_in + T + 1, D), ``batch.initial_state`` the packed state
    before ``obs[:, 0]``. Returns the mean error over the valid trained steps;
    ``per_step=True`` returns the (B, T) masked errors and the mask instead.
    """
    if not 0 <= burn_in < batch.actions.shape[-1]:
        raise ValueError(f"burn_in must be in [0, L) for sequences of L = "
                         f"{batch.actions.shape[-1]} steps, got {burn_in}")  # fmt: skip
    init = unpack_state(batch.initial_state, q_net)
    # 1. burn-in: rebuild the hidden state from the first steps, without gradient
    with torch.no_grad():
        _, h = q_net(batch.obs[:, :burn_in], init, batch.episode_start[:, :burn_in])
    # 2. the trained steps, with gradient, from the burned-in state (+1: the obs after the last)
    q, _ = q_net(batch.obs[:, burn_in:], h, batch.episode_start[:, burn_in:])  # (B, T+1, A)
    actions = batch.actions[:, burn_in:]  # (B, T)
    q_sa = q[:, :-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (B, T, 1) -> (B, T)
    with torch.no_grad():
        # 3. the target net unrolled over the same whole sequence, from the same state
        q_target, _ = target_net(batch.obs, init, batch.episode_start)  # (B, L+1, A)
        q_next = q_target[:, burn_in + 1 :]  # (B, T, A): values of the obs after each step
        greedy = q[:, 1:] if double else q_next  # Double DQN: the online net picks a'
        next_value = q_next.gather(-1, greedy.argmax(-1, keepdim=True)).squeeze(-1)  # (B, T)
        ended = batch.terminated[:, burn_in:]  # (B, T); a truncation still bootstraps
        targets = batch.rewards[:, burn_in:] + gamma * (1.0 - ended) * next_value
    # 4. mask: padding steps count neither in the sum nor in the number of steps
    mask = batch.mask[:, burn_in:].to(q_sa.dtype)  # (B, T)
    if huber:
        errors = F.smooth_l1_loss(q_sa, targets, reduction="none")
    else:
        errors = (q_sa - targets) ** 2
    if per_step:
        return errors * mask, mask
    return (errors * mask).sum() / mask.sum().clamp(min=1.0)


@dataclass
class Config:
    """Every knob of :func:`train`. The defaults learn SineRoadFlicker-v0."""

    env_id: str = "SineRoadFlicker-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    cell: str = "gru"  # or "lstm"
    num_envs: int = 16  # environments per seed
    total_steps: int = 48_000  # environment steps per seed
    hidden_size: int = 64
    encoder: int | None = None  # units of a Linear + ReLU before the cell (None: none)
    gamma: float = 0.9
    lr: float = 3e-3
    batch_size: int = 64  # sequences per seed per update
    seq_len: int = 10  # trained steps per sequence
    burn_in: int = 5  # steps unrolled without gradient before them
    buffer_episodes: int = 200  # episodes kept per seed
    learning_starts: int = 3_200  # random-policy steps per seed before the first update
    train_every: int = 48  # environment steps per seed between updates
    target_update_every: int = 25  # updates between hard target copies
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.25
    double: bool = True
    huber: bool = True
    max_grad_norm: float | None = 10.0
    stored_state: bool = True  # False: every sequence starts from a zero state
    prev_action: bool = True  # the net also reads its previous action (one-hot), as in R2D2
    eval_every: int = 4_000  # environment steps per seed between greedy evaluations
    eval_episodes: int = 16
    eval_seed: int = 10_000
    # --- mistakes, one switch each (the defaults are the correct agent) -----------------
    recurrence: bool = True  # False: the net runs one step at a time from a zero state
    backward_per_step: bool = False  # True: loss_t.backward(retain_graph=True) per step t
    optimizer_step: bool = True  # False: gradients are computed and never applied
    target_network: bool = True  # False: the online net computes its own targets
    bootstrap_on_truncation: bool = True  # False: the time limit counts as a real end
    one_episode_per_update: bool = False  # True: each update trains 1 whole replayed episode
    skip_last_transition: bool = False  # True: an episode's last step is never stored

    def __post_init__(self):
        if self.cell not in ("gru", "lstm"):
            raise ValueError(f'cell must be "gru" or "lstm", got {self.cell!r}')
        if self.encoder is not None and (type(self.encoder) is not int or self.encoder < 1):
            raise ValueError(f"encoder must be None or a width >= 1, got {self.encoder!r}")
        if min(self.num_envs, self.batch_size, self.seq_len, self.eval_episodes) < 1:
            raise ValueError("num_envs, batch_size, seq_len and eval_episodes must be >= 1")
        if self.burn_in < 0 or self.train_every < 1 or self.target_update_every < 1:
            raise ValueError("burn_in must be >= 0, train_every and target_update_every >= 1")


@dataclass(kw_only=True)
class Result(SeedsResult):
    """Trained agents (one per seed) and their curves; curves are (E, S)."""

    config: Config
    q_net: SeedBatch  # the seeds' networks; ``q_net.seed(k)`` is seed k's plain QNetwork
    replays: list[EpisodeReplay]  # one per seed
    initial_params: dict[str, torch.Tensor]  # ``q_net.state_dict()`` before training
    losses: np.ndarray  # (E, S) mean loss of the updates since the previous evaluation
    final_returns: np.ndarray  # (S, eval_episodes) returns of the final evaluation
    n_updates: int = 0
    update_seconds: float = 0.0

    def summary(self) -> str:
        r = self.final_return
        return (
            f"{len(self.seeds)} seeds: final greedy return {r.mean():.1f} "
            f"(min {r.min():.1f}, max {r.max():.1f}), {self.seconds:.1f} s"
        )


def agent_input(obs: np.ndarray, prev_actions: np.ndarray | None, n_actions: int) -> np.ndarray:
    """What the network reads: the observation, plus the previous action one-hot.

    ``prev_actions`` (N,) holds -1 where there is none (an episode's first step): all zeros.
    ``None`` means the network reads the observation alone.
    """
    if prev_actions is None:
        return obs
    one_hot = (prev_actions[:, None] == np.arange(n_actions)[None, :]).astype(np.float32)  # (N, A)
    return np.concatenate([obs, one_hot], axis=1)  # (N, D + A)


def evaluate(q_net: SeedBatch, envs, seed: int, *, prev_action: bool = True) -> np.ndarray:
    """Greedy returns (S, E): seed k's network plays E episodes in envs k*E ... (k+1)*E - 1.

    Every seed plays the same E roads (env seeds ``seed ... seed + E - 1``).
    """
    s = q_net.num_seeds
    e = envs.num_envs // s
    n_actions = envs.single_action_space.n
    obs, _ = envs.reset(seed=[seed + i for i in range(e)] * s)
    state = q_net.call("initial_state", e)  # (S, E, H), or (h, c)
    returns, running = np.zeros(s * e), np.ones(s * e, dtype=bool)
    prev = np.full(s * e, -1) if prev_action else None
    with torch.no_grad():
        while running.any():
            x = torch.as_tensor(agent_input(obs, prev, n_actions)).reshape(s, e, -1)
            q, state = q_net.call("step", x, state)  # (S, E, A)
            actions = q.argmax(-1).reshape(-1).numpy()  # (S, E) -> (S*E,)
            prev = actions if prev_action else None
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns += rewards * running
            running &= ~(terminated | truncated)
    return returns.reshape(s, e)


def backward(errors: torch.Tensor, mask: torch.Tensor, *, per_step: bool = False):
    """Backpropagate each seed's mean error; errors, mask (..., B, T) -> losses (...).

    ``per_step=True`` is the mistake: one ``backward(retain_graph=True)`` per time step
    through the same graph; the gradients of the T steps add up and every call walks
    the graph again.
    """
    losses = errors.sum((-2, -1)) / mask.sum((-2, -1)).clamp(min=1.0)  # each seed's mean
    if not per_step:
        losses.sum().backward()
        return losses.detach()
    steps = errors.shape[-1]
    for i in range(steps):
        step_loss = errors[..., i].sum(-1) / mask[..., i].sum(-1).clamp(min=1.0)
        step_loss.sum().backward(retain_graph=i < steps - 1)
    return losses.detach()


def train(config: Config | None = None, seeds: Sequence[int] = (0,), *, progress=None) -> Result:
    """Train one DRQN agent per seed, side by side; ``train(cfg, seeds=range(10))``."""
    cfg = config or Config()
    if not isinstance(cfg, Config):
        raise TypeError(f"config must be a drqn.Config, got {type(cfg).__name__}")
    start_time = time.perf_counter()
    seeds = [int(seed) for seed in seeds]
    s, n = len(seeds), cfg.num_envs
    if s == 0:
        raise ValueError("seeds is empty: pass at least one seed")

    # --- environments: seed k owns envs k*n ... (k+1)*n - 1 -------------------------------
    envs = sineroad.make_vec(cfg.env_id, s * n, **cfg.env_kwargs)
    eval_envs = sineroad.make_vec(cfg.env_id, s * cfg.eval_episodes, **cfg.env_kwargs)
    n_actions = int(envs.single_action_space.n)
    obs_dim = envs.single_observation_space.shape[0] + (n_actions if cfg.prev_action else 0)
    max_len = getattr(envs.unwrapped, "max_episode_steps", None)
    if max_len is None:
        raise ValueError("episode replay needs a time limit (max_episode_steps) to size its slots")

    # --- networks (one per seed, each built after torch.manual_seed(seed)), replay -------
    def make_net():
        return QNetwork(obs_dim, n_actions, cfg.hidden_size, cfg.cell, encoder=cfg.encoder,
                        zero_state_every_step=not cfg.recurrence)  # fmt: skip

    q_net = SeedBatch(seeded(make_net, seeds))
    target_net = copy.deepcopy(q_net).requires_grad_(False) if cfg.target_network else q_net
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)  # S independent Adams
    loss_fn = per_seed(drqn_loss)
    state_dim = cfg.hidden_size * (2 if cfg.cell == "lstm" else 1)  # (h, c) packed
    replays = [EpisodeReplay(cfg.buffer_episodes, max_len, obs_dim, state_dim, seed=seed)
               for seed in seeds]  # fmt: skip
    explore_rngs = [agent_rng(seed) for seed in seeds]  # independent of the env's stream
    initial_params = copy.deepcopy(q_net.state_dict())

    # --- the episodes being played: one row per environment, seed-major ------------------
    m = s * n
    ep_obs = np.zeros((m, max_len + 1, obs_dim), dtype=np.float32)
    ep_actions = np.zeros((m, max_len), dtype=np.int64)
    ep_rewards = np.zeros((m, max_len), dtype=np.float32)
    ep_terminated = np.zeros((m, max_len), dtype=np.float32)
    ep_states = np.zeros((m, max_len + 1, state_dim), dtype=np.float32)  # before obs[t]
    ep_t = np.zeros(m, dtype=np.int64)  # steps taken in the current episode
    rows = np.arange(m)

    obs, _ = envs.reset(seed=[seed * 1_000 + i for seed in seeds for i in range(n)])
    prev = np.full(m, -1) if cfg.prev_action else None  # previous action, -1: none yet
    x = agent_input(obs, prev, n_actions)  # (S*N, D [+ A]) what the network reads
    ep_obs[:, 0] = x
    state = q_net.call("initial_state", n)  # (S, N, H), or (h, c)
    first = np.ones(m, dtype=bool)  # True: x is an episode's first observation
    crossing = np.zeros(m, dtype=bool)  # True: this env's next step is its autoreset step
    n_iterations = -(-cfg.total_steps // n)
    eval_steps, eval_returns, losses, loss_window = [], [], [], []
    n_updates, update_seconds, final = 0, 0.0, None
    bar = None
    if progress:
        bar = progress_bar(total=n_iterations * n, desc=f"DRQN x{s} seeds", unit="step")

    for iteration in range(n_iterations):
        step = iteration * n  # environment steps per seed so far

        # 1. act: epsilon-greedy on the recurrent Q-values, carrying the state
        epsilon = linear_schedule(
            cfg.eps_start, cfg.eps_end, int(cfg.eps_fraction * cfg.total_steps), step
        )
        if step < cfg.learning_starts:
            epsilon = 1.0
        with torch.no_grad():
            x_t = torch.as_tensor(x).reshape(s, n, -1)  # (S*N, D) -> (S, N, D)
            starts = torch.as_tensor(first).reshape(s, n)  # zero the state before these
            q, state = q_net.call("step", x_t, state, starts)  # (S, N, A)
        actions = q.argmax(-1).reshape(-1).numpy()  # (S, N) -> (S*N,)
        for k, rng in enumerate(explore_rngs):  # each seed explores with its own generator
            mine = actions[k * n : (k + 1) * n]
            explore = rng.random(n) < epsilon
            mine[explore] = rng.integers(0, n_actions, size=int(explore.sum()))
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        if cfg.prev_action:
            prev = np.where(crossing, -1, actions)  # after an autoreset: no previous action
        next_x = agent_input(next_obs, prev, n_actions)

        # 2. record the step in each env's current episode (not the autoreset steps)
        live = rows[~crossing]
        t = ep_t[live]
        ended = terminated if cfg.bootstrap_on_truncation else terminated | truncated
        ep_actions[live, t] = actions[live]
        ep_rewards[live, t] = rewards[live]
        ep_terminated[live, t] = ended[live]
        ep_obs[live, t + 1] = next_x[live]
        ep_states[live, t + 1] = pack_state(state).reshape(m, -1)[live].numpy()  # (S, N, H)
        ep_t[live] += 1
        for i in np.flatnonzero((terminated | truncated) & ~crossing):  # an episode ended
            # the mistake of a loop `while i < len(episode) - 1`: the last step is lost
            length = ep_t[i] - 1 if cfg.skip_last_transition else ep_t[i]
            replays[i // n].add_episode(
                ep_obs[i, : length + 1],
                ep_actions[i, :length],
                ep_rewards[i, :length],
                ep_terminated[i, :length],
                ep_states[i, : length + 1],
            )
        # the autoreset step returned a new episode's first observation
        ep_obs[crossing, 0] = next_x[crossing]
        ep_t[crossing] = 0
        x, first, crossing = next_x, crossing, terminated | truncated

        # 3. learn: every train_every steps, one update of every seed on B sequences each
        step_after = step + n
        due = step_after // cfg.train_every - step // cfg.train_every
        if step_after >= cfg.learning_starts and all(len(r) for r in replays) and due:
            update_start = time.perf_counter()
            for _ in range(due):
                if cfg.one_episode_per_update:  # the mistake: 1 episode, from its first step
                    samples = [r.sequences(r.rng.integers(len(r), size=1), np.zeros(1, int),
                                           max_len, 0) for r in replays]  # fmt: skip
                else:
                    samples = [r.sample(cfg.batch_size, cfg.seq_len, cfg.burn_in) for r in replays]
                batch = to_torch(stack_batches(samples))  # (S, B, ...)
                if not cfg.stored_state:  # the mistake: every sequence starts from zeros
                    batch = batch._replace(initial_state=torch.zeros_like(batch.initial_state))
                optimizer.zero_grad()
                burn_in = 0 if cfg.one_episode_per_update else cfg.burn_in
                errors, mask = loss_fn(q_net, target_net, batch, cfg.gamma, burn_in,
                                       double=cfg.double, huber=cfg.huber, per_step=True)  # fmt: skip
                loss_window.append(backward(errors, mask, per_step=cfg.backward_per_step))
                if cfg.max_grad_norm is not None:
                    clip_grad_norm_per_seed(q_net.parameters(), cfg.max_grad_norm)
                if cfg.optimizer_step:
                    optimizer.step()
                n_updates += 1
                if cfg.target_network and n_updates % cfg.target_update_every == 0:
                    target_net.load_state_dict(q_net.state_dict())
            update_seconds += time.perf_counter() - update_start

        # 4. evaluate the greedy policies
        if step_after // cfg.eval_every > step // cfg.eval_every or iteration == n_iterations - 1:
            final = evaluate(q_net, eval_envs, cfg.eval_seed, prev_action=cfg.prev_action)
            eval_steps.append(step_after)
            eval_returns.append(final.mean(axis=1))
            losses.append(torch.stack(loss_window).mean(0).numpy() if loss_window
                          else np.full(s, np.nan))  # fmt: skip
            loss_window.clear()
            if bar is not None:
                bar.set_postfix(mean_return=f"{final.mean():.0f}")
        if bar is not None:
            bar.update(n)

    if bar is not None:
        bar.close()
    return Result(
        seeds=seeds,
        eval_steps=np.array(eval_steps),
        eval_returns=np.array(eval_returns),  # (E, S)
        final_return=final.mean(axis=1),
        seconds=time.perf_counter() - start_time,
        config=cfg,
        q_net=q_net,
        replays=replays,
        initial_params=initial_params,
        losses=np.array(losses),
        final_returns=final,
        n_updates=n_updates,
        update_seconds=update_seconds,
    )
