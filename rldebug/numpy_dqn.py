"""A DQN in numpy only, on CartPole-v1: replay, target network, epsilon schedule, Huber, Adam.

It trains an *ensemble*: ``n_seeds`` independent agents, each with its own network, replay
buffer, CartPole and random stream, stepped together so that every numpy call serves all
of them (weights ``(E, n_in, n_out)``, observations ``(E, B, 4)``). Nothing is shared
between members except the loop.

:class:`VectorCartPole` is CartPole-v1's dynamics written for ``n`` carts at once in numpy
(the same equations, constants and float64 state as ``gymnasium``'s CartPoleEnv, checked
step for step in the tests and in chapter 2).

The question's bugs can be switched on one at a time with ``bugs=Bugs.only(name)``
(see :class:`rldebug.numpy_mlp.Bugs`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from rldebug.numpy_mlp import MLP, NO_BUGS, Adam, Bugs, huber, huber_grad, huber_grad_with_jump

__all__ = [
    "VectorCartPole",
    "DQNConfig",
    "Batch",
    "TrainResult",
    "sample_n_step",
    "dqn_loss_grad",
    "evaluate",
    "mean_return",
    "train",
]


class VectorCartPole:
    """``n`` CartPole-v1 environments in numpy, with gymnasium's equations and constants.

    ``step(actions)`` returns ``(obs, reward, terminated, truncated, final_obs)`` and resets
    finished carts automatically: ``obs`` is already the first observation of the next
    episode where an episode ended, and ``final_obs`` holds the last observation of the
    episode that ended (for the TD target).
    """

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass = masspole + masscart
    polemass_length = masspole * length
    theta_threshold = 12 * 2 * math.pi / 360
    x_threshold = 2.4
    max_steps = 500

    def __init__(self, n: int, seed: int | None = None, autoreset: bool = True):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n, self.autoreset = int(n), autoreset
        self.rng = np.random.default_rng(seed)
        self.state: np.ndarray | None = None  # (n, 4) float64, as in gymnasium
        self.steps = np.zeros(self.n, dtype=np.int64)

    def reset(self) -> np.ndarray:
        self.state = self.rng.uniform(-0.05, 0.05, size=(self.n, 4))
        self.steps[:] = 0
        return self.state.astype(np.float32)

    def dynamics(self, state: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """One Euler step of gymnasium's CartPole equations for every cart: (n, 4) -> (n, 4)."""
        x, x_dot, theta, theta_dot = state.T
        force = np.where(actions == 1, self.force_mag, -self.force_mag)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + self.polemass_length * np.square(theta_dot) * sintheta) / self.total_mass
        thetaacc = (self.gravity * sintheta - costheta * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * np.square(costheta) / self.total_mass)
        )
        xacc = temp - self.polemass_length * thetaacc * costheta / self.total_mass
        return np.stack(
            [
                x + self.tau * x_dot,
                x_dot + self.tau * xacc,
                theta + self.tau * theta_dot,
                theta_dot + self.tau * thetaacc,
            ],
            axis=1,
        )

    def step(self, actions: np.ndarray):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.n,) or not np.isin(actions, (0, 1)).all():
            raise ValueError(f"actions must be {self.n} values in {{0, 1}}, got {actions!r:.80}")
        self.state = self.dynamics(self.state, actions)
        self.steps += 1
        x, theta = self.state[:, 0], self.state[:, 2]
        terminated = (np.abs(x) > self.x_threshold) | (np.abs(theta) > self.theta_threshold)
        truncated = (self.steps >= self.max_steps) & ~terminated
        reward = np.ones(self.n, dtype=np.float32)
        final_obs = self.state.astype(np.float32)
        done = terminated | truncated
        if self.autoreset and done.any():
            self.state[done] = self.rng.uniform(-0.05, 0.05, size=(int(done.sum()), 4))
            self.steps[done] = 0
        return self.state.astype(np.float32), reward, terminated, truncated, final_obs


