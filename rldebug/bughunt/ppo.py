"""The recurrent-PPO suspects: a GRU actor-critic on the recall task.

:class:`RecurrentPPO` is the reference agent (chapter 8's recipe in miniature): one GRU
state per environment, reset *before* the step that starts an episode; the rollout stores
the state it started from; the training pass re-runs each environment's whole sequence
from that state with the same resets; minibatches are whole environment sequences; GAE
bootstraps from the value after the last step. The numbered suspects differ from it in one
method each.

Hooks for the diagnostics: ``policy_step(obs, episode_start)`` (leak test),
``rollout_outputs()`` / ``training_outputs()`` (rollout consistency), ``first_epoch_stats()``
(the first-epoch ratio check) and ``training_fn(inputs, state)`` (memory probe).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from rldebug.bughunt.recall import RecallEnv
from rldebug.recurrent import reset_state, rollout_with_resets

__all__ = [
    "RecallActorCritic",
    "RecallRollout",
    "RecallMinibatch",
    "RecurrentPPO",
    "Agent2",
    "Agent4",
    "Agent7",
    "Agent8",
]


class RecallActorCritic(nn.Module):
    """obs -> GRUCell -> (policy logits, value)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 32):
        super().__init__()
        self.cell = nn.GRUCell(obs_dim, hidden)
        self.pi = nn.Linear(hidden, n_actions)
        self.v = nn.Linear(hidden, 1)
        self.hidden = hidden

    def step(self, obs: torch.Tensor, h: torch.Tensor):
        """obs (B, D), h (B, H) -> logits (B, A), value (B,), h (B, H)."""
        h = self.cell(obs, h)
        return self.pi(h), self.v(h).squeeze(-1), h

    def heads(self, h: torch.Tensor):
        """h (..., H) -> logits (..., A), values (...)."""
        return self.pi(h), self.v(h).squeeze(-1)


class RecallRollout(NamedTuple):
    """What the rollout saw, batch first: B environments x T steps."""

    obs: torch.Tensor  # (B, T, D)
    episode_start: torch.Tensor  # (B, T) bool: obs[:, t] is the first of an episode
    actions: torch.Tensor  # (B, T) long
    logprobs: torch.Tensor  # (B, T) log pi(a_t | history) at acting time
    values: torch.Tensor  # (B, T)
    rewards: torch.Tensor  # (B, T)
    terminated: torch.Tensor  # (B, T) float: the episode ended with step t
    h0: torch.Tensor  # (B, H) the state the rollout started from
    last_value: torch.Tensor  # (B,) value of the observation after the last step
    mask: torch.Tensor  # (B, T) bool: valid steps (all of them here)


class RecallMinibatch(NamedTuple):
    obs: torch.Tensor  # (b, T, D)
    episode_start: torch.Tensor  # (b, T)
    actions: torch.Tensor  # (b, T)
    old_logprobs: torch.Tensor  # (b, T)
    advantages: torch.Tensor  # (b, T)
    returns: torch.Tensor  # (b, T)
    h0: torch.Tensor  # (b, H)
    mask: torch.Tensor  # (b, T)


