"""REINFORCE with a recurrent (GRU) or memoryless policy, for CartPole and CartPoleNoVel.

Chapter 6 of the book. Read it top to bottom:

1. the environment: ``CartPoleVec`` steps many CartPoles at once (numpy), optionally hiding
   the velocities exactly as ``CartPoleNoVel-v1`` does;
2. the policies: ``GRUPolicy`` (an ``nn.GRU`` layer), ``GRUCellPolicy`` (an ``nn.GRUCell``)
   and ``SeedBatchedGRUPolicy`` (one independent GRU policy per random seed, stepped together
   so that ten seeds train in the time of one);
3. the rollout: ``collect_episodes`` plays one episode per environment, carrying the hidden
   state from step to step (or not, for a memoryless policy), into a padded ``EpisodeBatch``;
4. the training pass: ``episode_log_probs`` re-runs each whole episode from the zero state
   (correct); ``per_step_log_probs`` runs every step as its own length-1 sequence from the
   zero state (the bug of chapter 6);
5. the loss: ``masked_returns`` and ``reinforce_loss``;
6. the loop: ``train``.

Every policy has the same three methods: ``initial_state(n)``, ``step(obs, h)`` for the
rollout (one step of ``n`` environments) and ``forward(obs)`` for training (whole padded
episodes, from the zero state).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from torch import nn

__all__ = [
    "OBSERVED",
    "OBS_SCALE",
    "CartPoleVec",
    "GRUPolicy",
    "GRUCellPolicy",
    "SeedBatchedGRUPolicy",
    "EpisodeBatch",
    "collect_episodes",
    "episode_log_probs",
    "per_step_log_probs",
    "masked_returns",
    "reinforce_loss",
    "Config",
    "NOVEL_CONFIG",
    "History",
    "train",
    "evaluate",
]

# ----------------------------------------------------------------------------------------
# 1. The environment
# ----------------------------------------------------------------------------------------

#: Which entries of CartPole's state (x, x_dot, theta, theta_dot) each id observes.
OBSERVED = {"CartPole-v1": [0, 1, 2, 3], "CartPoleNoVel-v1": [0, 2]}

#: What ``CartPoleVec(..., normalize=True)`` divides the state by: the position and angle at
#: which an episode terminates (2.4 and 12 degrees), and 1 for the velocities. The angle then
#: spans [-1, 1] instead of [-0.21, 0.21]; a GRU whose input weights start at about
#: 1/sqrt(hidden) sees the step-to-step change of the angle (its only clue to the angular
#: velocity when the velocity is hidden) five times larger.
OBS_SCALE = np.array([2.4, 1.0, 12 * 2 * np.pi / 360, 1.0], dtype=np.float32)


class CartPoleVec:
    """``num_envs`` CartPole-v1 copies stepped together by gymnasium's numpy vector env.

    ``env_id="CartPoleNoVel-v1"`` keeps only the cart position and the pole angle, the same
    observation as ``gymnasium.make("CartPoleNoVel-v1")`` (registered by ``import sineroad``).
    An environment that finishes is reset by the next ``step``; the rollout masks those steps.
    ``normalize=True`` divides the observation by ``OBS_SCALE``.
    """

    def __init__(self, num_envs: int, env_id: str = "CartPole-v1", normalize: bool = True):
        if env_id not in OBSERVED:
            raise ValueError(f"env_id must be one of {sorted(OBSERVED)}, got {env_id!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env_id = env_id
        self.num_envs = num_envs
        self.keep = OBSERVED[env_id]
        self.scale = OBS_SCALE[self.keep] if normalize else np.ones(len(self.keep), np.float32)
        self.obs_dim = len(self.keep)
        self.n_actions = 2
        self._env = CartPoleVectorEnv(num_envs=num_envs)
        self._ready = False

    def reset(self, seed: int | None = None) -> np.ndarray:
        obs, _ = self._env.reset(seed=seed)
        self._ready = True
        return obs[:, self.keep] / self.scale  # (N, 4) -> (N, obs_dim)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(obs, reward, done)``, each with a leading ``num_envs`` axis."""
        if not self._ready:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        if actions.min() < 0 or actions.max() > 1:
            raise ValueError(f"CartPole actions are 0 or 1, got values in {np.unique(actions)}")
        obs, reward, terminated, truncated, _ = self._env.step(actions)
        return obs[:, self.keep] / self.scale, reward, terminated | truncated