@dataclass
class DQNConfig:
    """Hyperparameters of :func:`train`.

    The defaults solve CartPole-v1 within 50k steps. They follow the tuned CartPole DQN of
    the RL Baselines3 Zoo (bursts of updates, a target refreshed between bursts, Double DQN),
    with a 64-64 network instead of 256-256 to keep numpy fast.
    """

    hidden: tuple[int, ...] = (64, 64)
    lr: float = 2.3e-3
    lr_end: float | None = None  # linear decay to lr_end over total_steps (None: constant)
    gamma: float = 0.99
    n_step: int = 3  # rewards summed per target; the target bootstraps with gamma**k, k <= n
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1_000
    train_every: int = 256  # collect 256 steps, then ...
    updates_per_train: int = 128  # ... 128 minibatch updates in a burst
    target_every: int = 10  # steps; the target stays frozen during each burst
    double: bool = True  # Double DQN: the online network picks the next action
    eps_start: float = 1.0
    eps_end: float = 0.04
    eps_steps: int = 8_000
    total_steps: int = 50_000
    eval_every: int = 500
    eval_episodes: int = 20
    solved_at: float = 475.0
    # A member >= solved_at on two evaluations in a row is only a candidate: 20 episodes can be
    # lucky. It is replayed on confirm_episodes new episodes and saved if their mean is at
    # least confirm_at: a network whose pole falls early on one start in 100 does not pass.
    confirm_episodes: int = 100
    confirm_at: float = 499.0
    stop_when_solved: bool = True
    keep_solved_checkpoint: bool = True  # return each member as it was when saved
    dtype: type = np.float32
    bugs: Bugs = field(default_factory=Bugs)

    def epsilon(self, step: int) -> float:
        frac = min(1.0, step / self.eps_steps)
        return self.eps_start + frac * (self.eps_end - self.eps_start)

    def learning_rate(self, step: int) -> float:
        if self.lr_end is None:
            return self.lr
        return self.lr + min(1.0, step / self.total_steps) * (self.lr_end - self.lr)


class Batch(NamedTuple):
    """A replay minibatch for every member: arrays with leading shape (E, B).

    With n-step targets, ``reward`` is the discounted sum of up to n rewards, ``next_obs``
    the observation k <= n steps later, and ``discount`` is gamma**k (gamma when n = 1).
    """

    obs: np.ndarray  # (E, B, 4)
    action: np.ndarray  # (E, B) int
    reward: np.ndarray  # (E, B)
    next_obs: np.ndarray  # (E, B, 4)
    terminated: np.ndarray  # (E, B) float: 1.0 where the episode really ended
    discount: np.ndarray  # (E, B) gamma**k: how far ahead next_obs is
    mask: np.ndarray  # (E, B) float: 1.0 for every real transition (no padding here)


def sample_n_step(buffer: dict, idx: np.ndarray, n_step: int, gamma: float) -> Batch:
    """A minibatch of n-step transitions starting at buffer positions ``idx`` (E, B).

    Each member has one cart, so its buffer holds its steps in order: the n steps after
    position i are i, i + 1, ..., i + n - 1. The sum stops at the end of an episode; a
    terminated one adds no bootstrap, a truncated one bootstraps from its last observation
    with gamma**k, k being the steps actually summed.
    """
    members = np.arange(idx.shape[0])[:, None]  # (E, 1), to index (E, B) samples
    cap = buffer["reward"].shape[1]
    ret = np.zeros(idx.shape, dtype=buffer["reward"].dtype)
    discount = np.ones_like(ret)
    terminated = np.zeros_like(ret)
    last = idx.copy()
    alive = np.ones(idx.shape, dtype=bool)  # still inside the episode that starts at idx
    for k in range(n_step):
        j = (idx + k) % cap
        ret += np.where(alive, discount * buffer["reward"][members, j], 0.0)
        terminated = np.where(alive, buffer["terminated"][members, j], terminated)
        last = np.where(alive, j, last)
        discount = np.where(alive, discount * gamma, discount)
        alive &= ~buffer["done"][members, j]
    return Batch(
        buffer["obs"][members, idx],
        buffer["action"][members, idx],
        ret,
        buffer["next_obs"][members, last],
        terminated,
        discount,
        np.ones(idx.shape, dtype=ret.dtype),
    )


