"""Recurrent (GRU) and memoryless PPO on vectorised gymnasium environments.

Read it top to bottom, like a single-file reference implementation:

1. environments: one vector env, gymnasium 1.x "next step" autoreset;
2. networks: an actor-critic with a GRU core (or a memoryless MLP core), orthogonal init;
3. :func:`unroll`: the masked sequence unroll that resets the hidden state at episode starts;
4. :func:`collect_rollout`: T steps of every environment, with the initial hidden state stored;
5. :func:`gae`: advantages with the terminated / truncated split;
6. :func:`sequence_minibatches`: minibatches made of whole environment sequences;
7. :func:`ppo_loss` and :func:`train_ppo`: the update, with the first-epoch check built in.

**Several seeds at once.** The networks hold ``num_agents`` independent sets of weights
(one per seed) and are evaluated together with batched matrix products (``torch.baddbmm``),
so that ten seeds train in about the time of two. A batch of ``B`` rows holds ``B / S`` rows
per agent, agent-major: rows ``[s * B/S, (s + 1) * B/S)`` belong to agent ``s``. Every loss,
advantage normalisation and gradient clip is computed per agent, so each agent learns
exactly as it would alone. With ``num_agents=1`` this is an ordinary PPO.

**Autoreset.** In gymnasium 1.x (``AutoresetMode.NEXT_STEP``) the step after an episode
ends is a *reset step*: the environment ignores its action and returns the first
observation of the next episode with reward 0. The rollout marks that step invalid
(``mask = False``), so it carries no loss, and the observation the agent acted on there is
the *true final observation* of the finished episode: its value is the bootstrap value of
a truncated episode.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode, VectorEnv, VectorObservationWrapper

from rldebug.parallel import progress_bar, run_parallel, split_seeds
from rldebug.training import evaluate

__all__ = [
    "ActorCritic",
    "AgentLinear",
    "AgentGRUCell",
    "Minibatch",
    "PPOConfig",
    "PPOResult",
    "Rollout",
    "collect_rollout",
    "concat_agents",
    "concat_results",
    "evaluate_greedy",
    "first_reached",
    "gae",
    "kept_to_end",
    "make_vector_env",
    "ppo_loss",
    "sequence_minibatches",
    "train_ppo",
    "unroll",
]


# ----------------------------------------------------------------------------- 1. environments
class KeepObservationIndices(VectorObservationWrapper):
    """Keep only the entries ``indices`` of a vector env's (num_envs, D) observations."""

    def __init__(self, env: VectorEnv, indices: Sequence[int]):
        super().__init__(env)
        self.indices = np.asarray(indices, dtype=np.int64)
        box = env.single_observation_space
        self.single_observation_space = gym.spaces.Box(
            box.low[self.indices], box.high[self.indices], dtype=box.dtype
        )
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, env.num_envs
        )

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return observations[:, self.indices]