class RecurrentPPO:
    """PPO with a GRU policy on :class:`RecallEnv`, small enough to train in seconds."""

    family = "recurrent PPO on the recall task"
    suspect_methods = ("policy_step", "training_pass", "minibatches")

    def __init__(
        self,
        seed: int = 0,
        *,
        n_envs: int = 16,
        n_steps: int = 16,
        hidden: int = 32,
        lr: float = 1e-2,
        n_epochs: int = 2,
        n_minibatches: int = 2,
        clip: float = 0.2,
        gamma: float = 0.9,
        lam: float = 0.9,
    ):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.env = RecallEnv(n_envs, seed=seed)
        self.obs_dim, self.n_actions = RecallEnv.obs_dim, RecallEnv.n_actions
        self.net = RecallActorCritic(self.obs_dim, self.n_actions, hidden)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.n_steps, self.n_epochs, self.n_minibatches = n_steps, n_epochs, n_minibatches
        self.clip, self.gamma, self.lam = clip, gamma, lam
        self.obs, self.start = self.env.reset()
        self.h: torch.Tensor | None = None  # the acting state, (B, H)
        self.value: torch.Tensor | None = None
        self._cached: RecallRollout | None = None

    # -- acting --------------------------------------------------------------------------
    def _state_for(self, batch: int) -> torch.Tensor:
        if self.h is None or self.h.shape[0] != batch:
            self.h = torch.zeros(batch, self.net.hidden)
        return self.h

    def policy_step(self, obs, episode_start) -> torch.Tensor:
        """Act one step: obs (B, D) or (D,) -> logits (B, A); the GRU state is carried."""
        obs = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, self.obs_dim)  # (B, D)
        h = self._state_for(obs.shape[0])
        h = reset_state(h, episode_start)  # a new episode starts from a zero state
        logits, self.value, self.h = self.net.step(obs, h)
        return logits

    @torch.no_grad()
    def collect(self) -> RecallRollout:
        """Run every environment for ``n_steps`` steps with the current policy."""
        h0 = self._state_for(self.env.n_envs).clone()
        keys = ("obs", "episode_start", "actions", "logprobs", "values", "rewards", "terminated")
        steps: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
        for _ in range(self.n_steps):
            logits = self.policy_step(self.obs, self.start)
            dist = Categorical(logits=logits)
            action = dist.sample()
            next_obs, reward, terminated, next_start = self.env.step(action)
            for key, value in zip(
                keys,
                (
                    self.obs,
                    self.start,
                    action,
                    dist.log_prob(action),
                    self.value,
                    reward,
                    terminated,
                ),
            ):
                steps[key].append(value)
            self.obs, self.start = next_obs, next_start
        h_last = reset_state(self.h, self.start)
        _, last_value, _ = self.net.step(self.obs, h_last)
        stacked = {
            k: torch.stack(v, dim=1) for k, v in steps.items()
        }  # T x (B, ...) -> (B, T, ...)
        return RecallRollout(
            **stacked,
            h0=h0,
            last_value=last_value,
            mask=torch.ones_like(stacked["rewards"], dtype=torch.bool),
        )

    # -- training ------------------------------------------------------------------------
    def training_pass(self, obs, h0, episode_start):
        """Re-run whole sequences: obs (B, T, D), h0 (B, H), episode_start (B, T) ->
        logits (B, T, A), values (B, T)."""
        outs, _ = rollout_with_resets(
            self.net.cell, obs.transpose(0, 1), episode_start.transpose(0, 1), h0
        )  # (B, T, D) -> (T, B, D) -> outputs (T, B, H)
        return self.net.heads(outs.transpose(0, 1))  # (T, B, H) -> (B, T, H)

    def advantages(self, r: RecallRollout) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE(gamma, lambda); bootstraps from ``last_value`` after the last step."""
        adv = torch.zeros_like(r.rewards)
        running = torch.zeros_like(r.last_value)
        for t in reversed(range(r.rewards.shape[1])):
            next_value = r.last_value if t == r.rewards.shape[1] - 1 else r.values[:, t + 1]
            alive = 1.0 - r.terminated[:, t]
            delta = r.rewards[:, t] + self.gamma * alive * next_value - r.values[:, t]
            running = delta + self.gamma * self.lam * alive * running
            adv[:, t] = running
        return adv, adv + r.values

    def minibatches(self, r: RecallRollout, adv, returns) -> Iterator[RecallMinibatch]:
        """Minibatches of whole environment sequences, in a random order."""
        envs = torch.randperm(r.obs.shape[0], generator=self.gen)
        for idx in envs.chunk(self.n_minibatches):
            yield RecallMinibatch(
                r.obs[idx], r.episode_start[idx], r.actions[idx], r.logprobs[idx],
                adv[idx], returns[idx], r.h0[idx], r.mask[idx],
            )  # fmt: skip

    def _new_logprobs(self, mb: RecallMinibatch):
        logits, values = self.training_pass(mb.obs, mb.h0, mb.episode_start)
        dist = Categorical(logits=logits)  # (b, T, A)
        return dist.log_prob(mb.actions), values, dist.entropy()  # (b, T) each

    def update(self, r: RecallRollout) -> None:
        adv, returns = self.advantages(r)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        for _ in range(self.n_epochs):
            for mb in self.minibatches(r, adv, returns):
                logp, values, entropy = self._new_logprobs(mb)
                ratio = torch.exp(logp - mb.old_logprobs)
                clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
                policy_loss = -torch.min(ratio * mb.advantages, clipped * mb.advantages)
                m = mb.mask.float()
                loss = ((policy_loss + 0.5 * (values - mb.returns) ** 2 - 0.01 * entropy) * m).sum()
                loss = loss / m.sum()
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), 0.5)
                self.optimizer.step()

    def train(self, n_updates: int = 30, progress: bool = False):
        """Returns (updates, mean reward per step of each rollout)."""
        from tqdm.auto import tqdm

        curve = []
        for _ in tqdm(range(n_updates), desc=type(self).__name__, disable=not progress):
            rollout = self.collect()
            curve.append(float(rollout.rewards.mean()))
            self.update(rollout)
        return np.arange(1, n_updates + 1), np.array(curve)

    # -- hooks for the diagnostics -------------------------------------------------------
    def rollout_outputs(self) -> torch.Tensor:
        """Collect a fresh rollout (kept for training_outputs); its log-probs (B, T)."""
        self._cached = self.collect()
        return self._cached.logprobs

    @torch.no_grad()
    def training_outputs(self) -> torch.Tensor:
        """The training pass's log-probs of the same actions, before any update (B, T)."""
        if self._cached is None:
            raise RuntimeError("call rollout_outputs() before training_outputs()")
        r = self._cached
        logits, _ = self.training_pass(r.obs, r.h0, r.episode_start)
        return Categorical(logits=logits).log_prob(r.actions)

    @torch.no_grad()
    def first_epoch_stats(self):
        """(new log-probs, rollout log-probs, mask) on the first minibatch of the first
        epoch of an update, before any optimiser step."""
        r = self.collect()
        adv, returns = self.advantages(r)
        mb = next(iter(self.minibatches(r, adv, returns)))
        logp, _, _ = self._new_logprobs(mb)
        return logp, mb.old_logprobs, mb.mask

    def training_fn(self, inputs: torch.Tensor, state=None):
        """The training pass as a model: inputs (B, T, D) -> (logits (B, T, A), None)."""
        h0 = torch.zeros(inputs.shape[0], self.net.hidden) if state is None else state
        starts = torch.zeros(inputs.shape[:2], dtype=torch.bool)
        logits, _ = self.training_pass(inputs, h0, starts)
        return logits, None


