"""Episode replay for recurrent agents: store whole episodes, sample fixed-length sequences.

A feed-forward DQN samples single transitions. A recurrent Q-network needs the steps that
came *before* a transition to rebuild its hidden state, so the replay keeps whole episodes
and hands out sequences (Hausknecht & Stone, 2015; Kapturowski et al., 2019):

* a sequence never crosses an episode boundary: where it would run past the end of its
  episode (or start before its first step) it is **padded** with zeros and ``mask`` is False;
* ``obs`` has one more entry than ``actions``: ``obs[:, i]`` is what the agent saw *before*
  step ``i`` and ``obs[:, i + 1]`` what it saw after it, so the TD target of step ``i`` reads
  the next position of the same sequence;
* ``episode_start[:, i]`` is True where ``obs[:, i]`` is an episode's first observation: the
  network must start from a zero state there;
* ``initial_state`` is the hidden state the actor had just before ``obs[:, 0]`` (the
  *stored state* of R2D2), zeros where the sequence starts at or before the episode start.

Storage: episode ``k`` lives in slot ``k % capacity`` of preallocated arrays
(``obs`` is ``(capacity, max_len + 1, obs_dim)``); a new episode overwrites the oldest one.
Everything after an episode's own length in its slot is stale data from older episodes,
which is why :func:`gather_sequences` must mask it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

__all__ = ["SequenceBatch", "EpisodeReplay", "gather_sequences", "stack_batches", "to_torch"]


class SequenceBatch(NamedTuple):
    """``B`` sequences of ``L`` steps (burn-in included). numpy arrays or torch tensors."""

    obs: np.ndarray  # (B, L + 1, D) obs[:, i] before step i, obs[:, i + 1] after it
    actions: np.ndarray  # (B, L) int
    rewards: np.ndarray  # (B, L)
    terminated: np.ndarray  # (B, L) 1.0 where step i ended its episode for real
    mask: np.ndarray  # (B, L) True on real steps, False on padding
    episode_start: np.ndarray  # (B, L + 1) True where obs[:, i] is an episode's first obs
    initial_state: np.ndarray | None = None  # (B, H) the actor's state before obs[:, 0]


def gather_sequences(
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: np.ndarray,
    lengths: np.ndarray,
    episode_idx: np.ndarray,
    starts: np.ndarray,
    seq_len: int,
) -> SequenceBatch:
    """Cut sequence ``b`` from stored episode ``episode_idx[b]``, steps ``starts[b]`` onwards.

    ``obs`` is ``(C, M + 1, D)``, ``actions``/``rewards``/``terminated`` are ``(C, M)`` and
    ``lengths`` ``(C,)``: slot ``e`` holds an episode of ``lengths[e]`` steps (and
    ``lengths[e] + 1`` observations), followed by stale data. ``starts`` may be negative
    (a burn-in that begins before the episode does) or run past the end: every position
    outside ``[0, lengths[e])`` is padding (zeros, ``mask`` False). Returns a
    :class:`SequenceBatch` with ``initial_state=None``.
    """
    episode_idx = np.asarray(episode_idx)  # (B,)
    starts = np.asarray(starts)  # (B,)
    length = np.asarray(lengths)[episode_idx][:, None]  # (B,) -> (B, 1)
    pos = starts[:, None] + np.arange(seq_len + 1)[None, :]  # (B, L + 1) positions in the episode
    obs_valid = (pos >= 0) & (pos <= length)  # L + 1 observations, the last one included
    step_valid = (pos[:, :-1] >= 0) & (pos[:, :-1] < length)  # (B, L) real steps only
    safe = np.clip(pos, 0, obs.shape[1] - 1)  # never index outside the slot (nor wrap around)
    rows = episode_idx[:, None]  # (B, 1): broadcasts against the positions
    step_safe = np.minimum(safe[:, :-1], actions.shape[1] - 1)  # (B, L)
    return SequenceBatch(
        obs=np.where(obs_valid[..., None], obs[rows, safe], 0.0).astype(obs.dtype),
        actions=np.where(step_valid, actions[rows, step_safe], 0),
        rewards=np.where(step_valid, rewards[rows, step_safe], 0.0).astype(rewards.dtype),
        terminated=np.where(step_valid, terminated[rows, step_safe], 0.0).astype(terminated.dtype),
        mask=step_valid,
        episode_start=pos == 0,
    )


class EpisodeReplay:
    """The last ``capacity`` episodes of one agent, with the actor's hidden states.

    ``add_episode(obs (T + 1, D), actions (T,), rewards (T,), terminated (T,), states
    (T + 1, H))`` stores one finished episode; ``states[t]`` is the hidden state the actor
    had just *before* it read ``obs[t]`` (zeros for ``t = 0``). ``sample(batch_size,
    seq_len, burn_in)`` returns sequences of ``burn_in + seq_len`` steps whose last
    ``seq_len`` steps start at a step drawn uniformly from all stored steps.
    """

    def __init__(
        self,
        capacity: int,
        max_len: int,
        obs_dim: int,
        state_dim: int = 0,
        seed: int | None = None,
    ):
        if capacity < 1 or max_len < 1 or obs_dim < 1:
            raise ValueError(
                f"capacity, max_len and obs_dim must be >= 1, got {capacity}, {max_len}, {obs_dim}"
            )
        self.capacity, self.max_len, self.obs_dim = int(capacity), int(max_len), int(obs_dim)
        self.state_dim = int(state_dim)
        self.obs = np.zeros((capacity, max_len + 1, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, max_len), dtype=np.int64)
        self.rewards = np.zeros((capacity, max_len), dtype=np.float32)
        self.terminated = np.zeros((capacity, max_len), dtype=np.float32)
        self.states = np.zeros((capacity, max_len + 1, max(state_dim, 1)), dtype=np.float32)
        self.lengths = np.zeros(capacity, dtype=np.int64)
        self.n_added = 0  # episodes ever added
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        """Number of episodes stored."""
        return min(self.n_added, self.capacity)

    @property
    def n_steps(self) -> int:
        """Number of steps stored (all episodes)."""
        return int(self.lengths[: len(self)].sum())

    def __repr__(self) -> str:
        return (
            f"EpisodeReplay({len(self)}/{self.capacity} episodes, {self.n_steps} steps, "
            f"obs_dim={self.obs_dim}, state_dim={self.state_dim})"
        )

    def add_episode(self, obs, actions, rewards, terminated, states=None) -> None:
        """Store one finished episode (see the class docstring for the shapes)."""
        actions = np.asarray(actions)
        n = actions.shape[0]
        obs = np.asarray(obs, dtype=np.float32).reshape(-1, self.obs_dim)
        if not 1 <= n <= self.max_len:
            raise ValueError(f"an episode must have 1 to max_len={self.max_len} steps, got {n}")
        if obs.shape[0] != n + 1:
            raise ValueError(
                f"obs must hold T + 1 = {n + 1} observations for T = {n} actions (the last "
                f"one is the observation after the final step), got {obs.shape[0]}"
            )
        for name, value in (("rewards", rewards), ("terminated", terminated)):
            if np.shape(value) != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {np.shape(value)}")
        slot = self.n_added % self.capacity
        self.obs[slot, : n + 1] = obs
        self.actions[slot, :n] = actions
        self.rewards[slot, :n] = rewards
        self.terminated[slot, :n] = terminated
        if self.state_dim:
            if states is None:
                raise ValueError("this replay stores states: pass states (T + 1, H)")
            states = np.asarray(states, dtype=np.float32)
            if states.shape != (n + 1, self.state_dim):
                raise ValueError(
                    f"states must be (T + 1, H) = ({n + 1}, {self.state_dim}), got {states.shape}"
                )
            self.states[slot, : n + 1] = states
        self.lengths[slot] = n
        self.n_added += 1

    def sample_steps(self, batch_size: int, rng=None) -> tuple[np.ndarray, np.ndarray]:
        """``(episode_idx, step)`` of ``batch_size`` steps drawn uniformly from all stored steps."""
        if len(self) == 0:
            raise ValueError("cannot sample from an empty episode replay: add episodes first")
        rng = self.rng if rng is None else rng
        lengths = self.lengths[: len(self)]
        # pick the episode in proportion to its length, then a step inside it
        episode_idx = rng.choice(len(self), size=batch_size, p=lengths / lengths.sum())
        step = (rng.random(batch_size) * lengths[episode_idx]).astype(np.int64)
        return episode_idx, step

    def sequences(
        self, episode_idx: np.ndarray, first_trained: np.ndarray, seq_len: int, burn_in: int = 0
    ) -> SequenceBatch:
        """Sequences whose trained part starts at ``first_trained`` in ``episode_idx``."""
        starts = np.asarray(first_trained) - burn_in  # may be negative: burn-in before the episode
        batch = gather_sequences(
            self.obs,
            self.actions,
            self.rewards,
            self.terminated,
            self.lengths,
            episode_idx,
            starts,
            burn_in + seq_len,
        )
        # The stored state before obs[:, 0]; a sequence that starts at or before its
        # episode's start resets at episode_start anyway, so it gets zeros.
        state = self.states[episode_idx, np.maximum(starts, 0)]  # (B, H)
        state = np.where((starts > 0)[:, None], state, 0.0).astype(np.float32)
        return batch._replace(initial_state=state if self.state_dim else None)

    def sample(self, batch_size: int, seq_len: int, burn_in: int = 0, rng=None) -> SequenceBatch:
        """``batch_size`` sequences of ``burn_in + seq_len`` steps (numpy arrays).

        The first trained step (index ``burn_in`` of the sequence) is drawn uniformly from
        all stored steps, so every step is trained equally often, the first ones of an
        episode included; their burn-in then starts before the episode and is padding.
        """
        episode_idx, first_trained = self.sample_steps(batch_size, rng)
        return self.sequences(episode_idx, first_trained, seq_len, burn_in)


def stack_batches(batches: list[SequenceBatch]) -> SequenceBatch:
    """One batch per agent -> one batch with a leading agent axis: (B, ...) -> (S, B, ...)."""
    fields = []
    for values in zip(*batches):
        fields.append(None if values[0] is None else np.stack(values))
    return SequenceBatch(*fields)


def to_torch(batch: SequenceBatch, device: str | torch.device = "cpu") -> SequenceBatch:
    """The same batch as torch tensors (actions int64, masks bool, the rest float32)."""

    def conv(x, dtype):
        return None if x is None else torch.as_tensor(x, dtype=dtype, device=device)

    return SequenceBatch(
        obs=conv(batch.obs, torch.float32),
        actions=conv(batch.actions, torch.int64),
        rewards=conv(batch.rewards, torch.float32),
        terminated=conv(batch.terminated, torch.float32),
        mask=conv(batch.mask, torch.bool),
        episode_start=conv(batch.episode_start, torch.bool),
        initial_state=conv(batch.initial_state, torch.float32),
    )
