"""Q-learning targets and losses (chapter 1), and a Taxi Q-table in torch.

The network outputs Q(s, .) for every action; the loss gives an error to the taken action
only. Three pieces do that, and later chapters import them from here:

* :func:`td_target`: r + gamma * (1 - terminated) * max_a' Q(s', a'), detached;
* :func:`masked_q_loss`: picks Q(s, a) with ``gather`` and regresses it on the target;
* :func:`copy_trick_loss`: the Keras-style alternative, a detached copy of Q(s, .) with the
  taken action's entry overwritten by the target, and the MSE over all outputs.

The Taxi helpers run Taxi-v4's own transition table for many taxis and many seeds at once,
so that a linear (one-hot) Q-network can be trained on several seeds in seconds.
:func:`taxi_dqn_config` is the same task for the library's DQN (``rldebug.agents.dqn``):
gymnasium's Taxi behind a one-hot observation wrapper, an ``nn.Module``, Adam, replay and
a target network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "QBatch",
    "check_td_shapes",
    "td_target",
    "masked_q_loss",
    "copy_trick_loss",
    "TaxiTables",
    "taxi_tables",
    "VectorTaxi",
    "one_hot",
    "q_value_iteration",
    "greedy_returns",
    "LinearQRun",
    "train_linear_taxi",
    "TAXI_DQN_RECIPE",
    "taxi_dqn_config",
    "q_table_of",
]


class QBatch(NamedTuple):
    """A batch of transitions; every field has the batch size B as its first dimension."""

    obs: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B,) long
    rewards: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, obs_dim)
    terminated: torch.Tensor  # (B,) float, 1.0 where the episode ended for real
    truncated: torch.Tensor  # (B,) float, 1.0 where a time limit cut it


# --------------------------------------------------------------------------------------
# The TD target and the two losses
# --------------------------------------------------------------------------------------


def check_td_shapes(q_sa: torch.Tensor, target: torch.Tensor) -> None:
    """Raise a ValueError unless ``q_sa`` and ``target`` have the same shape.

    The classic silent bug: ``q.gather(1, a.unsqueeze(1))`` is (B, 1), the target is (B,),
    and ``q_sa - target`` broadcasts to (B, B): every sample is regressed on every other
    sample's target. Nothing crashes; the agent just does not learn.
    """
    q_shape, t_shape = tuple(q_sa.shape), tuple(target.shape)
    if q_shape == t_shape:
        return
    try:
        broadcast = tuple(torch.broadcast_shapes(q_sa.shape, target.shape))
    except RuntimeError:
        broadcast = None
    if broadcast is None:
        raise ValueError(
            f"q_sa is {q_shape} and the target is {t_shape}: they cannot be subtracted"
        )
    hint = ""
    if len(q_shape) == 2 and q_shape[1] == 1 and t_shape == (q_shape[0],):
        hint = " Squeeze q_sa: q_values.gather(1, actions.unsqueeze(1)).squeeze(1) is (B,)."
    elif len(t_shape) == 2 and t_shape[1] == 1 and q_shape == (t_shape[0],):
        hint = " Squeeze the target to (B,)."
    raise ValueError(
        f"q_sa is {q_shape} and the target is {t_shape}: subtracting them broadcasts to "
        f"{broadcast}, so every sample is compared with every other sample's target.{hint}"
    )


def td_target(
    rewards: torch.Tensor,
    next_q_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    gamma: float,
    *,
    detach: bool = True,
) -> torch.Tensor:
    """The one-step Q-learning target y = r + gamma * (1 - terminated) * max_a' Q(s', a').

    ``rewards``, ``terminated`` and ``truncated`` are (B,), ``next_q_values`` is (B, A).
    Only ``terminated`` stops the bootstrap: a time limit (``truncated``) cuts the episode,
    not the task, so the value of s' still counts. ``truncated`` is taken (and checked)
    only so that callers pass it and see that it does not enter the target.

    The target is detached (semi-gradient Q-learning). ``detach=False`` keeps the graph
    (the "full gradient"); it exists only for the comparison in chapter 1.
    """
    if next_q_values.ndim != 2:
        raise ValueError(f"next_q_values must be (B, A), got {tuple(next_q_values.shape)}")
    batch = next_q_values.shape[0]
    for name, value in (("rewards", rewards), ("terminated", terminated), ("truncated", truncated)):
        if tuple(value.shape) != (batch,):
            raise ValueError(
                f"{name} must be ({batch},) like the batch of next_q_values "
                f"{tuple(next_q_values.shape)}, got {tuple(value.shape)}"
            )
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    next_v = next_q_values.max(dim=1).values  # (B, A) -> (B,): best action in s'
    target = rewards + gamma * (1.0 - terminated.float()) * next_v  # (B,)
    return target.detach() if detach else target


def _check_loss_inputs(q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor):
    if q_values.ndim != 2:
        raise ValueError(f"q_values must be (B, A), got {tuple(q_values.shape)}")
    batch, n_actions = q_values.shape
    if tuple(actions.shape) != (batch,):
        raise ValueError(f"actions must be ({batch},), got {tuple(actions.shape)}")
    if actions.dtype != torch.long:
        raise ValueError(f"actions must be a long tensor (indices), got {actions.dtype}")
    if len(actions) and (int(actions.min()) < 0 or int(actions.max()) >= n_actions):
        raise ValueError(
            f"actions must be in [0, {n_actions - 1}], got values from {int(actions.min())} "
            f"to {int(actions.max())}"
        )
    check_td_shapes(q_values[:, 0], targets)


def masked_q_loss(
    q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Mean squared TD error of the taken actions only.

    ``q_values`` (B, A) from the online network, ``actions`` (B,) long, ``targets`` (B,)
    detached. ``gather`` picks Q(s_i, a_i); the other outputs get no gradient.
    """
    _check_loss_inputs(q_values, actions, targets)
    q_sa = q_values.gather(1, actions.unsqueeze(1)).squeeze(1)  # (B, A) -> (B, 1) -> (B,)
    return ((q_sa - targets) ** 2).mean()