def make_vector_env(env_id: str, num_envs: int) -> VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped together, with next-step autoreset.

    The sine-road ids use their native numpy vector env; ``CartPoleNoVel-v1`` uses
    gymnasium's native numpy ``CartPoleVectorEnv`` keeping observation entries 0 and 2 (cart
    position, pole angle); any other id falls back to ``SyncVectorEnv``.
    """
    import sineroad  # noqa: F401  (registers the sine-road ids and CartPoleNoVel-v1)

    if env_id.split(":")[-1] == "CartPoleNoVel-v1":
        base = gym.make_vec(
            "CartPole-v1", num_envs=num_envs, vectorization_mode="vector_entry_point"
        )
        env = KeepObservationIndices(base, [0, 2])
    else:
        spec = gym.spec(env_id)
        mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
        env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)
    if env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) != AutoresetMode.NEXT_STEP:
        raise ValueError(f"{env_id}: this PPO expects next-step autoreset, got {env.metadata}")
    return env


# ----------------------------------------------------------------------------- 2. networks
def _orthogonal(num_agents: int, n_in: int, n_out: int, gain: float) -> torch.Tensor:
    """(S, n_in, n_out): an independent orthogonal matrix for each agent."""
    weight = torch.empty(num_agents, n_out, n_in)
    for w in weight:
        nn.init.orthogonal_(w, gain=gain)
    return weight.transpose(1, 2).contiguous()  # (S, out, in) -> (S, in, out)


class AgentLinear(nn.Module):
    """``num_agents`` independent linear layers applied to an agent-major batch.

    Input (..., B, n_in) with B = S * b rows, agent-major; output (..., B, n_out).
    """

    def __init__(self, num_agents: int, n_in: int, n_out: int, gain: float = math.sqrt(2)):
        super().__init__()
        self.num_agents = num_agents
        self.weight = nn.Parameter(_orthogonal(num_agents, n_in, n_out, gain))  # (S, in, out)
        self.bias = nn.Parameter(torch.zeros(num_agents, 1, n_out))  # (S, 1, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *lead, rows, n_in = x.shape
        s = self.num_agents
        if rows % s:
            raise ValueError(f"a batch of {rows} rows cannot be split among {s} agents")
        if not lead:
            x = x.view(s, rows // s, n_in)  # (B, in) -> (S, b, in)
            return torch.baddbmm(self.bias, x, self.weight).view(rows, -1)  # -> (B, out)
        n = math.prod(lead)
        x = x.reshape(n, s, rows // s, n_in).transpose(0, 1)  # (..., B, in) -> (S, L, b, in)
        x = x.reshape(s, -1, n_in)  # (S, L, b, in) -> (S, L * b, in)
        y = torch.baddbmm(self.bias, x, self.weight)  # (S, L * b, out)
        y = y.view(s, n, rows // s, -1).transpose(0, 1)  # -> (L, S, b, out)
        return y.reshape(*lead, rows, -1)  # (L, S, b, out) -> (..., B, out)


class AgentGRUCell(nn.Module):
    """``num_agents`` independent GRU cells; ``cell(x, h)`` as ``nn.GRUCell``.

    x (B, n_in), h (B, H) -> h' (B, H), with PyTorch's gate equations:
    r = sigma(W_ir x + W_hr h), z = sigma(W_iz x + W_hz h), n = tanh(W_in x + r * (W_hn h)),
    h' = (1 - z) * n + z * h (biases left out here, present in the code).
    """

    def __init__(self, num_agents: int, n_in: int, hidden: int):
        super().__init__()
        self.hidden_size = hidden
        self.ih = AgentLinear(num_agents, n_in, 3 * hidden, gain=math.sqrt(3 * hidden / n_in))
        self.hh = AgentLinear(num_agents, hidden, 3 * hidden, gain=1.0)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        gi_r, gi_z, gi_n = self.ih(x).chunk(3, dim=-1)  # (B, 3H) -> 3 x (B, H)
        gh_r, gh_z, gh_n = self.hh(h).chunk(3, dim=-1)
        r = torch.sigmoid(gi_r + gh_r)
        z = torch.sigmoid(gi_z + gh_z)
        n = torch.tanh(gi_n + r * gh_n)
        return n + z * (h - n)  # = (1 - z) * n + z * h


# ----------------------------------------------------------------------------- 3. the unroll
def unroll(
    cell: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    h0: torch.Tensor,
    starts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``cell`` over a sequence, zeroing the hidden state where an episode starts.

    Args:
        cell: ``h_next = cell(x_t, h)``, for instance an ``nn.GRUCell``.
        x: (T, B, n_in) inputs.
        h0: (B, H) hidden state before ``x[0]``.
        starts: (T, B) bool or 0/1: ``x[t]`` is the first observation of an episode.

    Returns:
        outputs (T, B, H), the hidden state after each step; and the last state (B, H).
    """
    if x.dim() != 3 or starts.shape != x.shape[:2] or h0.shape[0] != x.shape[1]:
        raise ValueError(
            f"unroll expects x (T, B, n_in), h0 (B, H) and starts (T, B); got x "
            f"{tuple(x.shape)}, h0 {tuple(h0.shape)}, starts {tuple(starts.shape)}"
        )
    keep = 1.0 - starts.to(x.dtype).unsqueeze(-1)  # (T, B) -> (T, B, 1)
    h = h0
    outputs = []
    for t in range(x.shape[0]):
        h = cell(x[t], h * keep[t])  # reset *before* the first step of an episode
        outputs.append(h)
    return torch.stack(outputs), h  # T x (B, H) -> (T, B, H)


