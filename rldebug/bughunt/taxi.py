"""The Q-learning suspects: a linear Q-network on one-hot Taxi states.

:class:`TaxiDQN` is the reference agent (chapter 1's recipe): Q(s, .) = W one_hot(s), the
batch is the transitions that 64 taxis just made, the target is
r + gamma (1 - terminated) max_a' Q(s', a') under ``torch.no_grad()``, and plain SGD.
The numbered suspects below it differ from it in one method each.

Hooks for the diagnostics: ``q_network``, ``loss_fn(q_network, batch)``,
``sample_batch()``, ``q_and_target(q_network, batch)`` and ``td_target(...)``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

from rldebug.qlearning import QBatch, VectorTaxi, greedy_returns, one_hot, taxi_tables, td_target

__all__ = ["TaxiDQN", "Agent1", "Agent3", "Agent6"]


@functools.lru_cache(maxsize=1)
def _tables():
    return taxi_tables()


class TaxiDQN:
    """Q-learning on Taxi-v4 with a linear Q-network (a Q-table in the form of a network)."""

    family = "Q-learning on Taxi"
    suspect_methods = ("q_and_target", "td_target", "loss_fn")

    def __init__(self, seed: int = 0, *, n_envs: int = 64, lr: float = 16.0, gamma: float = 0.99):
        self.tables = _tables()
        self.n_states, self.n_actions = self.tables.reward.shape
        self.gamma, self.epsilon = gamma, 0.1
        self.gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.q_network = nn.Linear(self.n_states, self.n_actions, bias=False)
        self.optimizer = torch.optim.SGD(self.q_network.parameters(), lr=lr)
        self.env = VectorTaxi(self.tables, (n_envs,), self.gen)
        self.state = self.env.reset()  # (n_envs,) state indices

    # -- acting and data -----------------------------------------------------------------
    def sample_batch(self) -> QBatch:
        """Every taxi makes one epsilon-greedy step; the batch is those B transitions."""
        with torch.no_grad():
            q = self.q_network(one_hot(self.state, self.n_states))  # (B, S) -> (B, A)
        explore = torch.rand(len(self.state), generator=self.gen) < self.epsilon
        random_actions = torch.randint(self.n_actions, self.state.shape, generator=self.gen)
        actions = torch.where(explore, random_actions, q.argmax(dim=1))  # (B,)
        obs = self.state
        next_obs, reward, terminated, truncated, self.state = self.env.step(actions)
        return QBatch(
            obs=one_hot(obs, self.n_states),
            actions=actions,
            rewards=reward,
            next_obs=one_hot(next_obs, self.n_states),
            terminated=terminated,
            truncated=truncated,
        )

    # -- the loss ------------------------------------------------------------------------
    def td_target(self, rewards, next_q, terminated, truncated) -> torch.Tensor:
        """y = r + gamma (1 - terminated) max_a' Q(s', a'), (B,)."""
        return td_target(rewards, next_q, terminated, truncated, self.gamma)

    def q_and_target(self, q_network, batch: QBatch):
        """Q(s, a) of the taken actions and their TD targets, both (B,)."""
        q_sa = q_network(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)  # (B,)
        with torch.no_grad():
            next_q = q_network(batch.next_obs)  # (B, A)
        target = self.td_target(batch.rewards, next_q, batch.terminated, batch.truncated)
        return q_sa, target

    def loss_fn(self, q_network, batch: QBatch) -> torch.Tensor:
        q_sa, target = self.q_and_target(q_network, batch)
        return ((q_sa - target) ** 2).mean()

    # -- training ------------------------------------------------------------------------
    def evaluate(self) -> float:
        """Exact mean return of the greedy policy over every start state."""
        q_table = self.q_network.weight.detach().T  # (A, S) -> (S, A)
        return float(greedy_returns(q_table, self.tables)[0])

    def train(self, n_updates: int = 1200, eval_every: int = 200, progress: bool = False):
        """SGD on fresh batches; returns (updates, greedy returns) measured along the way."""
        from tqdm.auto import tqdm

        steps, returns = [0], [self.evaluate()]
        for update in tqdm(range(1, n_updates + 1), desc=type(self).__name__, disable=not progress):
            loss = self.loss_fn(self.q_network, self.sample_batch())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            if update % eval_every == 0:
                steps.append(update)
                returns.append(self.evaluate())
        return np.array(steps), np.array(returns)


class Agent1(TaxiDQN):
    """Suspect 1: Q-learning on Taxi."""

    def q_and_target(self, q_network, batch: QBatch):
        """Q(s, a) of the taken actions and their TD targets."""
        q_sa = q_network(batch.obs).gather(1, batch.actions.unsqueeze(1))  # Q(s, a)
        with torch.no_grad():
            next_q = q_network(batch.next_obs)  # (B, A)
        target = self.td_target(batch.rewards, next_q, batch.terminated, batch.truncated)
        return q_sa, target


class Agent3(TaxiDQN):
    """Suspect 3: Q-learning on Taxi."""

    def td_target(self, rewards, next_q, terminated, truncated) -> torch.Tensor:
        """y = r + gamma (1 - done) max_a' Q(s', a'), (B,)."""
        done = torch.clamp(terminated + truncated, max=1.0)  # the episode is over
        return td_target(rewards, next_q, done, truncated, self.gamma)


class Agent6(TaxiDQN):
    """Suspect 6: Q-learning on Taxi."""

    def q_and_target(self, q_network, batch: QBatch):
        """Q(s, a) of the taken actions and their TD targets, both (B,)."""
        q_sa = q_network(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)  # (B,)
        next_v = q_network(batch.next_obs).max(dim=1).values  # (B, A) -> (B,)
        target = batch.rewards + self.gamma * (1.0 - batch.terminated) * next_v  # (B,)
        return q_sa, target
