"""The recurrent Q-learning suspect: DRQN with burn-in on the recall task.

:class:`RecurrentDQN` is the reference agent (chapter 7's recipe in miniature): the
replay keeps each environment's stream of steps with its episode starts; a training
sequence is ``burn_in`` steps that only warm the hidden state up (no gradient, as in
R2D2) followed by ``train_len`` steps that carry the loss; the GRU resets wherever an
episode starts inside the window; the target network runs over the same window.

Hooks for the diagnostics: ``policy_step(obs, episode_start)`` (leak test),
``training_fn(inputs, state)`` (memory probe), ``td_target(...)`` (truncation probe),
``sample_sequence_batch()``, ``burn_in`` and ``sequence_loss(batch)`` (burn-in gradient).
"""

from __future__ import annotations

import copy
from functools import partial
from typing import NamedTuple

import numpy as np
import torch

from rldebug.bughunt.recall import RecallEnv
from rldebug.qlearning import td_target
from rldebug.recurrent import RecurrentNet, masked_mean, reset_state

__all__ = [
    "WindowBatch",
    "RecurrentDQN",
    "TwoLayerDQN",
    "EpisodeDQN",
    "Agent5",
    "Agent9",
    "Agent10",
    "hard_case_finals",
]


class WindowBatch(NamedTuple):
    """b windows of L = burn_in + train_len + 1 consecutive steps of one environment."""

    obs: torch.Tensor  # (b, L, D)
    episode_start: torch.Tensor  # (b, L) bool
    actions: torch.Tensor  # (b, L) long
    rewards: torch.Tensor  # (b, L)
    terminated: torch.Tensor  # (b, L) float
    mask: torch.Tensor  # (b, L - 1 - burn_in) bool: steps that carry the loss


