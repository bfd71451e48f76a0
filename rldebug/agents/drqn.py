"""DRQN: a recurrent DQN trained on sequences from episode replay (chapter 7).

Hausknecht & Stone (2015) replaced DQN's first dense layer by an LSTM and trained it on
sequences replayed from whole episodes; Kapturowski et al. (2019, R2D2) showed how to start
those sequences: from the hidden state the actor had (the *stored state*), after a
*burn-in* that unrolls a prefix without gradient. Read top to bottom:

* :class:`RecurrentQNetwork`: obs -> GRU -> Q-values, with the state passed in and out;
* :func:`drqn_loss`: burn-in without gradient, a masked TD loss over the sequence, and a
  target network unrolled over the *same* sequence from the *same* initial state;
* :func:`train`: collect with many environments, store whole episodes, learn from
  sequences; ``seeds=[0, 1, ...]`` trains one independent agent per seed side by side.

**The agent axis.** Every tensor here has a leading axis ``S``: ``S`` independent agents
(one per seed), each with its own weights, environments, replay and optimiser state,
computed together with batched matrix products (``torch.baddbmm``) because ten small
networks are as fast to step as one. Read ``S`` as 1 and it is a plain DRQN.

The switches of :class:`DRQNConfig` that are marked *mistake* reproduce the bugs of a
recurrent DQN that does not learn, one at a time, so their cost can be measured.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import sineroad  # noqa: F401  (registers the sine-road environments)
import torch
import torch.nn.functional as F
from torch import nn

from rldebug.episode_replay import EpisodeReplay, SequenceBatch, stack_batches, to_torch
from rldebug.parallel import progress_bar
from rldebug.training import linear_schedule
from rldebug.utils import set_seed

__all__ = [
    "DRQNConfig",
    "DRQNResult",
    "RecurrentQNetwork",
    "drqn_loss",
    "memoryless_dqn",
    "agent_input",
    "evaluate_recurrent",
    "final_returns",
    "q_from_episode_start",
    "q_value_discrepancy",
    "train",
    "training_pass_q",
]


# ---------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------


class RecurrentQNetwork(nn.Module):
    """``S`` independent GRU Q-networks: obs (S, B, T, D) -> Q (S, B, T, A).

    ``forward(obs, state, episode_start=None) -> (q, state)``: ``state`` is (S, B, H)
    (``None``: zeros) and is the state *before* ``obs[:, :, 0]``; ``episode_start``
    (S, B, T) resets it to zero before every step that starts an episode. The GRU is
    written out (PyTorch's equations, checked against ``nn.GRU`` in the tests) so that each
    agent has its own weights. ``zero_state_every_step=True`` is the mistake of calling the
    network one step at a time without its hidden state: a feed-forward net.
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_size: int = 32,
        n_agents: int = 1,
        *,
        zero_state_every_step: bool = False,
    ):
        super().__init__()
        s, d, h, a = n_agents, obs_dim, hidden_size, n_actions
        self.obs_dim, self.n_actions, self.hidden_size, self.n_agents = d, a, h, s
        self.zero_state_every_step = zero_state_every_step
        bound = 1.0 / math.sqrt(h)  # nn.GRU's and nn.Linear's default initialisation

        def uniform(*shape):
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.w_ih = uniform(s, d, 3 * h)  # input -> (reset, update, new) gates
        self.b_ih = uniform(s, 1, 3 * h)
        self.w_hh = uniform(s, h, 3 * h)  # hidden -> gates
        self.b_hh = uniform(s, 1, 3 * h)
        self.w_q = uniform(s, h, a)  # the Q head reads the GRU's output at every step
        self.b_q = uniform(s, 1, a)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(self.n_agents, batch_size, self.hidden_size)

    def forward(
        self,
        obs: torch.Tensor,
        state: torch.Tensor | None = None,
        episode_start: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if obs.ndim != 4 or obs.shape[0] != self.n_agents or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"obs must be (S, B, T, D) = ({self.n_agents}, B, T, {self.obs_dim}), got "
                f"{tuple(obs.shape)}; for one step use .step(obs (S, B, D), state)"
            )
        s, b, t, d = obs.shape
        h = self.initial_state(b) if state is None else state  # (S, B, H)
        if t == 0:  # nothing to unroll (a burn-in of length 0): the state passes through
            return obs.new_zeros(s, b, 0, self.n_actions), h
        if h.shape != (s, b, self.hidden_size):
            raise ValueError(
                f"state must be (S, B, H) = {(s, b, self.hidden_size)}, got {tuple(h.shape)}"
            )
        # Input part of the gates for every step at once: (S, B*T, D) @ (S, D, 3H).
        gi = torch.baddbmm(self.b_ih, obs.reshape(s, b * t, d), self.w_ih)  # (S, B*T, 3H)
        gi = gi.reshape(s, b, t, -1).unbind(dim=2)  # T x (S, B, 3H), one per step
        resets = [False] * t
        if episode_start is not None:
            keep = (
                (~episode_start.bool()).to(obs.dtype).permute(2, 0, 1).unsqueeze(-1)
            )  # (T, S, B, 1)
            resets = episode_start.bool().reshape(-1, t).any(dim=0).tolist()  # which steps reset
        hs = self.hidden_size
        outputs = []
        for i in range(t):
            if self.zero_state_every_step:
                h = torch.zeros_like(h)  # the mistake: every step starts from nothing
            elif resets[i]:
                h = h * keep[i]  # zero the state before an episode's first observation
            gh = torch.baddbmm(self.b_hh, h, self.w_hh)  # (S, B, 3H)
            gi_rz, gi_n = gi[i].split((2 * hs, hs), dim=-1)  # (S, B, 2H), (S, B, H)
            gh_rz, gh_n = gh.split((2 * hs, hs), dim=-1)
            r, z = torch.sigmoid(gi_rz + gh_rz).chunk(2, dim=-1)  # reset and update gates
            n = torch.tanh(gi_n + r * gh_n)  # candidate state
            h = n + z * (h - n)  # (1 - z) * n + z * h
            outputs.append(h)
        out = torch.stack(outputs, dim=2)  # T x (S, B, H) -> (S, B, T, H)
        q = torch.baddbmm(self.b_q, out.reshape(s, b * t, -1), self.w_q)  # (S, B*T, A)
        return q.reshape(s, b, t, -1), h  # (S, B, T, A), (S, B, H)

    def step(self, obs: torch.Tensor, state: torch.Tensor | None = None):
        """One acting step: obs (S, B, D) -> (q (S, B, A), state (S, B, H))."""
        q, state = self.forward(obs.unsqueeze(2), state)  # (S, B, D) -> (S, B, 1, D)
        return q.squeeze(2), state  # (S, B, 1, A) -> (S, B, A)

    def agent(self, k: int) -> RecurrentQNetwork:
        """A copy of agent ``k`` alone (S = 1), for diagnostics on one seed."""
        single = RecurrentQNetwork(
            self.obs_dim,
            self.n_actions,
            self.hidden_size,
            1,
            zero_state_every_step=self.zero_state_every_step,
        )
        with torch.no_grad():
            for p_one, p_all in zip(single.parameters(), self.parameters()):
                p_one.copy_(p_all[k : k + 1])
        return single