def copy_trick_loss(
    q_values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """The Keras-style loss: MSE over all B x A outputs against an edited copy of them.

    The copy equals Q(s, .) everywhere except at the taken action, where it holds the TD
    target; so only the taken action has a non-zero error. The mean runs over B x A
    numbers, so the gradient is that of :func:`masked_q_loss` divided by A.
    """
    _check_loss_inputs(q_values, actions, targets)
    wanted = q_values.detach().clone()  # a copy: writing into it must not touch q_values
    wanted[torch.arange(len(actions)), actions] = targets  # row i, column a_i
    return ((q_values - wanted) ** 2).mean()  # mean over B x A entries


# --------------------------------------------------------------------------------------
# Taxi as tables: exact, vectorised, several seeds at once
# --------------------------------------------------------------------------------------


class TaxiTables(NamedTuple):
    """Taxi-v4's deterministic dynamics as arrays indexed [state, action]."""

    next_state: torch.Tensor  # (S, A) long
    reward: torch.Tensor  # (S, A) float
    terminated: torch.Tensor  # (S, A) float
    start_states: torch.Tensor  # (n_start,) long: the states reset() can return
    time_limit: int


def taxi_tables(env_id: str = "Taxi-v4") -> TaxiTables:
    """Read the transition table ``P`` of gymnasium's Taxi into tensors."""
    import gymnasium as gym

    env = gym.make(env_id)
    base = env.unwrapped
    n_states, n_actions = base.observation_space.n, base.action_space.n
    next_state = np.zeros((n_states, n_actions), dtype=np.int64)
    reward = np.zeros((n_states, n_actions), dtype=np.float32)
    terminated = np.zeros((n_states, n_actions), dtype=np.float32)
    for s in range(n_states):
        for a in range(n_actions):
            outcomes = base.P[s][a]
            if len(outcomes) != 1:
                raise ValueError(f"{env_id} is not deterministic at state {s}, action {a}")
            _, s2, r, done = outcomes[0]
            next_state[s, a], reward[s, a], terminated[s, a] = s2, r, float(done)
    starts = np.flatnonzero(base.initial_state_distrib > 0)
    limit = env.spec.max_episode_steps
    env.close()
    return TaxiTables(
        torch.from_numpy(next_state),
        torch.from_numpy(reward),
        torch.from_numpy(terminated),
        torch.from_numpy(starts),
        int(limit),
    )


class VectorTaxi:
    """Many independent taxis (any batch shape), stepped together with the time limit.

    Equivalent to gymnasium's Taxi with its TimeLimit wrapper and autoreset: after a step
    that terminates or truncates, that taxi starts a new episode.
    """

    def __init__(self, tables: TaxiTables, shape: tuple[int, ...], generator: torch.Generator):
        self.tables, self.shape, self.gen = tables, tuple(shape), generator
        self.state: torch.Tensor | None = None
        self.t = torch.zeros(self.shape, dtype=torch.long)

    def _random_starts(self, n: int) -> torch.Tensor:
        pick = torch.randint(len(self.tables.start_states), (n,), generator=self.gen)
        return self.tables.start_states[pick]

    def reset(self) -> torch.Tensor:
        self.state = self._random_starts(int(np.prod(self.shape))).reshape(self.shape)
        self.t.zero_()
        return self.state.clone()

    def step(self, actions: torch.Tensor):
        """Return (next_state, reward, terminated, truncated, state_after_autoreset)."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if tuple(actions.shape) != self.shape:
            raise ValueError(f"actions must be {self.shape}, got {tuple(actions.shape)}")
        tb = self.tables
        next_state = tb.next_state[self.state, actions]
        reward = tb.reward[self.state, actions]
        terminated = tb.terminated[self.state, actions]
        self.t += 1
        truncated = ((self.t >= tb.time_limit) & (terminated == 0)).float()
        done = (terminated + truncated) > 0
        self.state = next_state.clone()
        if done.any():
            self.state[done] = self._random_starts(int(done.sum()))
            self.t[done] = 0
        return next_state, reward, terminated, truncated, self.state.clone()


def one_hot(states: torch.Tensor, n_states: int) -> torch.Tensor:
    """(...,) long -> (..., n_states) float."""
    return F.one_hot(states, n_states).float()


def q_value_iteration(tables: TaxiTables, gamma: float, tol: float = 1e-6) -> torch.Tensor:
    """Q* of the deterministic Taxi by value iteration: (S, A), float64."""
    reward = tables.reward.double()
    cont = 1.0 - tables.terminated.double()
    q = torch.zeros_like(reward)
    for _ in range(10_000):
        new = reward + gamma * cont * q.max(dim=1).values[tables.next_state]
        if float((new - q).abs().max()) < tol:
            return new
        q = new
    raise RuntimeError("value iteration did not converge")


@torch.no_grad()
def greedy_returns(q_tables: torch.Tensor, tables: TaxiTables) -> torch.Tensor:
    """Exact mean undiscounted return of the greedy policy of each Q-table.

    ``q_tables`` is (n_seeds, S, A). Taxi and a greedy policy are deterministic, so one
    episode from every possible start state gives the exact expectation.
    """
    if q_tables.ndim == 2:
        q_tables = q_tables.unsqueeze(0)
    n_seeds = q_tables.shape[0]
    policy = q_tables.argmax(dim=2)  # (n_seeds, S)
    seeds = torch.arange(n_seeds).unsqueeze(1)  # (n_seeds, 1)
    state = tables.start_states.unsqueeze(0).repeat(n_seeds, 1)  # (n_seeds, n_start)
    total = torch.zeros(state.shape, dtype=torch.float64)
    alive = torch.ones(state.shape, dtype=torch.bool)
    for _ in range(tables.time_limit):
        action = policy[seeds, state]
        total += alive * tables.reward[state, action].double()
        alive &= tables.terminated[state, action] == 0
        state = tables.next_state[state, action]
        if not alive.any():
            break
    return total.mean(dim=1)


class LinearQRun(NamedTuple):
    """What :func:`train_linear_taxi` returns."""

    weights: torch.Tensor  # (n_seeds, S, A): the Q-tables
    steps: np.ndarray  # (n_points,) environment steps per seed at each evaluation
    returns: np.ndarray  # (n_seeds, n_points) exact greedy return
    actions_taken: np.ndarray  # (n_seeds, A) how often each action was taken in training


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def train_linear_taxi(
    loss_fn: LossFn = masked_q_loss,
    *,
    n_seeds: int = 5,
    n_envs: int = 64,
    n_updates: int = 1500,
    lr: float = 16.0,
    gamma: float = 0.99,
    epsilon: float = 0.1,
    semi_gradient: bool = True,
    truncation_is_terminal: bool = False,
    greedy_actions: Callable[[torch.Tensor], torch.Tensor] | None = None,
    eval_every: int = 100,
    seed: int = 0,
    tables: TaxiTables | None = None,
    progress: bool = True,
    seeds: Sequence[int] | None = None,
) -> LinearQRun:
    """Q-learning on Taxi with a linear Q-network on one-hot states, several seeds at once.

    Each seed has its own weight matrix W (S, A), so Q(s, .) = one_hot(s) @ W: a Q-table
    in the form of a network. Every update uses the ``n_envs`` transitions that the seed's
    taxis just made (a batch of B = n_envs), the target from the same network (no target
    network), ``loss_fn(q_values, actions, targets)`` and plain SGD. With the mean over
    the batch, each sample moves its Q(s, a) by about alpha = 2 * lr / B of its TD error.
    ``greedy_actions(q_values)`` maps Q (n_seeds, B, A) to the greedy actions (n_seeds, B)
    (default: argmax over the last axis); chapter 1 passes buggy versions of it.

    By default the ``n_seeds`` runs share one random generator, seeded with ``seed``.
    ``seeds`` replaces both: each seed in it is trained as its own run with its own
    generator, and the results are stacked in that order (the held-out seeds of the claims
    benchmark are trained this way).
    """
    from tqdm.auto import tqdm

    tables = taxi_tables() if tables is None else tables
    if seeds is not None:
        if len(seeds) == 0:
            raise ValueError("seeds is empty: give at least one seed, or leave it out")
        settings = dict(
            n_envs=n_envs, n_updates=n_updates, lr=lr, gamma=gamma, epsilon=epsilon,
            semi_gradient=semi_gradient, truncation_is_terminal=truncation_is_terminal,
            greedy_actions=greedy_actions, eval_every=eval_every, tables=tables,
        )  # fmt: skip
        runs = [
            train_linear_taxi(loss_fn, n_seeds=1, seed=int(s), progress=progress, **settings)
            for s in seeds
        ]
        return LinearQRun(
            torch.cat([run.weights for run in runs]),  # n runs of (1, 500, 6) -> (n, 500, 6)
            runs[0].steps,
            np.concatenate([run.returns for run in runs]),
            np.concatenate([run.actions_taken for run in runs]),
        )
    n_states, n_actions = tables.reward.shape
    gen = torch.Generator().manual_seed(seed)
    bound = 1.0 / np.sqrt(n_states)  # nn.Linear's default initialisation, without bias
    weights = (torch.rand(n_seeds, n_states, n_actions, generator=gen) * 2 - 1) * bound
    weights.requires_grad_(True)
    env = VectorTaxi(tables, (n_seeds, n_envs), gen)
    state = env.reset()  # (n_seeds, n_envs)
    steps, returns = [], []
    counts = torch.zeros(n_seeds, n_actions)

    seed_index = torch.arange(n_seeds).unsqueeze(1)  # (n_seeds, 1)

    def q_of(states: torch.Tensor) -> torch.Tensor:
        # one_hot(states) @ W, computed as the row lookup W[s]: the same numbers and the
        # same gradient (chapter 1 checks it), without multiplying by 499 zeros.
        return weights[seed_index, states]  # (n_seeds, B) -> (n_seeds, B, A)

    for update in tqdm(range(n_updates + 1), desc="Taxi updates", disable=not progress):
        if update % eval_every == 0:
            steps.append(update * n_envs)
            returns.append(greedy_returns(weights.detach(), tables).numpy())
        if update == n_updates:
            break
        # Act: epsilon-greedy on every taxi of every seed.
        q_values = q_of(state)  # (n_seeds, B, A), with grad: reused for the loss below
        if greedy_actions is None:
            greedy = q_values.detach().argmax(dim=2)  # (n_seeds, B)
        else:
            greedy = greedy_actions(q_values.detach())
        explore = torch.rand(greedy.shape, generator=gen) < epsilon
        random_actions = torch.randint(n_actions, greedy.shape, generator=gen)
        actions = torch.where(explore, random_actions, greedy)
        counts += F.one_hot(actions, n_actions).sum(dim=1)
        next_state, reward, terminated, truncated, state = env.step(actions)
        stop = terminated + truncated if truncation_is_terminal else terminated
        # Learn: one SGD step per seed, each on its own batch of n_envs transitions.
        if semi_gradient:
            with torch.no_grad():
                next_q = q_of(next_state)  # (n_seeds, B, A)
        else:
            next_q = q_of(next_state)  # the "full gradient": the target keeps its graph
        loss = 0.0
        for k in range(n_seeds):  # independent weights: the sum's gradient is per seed
            targets = td_target(
                reward[k], next_q[k], stop[k], truncated[k], gamma, detach=semi_gradient
            )
            loss = loss + loss_fn(q_values[k], actions[k], targets)
        (grad,) = torch.autograd.grad(loss, weights)
        with torch.no_grad():
            weights -= lr * grad  # plain SGD
    return LinearQRun(weights.detach(), np.array(steps), np.stack(returns, 1), counts.numpy())


# --------------------------------------------------------------------------------------
# The same task for the library's DQN
# --------------------------------------------------------------------------------------

# Measured on held-out seeds in benchmarks/claims.py (chapter 1's rows). A linear network
# on one-hot states is a Q-table; Adam moves each entry by about lr per update whatever its
# error, so a large lr decaying to 0 gets both speed and a precise final table.
TAXI_DQN_RECIPE: dict[str, Any] = dict(
    env_id="Taxi-v4",
    num_envs=32,
    total_steps=48_000,
    hidden=(),  # no hidden layer: Q(s, .) = one_hot(s) @ W + b
    lr=0.1,
    lr_end=0.0,
    batch_size=256,
    learning_starts=1_000,
    train_every=8,  # 4 updates per step of the 32 taxis
    target_update_every=10,
    eps_fraction=0.3,
    eps_end=0.05,
    max_grad_norm=None,
    log_every=4_000,
    eval_every=0,
    final_eval_episodes=20,
)


def taxi_dqn_config(**overrides: Any):
    """The DQN ``Config`` for Taxi-v4 seen through ``sineroad.OneHotObservation``."""
    from sineroad import OneHotObservation

    from rldebug.agents.dqn import Config

    return Config(**{**TAXI_DQN_RECIPE, "wrappers": (OneHotObservation,), **overrides})


@torch.no_grad()
def q_table_of(q_net: torch.nn.Module, n_states: int = 500) -> torch.Tensor:
    """The (S, A) table of Q-values a network gives on every one-hot state."""
    return q_net(torch.eye(n_states)).double()  # (S, S) one-hot rows -> (S, A)