def dqn_loss_grad(
    q: np.ndarray, action: np.ndarray, target: np.ndarray, mask: np.ndarray, bugs: Bugs = NO_BUGS
) -> tuple[np.ndarray, np.ndarray]:
    """Mean Huber loss of Q(s, a) against the target, and dL/dQ for every action's output.

    ``q`` is ``(..., B, n_actions)``; ``action``, ``target`` and ``mask`` are ``(..., B)``.
    Only the taken action's output gets an error: dL/dQ is zero for every other action,
    unless ``bugs.scalar_loss_gradient`` pushes the same number into all of them.
    ``bugs.huber_gradient_jump`` replaces the Huber derivative by one that jumps at 1.
    """
    q_sa = np.take_along_axis(q, action[..., None], axis=-1)[..., 0]  # (..., B, A) -> (..., B)
    error = q_sa - target
    n = np.maximum(mask.sum(axis=-1, keepdims=True), 1.0)  # (..., 1)
    loss = (huber(error) * mask).sum(axis=-1) / n[..., 0]
    slope = huber_grad_with_jump(error) if bugs.huber_gradient_jump else huber_grad(error)
    g = slope * mask / n  # dL/dQ(s, a), (..., B)
    if bugs.scalar_loss_gradient:
        grad_q = np.repeat(g[..., None], q.shape[-1], axis=-1)  # same error into every action
    else:
        grad_q = np.zeros_like(q)
        np.put_along_axis(grad_q, action[..., None], g[..., None], axis=-1)
    return loss, grad_q


def evaluate(net: MLP, n_episodes: int = 20, seed: int = 10_000) -> np.ndarray:
    """Greedy returns on CartPole-v1, shape (E, n_episodes): every member plays its episodes."""
    n_members = net.lead[0] if net.lead else 1
    env = VectorCartPole(n_members * n_episodes, seed=seed, autoreset=False)
    obs = env.reset()
    returns = np.zeros(n_members * n_episodes)
    alive = np.ones(n_members * n_episodes, dtype=bool)
    for _ in range(env.max_steps):
        x = obs.reshape(net.lead + (n_episodes, 4))  # (E*N, 4) -> (E, N, 4)
        actions = net.forward(x, keep=False).argmax(axis=-1).reshape(-1)
        obs, reward, terminated, truncated, _ = env.step(actions)
        returns += reward * alive
        alive &= ~(terminated | truncated)
        if not alive.any():
            break
    return returns.reshape(n_members, n_episodes)


def mean_return(policy, n_episodes: int = 100, seed: int = 0) -> np.floating:
    """Mean return of ``policy(obs (N, 4)) -> actions (N,)`` over ``n_episodes`` CartPole
    episodes played at once: a yardstick such as a random or a constant policy."""
    carts = VectorCartPole(n_episodes, seed=seed, autoreset=False)
    obs, total = carts.reset(), np.zeros(n_episodes)
    alive = np.ones(n_episodes, dtype=bool)
    while alive.any():
        obs, reward, terminated, truncated, _ = carts.step(policy(obs))
        total += reward * alive
        alive &= ~(terminated | truncated)
    return total.mean()


class TrainResult(NamedTuple):
    """What :func:`train` measured, per member (seed)."""

    net: MLP  # the final networks (each member's checkpoint, where it was saved)
    eval_steps: np.ndarray  # (K,) the steps at which the greedy policies were evaluated
    eval_returns: np.ndarray  # (E, K) mean greedy return at those steps
    episode_returns: list[list[float]]  # per member, training episode returns in order
    losses: np.ndarray  # (n_updates, E) mean Huber loss of every update
    solved_step: np.ndarray  # (E,) the step each member was saved (solved, then confirmed); -1
    steps: int  # environment steps taken per member
    last_net: MLP  # the networks as they were when training stopped, before any restore
    signed_grads: np.ndarray  # (n_updates, E) mean dL/dQ(s, a) of every update: signs cancel
    rejected: np.ndarray  # (E,) candidates the confirmation turned down before the save