# ---------------------------------------------------------------------------------------
# the loss
# ---------------------------------------------------------------------------------------


def drqn_loss(
    q_net: RecurrentQNetwork,
    target_net: RecurrentQNetwork,
    batch: SequenceBatch,
    gamma: float,
    burn_in: int,
    *,
    double: bool = False,
    stored_state: bool = True,
    huber: bool = True,
    bootstrap_on_truncation: bool = True,
    per_step: bool = False,
) -> torch.Tensor:
    """Masked TD loss over sequences of ``burn_in + T`` steps (torch tensors with the agent axis).

    ``batch.obs`` is (S, B, burn_in + T + 1, D). Returns the sum over agents of each agent's
    mean Huber error over its valid trained steps (each agent gets its own mean's
    gradient). ``per_step=True`` returns the (S, B, T) masked errors and the mask instead
    (for the ``retain_graph`` experiment).
    """
    if burn_in < 0 or burn_in >= batch.actions.shape[-1]:
        raise ValueError(
            f"burn_in must be in [0, L) for sequences of L = {batch.actions.shape[-1]} steps, got {burn_in}"
        )
    s, b = batch.actions.shape[:2]
    init = (
        batch.initial_state
        if stored_state and batch.initial_state is not None
        else q_net.initial_state(b)
    )

    # 1. burn-in: rebuild the hidden state from the first steps, without gradient
    with torch.no_grad():
        _, h = q_net(batch.obs[:, :, :burn_in], init, batch.episode_start[:, :, :burn_in])
    # 2. the trained steps, with gradient, from the burned-in state (+1: the obs after the last)
    q, _ = q_net(
        batch.obs[:, :, burn_in:], h, batch.episode_start[:, :, burn_in:]
    )  # (S, B, T+1, A)
    actions = batch.actions[:, :, burn_in:]  # (S, B, T)
    q_sa = q[:, :, :-1].gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (S, B, T, 1) -> (S, B, T)

    with torch.no_grad():
        # 3. the target net unrolled over the same whole sequence, from the same state
        q_target, _ = target_net(batch.obs, init, batch.episode_start)  # (S, B, L+1, A)
        q_next = q_target[:, :, burn_in + 1 :]  # (S, B, T, A): values of the obs after each step
        if double:  # the online net picks a', the target net values it
            next_actions = q[:, :, 1:].argmax(dim=-1, keepdim=True)  # (S, B, T, 1)
        else:
            next_actions = q_next.argmax(dim=-1, keepdim=True)  # (S, B, T, 1)
        next_value = q_next.gather(-1, next_actions).squeeze(-1)  # (S, B, T)
        ended = batch.terminated[:, :, burn_in:]  # (S, B, T); a truncation still bootstraps
        targets = batch.rewards[:, :, burn_in:] + gamma * (1.0 - ended) * next_value

    # 4. mask: padding steps count neither in the sum nor in the number of steps
    mask = batch.mask[:, :, burn_in:].to(q_sa.dtype)  # (S, B, T)
    if huber:
        errors = F.smooth_l1_loss(q_sa, targets, reduction="none")
    else:
        errors = (q_sa - targets) ** 2
    if per_step:
        return errors * mask, mask
    per_agent = (errors * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1.0)  # (S,)
    return per_agent.sum()