class RecurrentDQN:
    """DRQN with a zero-state burn-in on :class:`RecallEnv`."""

    family = "recurrent Q-learning (DRQN) on the recall task"
    suspect_methods = ("act_step", "td_target", "sequence_loss")

    def __init__(
        self,
        seed: int = 0,
        *,
        n_envs: int = 16,
        hidden: int = 32,
        lr: float = 3e-3,
        gamma: float = 0.5,
        burn_in: int = 4,
        train_len: int = 8,
        batch_size: int = 32,
        capacity: int = 2000,
        num_layers: int = 1,
    ):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.env = RecallEnv(n_envs, seed=seed)
        self.obs_dim, self.n_actions = RecallEnv.obs_dim, RecallEnv.n_actions
        self.net = RecurrentNet(self.obs_dim, self.n_actions, hidden, num_layers=num_layers)
        self.target_net = copy.deepcopy(self.net)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.gamma, self.burn_in, self.train_len = gamma, burn_in, train_len
        self.batch_size, self.capacity, self.epsilon = batch_size, capacity, 0.1
        self.obs, self.start = self.env.reset()
        self.h: torch.Tensor | None = None  # acting state (1, B, H)
        self.buffer: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("obs", "episode_start", "actions", "rewards", "terminated")
        }

    # -- acting --------------------------------------------------------------------------
    def policy_step(self, obs, episode_start) -> torch.Tensor:
        """Q-values of one step: obs (B, D) or (D,) -> (B, A); the state is carried."""
        obs = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, self.obs_dim)  # (B, D)
        if self.h is None or self.h.shape[1] != obs.shape[0]:
            self.h = self.net.initial_state(obs.shape[0])  # (L, B, H)
        q, self.h = self.act_step(obs, self.h, episode_start)
        return q

    def act_step(self, obs: torch.Tensor, h: torch.Tensor, episode_start) -> tuple:
        """One acting step from state h (L, B, H): (Q (B, A), the next state)."""
        h = reset_state(h, episode_start)  # a new episode starts from zero
        output, h = self.net.rnn(obs.unsqueeze(1), h)  # (B, D) -> (B, 1, D); output (B, 1, H)
        return self.net.head(output[:, -1]), h  # the top layer's output at this step

    @torch.no_grad()
    def collect(self, n_steps: int) -> float:
        """Act epsilon-greedily for ``n_steps`` steps in every env; store them; mean reward."""
        rewards = []
        for _ in range(n_steps):
            q = self.policy_step(self.obs, self.start)
            explore = torch.rand(q.shape[0], generator=self.gen) < self.epsilon
            random_actions = torch.randint(self.n_actions, (q.shape[0],), generator=self.gen)
            action = torch.where(explore, random_actions, q.argmax(dim=1))
            next_obs, reward, terminated, next_start = self.env.step(action)
            for key, value in zip(self.buffer, (self.obs, self.start, action, reward, terminated)):
                self.buffer[key].append(value)
            self.obs, self.start = next_obs, next_start
            rewards.append(reward)
        for key in self.buffer:  # keep the newest `capacity` steps
            del self.buffer[key][: max(0, len(self.buffer[key]) - self.capacity)]
        return float(torch.stack(rewards).mean())

    def sample_sequence_batch(self) -> WindowBatch:
        """Random windows of burn_in + train_len + 1 consecutive steps of one env each."""
        window = self.burn_in + self.train_len + 1
        n_stored = len(self.buffer["obs"])
        if n_stored < window:
            self.collect(window - n_stored)
            n_stored = len(self.buffer["obs"])
        stream = {k: torch.stack(v, dim=1) for k, v in self.buffer.items()}  # (B_env, N, ...)
        env = torch.randint(self.env.n_envs, (self.batch_size,), generator=self.gen)
        t0 = torch.randint(n_stored - window + 1, (self.batch_size,), generator=self.gen)
        t = t0[:, None] + torch.arange(window)[None, :]  # (b, L)
        pick = {k: v[env[:, None], t] for k, v in stream.items()}  # (b, L, ...)
        mask = torch.ones(self.batch_size, self.train_len, dtype=torch.bool)
        return WindowBatch(**pick, mask=mask)

    # -- the loss ------------------------------------------------------------------------
    def td_target(self, rewards, next_q, terminated, truncated) -> torch.Tensor:
        """y = r + gamma (1 - terminated) max_a' Q_target(s', a'), (N,)."""
        return td_target(rewards, next_q, terminated, truncated, self.gamma)

    def sequence_loss(self, batch: WindowBatch) -> torch.Tensor:
        """Burn in the state on the first steps, then the TD loss on the next train_len."""
        b, k = self.burn_in, self.train_len
        obs, starts = batch.obs, batch.episode_start
        with torch.no_grad():
            _, h = self.net(obs[:, :b], None, starts[:, :b])  # warm up the state
            _, h_target = self.target_net(obs[:, :b], None, starts[:, :b])
            next_q, _ = self.target_net(obs[:, b:], h_target, starts[:, b:])  # (b, k+1, A)
        q, _ = self.net(obs[:, b:], h, starts[:, b:])  # (b, k+1, A)
        q_sa = q[:, :k].gather(2, batch.actions[:, b : b + k].unsqueeze(2)).squeeze(2)  # (b, k)
        with torch.no_grad():
            target = self.td_target(
                batch.rewards[:, b : b + k].reshape(-1),
                next_q[:, 1:].reshape(-1, self.n_actions),  # (b, k, A) -> (b*k, A)
                batch.terminated[:, b : b + k].reshape(-1),
                torch.zeros(q_sa.numel()),
            ).reshape(q_sa.shape)  # (b*k,) -> (b, k)
        return masked_mean((q_sa - target) ** 2, batch.mask)

    # -- training ------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, n_steps: int = 64) -> float:
        """Mean reward per step of the greedy policy on fresh episodes."""
        env = RecallEnv(64, seed=12345)
        obs, start = env.reset()
        h = self.net.initial_state(64)
        total = 0.0
        for _ in range(n_steps):
            q, h = self.act_step(obs, h, start)
            obs, reward, _, start = env.step(q.argmax(dim=1))
            total += float(reward.mean())
        return total / n_steps

    def train(self, n_updates: int = 100, eval_every: int = 25, progress: bool = False):
        """Collect 4 steps per env, one gradient step; returns (updates, greedy reward/step)."""
        from tqdm.auto import tqdm

        self.collect(self.burn_in + self.train_len + 1)
        steps, scores = [0], [self.evaluate()]
        for update in tqdm(range(1, n_updates + 1), desc=type(self).__name__, disable=not progress):
            self.collect(4)
            loss = self.sequence_loss(self.sample_sequence_batch())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if update % 25 == 0:
                self.target_net.load_state_dict(self.net.state_dict())
            if update % eval_every == 0:
                steps.append(update)
                scores.append(self.evaluate())
        return np.array(steps), np.array(scores)

    # -- hooks for the diagnostics -------------------------------------------------------
    def training_fn(self, inputs: torch.Tensor, state=None):
        """The online network as the training pass runs it: (B, T, D) -> (B, T, A)."""
        return self.net(inputs, state)