class ActorCritic(nn.Module):
    """Observation -> core -> (policy logits, value), for ``num_agents`` agents at once.

    ``recurrent=True``: the cores are GRUs (the hidden state carries memory).
    ``recurrent=False``: the cores are tanh layers and the state is empty (memoryless).
    The actor and the critic have *separate* cores, as in sb3-contrib's default: the value
    loss is large early on (returns of tens) and, through a shared core, its gradient would
    shape the actor's memory. Both cores run as one batched module of 2 S agents (rows
    ``[0, B)`` are the actors, rows ``[B, 2B)`` the critics), and the state of one
    environment is ``[h_actor, h_critic]``, (2H,). Every layer is orthogonally initialised
    (gain sqrt(2) for hidden layers, 0.01 for the policy output, 1 for the value output).
    """

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        *,
        hidden: int = 64,
        recurrent: bool = True,
        num_agents: int = 1,
    ):
        super().__init__()
        self.num_agents = num_agents
        self.recurrent = recurrent
        self.hidden = hidden
        self.state_size = 2 * hidden if recurrent else 0
        if recurrent:
            self.core = AgentGRUCell(2 * num_agents, obs_dim, hidden)
        else:
            self.core = AgentLinear(2 * num_agents, obs_dim, hidden)
        self.pi_hidden = AgentLinear(num_agents, hidden, hidden)
        self.pi_out = AgentLinear(num_agents, hidden, n_actions, gain=0.01)
        self.v_hidden = AgentLinear(num_agents, hidden, hidden)
        self.v_out = AgentLinear(num_agents, hidden, 1, gain=1.0)

    def initial_state(self, batch: int) -> torch.Tensor:
        """(batch, 2H) zeros; (batch, 0) for a memoryless agent."""
        return torch.zeros(batch, self.state_size)

    def cell(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step of actor and critic: x (B, D), h (B, 2H) -> (B, 2H)."""
        hid = self.hidden
        xx = torch.cat([x, x])  # (B, D) -> (2B, D): the actors' rows, then the critics'
        hh = torch.cat([h[:, :hid], h[:, hid:]])  # (B, 2H) -> (2B, H)
        out = self.core(xx, hh)  # (2B, H)
        return torch.cat(out.chunk(2), dim=1)  # (2B, H) -> (B, 2H)

    def memoryless_features(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (..., B, D) -> (..., B, 2H), actor then critic features."""
        out = torch.tanh(self.core(torch.cat([obs, obs], dim=-2)))  # (..., 2B, H)
        return torch.cat(out.chunk(2, dim=-2), dim=-1)  # (..., 2B, H) -> (..., B, 2H)

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (..., B, 2H) -> logits (..., B, A), value (..., B)."""
        actor, critic = features.split(self.hidden, dim=-1)
        logits = self.pi_out(torch.tanh(self.pi_hidden(actor)))
        value = self.v_out(torch.tanh(self.v_hidden(critic))).squeeze(-1)  # (..., 1) -> (...)
        return logits, value

    def step(
        self, obs: torch.Tensor, h: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for the rollout: obs (B, D), h (B, 2H), starts (B,) -> logits, value, h'."""
        if self.recurrent:
            h = self.cell(obs, h * (1.0 - starts.to(h.dtype).unsqueeze(-1)))  # reset, then step
            features = h
        else:
            features = self.memoryless_features(obs)
        logits, value = self.heads(features)
        return logits, value, h

    def fast_unroll(self, obs: torch.Tensor, h0: torch.Tensor, starts: torch.Tensor):
        """:func:`unroll` of :meth:`cell`, with the per-step work cut to the minimum.

        Same equations as ``unroll(self.cell, obs, h0, starts)[0]`` (the tests compare them),
        but the input projections of all T steps are one batched matmul, and the state
        stays (2B, H) (actors' rows, then critics') inside the loop: per step, only the
        recurrent matmul and the gates remain. This loop is the hot path of training.
        """
        t_len, b, _ = obs.shape
        hid, s2 = self.hidden, 2 * self.num_agents
        gi = self.core.ih(torch.cat([obs, obs], dim=1))  # (T, 2B, D) -> (T, 2B, 3H)
        # Split once, outside the loop: indexing gi[t] inside it would make autograd build
        # a zero (T, 2B, 3H) gradient for every step, O(T^2) work in the backward pass.
        gi_rz, gi_n = gi.split([2 * hid, hid], dim=-1)  # (T, 2B, 2H), (T, 2B, H)
        gi_rz, gi_n = gi_rz.unbind(0), gi_n.unbind(0)  # T x (2B, 2H), T x (2B, H)
        keep = (1.0 - starts.to(obs.dtype)).repeat(1, 2).unsqueeze(-1)  # (T, B) -> (T, 2B, 1)
        w, bias = self.core.hh.weight, self.core.hh.bias  # (2S, H, 3H), (2S, 1, 3H)
        h = torch.cat([h0[:, :hid], h0[:, hid:]])  # (B, 2H) -> (2B, H)
        outputs = []
        for t in range(t_len):
            h = h * keep[t]  # reset before the first step of an episode
            gh = torch.baddbmm(bias, h.view(s2, -1, hid), w).view(2 * b, 3 * hid)  # (2B, 3H)
            gh_rz, gh_n = gh.split([2 * hid, hid], dim=-1)  # (2B, 2H), (2B, H)
            r, z = torch.sigmoid(gi_rz[t] + gh_rz).chunk(2, dim=-1)  # 2 x (2B, H)
            n = torch.tanh(gi_n[t] + r * gh_n)
            h = n + z * (h - n)  # = (1 - z) * n + z * h
            outputs.append(h)
        out = torch.stack(outputs)  # T x (2B, H) -> (T, 2B, H)
        return torch.cat(out.chunk(2, dim=1), dim=-1)  # (T, 2B, H) -> (T, B, 2H)

    def unroll(
        self, obs: torch.Tensor, h0: torch.Tensor, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The training pass: obs (T, B, D), h0 (B, 2H), starts (T, B) -> logits, values."""
        if self.recurrent:
            features = self.fast_unroll(obs, h0, starts)  # (T, B, 2H)
        else:
            features = self.memoryless_features(obs)  # (T, B, D) -> (T, B, 2H)
        return self.heads(features)


class ObsNormalizer:
    """Running mean and variance of each agent's observations (like sb3's VecNormalize).

    CartPole's angle moves by hundredths of a radian: unnormalised, it barely reaches the
    GRU. The statistics are updated once per rollout, *after* it, and the rollout stores the
    observations as the agent saw them, normalised: re-normalising stored raw observations
    with updated statistics would break the first-epoch check (ratio != 1).
    """

    def __init__(self, num_agents: int, obs_dim: int, clip: float = 10.0):
        self.num_agents = num_agents
        self.mean = torch.zeros(num_agents, 1, obs_dim)
        self.var = torch.ones(num_agents, 1, obs_dim)
        self.count = 1e-4
        self.clip = clip

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        """obs (B, D) agent-major -> normalised (B, D)."""
        x = obs.view(self.num_agents, -1, obs.shape[-1])  # (B, D) -> (S, b, D)
        x = ((x - self.mean) / (self.var + 1e-8).sqrt()).clamp(-self.clip, self.clip)
        return x.view(obs.shape)

    def update(self, raw: torch.Tensor) -> None:
        """Fold a batch of raw observations (T, B, D) into the statistics (per agent)."""
        t, b, d = raw.shape
        x = raw.view(t, self.num_agents, -1, d).transpose(0, 1).reshape(self.num_agents, -1, d)
        n = x.shape[1]
        mean, var = x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n + delta**2 * self.count * n / total) / total
        self.count = total


# ----------------------------------------------------------------------------- 4. the rollout
class Rollout(NamedTuple):
    """T steps of B environments. Row t is what the agent saw and did at step t."""

    obs: torch.Tensor  # (T, B, D) the observation acted on
    starts: torch.Tensor  # (T, B) bool: obs[t] is the first observation of an episode
    actions: torch.Tensor  # (T, B) long
    logprobs: torch.Tensor  # (T, B) log pi(a_t | history) at rollout time
    values: torch.Tensor  # (T + 1, B) V(obs[t]); values[T] bootstraps the last step
    rewards: torch.Tensor  # (T, B)
    terminated: torch.Tensor  # (T, B) bool
    truncated: torch.Tensor  # (T, B) bool
    mask: torch.Tensor  # (T, B) bool: False on reset steps (the env ignored the action)
    h0: torch.Tensor  # (B, H) the hidden state before obs[0]: the stored initial state


@dataclass
class EnvState:
    """What carries over from one rollout to the next."""

    obs: torch.Tensor  # (B, D) the next observation to act on
    start: torch.Tensor  # (B,) bool: it starts an episode
    h: torch.Tensor  # (B, H) hidden state before it
    done: torch.Tensor  # (B,) bool: the last step ended an episode (next step is a reset step)
    episode_return: np.ndarray = field(default_factory=lambda: np.zeros(0))
    raw_obs: torch.Tensor | None = None  # (T, B, D) the last rollout's raw observations


def collect_rollout(
    agent: ActorCritic,
    env: VectorEnv,
    state: EnvState,
    num_steps: int,
    normalize: ObsNormalizer | None = None,
    reset: bool = True,
) -> tuple[Rollout, EnvState, list[tuple[int, float]]]:
    """Act for ``num_steps`` steps in every environment; return the rollout and finished episodes.

    The hidden state of environment i is reset (inside ``agent.step``) when its observation
    starts an episode. ``h0`` stores the state the segment started from, so that the
    training unroll can recompute exactly the same outputs. ``state.obs`` is the raw
    observation; the rollout stores what the agent saw (normalised, when ``normalize``).
    ``reset=False`` never resets the state while acting (a bug, kept to measure its cost);
    ``starts`` still records the episode starts.
    """
    h0 = state.h.clone()
    normalize = normalize or (lambda x: x)
    raw = []
    obs, starts, actions, logprobs, values = [], [], [], [], []
    rewards, terms, truncs, masks = [], [], [], []
    finished: list[tuple[int, float]] = []  # (env index, episode return)
    o, start, h, done = state.obs, state.start, state.h, state.done
    ep_ret = state.episode_return
    with torch.no_grad():
        for _ in range(num_steps):
            seen = normalize(o)
            logits, value, h = agent.step(seen, h, start & reset)
            action = torch.distributions.Categorical(logits=logits).sample()
            raw.append(o)
            obs.append(seen)
            starts.append(start)
            actions.append(action)
            logprobs.append(F.log_softmax(logits, -1).gather(-1, action[:, None]).squeeze(-1))
            values.append(value)
            masks.append(~done)  # a step after a done is a reset step: its action is ignored
            next_o, r, term, trunc, _ = env.step(action.numpy())
            ep_ret = ep_ret + r
            for i in np.flatnonzero(term | trunc):
                finished.append((int(i), float(ep_ret[i])))
            ep_ret[term | trunc] = 0.0
            rewards.append(torch.as_tensor(r, dtype=torch.float32))
            terms.append(torch.as_tensor(term))
            truncs.append(torch.as_tensor(trunc))
            start = done  # the observation after a reset step starts an episode
            done = torch.as_tensor(term | trunc)
            o = torch.as_tensor(next_o, dtype=torch.float32)
        # Bootstrap value of the last step: V(next obs), without advancing the stored state.
        _, last_value, _ = agent.step(normalize(o), h, start & reset)
    rollout = Rollout(
        obs=torch.stack(obs),  # T x (B, D) -> (T, B, D)
        starts=torch.stack(starts),
        actions=torch.stack(actions),
        logprobs=torch.stack(logprobs),
        values=torch.stack(values + [last_value]),  # (T + 1, B)
        rewards=torch.stack(rewards),
        terminated=torch.stack(terms),
        truncated=torch.stack(truncs),
        mask=torch.stack(masks),
        h0=h0,
    )
    return rollout, EnvState(o, start, h, done, ep_ret, torch.stack(raw)), finished


# ----------------------------------------------------------------------------- 5. GAE
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
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        next_value = values[t + 1] * (1.0 - terminated[t])  # no future after a termination
        delta = rewards[t] + gamma * next_value - values[t]
        ended = torch.maximum(terminated[t], truncated[t])  # the sum stops at an episode end
        running = (delta + gamma * lam * (1.0 - ended) * running) * mask[t]
        advantages[t] = running
    return advantages


# ----------------------------------------------------------------------------- 6. minibatches
class Minibatch(NamedTuple):
    """Whole sequences of a few environments: every field is (T, b, ...) except h0 (b, H)."""

    obs: torch.Tensor
    starts: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    h0: torch.Tensor


def sequence_minibatches(
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    env_order: np.ndarray | torch.Tensor,
    num_minibatches: int,
) -> list[Minibatch]:
    """Split the B environments (in the order ``env_order``) into ``num_minibatches`` groups.

    Each minibatch holds the full T-step sequence of each of its environments, with the
    initial hidden state of *those* environments, so that the training unroll can start
    from exactly the state the rollout started from.
    """
    num_envs = rollout.actions.shape[1]
    if num_envs % num_minibatches:
        raise ValueError(f"{num_envs} environments cannot be split into {num_minibatches} groups")
    order = torch.as_tensor(np.asarray(env_order), dtype=torch.long)
    batches = []
    for idx in order.chunk(num_minibatches):
        batches.append(
            Minibatch(
                obs=rollout.obs[:, idx],  # (T, B, D) -> (T, b, D): whole columns
                starts=rollout.starts[:, idx],
                actions=rollout.actions[:, idx],
                logprobs=rollout.logprobs[:, idx],
                advantages=advantages[:, idx],
                returns=returns[:, idx],
                mask=rollout.mask[:, idx],
                h0=rollout.h0[idx],  # (B, H) -> (b, H): the same environments' states
            )
        )
    return batches


def agent_major_order(
    num_agents: int, envs_per_agent: int, num_minibatches: int, rng
) -> np.ndarray:
    """A shuffled env order whose chunks hold the same number of envs from every agent.

    Environment ``s * n + i`` belongs to agent s; each of the ``num_minibatches`` chunks
    lists its envs agent-major, as :class:`AgentLinear` expects.
    """
    per = envs_per_agent // num_minibatches
    perms = [rng.permutation(envs_per_agent) for _ in range(num_agents)]
    chunks = [
        np.concatenate(
            [s * envs_per_agent + perms[s][m * per : (m + 1) * per] for s in range(num_agents)]
        )
        for m in range(num_minibatches)
    ]
    return np.concatenate(chunks)


# ----------------------------------------------------------------------------- 7. loss, training
@dataclass
class PPOConfig:
    """Hyperparameters. The defaults are chapter 8's CartPoleNoVel-v1 setting.

    They follow RL-Zoo's tuned RecurrentPPO for this task (gamma 0.98, lambda 0.8, clip 0.2,
    no entropy bonus, learning rate and clip range decayed linearly to 0), with 16
    environments per seed and four minibatches of 4 whole sequences.
    """

    env_id: str = "CartPoleNoVel-v1"
    recurrent: bool = True
    total_steps: int = 30_000  # environment steps per agent
    num_envs: int = 16  # per agent
    num_steps: int = 32  # T, rollout length
    num_minibatches: int = 4  # environments are split into this many groups
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
    eval_every: int = 3_000  # environment steps per agent between greedy evaluations
    eval_episodes: int = 20
    # Two switches that plant chapter 8's bugs, to measure what they cost; keep both True.
    reset_in_rollout: bool = True  # False: the rollout never resets the hidden state
    reset_in_unroll: bool = True  # False: the training unroll never resets it


def per_agent_mean(x: torch.Tensor, mask: torch.Tensor, num_agents: int) -> torch.Tensor:
    """Masked mean of x (T, B) over each agent's rows: -> (S,)."""
    t = x.shape[0]
    x = (x * mask).view(t, num_agents, -1)  # (T, B) -> (T, S, b)
    m = mask.float().view(t, num_agents, -1)
    return x.sum((0, 2)) / m.sum((0, 2)).clamp(min=1.0)