# ---------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------


@dataclass
class DRQNConfig:
    """Every knob of :func:`train`. The defaults learn SineRoadFlicker-v0."""

    env_id: str = "SineRoadFlicker-v0"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    num_envs: int = 16  # environments per agent
    total_steps: int = 48_000  # environment steps per agent
    hidden_size: int = 64
    gamma: float = 0.9
    lr: float = 3e-3
    batch_size: int = 64  # sequences per agent per update
    seq_len: int = 10  # trained steps per sequence
    burn_in: int = 5  # steps unrolled without gradient before them
    buffer_episodes: int = 200  # episodes kept per agent
    learning_starts: int = 3_200  # random-policy steps per agent before the first update
    train_every: int = 48  # environment steps per agent between updates
    target_update_every: int = 25  # updates between hard target copies
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.25
    double: bool = True
    huber: bool = True
    max_grad_norm: float | None = 10.0
    stored_state: bool = True  # False: every sequence starts from a zero state
    prev_action: bool = True  # the net also reads its previous action (one-hot), as in R2D2
    eval_every: int = 4_000  # environment steps per agent between greedy evaluations
    eval_episodes: int = 16
    eval_seed: int = 10_000
    # --- mistakes, one switch each (the defaults are the correct agent) -----------------
    recurrence: bool = True  # False: the net runs one step at a time from a zero state
    backward_per_step: bool = False  # True: loss_t.backward(retain_graph=True) per step t
    optimizer_step: bool = True  # False: gradients are computed and never applied
    target_network: bool = True  # False: the online net computes its own targets
    bootstrap_on_truncation: bool = True  # False: the time limit counts as a real end

    def __post_init__(self):
        if self.num_envs < 1 or self.batch_size < 1 or self.seq_len < 1 or self.burn_in < 0:
            raise ValueError("num_envs, batch_size, seq_len must be >= 1 and burn_in >= 0")
        if self.train_every < 1 or self.target_update_every < 1:
            raise ValueError("train_every and target_update_every must be >= 1")