class Agent5(RecurrentDQN):
    """Suspect 5: recurrent Q-learning (DRQN) on the recall task."""

    def sequence_loss(self, batch: WindowBatch) -> torch.Tensor:
        """Burn in the state on the first steps, then the TD loss on the next train_len."""
        b, k = self.burn_in, self.train_len
        obs, starts = batch.obs, batch.episode_start
        _, h = self.net(obs[:, :b], None, starts[:, :b])  # warm up the state
        with torch.no_grad():
            _, h_target = self.target_net(obs[:, :b], None, starts[:, :b])
            next_q, _ = self.target_net(obs[:, b:], h_target, starts[:, b:])  # (b, k+1, A)
        q, _ = self.net(obs[:, b:], h, starts[:, b:])  # (b, k+1, A)
        q_sa = q[:, :k].gather(2, batch.actions[:, b : b + k].unsqueeze(2)).squeeze(2)  # (b, k)
        with torch.no_grad():
            target = self.td_target(
                batch.rewards[:, b : b + k].reshape(-1),
                next_q[:, 1:].reshape(-1, self.n_actions),  # (b, k, A) -> (b*k, A)
                batch.terminated[:, b : b + k].reshape(-1),
                torch.zeros(q_sa.numel()),
            ).reshape(q_sa.shape)  # (b*k,) -> (b, k)
        return masked_mean((q_sa - target) ** 2, batch.mask)


class TwoLayerDQN(RecurrentDQN):
    """The DRQN with a two-layer GRU: the head reads the top layer."""

    family = "recurrent Q-learning (DRQN, two-layer GRU) on the recall task"

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(seed, **{"num_layers": 2, **kwargs})


class Agent9(TwoLayerDQN):
    """Suspect 9: recurrent Q-learning (DRQN, two-layer GRU) on the recall task."""

    def act_step(self, obs: torch.Tensor, h: torch.Tensor, episode_start) -> tuple:
        """One acting step from state h (L, B, H): (Q (B, A), the next state)."""
        h = reset_state(h, episode_start)  # a new episode starts from zero
        _, h = self.net.rnn(obs.unsqueeze(1), h)  # (B, D) -> (B, 1, D); h (L, B, H)
        return self.net.head(h[0]), h