def ppo_loss(
    agent: ActorCritic, mb: Minibatch, cfg: PPOConfig, clip: float | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped PPO loss of one minibatch, summed over agents; also the new log-probs (T, b).

    ``clip`` overrides ``cfg.clip`` (for an annealed clip range).
    """
    clip = cfg.clip if clip is None else clip
    s = agent.num_agents
    starts = mb.starts if cfg.reset_in_unroll else torch.zeros_like(mb.starts)
    logits, values = agent.unroll(mb.obs, mb.h0, starts)  # (T, b, A), (T, b)
    logp_all = F.log_softmax(logits, -1)
    new_logp = logp_all.gather(-1, mb.actions.unsqueeze(-1)).squeeze(-1)  # (T, b)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    mask = mb.mask.float()
    # Advantages normalised per agent, over its valid steps.
    t = mb.advantages.shape[0]
    adv = mb.advantages.view(t, s, -1)  # (T, b) -> (T, S, b/S)
    m = mask.view(t, s, -1)
    count = m.sum((0, 2), keepdim=True).clamp(min=1.0)
    mean = (adv * m).sum((0, 2), keepdim=True) / count
    std = (((adv - mean) ** 2 * m).sum((0, 2), keepdim=True) / count).sqrt()
    adv = ((adv - mean) / (std + 1e-8)).view(t, -1)  # (T, S, b/S) -> (T, b)

    log_ratio = new_logp - mb.logprobs
    ratio = log_ratio.exp()
    pg = -torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    v_loss = 0.5 * (values - mb.returns) ** 2
    per_agent = (
        per_agent_mean(pg, mask, s)
        + cfg.vf_coef * per_agent_mean(v_loss, mask, s)
        - cfg.ent_coef * per_agent_mean(entropy, mask, s)
    )  # (S,)
    with torch.no_grad():
        approx_kl = per_agent_mean((ratio - 1) - log_ratio, mask, s)
    return per_agent.sum(), new_logp, {"approx_kl": approx_kl}


def clip_grad_norm_per_agent(params: Sequence[nn.Parameter], max_norm: float, num_agents: int):
    """Clip each agent's gradient norm separately.

    Every parameter's dim 0 lists agents: S entries, or 2 S for the actor-critic cores
    (entry ``k * S + s`` belongs to agent s).
    """
    s = num_agents
    sq = torch.zeros(s)
    for p in params:
        sq += p.grad.pow(2).reshape(p.shape[0] // s, s, -1).sum((0, 2))  # -> (S,)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)  # (S,)
    for p in params:
        p.grad.view(p.shape[0] // s, s, -1).mul_(scale.view(1, s, 1))


def evaluate_greedy(
    agent: ActorCritic,
    env_id: str,
    episodes: int,
    seed: int,
    normalize: ObsNormalizer | None = None,
) -> np.ndarray:
    """Mean return of ``episodes`` greedy episodes per agent: -> (S,).

    The episodes are :func:`rldebug.training.evaluate`'s (one batched wave, seeded by
    ``seed``); the policy carries each episode's hidden state from step to step.
    """
    s = agent.num_agents
    env = make_vector_env(env_id, s * episodes)
    h = agent.initial_state(s * episodes)
    start = torch.ones(s * episodes, dtype=torch.bool)  # the first step resets the state

    def act(obs: np.ndarray) -> np.ndarray:
        nonlocal h, start
        o = torch.as_tensor(obs, dtype=torch.float32)
        with torch.no_grad():
            logits, _, h = agent.step(normalize(o) if normalize else o, h, start)
        start = torch.zeros_like(start)
        return logits.argmax(-1).numpy()

    result = evaluate(act, env, s * episodes, seed=seed)
    env.close()
    return result.returns.reshape(s, episodes).mean(1)


@dataclass
class PPOResult:
    """What :func:`train_ppo` measured; arrays are indexed [evaluation, agent]."""

    agent: ActorCritic
    config: PPOConfig
    seeds: list[int]
    eval_steps: np.ndarray  # (E,) environment steps per agent at each evaluation
    eval_returns: np.ndarray  # (E, S) greedy mean return
    train_returns: list  # per agent, a list of (env steps, return) of finished training episodes
    first_check: np.ndarray  # (U, S) max |ratio - 1| on the first minibatch of each update
    approx_kl: np.ndarray  # (U, S) approximate KL after each update's last minibatch
    seconds: float

    def steps_to(self, threshold: float) -> np.ndarray:
        """First evaluation step at which each agent reached ``threshold`` (nan if never)."""
        return first_reached(self.eval_steps, self.eval_returns, threshold)

    def kept(self, threshold: float, last_fraction: float = 0.2) -> np.ndarray:
        """(S,) bool: see :func:`kept_to_end`."""
        return kept_to_end(self.eval_steps, self.eval_returns, threshold, last_fraction)


def first_reached(eval_steps: np.ndarray, eval_returns: np.ndarray, threshold: float) -> np.ndarray:
    """(S,) first step of ``eval_steps`` (E,) at which each column of ``eval_returns`` (E, S)
    reached ``threshold``; nan where it never did. Works on any agent's evaluation curve."""
    eval_steps, eval_returns = np.asarray(eval_steps), np.asarray(eval_returns)
    hit = eval_returns >= threshold  # (E, S)
    first = np.where(hit.any(0), hit.argmax(0), -1)
    return np.where(first >= 0, eval_steps[np.maximum(first, 0)], np.nan)