@dataclass
class DRQNResult:
    """Trained agents (one per seed) and their curves; returns are (n_points, S)."""

    config: DRQNConfig
    seeds: list[int]
    q_net: RecurrentQNetwork
    replays: list[EpisodeReplay]
    initial_params: dict[str, torch.Tensor] = field(default_factory=dict)  # before training
    eval_steps: list[int] = field(default_factory=list)
    eval_returns: list[np.ndarray] = field(default_factory=list)  # each (S,): mean greedy return
    losses: list[np.ndarray] = field(default_factory=list)  # each (S,)
    final_returns: np.ndarray | None = None  # (S, eval_episodes)
    n_updates: int = 0
    wall_time: float = 0.0
    update_time: float = 0.0

    @property
    def final_return(self) -> np.ndarray:
        """(S,) mean greedy return of the final evaluation, one per seed."""
        return self.final_returns.mean(axis=1)

    def summary(self) -> str:
        r = self.final_return
        return (
            f"{len(self.seeds)} seeds: final greedy return {r.mean():.1f} "
            f"(min {r.min():.1f}, max {r.max():.1f}), {self.wall_time:.1f} s"
        )


def _make_env(cfg: DRQNConfig, n: int) -> gym.vector.VectorEnv:
    return gym.make_vec(
        cfg.env_id, num_envs=n, vectorization_mode="vector_entry_point", **cfg.env_kwargs
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


def evaluate_recurrent(
    q_net: RecurrentQNetwork,
    envs: gym.vector.VectorEnv,
    seed: int,
    *,
    recurrence: bool = True,
    prev_action: bool = True,
) -> np.ndarray:
    """Greedy returns (S, E): agent k plays E episodes in envs k*E ... (k+1)*E - 1.

    Every agent sees the same E roads (seeds ``seed ... seed + E - 1``).
    """
    s = q_net.n_agents
    e = envs.num_envs // s
    obs, _ = envs.reset(seed=[seed + i for i in range(e)] * s)
    h = q_net.initial_state(e)
    returns = np.zeros(s * e)
    running = np.ones(s * e, dtype=bool)
    n_actions = q_net.n_actions
    prev = np.full(s * e, -1) if prev_action else None
    with torch.no_grad():
        while running.any():
            x = torch.as_tensor(agent_input(obs, prev, n_actions)).reshape(s, e, -1)
            q, h = q_net.step(x, h if recurrence else None)
            actions = q.argmax(dim=-1).reshape(-1).numpy()  # (S, E) -> (S*E,)
            prev = actions if prev_action else None
            obs, rewards, terminated, truncated, _ = envs.step(actions)
            returns += rewards * running
            running &= ~(terminated | truncated)
    return returns.reshape(s, e)


def train(
    config: DRQNConfig | None = None,
    *,
    seeds: Sequence[int] = (0,),
    progress: bool = False,
    **overrides: Any,
) -> DRQNResult:
    """Train one DRQN agent per seed, side by side; ``train(cfg, seeds=range(10), lr=1e-3)``."""
    cfg = replace(config or DRQNConfig(), **overrides)
    start_time = time.perf_counter()
    seeds = [int(x) for x in seeds]
    s, n = len(seeds), cfg.num_envs
    set_seed(seeds[0])
    rng = np.random.default_rng(seeds)

    # --- environments: agent k owns envs k*n ... (k+1)*n - 1 ------------------------------
    envs = _make_env(cfg, s * n)
    eval_envs = _make_env(cfg, s * cfg.eval_episodes)
    n_actions = int(envs.single_action_space.n)
    obs_dim = envs.single_observation_space.shape[0] + (n_actions if cfg.prev_action else 0)
    max_len = (
        envs.unwrapped.max_episode_steps if hasattr(envs.unwrapped, "max_episode_steps") else None
    )
    if max_len is None:
        raise ValueError("episode replay needs a time limit (max_episode_steps) to size its slots")

    # --- networks, optimiser, replay -----------------------------------------------------
    q_net = RecurrentQNetwork(
        obs_dim, n_actions, cfg.hidden_size, s, zero_state_every_step=not cfg.recurrence
    )
    target_net = copy.deepcopy(q_net).requires_grad_(False) if cfg.target_network else q_net
    optimizer = torch.optim.Adam(q_net.parameters(), lr=cfg.lr)
    hsize = cfg.hidden_size
    replays = [
        EpisodeReplay(cfg.buffer_episodes, max_len, obs_dim, hsize, seed=seed) for seed in seeds
    ]
    result = DRQNResult(config=cfg, seeds=seeds, q_net=q_net, replays=replays)
    result.initial_params = copy.deepcopy(q_net.state_dict())

    # --- the episodes being played: one row per environment --------------------------------
    m = s * n
    ep_obs = np.zeros((m, max_len + 1, obs_dim), dtype=np.float32)
    ep_actions = np.zeros((m, max_len), dtype=np.int64)
    ep_rewards = np.zeros((m, max_len), dtype=np.float32)
    ep_terminated = np.zeros((m, max_len), dtype=np.float32)
    ep_states = np.zeros((m, max_len + 1, hsize), dtype=np.float32)  # state before obs[t]
    ep_t = np.zeros(m, dtype=np.int64)  # steps taken in the current episode
    rows = np.arange(m)

    obs, _ = envs.reset(seed=[seed * 1_000 + i for seed in seeds for i in range(n)])
    prev = np.full(m, -1) if cfg.prev_action else None  # previous action, -1: none yet
    x = agent_input(obs, prev, n_actions)  # (S*N, D [+ A]) what the network reads
    ep_obs[:, 0] = x
    h = q_net.initial_state(n)  # (S, N, H)
    crossing = np.zeros(m, dtype=bool)  # True: this env's next step is its autoreset step
    n_iterations = -(-cfg.total_steps // n)
    loss_window: list[np.ndarray] = []
    bar = None
    if progress:
        bar = progress_bar(total=n_iterations * n, desc=f"DRQN x{s} seeds", unit="step")

    for iteration in range(n_iterations):
        step = iteration * n  # environment steps per agent so far

        # 1. act: epsilon-greedy on the recurrent Q-values, carrying the state
        epsilon = linear_schedule(
            cfg.eps_start, cfg.eps_end, int(cfg.eps_fraction * cfg.total_steps), step
        )
        if step < cfg.learning_starts:
            epsilon = 1.0
        with torch.no_grad():
            x_t = torch.as_tensor(x).reshape(s, n, -1)  # (S*N, D) -> (S, N, D)
            q, h_next = q_net.step(x_t, h)  # (S, N, A), (S, N, H)
        actions = q.argmax(dim=-1).reshape(-1).numpy()  # (S, N) -> (S*N,)
        explore = rng.random(m) < epsilon
        actions[explore] = rng.integers(0, n_actions, size=int(explore.sum()))
        next_obs, rewards, terminated, truncated, _ = envs.step(actions)
        if cfg.prev_action:
            prev = np.where(crossing, -1, actions)  # after an autoreset: no previous action
        next_x = agent_input(next_obs, prev, n_actions)

        # 2. record the step in each env's current episode (not the autoreset steps)
        live = rows[~crossing]
        t = ep_t[live]
        ended_flag = terminated if cfg.bootstrap_on_truncation else terminated | truncated
        ep_actions[live, t] = actions[live]
        ep_rewards[live, t] = rewards[live]
        ep_terminated[live, t] = ended_flag[live]
        ep_obs[live, t + 1] = next_x[live]
        ep_states[live, t + 1] = h_next.reshape(m, -1)[live].numpy()
        ep_t[live] += 1
        done = (terminated | truncated) & ~crossing
        for i in np.flatnonzero(done):  # a finished episode goes into its agent's replay
            length = ep_t[i]
            replays[i // n].add_episode(
                ep_obs[i, : length + 1],
                ep_actions[i, :length],
                ep_rewards[i, :length],
                ep_terminated[i, :length],
                ep_states[i, : length + 1],
            )
        # the autoreset step returned a new episode's first observation: start from zeros
        if crossing.any():
            ep_obs[crossing, 0] = next_x[crossing]
            ep_t[crossing] = 0
            h_next = h_next * torch.as_tensor(~crossing, dtype=h_next.dtype).reshape(s, n, 1)
        h, x, crossing = h_next, next_x, terminated | truncated

        # 3. learn: every train_every steps, one update of every agent on B sequences each
        step_after = step + n
        due = step_after // cfg.train_every - step // cfg.train_every
        if step_after >= cfg.learning_starts and len(replays[0]) > 0 and due:
            update_start = time.perf_counter()
            for _ in range(due):
                batch = to_torch(
                    stack_batches(
                        [r.sample(cfg.batch_size, cfg.seq_len, cfg.burn_in) for r in replays]
                    )
                )
                optimizer.zero_grad()
                loss_value = _backward(q_net, target_net, batch, cfg)
                if cfg.max_grad_norm is not None:
                    _clip_grad_norm_per_agent(q_net, cfg.max_grad_norm)
                if cfg.optimizer_step:
                    optimizer.step()
                result.n_updates += 1
                if cfg.target_network and result.n_updates % cfg.target_update_every == 0:
                    target_net.load_state_dict(q_net.state_dict())
                loss_window.append(loss_value)
            result.update_time += time.perf_counter() - update_start

        # 4. evaluate the greedy policies
        if step_after // cfg.eval_every > step // cfg.eval_every or iteration == n_iterations - 1:
            returns = evaluate_recurrent(
                q_net,
                eval_envs,
                cfg.eval_seed,
                recurrence=cfg.recurrence,
                prev_action=cfg.prev_action,
            )
            result.eval_steps.append(step_after)
            result.eval_returns.append(returns.mean(axis=1))
            result.losses.append(
                np.mean(loss_window, axis=0) if loss_window else np.full(s, np.nan)
            )
            loss_window.clear()
            result.final_returns = returns
            if bar is not None:
                bar.set_postfix(mean_return=f"{returns.mean():.0f}")
        if bar is not None:
            bar.update(n)

    if bar is not None:
        bar.close()
    result.wall_time = time.perf_counter() - start_time
    return result


def final_returns(config: DRQNConfig | None = None, *, seeds=(0,), **overrides) -> np.ndarray:
    """Train with :func:`train` and return only the (S,) final greedy returns.

    Small to send back from a worker process (the full result holds every replay). Only
    the final greedy evaluation runs: the curve would be thrown away, and on the sine road
    the evaluations cost about a third of the run (they use their own roads, so training
    is the same).
    """
    total_steps = overrides.get("total_steps", (config or DRQNConfig()).total_steps)
    overrides.setdefault("eval_every", total_steps)
    return train(config, seeds=seeds, **overrides).final_return


def _backward(q_net, target_net, batch: SequenceBatch, cfg: DRQNConfig) -> np.ndarray:
    """Compute the loss and its gradients; return each agent's loss (S,)."""
    kwargs = dict(
        double=cfg.double,
        stored_state=cfg.stored_state,
        huber=cfg.huber,
        bootstrap_on_truncation=cfg.bootstrap_on_truncation,
    )
    if not cfg.backward_per_step:
        errors, mask = drqn_loss(
            q_net, target_net, batch, cfg.gamma, cfg.burn_in, per_step=True, **kwargs
        )
        per_agent = errors.sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1.0)  # (S,)
        per_agent.sum().backward()
        return per_agent.detach().numpy()
    # The mistake: one backward per time step through the same graph (retain_graph=True).
    # The gradients add up over the steps, and every call walks the graph again.
    errors, mask = drqn_loss(
        q_net, target_net, batch, cfg.gamma, cfg.burn_in, per_step=True, **kwargs
    )
    steps = errors.shape[-1]
    for i in range(steps):
        step_loss = errors[:, :, i].sum(dim=1) / mask[:, :, i].sum(dim=1).clamp(min=1.0)  # (S,)
        step_loss.sum().backward(retain_graph=i < steps - 1)
    return (errors.sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1.0)).detach().numpy()