def train(
    config: DQNConfig,
    seeds: list[int] | tuple[int, ...],
    progress: str | None = None,
) -> TrainResult:
    """Train one DQN per seed on CartPole-v1, all at once. See :class:`DQNConfig`.

    ``progress``: the label of a progress bar (none when ``None``).

    Early stopping: a member whose greedy policy scores ``>= solved_at`` on two
    evaluations in a row is a *candidate*. It is replayed on ``confirm_episodes`` new
    episodes; if their mean is ``>= confirm_at`` the member is *solved*, and its parameters
    are saved then and returned. Training stops when every member is solved
    (``stop_when_solved``) or at ``total_steps``.
    """
    cfg, n, bugs = config, len(seeds), config.bugs
    rng = np.random.default_rng(list(seeds))  # actions, exploration and minibatches
    init_rngs = [np.random.default_rng(s) for s in seeds]
    sizes = [4, 4, *cfg.hidden, 2] if bugs.extra_input_layer else [4, *cfg.hidden, 2]
    net = MLP(sizes, n_members=n, dtype=cfg.dtype, bugs=bugs)
    for e, init_rng in enumerate(init_rngs):  # member e's weights depend on seeds[e] only
        single = MLP(sizes, rng=init_rng, dtype=cfg.dtype, bugs=bugs)
        for p_all, p_one in zip(net.params, single.params):
            p_all[e] = p_one
    # the bug: the "copy" holds the same arrays, so every in-place update moves both
    target = net if bugs.aliased_target else net.clone()
    opt = Adam(net.flat, lr=cfg.lr)
    env = VectorCartPole(n, seed=int(seeds[0]) + 7919)

    cap = min(cfg.buffer_size, cfg.total_steps)
    buffer = {  # every member's steps in order, (E, cap, ...)
        "obs": np.zeros((n, cap, 4), dtype=cfg.dtype),
        "action": np.zeros((n, cap), dtype=np.int64),
        "reward": np.zeros((n, cap), dtype=cfg.dtype),
        "next_obs": np.zeros((n, cap, 4), dtype=cfg.dtype),
        "terminated": np.zeros((n, cap), dtype=cfg.dtype),  # a real end: no bootstrap
        "done": np.zeros((n, cap), dtype=bool),  # terminated or truncated: the episode ended
    }

    losses, signed_grads, eval_steps, eval_returns = [], [], [], []

    def update(idx: np.ndarray) -> None:
        """One Adam step for every member on the transitions at ``idx`` (E, B)."""
        batch = sample_n_step(buffer, idx, cfg.n_step, cfg.gamma)
        q_next = target.forward(batch.next_obs, keep=False)  # (E, B, 2), no backward
        if cfg.double:  # the online net picks a', the target net values it
            a_next = net.forward(batch.next_obs, keep=False).argmax(axis=-1)
            v_next = np.take_along_axis(q_next, a_next[..., None], axis=-1)[..., 0]
        else:
            v_next = q_next.max(axis=-1)  # (E, B, 2) -> (E, B)
        y = batch.reward + batch.discount * (1.0 - batch.terminated) * v_next
        q = net.forward(batch.obs)  # (E, B, 2), keeps activations for backward
        loss, grad_q = dqn_loss_grad(q, batch.action, y, batch.mask, bugs)
        if bugs.stale_weights_backprop:
            net.backward(grad_q, optimizer=opt)  # steps each layer on the way down
        else:
            net.backward(grad_q)
            opt.step(net.grad)
        losses.append(loss)
        taken = np.take_along_axis(grad_q, batch.action[..., None], axis=-1)  # (E, B, 1)
        signed_grads.append(taken.sum(axis=(-2, -1)))

    obs = env.reset()
    ep_return = np.zeros(n)
    episode_returns: list[list[float]] = [[] for _ in range(n)]
    solved_step = np.full(n, -1)
    passed_once = np.zeros(n, dtype=bool)
    rejected = np.zeros(n, dtype=np.int64)
    best = [p.copy() for p in net.params]
    steps = 0
    bar = tqdm(total=cfg.total_steps, desc=progress, unit="step") if progress else None
    for step in range(1, cfg.total_steps + 1):
        # act: epsilon-greedy, each member on its own cart
        q = net.forward(obs[:, None, :], keep=False)[:, 0]  # (E, 1, 4) -> (E, 1, 2) -> (E, 2)
        explore = rng.random(n) < cfg.epsilon(step)
        actions = np.where(explore, rng.integers(0, 2, n), q.argmax(axis=-1))
        next_obs, reward, terminated, truncated, final_obs = env.step(actions)
        i = (step - 1) % cap
        buffer["obs"][:, i], buffer["action"][:, i], buffer["reward"][:, i] = obs, actions, reward
        buffer["next_obs"][:, i] = final_obs
        buffer["terminated"][:, i] = terminated  # truncation still bootstraps
        buffer["done"][:, i] = terminated | truncated
        ep_return += reward
        for e in np.flatnonzero(terminated | truncated):
            episode_returns[e].append(float(ep_return[e]))
            ep_return[e] = 0.0
        obs = next_obs

        # learn: one minibatch per member, all members in one set of numpy calls
        if step >= cfg.learning_starts and step % cfg.train_every == 0:
            opt.lr = cfg.learning_rate(step)
            # a start needs its n - 1 next steps stored: the newest n - 1 steps wait
            oldest, ready = (step % cap, cap) if step > cap else (0, step)
            for _ in range(cfg.updates_per_train):
                offset = rng.integers(0, ready - (cfg.n_step - 1), size=(n, cfg.batch_size))
                idx = (oldest + offset) % cap  # (E, B) buffer positions
                if bugs.single_sample_updates:  # the bug: one Adam step per transition
                    for j in range(cfg.batch_size):
                        update(idx[:, j : j + 1])  # (E, 1)
                else:
                    update(idx)
        if step % cfg.target_every == 0:
            target.copy_from(net)

        # evaluate greedily; a member solved twice in a row is confirmed, then saved
        if step % cfg.eval_every == 0:
            score = evaluate(net, cfg.eval_episodes, seed=step).mean(axis=1)
            eval_steps.append(step)
            eval_returns.append(score)
            passed = score >= cfg.solved_at
            newly = passed & passed_once & (solved_step < 0)
            if newly.any() and cfg.confirm_episodes > 0:
                # new starts: the evaluations use seed = step, a final test its own seed
                confirm = evaluate(net, cfg.confirm_episodes, seed=1_000_000 + step).mean(axis=1)
                rejected += newly & (confirm < cfg.confirm_at)
                newly &= confirm >= cfg.confirm_at
            for e in np.flatnonzero(newly):
                solved_step[e] = step
                for saved, p in zip(best, net.params):
                    saved[e] = p[e]
            passed_once = passed
        steps = step
        if bar is not None and step % 500 == 0:
            bar.update(500)
            bar.set_postfix(solved=int((solved_step >= 0).sum()))
        if cfg.stop_when_solved and (solved_step >= 0).all():
            break
    if bar is not None:
        bar.close()
    last_net = net.clone()
    restore = solved_step >= 0 if cfg.keep_solved_checkpoint else np.zeros(n, dtype=bool)
    for e in np.flatnonzero(restore):  # restore each solved member's checkpoint
        for saved, p in zip(best, net.params):
            p[e] = saved[e]
    return TrainResult(
        net,
        np.array(eval_steps),
        np.array(eval_returns).T.reshape(n, -1),
        episode_returns,
        np.array(losses).reshape(-1, n),
        solved_step,
        steps,
        last_net,
        np.array(signed_grads).reshape(-1, n),
        rejected,
    )