def kept_to_end(
    eval_steps: np.ndarray, eval_returns: np.ndarray, threshold: float, last_fraction: float = 0.2
) -> np.ndarray:
    """(S,) bool: the return (E, S) is >= ``threshold`` at *every* evaluation in the last
    ``last_fraction`` of training, the final evaluation included."""
    eval_steps, eval_returns = np.asarray(eval_steps), np.asarray(eval_returns)
    late = eval_steps >= (1.0 - last_fraction) * eval_steps[-1]
    return (eval_returns[late] >= threshold).all(0)


def concat_agents(agents: Sequence[ActorCritic]) -> ActorCritic:
    """One :class:`ActorCritic` holding the agents of several, in order."""
    first = agents[0]
    obs_dim = first.core.ih.weight.shape[1] if first.recurrent else first.core.weight.shape[1]
    merged = ActorCritic(
        obs_dim,
        first.pi_out.weight.shape[2],
        hidden=first.hidden,
        recurrent=first.recurrent,
        num_agents=sum(a.num_agents for a in agents),
    )
    state = {}
    for name in first.state_dict():
        parts = [a.state_dict()[name] for a in agents]  # each (S_k, ...) or (2 S_k, ...)
        if name.startswith("core."):  # rows: the S_k actors, then the S_k critics
            halves = [p.chunk(2) for p in parts]
            parts = [h[0] for h in halves] + [h[1] for h in halves]
        state[name] = torch.cat(parts)
    merged.load_state_dict(state)
    return merged


