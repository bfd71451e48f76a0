"""Chapter 7's experiments around the DRQN of :mod:`rldebug.agents.drqn`.

* :data:`SINE_ROAD_RECIPE`: the DRQN for the question's own road, ``SineRoad-v0``;
* :func:`final_returns`: train and keep only the final greedy returns (the mistakes chart);
* :func:`q_from_episode_start`, :func:`training_pass_q`, :func:`q_value_discrepancy`: does
  the training pass see the Q-values the actor saw (R2D2's Q-value discrepancy)?
* :func:`memoryless_dqn`: the chapter's baselines, chapter 3's DQN with and without frame
  stacking, given the DRQN's budget, evaluation roads and inputs.

Every probe here takes one seed's plain :class:`~rldebug.agents.drqn.QNetwork` (for a
trained batch of seeds, ``result.q_net.seed(k)``) and that seed's replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rldebug.agents import dqn
from rldebug.agents.drqn import Config, QNetwork, train, unpack_state
from rldebug.episode_replay import EpisodeReplay, SequenceBatch, to_torch

__all__ = [
    "SINE_ROAD_RECIPE",
    "final_returns",
    "memoryless_dqn",
    "q_from_episode_start",
    "q_value_discrepancy",
    "training_pass_q",
]

# The DRQN for SineRoad-v0 (position and time on the loop observed: a Markov observation),
# ``drqn.Config(**SINE_ROAD_RECIPE)``. The Config defaults are the flickering road's; on this
# road their GRU, reading the observation straight, learns slowly. Changed, and measured in
# benchmarks/ch07_sine_road.py: a Linear + ReLU encoder before the cell (the main fix: the
# Q-values bend sharply in position and time, which the cell's gates alone learn slowly),
# then chapter 4's DQN settings for this road where they apply (gamma, learning rate,
# number of environments, exploration) and four times as many updates per step.
SINE_ROAD_RECIPE: dict[str, Any] = dict(
    env_id="SineRoad-v0",
    prev_action=False,  # the question's inputs, and chapter 4's DQN's: the observation only
    encoder=128,
    num_envs=8,
    total_steps=16_000,
    gamma=0.8,  # as chapter 4's DQN: a step's reward matters for about 5 steps
    lr=5e-3,
    train_every=8,  # one update of 64 sequences every 8 steps
    target_update_every=100,
    learning_starts=1_000,
    eps_fraction=0.1875,  # epsilon reaches eps_end after 3,000 steps, as in chapter 4
    eps_end=0.02,
    eval_every=1_000,
)


def final_returns(config: Config | None = None, seeds: Sequence[int] = (0,)) -> np.ndarray:
    """Train with :func:`~rldebug.agents.drqn.train`; return only the (S,) final returns.

    Small to send back from a worker process (the full result holds every replay). Only
    the final greedy evaluation runs: the curve would be thrown away, and on the sine road
    the evaluations cost about a third of a run (they use their own roads, so training is
    the same).
    """
    cfg = config or Config()
    return train(replace(cfg, eval_every=cfg.total_steps), seeds).final_return


def q_from_episode_start(
    q_net: QNetwork,
    replay: EpisodeReplay,
    episode_idx: np.ndarray,
    first: np.ndarray,
    seq_len: int,
) -> torch.Tensor:
    """Q-values (B, T, A) of steps ``first ... first + T - 1`` of each episode ``episode_idx``,
    from unrolling ``q_net`` over the whole episode from its first step: the values an
    actor with these weights computed while playing it."""
    obs = torch.as_tensor(replay.obs[episode_idx])  # (B, M+1, D)
    with torch.no_grad():
        q_all, _ = q_net(obs)  # (B, M+1, A): each episode unrolled from a zero state
    pos = np.clip(first[:, None] + np.arange(seq_len)[None, :], 0, obs.shape[1] - 1)  # (B, T)
    return q_all[np.arange(len(first))[:, None], pos]  # (B, T, A)


def training_pass_q(
    q_net: QNetwork, batch: SequenceBatch, burn_in: int, *, stored_state: bool = True
) -> torch.Tensor:
    """The Q-values (B, T, A) the loss computes for the trained steps of ``batch``
    (one seed's torch batch): from the stored state (or zeros), after ``burn_in`` steps."""
    init = unpack_state(batch.initial_state, q_net)
    if not stored_state:
        init = q_net.initial_state(batch.actions.shape[0])
    with torch.no_grad():
        _, h = q_net(batch.obs[:, :burn_in], init, batch.episode_start[:, :burn_in])
        q, _ = q_net(batch.obs[:, burn_in:-1], h, batch.episode_start[:, burn_in:-1])
    return q


def q_value_discrepancy(
    q_net: QNetwork,
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

    For sequences sampled from ``replay``, compare the Q-values of the trained steps
    computed as the loss does (initial state: stored or zero, then ``burn_in`` steps) with
    the Q-values from unrolling the current network over the whole episode from its first
    step (the state the current actor would have had). Returns the mean |ΔQ| / mean |Q|
    over the valid trained steps, for each burn-in. ``recent_episodes=k`` samples only the
    ``k`` episodes added last (the freshest stored states); the default samples the whole
    replay, as training does.
    """
    if not isinstance(q_net, QNetwork):
        raise TypeError(
            f"q_value_discrepancy takes one seed's QNetwork, got {type(q_net).__name__}: "
            "for a batch of seeds pass result.q_net.seed(k)"
        )
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
        batch = to_torch(replay.sequences(episode_idx, first, seq_len, burn_in))
        q_train = training_pass_q(q_net, batch, burn_in, stored_state=stored_state)  # (B, T, A)
        mask = batch.mask[:, burn_in:]  # (B, T)
        diff = (q_train - q_true).abs().mean(-1)[mask]
        out.append(float(diff.mean() / q_true.abs().mean(-1)[mask].mean()))
    return np.array(out)


def memoryless_dqn(
    env_id: str = "SineRoadFlicker-v0",
    seeds: Sequence[int] = (0,),
    *,
    frame_stack: int = 0,
    like: Config | None = None,
    prev_action: bool | None = None,
    progress: bool = False,
    **overrides: Any,
) -> dqn.Result:
    """Chapter 3's DQN on ``env_id`` with the budget, evaluation and inputs of a DRQN config.

    Same environment steps, discount, number of environments, exploration schedule and
    evaluation roads as ``like`` (default :class:`~rldebug.agents.drqn.Config`), and the
    same inputs: the observation plus the previous action one-hot when ``like.prev_action``
    (``prev_action`` overrides it), so that a comparison with the DRQN differs in memory
    only. ``frame_stack=k`` then stacks the last ``k`` of those inputs (gymnasium's
    ``FrameStackObservation``): the last k observations and the k actions before them.
    Returns the :class:`~rldebug.agents.dqn.Result` of all ``seeds``.
    """
    from sineroad.wrappers import PrevActionRewardObservation

    cfg = like or Config()
    with_action = cfg.prev_action if prev_action is None else prev_action
    wrappers = ()
    if with_action:  # zeros at an episode's first step, like the DRQN's agent_input
        wrappers += (partial(PrevActionRewardObservation, reward=False),)
    if frame_stack:
        wrappers += (partial(gym.wrappers.FrameStackObservation, stack_size=frame_stack),)
    settings = dict(
        env_id=env_id,
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
    return dqn.train(dqn.Config(**settings), seeds, progress=progress)