def _clip_grad_norm_per_agent(q_net: RecurrentQNetwork, max_norm: float) -> None:
    """Clip each agent's gradient to ``max_norm`` on its own (a global norm would couple seeds)."""
    grads = [p.grad for p in q_net.parameters() if p.grad is not None]
    norms = (
        torch.stack([g.reshape(g.shape[0], -1).pow(2).sum(dim=1) for g in grads]).sum(0).sqrt()
    )  # (S,)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # (S,)
    for g in grads:
        g.mul_(scale.reshape(-1, *([1] * (g.ndim - 1))))


# ---------------------------------------------------------------------------------------
# diagnostics: does the training pass see what the actor saw?
# ---------------------------------------------------------------------------------------


def q_from_episode_start(
    q_net: RecurrentQNetwork,
    replay: EpisodeReplay,
    episode_idx: np.ndarray,
    first: np.ndarray,
    seq_len: int,
) -> torch.Tensor:
    """Q-values (B, T, A) of steps ``first ... first + T - 1`` of each episode ``episode_idx``,
    from unrolling ``q_net`` (one agent) over the whole episode from its first step: the
    values an actor with these weights computed while playing it."""
    obs = torch.as_tensor(replay.obs[episode_idx])[None]  # (1, B, M+1, D)
    with torch.no_grad():
        q_all, _ = q_net(obs)  # (1, B, M+1, A): each episode unrolled from a zero state
    pos = np.clip(first[:, None] + np.arange(seq_len)[None, :], 0, obs.shape[2] - 1)  # (B, T)
    return q_all[0, np.arange(len(first))[:, None], pos]  # (B, T, A)