def concat_results(results: Sequence[PPOResult], seconds: float) -> PPOResult:
    """One :class:`PPOResult` for the agents of several runs of the same config."""
    return PPOResult(
        agent=concat_agents([r.agent for r in results]),
        config=results[0].config,
        seeds=[s for r in results for s in r.seeds],
        eval_steps=results[0].eval_steps,
        eval_returns=np.concatenate([r.eval_returns for r in results], axis=1),
        train_returns=[t for r in results for t in r.train_returns],
        first_check=np.concatenate([r.first_check for r in results], axis=1),
        approx_kl=np.concatenate([r.approx_kl for r in results], axis=1),
        seconds=seconds,
    )


def train_ppo(
    cfg: PPOConfig,
    seeds: Sequence[int],
    *,
    processes: int = 1,
    progress: bool = True,
    eval_seed: int = 10_000,
) -> PPOResult:
    """Train one PPO agent per seed, all together; evaluate them greedily every ``eval_every``.

    ``processes > 1`` splits the seeds into that many groups of consecutive seeds and trains
    each group as its own population in a worker process (:func:`rldebug.parallel.run_parallel`).
    The random streams belong to the population, so the split is part of the run:
    ``processes=2`` on seeds 0-9 gives the agents of ``train_ppo(cfg, range(5))`` and
    ``train_ppo(cfg, range(5, 10))``.
    """
    seeds = list(seeds)
    if processes > 1 and len(seeds) > 1:
        jobs = [
            functools.partial(train_ppo, cfg, group, progress=progress, eval_seed=eval_seed)
            for group in split_seeds(seeds, processes)
        ]
        started = time.perf_counter()
        parts = run_parallel(jobs, processes=processes, desc=f"PPO {cfg.env_id}", progress=progress)
        return concat_results(parts, time.perf_counter() - started)
    s, n = len(seeds), cfg.num_envs
    if n % cfg.num_minibatches:
        raise ValueError(f"num_envs={n} cannot be split into {cfg.num_minibatches} minibatches")
    rng = np.random.default_rng(seeds)
    torch.manual_seed(seeds[0])
    env = make_vector_env(cfg.env_id, s * n)  # env s * n + i belongs to agent s
    obs_dim, n_actions = env.single_observation_space.shape[0], int(env.single_action_space.n)
    agent = ActorCritic(
        obs_dim, n_actions, hidden=cfg.hidden, recurrent=cfg.recurrent, num_agents=s
    )
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=1e-5)
    normalize = ObsNormalizer(s, obs_dim) if cfg.normalize_obs else None

    o, _ = env.reset(seed=int(seeds[0]))
    state = EnvState(
        obs=torch.as_tensor(o, dtype=torch.float32),
        start=torch.ones(s * n, dtype=torch.bool),
        h=agent.initial_state(s * n),
        done=torch.zeros(s * n, dtype=torch.bool),
        episode_return=np.zeros(s * n),
    )
    per_update = cfg.num_steps * n  # environment steps per agent per update
    num_updates = math.ceil(cfg.total_steps / per_update)
    eval_steps, eval_returns, first_check, kls = [], [], [], []
    train_returns: list[list[tuple[int, float]]] = [[] for _ in seeds]
    next_eval = 0
    started = time.perf_counter()
    bar = progress_bar(range(num_updates), desc=f"PPO {cfg.env_id}", disable=not progress)
    for update in bar:
        steps = update * per_update
        if steps >= next_eval:
            eval_steps.append(steps)
            eval_returns.append(
                evaluate_greedy(agent, cfg.env_id, cfg.eval_episodes, eval_seed, normalize)
            )
            next_eval += cfg.eval_every
            bar.set_postfix(eval=f"{np.median(eval_returns[-1]):.0f}")
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.lr * (1.0 - update / num_updates)
        clip = cfg.clip * (1.0 - update / num_updates) if cfg.anneal_clip else cfg.clip

        rollout, state, finished = collect_rollout(
            agent, env, state, cfg.num_steps, normalize, reset=cfg.reset_in_rollout
        )
        if normalize is not None:
            normalize.update(state.raw_obs)
        for i, ret in finished:
            train_returns[i // n].append((steps + per_update, ret))
        with torch.no_grad():
            advantages = gae(
                rollout.rewards,
                rollout.values,
                rollout.terminated,
                rollout.truncated,
                rollout.mask,
                cfg.gamma,
                cfg.gae_lambda,
            )
            returns = advantages + rollout.values[:-1]

        for epoch in range(cfg.epochs):
            order = agent_major_order(s, n, cfg.num_minibatches, rng)
            for k, mb in enumerate(
                sequence_minibatches(rollout, advantages, returns, order, cfg.num_minibatches)
            ):
                loss, new_logp, stats = ppo_loss(agent, mb, cfg, clip)
                if epoch == 0 and k == 0:  # the weights have not moved yet: ratio must be 1
                    with torch.no_grad():
                        dev = ((new_logp - mb.logprobs).exp() - 1).abs() * mb.mask
                        first_check.append(dev.view(cfg.num_steps, s, -1).amax((0, 2)).numpy())
                optimizer.zero_grad()
                loss.backward()
                clip_grad_norm_per_agent(list(agent.parameters()), cfg.max_grad_norm, s)
                optimizer.step()
        kls.append(stats["approx_kl"].numpy())

    eval_steps.append(num_updates * per_update)
    eval_returns.append(evaluate_greedy(agent, cfg.env_id, cfg.eval_episodes, eval_seed, normalize))
    env.close()
    return PPOResult(
        agent=agent,
        config=cfg,
        seeds=seeds,
        eval_steps=np.array(eval_steps),
        eval_returns=np.array(eval_returns),
        train_returns=train_returns,
        first_check=np.array(first_check),
        approx_kl=np.array(kls),
        seconds=time.perf_counter() - started,
    )