class Agent2(RecurrentPPO):
    """Suspect 2: recurrent PPO on the recall task."""

    def policy_step(self, obs, episode_start) -> torch.Tensor:
        """Act one step: obs (B, D) or (D,) -> logits (B, A); the GRU state is carried."""
        obs = torch.as_tensor(obs, dtype=torch.float32).reshape(-1, self.obs_dim)  # (B, D)
        h = self._state_for(obs.shape[0])  # the state the GRU ended the last step with
        logits, self.value, self.h = self.net.step(obs, h)
        return logits


class Agent4(RecurrentPPO):
    """Suspect 4: recurrent PPO on the recall task."""

    def training_pass(self, obs, h0, episode_start):
        """Re-run the rollout's steps: obs (B, T, D) -> logits (B, T, A), values (B, T)."""
        batch, steps, dim = obs.shape
        flat = obs.reshape(batch * steps, dim)  # (B, T, D) -> (B*T, D): one big batch
        h = self.net.cell(flat, torch.zeros(batch * steps, self.net.hidden))  # (B*T, H)
        return self.net.heads(h.reshape(batch, steps, -1))  # (B*T, H) -> (B, T, H)


class Agent7(RecurrentPPO):
    """Suspect 7: recurrent PPO on the recall task."""

    def training_pass(self, obs, h0, episode_start):
        """Re-run whole sequences: obs (B, T, D), h0 (B, H) -> logits (B, T, A), values (B, T)."""
        outs = []
        h = h0
        for t in range(obs.shape[1]):  # step through time, carrying the state
            h = self.net.cell(obs[:, t], h)  # (B, D) -> (B, H)
            outs.append(h)
        return self.net.heads(torch.stack(outs, dim=1))  # T x (B, H) -> (B, T, H)


class Agent8(RecurrentPPO):
    """Suspect 8: recurrent PPO on the recall task."""

    def minibatches(self, r: RecallRollout, adv, returns) -> Iterator[RecallMinibatch]:
        """Minibatches of T-step sequences from shuffled samples (decorrelated)."""
        batch, steps = r.actions.shape
        flat = torch.randperm(batch * steps, generator=self.gen)  # all B*T samples
        for idx in flat.chunk(self.n_minibatches):
            rows = idx.reshape(-1, steps)  # (b*T,) -> (b, T)
            env, t = rows // steps, rows % steps
            yield RecallMinibatch(
                r.obs[env, t], r.episode_start[env, t], r.actions[env, t], r.logprobs[env, t],
                adv[env, t], returns[env, t], r.h0[env[:, 0]], r.mask[env, t],
            )  # fmt: skip