def training_pass_q(
    q_net: RecurrentQNetwork, batch: SequenceBatch, burn_in: int, *, stored_state: bool = True
) -> torch.Tensor:
    """The Q-values (S, B, T, A) the loss computes for the trained steps of ``batch``."""
    b = batch.actions.shape[1]
    init = batch.initial_state if stored_state else q_net.initial_state(b)
    with torch.no_grad():
        _, h = q_net(batch.obs[:, :, :burn_in], init, batch.episode_start[:, :, :burn_in])
        q, _ = q_net(batch.obs[:, :, burn_in:-1], h, batch.episode_start[:, :, burn_in:-1])
    return q


def q_value_discrepancy(
    q_net: RecurrentQNetwork,
    replay: EpisodeReplay,
    burn_ins: Sequence[int],
    *,
    seq_len: int = 20,
    n_sequences: int = 256,
    stored_state: bool = True,
    recent_episodes: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """R2D2's Q-value discrepancy, one value per burn-in length.

    For sequences sampled from ``replay`` (one agent: ``q_net.n_agents == 1``), compare the
    Q-values of the trained steps computed as the loss does (initial state: stored or zero,
    then ``burn_in`` steps) with the Q-values from unrolling the current network over the
    whole episode from its first step (the state the current actor would have had).
    Returns the mean |ΔQ| / mean |Q| over the valid trained steps, for each burn-in.
    ``recent_episodes=k`` samples only the ``k`` episodes added last (the freshest stored
    states); the default samples the whole replay, as training does.
    """
    if q_net.n_agents != 1:
        raise ValueError("q_value_discrepancy works on one agent: use q_net.agent(k)")
    rng = np.random.default_rng(seed)
    episode_idx, first = replay.sample_steps(n_sequences, rng)  # the same steps for every burn-in
    if recent_episodes is not None:
        k = min(int(recent_episodes), len(replay))
        slots = (replay.n_added - 1 - np.arange(k)) % replay.capacity  # the k newest episodes
        episode_idx = slots[rng.integers(0, k, size=n_sequences)]
        first = (rng.random(n_sequences) * replay.lengths[episode_idx]).astype(np.int64)
    q_true = q_from_episode_start(q_net, replay, episode_idx, first, seq_len)  # (B, T, A)
    out = []
    for burn_in in burn_ins:
        batch = to_torch(stack_batches([replay.sequences(episode_idx, first, seq_len, burn_in)]))
        q_train = training_pass_q(q_net, batch, burn_in, stored_state=stored_state)[0]  # (B, T, A)
        mask = batch.mask[0, :, burn_in:]  # (B, T)
        diff = (q_train - q_true).abs().mean(-1)[mask]
        out.append(float(diff.mean() / q_true.abs().mean(-1)[mask].mean()))
    return np.array(out)


# ---------------------------------------------------------------------------------------
# the memoryless baselines: chapter 3's DQN, with and without frame stacking
# ---------------------------------------------------------------------------------------


def memoryless_dqn(
    env_id: str = "SineRoadFlicker-v0",
    seed: int = 0,
    *,
    frame_stack: int = 0,
    like: DRQNConfig | None = None,
    prev_action: bool | None = None,
    **overrides: Any,
):
    """Chapter 3's DQN on ``env_id`` with the budget, evaluation and inputs of a DRQN config.

    Same environment steps, discount, number of environments, exploration schedule and
    evaluation roads as ``like`` (default :class:`DRQNConfig`), and the same inputs: the
    observation plus the previous action one-hot when ``like.prev_action`` (``prev_action``
    overrides it), so that a comparison with the DRQN differs in memory only.
    ``frame_stack=k`` then stacks the last ``k`` of those inputs (gymnasium's
    ``FrameStackObservation``): the last k observations and the k actions before them.
    Returns the :class:`~rldebug.agents.dqn.DQNResult`.
    """
    from functools import partial

    from sineroad.wrappers import PrevActionRewardObservation

    from rldebug.agents import dqn

    cfg = like or DRQNConfig()
    with_action = cfg.prev_action if prev_action is None else prev_action
    wrappers = ()
    if with_action:  # zeros at an episode's first step, like the DRQN's agent_input
        wrappers += (partial(PrevActionRewardObservation, reward=False),)
    if frame_stack:
        wrappers += (partial(gym.wrappers.FrameStackObservation, stack_size=frame_stack),)
    settings = dict(
        env_id=env_id,
        seed=seed,
        wrappers=wrappers,
        num_envs=cfg.num_envs,
        total_steps=cfg.total_steps,
        gamma=cfg.gamma,
        hidden=(64, 64),
        lr=1e-3,
        lr_end=None,  # a constant learning rate
        batch_size=128,
        learning_starts=cfg.learning_starts,
        train_every=cfg.train_every // 2,  # twice as many updates as DRQN (of 128 steps)
        target_update_every=100,
        eps_start=cfg.eps_start,
        eps_end=cfg.eps_end,
        eps_fraction=cfg.eps_fraction,
        eval_every=cfg.eval_every,
        eval_episodes=cfg.eval_episodes,
        final_eval_episodes=cfg.eval_episodes,
        eval_seed=cfg.eval_seed,
    )
    settings.update(overrides)
    return dqn.train(dqn.DQNConfig(**settings))
