"""A tiny memory task for the recurrent suspects: remember the last cue you saw.

Every environment shows a cue (+1 or -1) on the first step of an episode and, with
probability ``p_cue``, on later steps; otherwise the observation is blank. At every step
the agent earns 1 for the action that matches the most recent cue (0 for -1, 1 for +1).
A memoryless policy is right only when a cue is on screen (and guesses otherwise); a
policy that remembers earns 1 per step. Episodes last ``min_len`` to ``max_len`` steps
and end with ``terminated``; the next step starts a new episode in the same environment.

Everything runs in torch on a batch of environments at once: a step costs microseconds.
"""

from __future__ import annotations

import torch

__all__ = ["RecallEnv"]


class RecallEnv:
    """``n_envs`` independent episodes of the recall task, stepped together.

    Observations are (n_envs, 2): (cue value or 0, 1 if a cue is shown else 0).
    """

    obs_dim = 2
    n_actions = 2

    def __init__(
        self,
        n_envs: int,
        *,
        seed: int = 0,
        min_len: int = 6,
        max_len: int = 12,
        p_cue: float = 0.2,
    ):
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if not 1 <= min_len <= max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
        self.n_envs, self.min_len, self.max_len, self.p_cue = n_envs, min_len, max_len, p_cue
        self.gen = torch.Generator().manual_seed(seed)
        self.memory = torch.zeros(n_envs)  # the most recent cue, +1 or -1
        self.t = torch.zeros(n_envs, dtype=torch.long)
        self.length = torch.zeros(n_envs, dtype=torch.long)
        self.obs: torch.Tensor | None = None

    def _new_cues(self, show: torch.Tensor) -> torch.Tensor:
        cue = torch.randint(0, 2, (self.n_envs,), generator=self.gen).float() * 2 - 1
        self.memory = torch.where(show, cue, self.memory)
        return torch.stack([cue * show, show.float()], dim=1)  # (n_envs, 2)

    def _start(self, which: torch.Tensor) -> None:
        lengths = torch.randint(self.min_len, self.max_len + 1, (self.n_envs,), generator=self.gen)
        self.length = torch.where(which, lengths, self.length)
        self.t = torch.where(which, torch.zeros_like(self.t), self.t)

    def reset(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Start every environment; return (obs (n_envs, 2), episode_start (n_envs,) all True)."""
        every = torch.ones(self.n_envs, dtype=torch.bool)
        self._start(every)
        self.obs = self._new_cues(every)
        return self.obs.clone(), every.clone()

    def step(self, actions: torch.Tensor):
        """Return (next_obs, reward, terminated, next_episode_start), all (n_envs, ...).

        Where ``terminated`` is True the next observation already belongs to a new episode
        and ``next_episode_start`` is True there.
        """
        if self.obs is None:
            raise RuntimeError("call reset() before step()")
        actions = torch.as_tensor(actions).reshape(-1)
        if actions.shape != (self.n_envs,):
            raise ValueError(f"actions must be ({self.n_envs},), got {tuple(actions.shape)}")
        if bool(((actions < 0) | (actions >= self.n_actions)).any()):
            raise ValueError(f"actions must be 0 or 1, got {actions.unique().tolist()}")
        wanted = (self.memory > 0).long()
        reward = (actions.long() == wanted).float()
        self.t = self.t + 1
        terminated = self.t >= self.length
        self._start(terminated)
        show = terminated | (torch.rand(self.n_envs, generator=self.gen) < self.p_cue)
        self.obs = self._new_cues(show)
        return self.obs.clone(), reward, terminated.float(), terminated.clone()