# ----------------------------------------------------------------------------------------
# 2. The policies
# ----------------------------------------------------------------------------------------


class GRUPolicy(nn.Module):
    """Observation -> ``nn.GRU`` (batch_first) -> linear -> action logits."""

    n_seeds = 1

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 32, num_layers: int = 1):
        super().__init__()
        self.hidden = hidden
        self.gru = nn.GRU(obs_dim, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, n_actions)

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.zeros(self.gru.num_layers, n, self.hidden)  # (layers, N, H) for nn.GRU

    def step(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step of N environments: obs (N, O), h (layers, N, H) -> logits (N, A), new h."""
        out, h = self.gru(obs.unsqueeze(1), h)  # (N, O) -> (N, 1, O) -> out (N, 1, H)
        return self.head(out[:, 0]), h

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Whole episodes from the zero state: obs (N, T, O) -> logits (N, T, A)."""
        out, _ = self.gru(obs)  # out: (N, T, H), the hidden state at every step
        return self.head(out)


class GRUCellPolicy(nn.Module):
    """The same model built from ``nn.GRUCell``s (one per layer), unrolled by hand."""

    n_seeds = 1

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 32, num_layers: int = 1):
        super().__init__()
        self.hidden = hidden
        sizes = [obs_dim] + [hidden] * (num_layers - 1)
        self.cells = nn.ModuleList(nn.GRUCell(size, hidden) for size in sizes)
        self.head = nn.Linear(hidden, n_actions)

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.zeros(len(self.cells), n, self.hidden)  # (layers, N, H), like nn.GRU

    def step(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, new_h = obs, []
        for layer, cell in enumerate(self.cells):
            x = cell(x, h[layer])  # (N, in), (N, H) -> (N, H): this layer's new state
            new_h.append(x)
        return self.head(x), torch.stack(new_h)  # layers x (N, H) -> (layers, N, H)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.initial_state(obs.shape[0])
        logits = []
        for t in range(obs.shape[1]):
            out, h = self.step(obs[:, t], h)
            logits.append(out)
        return torch.stack(logits, dim=1)  # T x (N, A) -> (N, T, A)

    @classmethod
    def from_gru_policy(cls, policy: GRUPolicy) -> GRUCellPolicy:
        """A GRUCellPolicy with exactly the weights of ``policy`` (same gates, same order)."""
        gru = policy.gru
        twin = cls(gru.input_size, policy.head.out_features, gru.hidden_size, gru.num_layers)
        with torch.no_grad():
            for layer, cell in enumerate(twin.cells):
                cell.weight_ih.copy_(getattr(gru, f"weight_ih_l{layer}"))
                cell.weight_hh.copy_(getattr(gru, f"weight_hh_l{layer}"))
                cell.bias_ih.copy_(getattr(gru, f"bias_ih_l{layer}"))
                cell.bias_hh.copy_(getattr(gru, f"bias_hh_l{layer}"))
            twin.head.load_state_dict(policy.head.state_dict())
        return twin


class SeedBatchedGRUPolicy(nn.Module):
    """``n_seeds`` independent GRU policies whose tensors are stacked on a leading seed axis.

    The rows of every input are seed-major: N = n_seeds * B, rows ``[i*B, (i+1)*B)`` belong
    to seed ``i``. Each seed only ever sees its own rows, so its gradient is exactly that of
    a ``GRUPolicy`` trained alone; stacking only saves Python overhead (one ``bmm`` per step
    instead of one ``nn.GRU`` call per seed). The GRU equations are ``nn.GRU``'s, gate order
    (r, z, n); ``policy(i)`` gives seed ``i`` back as a ``GRUPolicy``.
    """

    def __init__(self, policies: list[GRUPolicy]):
        super().__init__()
        if not policies or not all(isinstance(p, GRUPolicy) for p in policies):
            raise TypeError("SeedBatchedGRUPolicy needs a non-empty list of GRUPolicy")
        grus = [p.gru for p in policies]
        if any(g.num_layers != 1 for g in grus):
            raise ValueError("SeedBatchedGRUPolicy stacks one-layer GRU policies only")
        self.n_seeds = len(policies)
        self.hidden = grus[0].hidden_size
        self.w_ih = nn.Parameter(torch.stack([g.weight_ih_l0.detach() for g in grus]))  # (S,3H,O)
        self.w_hh = nn.Parameter(torch.stack([g.weight_hh_l0.detach() for g in grus]))  # (S,3H,H)
        self.b_ih = nn.Parameter(torch.stack([g.bias_ih_l0.detach() for g in grus]))  # (S, 3H)
        self.b_hh = nn.Parameter(torch.stack([g.bias_hh_l0.detach() for g in grus]))  # (S, 3H)
        self.w_out = nn.Parameter(torch.stack([p.head.weight.detach() for p in policies]))
        self.b_out = nn.Parameter(torch.stack([p.head.bias.detach() for p in policies]))

    @classmethod
    def create(cls, seeds: list[int], obs_dim: int, n_actions: int, hidden: int = 32):
        """Seed ``i``'s weights are those of ``GRUPolicy`` built right after manual_seed(i)."""
        policies = []
        for seed in seeds:
            torch.manual_seed(seed)
            policies.append(GRUPolicy(obs_dim, n_actions, hidden))
        return cls(policies)

    def policy(self, i: int) -> GRUPolicy:
        """Seed ``i`` as a plain ``GRUPolicy`` (a copy)."""
        single = GRUPolicy(self.w_ih.shape[2], self.w_out.shape[1], self.hidden)
        with torch.no_grad():
            single.gru.weight_ih_l0.copy_(self.w_ih[i])
            single.gru.weight_hh_l0.copy_(self.w_hh[i])
            single.gru.bias_ih_l0.copy_(self.b_ih[i])
            single.gru.bias_hh_l0.copy_(self.b_hh[i])
            single.head.weight.copy_(self.w_out[i])
            single.head.bias.copy_(self.b_out[i])
        return single

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.hidden)  # (N, H)

    def _by_seed(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] % self.n_seeds:
            raise ValueError(f"{x.shape[0]} rows cannot be split evenly over {self.n_seeds} seeds")
        return x.reshape(self.n_seeds, x.shape[0] // self.n_seeds, *x.shape[1:])  # (N,..)->(S,B,..)

    def _cell(self, gi: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step. gi: input projections (S, B, 3H); h: (S, B, H)."""
        gh = torch.baddbmm(self.b_hh.unsqueeze(1), h, self.w_hh.transpose(1, 2))  # (S, B, 3H)
        H = self.hidden
        r, z = torch.sigmoid(gi[..., : 2 * H] + gh[..., : 2 * H]).chunk(2, dim=-1)  # 2 x (S,B,H)
        n = torch.tanh(gi[..., 2 * H :] + r * gh[..., 2 * H :])
        return n + z * (h - n)  # = (1 - z) * n + z * h, one operation fewer

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        # (S, B, H) @ (S, H, A) -> (S, B, A)
        return torch.baddbmm(self.b_out.unsqueeze(1), h, self.w_out.transpose(1, 2))

    def step(self, obs: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, hs = self._by_seed(obs), self._by_seed(h)  # (N, O) -> (S, B, O); (N, H) -> (S, B, H)
        gi = torch.baddbmm(self.b_ih.unsqueeze(1), x, self.w_ih.transpose(1, 2))  # (S, B, 3H)
        hs = self._cell(gi, hs)
        return self._head(hs).flatten(0, 1), hs.flatten(0, 1)  # (S, B, .) -> (N, .)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = self._by_seed(obs)  # (N, T, O) -> (S, B, T, O)
        S, B, T, _ = x.shape
        # All input projections at once: (S, B*T, O) @ (S, O, 3H) -> (S, B, T, 3H)
        gi = torch.baddbmm(
            self.b_ih.unsqueeze(1), x.reshape(S, B * T, -1), self.w_ih.transpose(1, 2)
        )
        gi = gi.reshape(S, B, T, -1)
        # (Indexing gi[:, :, t] inside the loop would make backward build a zero tensor of
        # gi's full size for every t: T times the work. unbind's backward stacks once.)
        h = obs.new_zeros(S, B, self.hidden)
        outs = []
        for gi_t in gi.unbind(dim=2):  # T x (S, B, 3H); unbind, not gi[:, :, t]: see above
            h = self._cell(gi_t, h)
            outs.append(h)
        out = torch.stack(outs, dim=2)  # T x (S, B, H) -> (S, B, T, H)
        logits = self._head(out.reshape(S, B * T, -1))  # (S, B*T, A)
        return logits.reshape(S * B, T, -1)  # -> (N, T, A)


# ----------------------------------------------------------------------------------------
# 3. The rollout
# ----------------------------------------------------------------------------------------


class EpisodeBatch(NamedTuple):
    """One episode per row, padded to the longest: every field is (N, T) or (N, T, O)."""

    obs: torch.Tensor  # (N, T, O)
    actions: torch.Tensor  # (N, T) int64
    rewards: torch.Tensor  # (N, T); after an episode's end: whatever the env gave (masked)
    mask: torch.Tensor  # (N, T) 1.0 on the episode's steps, 0.0 on the padding after it
    log_probs: torch.Tensor  # (N, T) log pi(a_t | ...) as the rollout computed it


@torch.no_grad()
def collect_episodes(
    policy: nn.Module,
    env: CartPoleVec,
    *,
    carry_state: bool = True,
    greedy: bool = False,
    seed: int | None = None,
    max_steps: int = 500,
) -> EpisodeBatch:
    """Play one episode in each of ``env.num_envs`` environments.

    ``carry_state=True`` feeds the hidden state of step t into step t+1 (starting from zero);
    ``carry_state=False`` starts every step from the zero state: a memoryless policy.
    """
    obs = env.reset(seed=seed)
    n = env.num_envs
    h = policy.initial_state(n)
    alive = np.ones(n, dtype=bool)
    obs_l, act_l, rew_l, mask_l, logp_l = [], [], [], [], []
    for _ in range(max_steps):
        x = torch.as_tensor(obs, dtype=torch.float32)
        logits, h_next = policy.step(x, h if carry_state else policy.initial_state(n))
        if carry_state:
            h = h_next
        logp = F.log_softmax(logits, dim=-1)  # (N, A)
        if greedy:
            action = logp.argmax(dim=-1)
        else:
            action = torch.multinomial(logp.exp(), 1).squeeze(1)  # (N, 1) -> (N,)
        obs_l.append(x)
        act_l.append(action)
        logp_l.append(logp.gather(1, action.unsqueeze(1)).squeeze(1))
        mask_l.append(torch.as_tensor(alive, dtype=torch.float32))
        obs, reward, done = env.step(action.numpy())
        rew_l.append(torch.as_tensor(reward, dtype=torch.float32))
        alive = alive & ~done
        if not alive.any():
            break
    return EpisodeBatch(
        obs=torch.stack(obs_l, dim=1),  # T x (N, O) -> (N, T, O)
        actions=torch.stack(act_l, dim=1),  # T x (N,) -> (N, T)
        rewards=torch.stack(rew_l, dim=1),
        mask=torch.stack(mask_l, dim=1),
        log_probs=torch.stack(logp_l, dim=1),
    )


# ----------------------------------------------------------------------------------------
# 4. The training pass: recompute log pi(a_t | ...) with gradients
# ----------------------------------------------------------------------------------------


def _check_batch_shapes(obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> None:
    if obs.dim() != 3:
        raise ValueError(f"obs must be (N, T, O), got shape {tuple(obs.shape)}")
    if actions.shape != obs.shape[:2] or mask.shape != obs.shape[:2]:
        raise ValueError(
            f"actions {tuple(actions.shape)} and mask {tuple(mask.shape)} must both be "
            f"(N, T) = {tuple(obs.shape[:2])}"
        )


def episode_log_probs(
    policy: nn.Module, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """log pi(a_t | o_0..o_t) for every step, each episode unrolled from the zero state.

    This recomputes exactly what a rollout that carried the hidden state saw. Padding is 0.
    """
    _check_batch_shapes(obs, actions, mask)
    logits = policy(obs)  # (N, T, O) -> (N, T, A): one unroll per episode, h_0 = 0
    logp = F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # (N, T)
    return logp * mask


def per_step_log_probs(
    policy: nn.Module, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """THE BUG: every step is its own length-1 sequence from the zero state.

    The network never sees step t-1 when it computes step t: this is log pi(a_t | o_t) of a
    feed-forward net, not what a rollout that carried the hidden state saw.
    """
    _check_batch_shapes(obs, actions, mask)
    n, t, o = obs.shape
    logits = policy(obs.reshape(n * t, 1, o))  # (N, T, O) -> (N*T, 1, O): T=1 each, h_0 = 0
    logits = logits.reshape(n, t, -1)  # (N*T, 1, A) -> (N, T, A)
    logp = F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    return logp * mask


# ----------------------------------------------------------------------------------------
# 5. The loss
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


def reinforce_loss(
    log_probs: torch.Tensor, rewards: torch.Tensor, mask: torch.Tensor, gamma: float
) -> torch.Tensor:
    """REINFORCE over a padded batch: -mean over real steps of log pi(a_t) * A_t.

    Shapes (B, T), or (S, B, T) for S seeds (then the losses of the seeds are summed, and
    each seed's advantages are computed from its own B episodes only). The advantage A_t is
    the return G_t normalised to mean 0 and standard deviation 1 over the real steps.
    """
    if log_probs.shape != rewards.shape or mask.shape != rewards.shape:
        raise ValueError(
            f"log_probs {tuple(log_probs.shape)}, rewards {tuple(rewards.shape)} and mask "
            f"{tuple(mask.shape)} must have the same shape"
        )
    with torch.no_grad():
        returns = masked_returns(rewards, mask, gamma)  # (..., B, T)
        n = mask.sum(dim=(-2, -1), keepdim=True)  # real steps per seed
        mean = returns.sum(dim=(-2, -1), keepdim=True) / n
        var = ((returns - mean) ** 2 * mask).sum(dim=(-2, -1), keepdim=True) / n
        advantages = (returns - mean) / (var.sqrt() + 1e-8) * mask
    per_seed = -(log_probs * advantages * mask).sum(dim=(-2, -1)) / n.squeeze(-1).squeeze(-1)
    return per_seed.sum()


# ----------------------------------------------------------------------------------------
# 6. The loop
# ----------------------------------------------------------------------------------------


@dataclass
class Config:
    """Settings of one training run (all seeds of a policy share them)."""

    env_id: str = "CartPole-v1"
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


@dataclass
class History:
    """Per update (rows) and seed (columns)."""

    train_return: np.ndarray  # (updates, S) mean return of the sampled training episodes
    steps: np.ndarray  # (updates, S) environment steps so far (training episodes only)
    eval_update: np.ndarray  # (E,) after which update each greedy evaluation ran
    eval_return: np.ndarray  # (E, S) greedy evaluation mean return
    solved_step: np.ndarray  # (S,) training steps when first solved, nan when never
    seconds: float = 0.0

    @property
    def solved(self) -> np.ndarray:
        return ~np.isnan(self.solved_step)


def evaluate(policy: nn.Module, env_id: str, episodes: int, *, carry_state=True, seed=None):
    """Greedy mean return per seed: an array of shape (policy.n_seeds,)."""
    env = CartPoleVec(policy.n_seeds * episodes, env_id)
    batch = collect_episodes(policy, env, carry_state=carry_state, greedy=True, seed=seed)
    per_episode = (batch.rewards * batch.mask).sum(dim=1)  # (N,)
    return per_episode.reshape(policy.n_seeds, episodes).mean(dim=1).numpy()


def train(policy: nn.Module, config: Config, *, seed: int = 0, progress=None) -> History:
    """Train ``policy`` (all its seeds at once) with REINFORCE; return the History.

    ``seed`` seeds the action sampling (torch's global generator) and the environments, so
    two policies with the same weights trained with the same seed see the same episodes.
    ``progress`` is an optional tqdm-like factory, for example ``tqdm.auto.tqdm``.
    """
    torch.manual_seed(seed)
    if config.unroll not in ("episode", "per_step"):
        raise ValueError(f"unroll must be 'episode' or 'per_step', got {config.unroll!r}")
    unroll = episode_log_probs if config.unroll == "episode" else per_step_log_probs
    S, B = policy.n_seeds, config.episodes
    env = CartPoleVec(S * B, config.env_id)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    train_return = np.full((config.updates, S), np.nan)
    steps = np.zeros((config.updates, S))
    eval_update, eval_return = [], []
    solved_step = np.full(S, np.nan)
    frozen = None  # copies of the parameters of seeds that are solved
    total = np.zeros(S)
    start = time.perf_counter()
    bar = progress(range(config.updates), leave=False) if progress else range(config.updates)
    for update in bar:
        batch = collect_episodes(
            policy, env, carry_state=config.carry_state, seed=seed * 100_003 + update
        )
        lengths = batch.mask.sum(dim=1).reshape(S, B)  # (N,) -> (S, B)
        total += lengths.sum(dim=1).numpy()
        train_return[update] = lengths.mean(dim=1).numpy()  # CartPole: return = length
        steps[update] = total
        log_probs = unroll(policy, batch.obs, batch.actions, batch.mask)  # (N, T)
        split = lambda x: x.reshape(S, B, -1)  # noqa: E731  (N, T) -> (S, B, T)
        loss = reinforce_loss(
            split(log_probs), split(batch.rewards), split(batch.mask), config.gamma
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if frozen is not None:  # solved seeds keep their solving weights
            with torch.no_grad():
                keep = torch.as_tensor(~np.isnan(solved_step))
                for p, p0 in zip(policy.parameters(), frozen):
                    p[keep] = p0[keep]
        if (update + 1) % config.eval_every == 0 or update + 1 == config.updates:
            scores = evaluate(
                policy,
                config.env_id,
                config.eval_episodes,
                carry_state=config.carry_state,
                seed=10**6 + seed * 1009 + update,
            )
            eval_update.append(update + 1)
            eval_return.append(scores)
            newly = np.isnan(solved_step) & (scores >= config.solved_at)
            if config.stop_when_solved and newly.any():
                solved_step[newly] = total[newly]
                if S > 1:
                    snapshot = [p.detach().clone() for p in policy.parameters()]
                    frozen = (
                        snapshot
                        if frozen is None
                        else [
                            torch.where(_expand(torch.as_tensor(newly), p), p, f)
                            for p, f in zip(snapshot, frozen)
                        ]
                    )
            if config.stop_when_solved and not np.isnan(solved_step).any():
                train_return, steps = train_return[: update + 1], steps[: update + 1]
                break
        if progress:
            bar.set_postfix(ret=f"{float(np.nanmean(train_return[update])):.0f}")
    return History(
        train_return=train_return,
        steps=steps,
        eval_update=np.array(eval_update),
        eval_return=np.array(eval_return),
        solved_step=solved_step,
        seconds=time.perf_counter() - start,
    )


def _expand(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return flags.reshape(-1, *([1] * (like.dim() - 1)))  # (S,) -> (S, 1, ..., 1)