class EpisodeDQN(RecurrentDQN):
    """The DRQN trained on whole episodes from the zero state, padded to the longest.

    A training sequence is one episode (6 to 12 steps on the recall task) followed by
    padding up to ``max_len`` steps: zeros that are not data. ``mask`` marks the real steps.
    """

    family = "recurrent Q-learning (DRQN on padded whole episodes) on the recall task"
    suspect_methods = ("act_step", "td_target", "td_loss")

    def __init__(self, seed: int = 0, **kwargs):
        super().__init__(seed, **{"burn_in": 0, "train_len": RecallEnv(1).max_len, **kwargs})

    def sample_sequence_batch(self) -> WindowBatch:
        """Whole episodes from the start, padded with zeros to ``train_len`` (+1) steps."""
        window = self.train_len + 1
        if len(self.buffer["obs"]) < 2 * window:
            self.collect(2 * window)  # at least one whole episode fits in the stream
        while True:
            stream = {k: torch.stack(v, dim=1) for k, v in self.buffer.items()}  # (B_env, N)
            starts = stream["episode_start"][:, : -window + 1].nonzero()  # (n, 2): env, t
            if len(starts) >= 1:
                break
            self.collect(window)
        pick = starts[torch.randint(len(starts), (self.batch_size,), generator=self.gen)]
        t = pick[:, 1:] + torch.arange(window)[None, :]  # (b, L)
        batch = {k: v[pick[:, :1], t] for k, v in stream.items()}  # (b, L, ...)
        ended = batch["terminated"].cumsum(1) - batch["terminated"]  # > 0 after the episode
        real = ended == 0  # (b, L): the episode's own steps
        for key, value in batch.items():  # what lies after the episode is padding
            pad = real if value.dim() == 2 else real.unsqueeze(-1)
            batch[key] = value * pad if value.dtype != torch.bool else value & pad
        return WindowBatch(**batch, mask=real[:, : self.train_len])

    def sequence_loss(self, batch: WindowBatch) -> torch.Tensor:
        """The TD loss on every real step of whole episodes; padding carries none."""
        k = self.train_len
        q, _ = self.net(batch.obs, None, batch.episode_start)  # (b, k+1, A)
        q_sa = q[:, :k].gather(2, batch.actions[:, :k].unsqueeze(2)).squeeze(2)  # (b, k)
        with torch.no_grad():
            next_q, _ = self.target_net(batch.obs, None, batch.episode_start)  # (b, k+1, A)
            target = self.td_target(
                batch.rewards[:, :k].reshape(-1),
                next_q[:, 1:].reshape(-1, self.n_actions),  # (b, k, A) -> (b*k, A)
                batch.terminated[:, :k].reshape(-1),
                torch.zeros(q_sa.numel()),
            ).reshape(q_sa.shape)  # (b*k,) -> (b, k)
        return self.td_loss(q_sa, target, batch.mask)

    def td_loss(self, q_sa: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
        """Mean squared TD error over the real steps: (b, k) each, mask (b, k) bool."""
        return masked_mean((q_sa - target) ** 2, mask)


class Agent10(EpisodeDQN):
    """Suspect 10: recurrent Q-learning (DRQN on padded whole episodes) on the recall task."""

    def td_loss(self, q_sa: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
        """Mean squared TD error over the real steps: (b, k) each, mask (b, k) bool."""
        return ((q_sa - target) ** 2).mean()


def hard_case_finals(
    seeds, *, act_step=None, td_loss=None, n_updates: int = 100, progress=None
) -> dict[str, np.ndarray]:
    """Final greedy reward per step of suspects 9 and 10 on ``seeds``, and of the same
    suspects with a fix plugged in (the reader's ``act_step(net, obs, h, episode_start)``
    and ``td_loss(q_sa, target, mask)``; None: the fixed twin's own method).

    Returns ``{"suspect 9", "fixed 9", "suspect 10", "fixed 10"}`` -> (S,) arrays.
    """
    finals: dict[str, list[float]] = {
        k: [] for k in ("suspect 9", "fixed 9", "suspect 10", "fixed 10")
    }
    seeds = list(seeds)
    for seed in seeds if progress is None else progress(seeds):
        # The twins differ from their suspects in one method only: the same seed, the same run.
        fixed_9, fixed_10 = TwoLayerDQN(seed), EpisodeDQN(seed)
        if act_step is not None:  # the reader's fix, in the suspect's place
            fixed_9.act_step = partial(act_step, fixed_9.net)
        if td_loss is not None:
            fixed_10.td_loss = td_loss
        for name, agent in (
            ("suspect 9", Agent9(seed)),
            ("fixed 9", fixed_9),
            ("suspect 10", Agent10(seed)),
            ("fixed 10", fixed_10),
        ):
            _, scores = agent.train(n_updates=n_updates, eval_every=n_updates)
            finals[name].append(float(scores[-1]))
    return {name: np.array(values) for name, values in finals.items()}
