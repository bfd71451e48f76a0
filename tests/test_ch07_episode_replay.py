"""Episode replay: sequences never cross an episode boundary, padding is masked."""

from __future__ import annotations

import numpy as np
import pytest

from rldebug.episode_replay import EpisodeReplay, gather_sequences, stack_batches, to_torch


def _filled(lengths, capacity=8, max_len=12, state_dim=2):
    replay = EpisodeReplay(capacity, max_len, obs_dim=1, state_dim=state_dim, seed=0)
    for e, n in enumerate(lengths):
        t = np.arange(n + 1)
        replay.add_episode(
            obs=(1000 * (e + 1) + t)[:, None],  # obs encodes (episode, step)
            actions=t[:-1] % 3,
            rewards=1000.0 * (e + 1) + t[:-1],
            terminated=(t[:-1] == n - 1) * (e % 2),
            states=np.stack([1000.0 * (e + 1) + t, -t], axis=1),
        )
    return replay


def test_sequences_never_cross_episode_boundaries():
    replay = _filled([5, 12, 3, 9])
    for burn_in in (0, 4):
        batch = replay.sample(200, seq_len=6, burn_in=burn_in)
        obs = batch.obs[..., 0]  # (B, L + 1)
        for b in range(200):
            real = obs[b][obs[b] != 0]
            episodes = np.unique(real // 1000)
            assert len(episodes) == 1, "a sequence mixes two episodes"
            steps = real % 1000
            assert np.all(np.diff(steps) == 1), "the steps of a sequence are consecutive"
            assert batch.mask[b].sum() == len(real) - 1 or batch.mask[b].sum() == len(real)
            rewards = batch.rewards[b][batch.mask[b]]
            assert np.all(rewards // 1000 == episodes[0])
            assert np.all(batch.rewards[b][~batch.mask[b]] == 0)


def test_next_observation_is_one_position_later():
    replay = _filled([10])
    batch = replay.sample(50, seq_len=4, burn_in=2)
    m = batch.mask
    step_of_reward = batch.rewards % 1000  # reward of step t is 1000 + t
    obs_before = batch.obs[:, :-1, 0] % 1000
    obs_after = batch.obs[:, 1:, 0] % 1000
    assert np.all(obs_before[m] == step_of_reward[m])
    assert np.all(obs_after[m] == step_of_reward[m] + 1)


def test_episode_start_initial_state_and_front_padding():
    replay = _filled([10, 10])
    idx = np.array([0, 1, 1])
    batch = replay.sequences(idx, first_trained=np.array([0, 2, 7]), seq_len=3, burn_in=4)
    # sequence 0: burn-in entirely before the episode, which starts at position 4
    assert batch.episode_start[0].tolist() == [False] * 4 + [True, False, False, False]
    assert not batch.mask[0, :4].any() and batch.mask[0, 4:].all()
    assert np.all(batch.initial_state[0] == 0)
    # sequence 2 starts at step 3 of episode 1: the stored state before obs[3]
    assert not batch.episode_start[2].any()
    assert batch.initial_state[2].tolist() == [2003.0, -3.0]


def test_stale_data_after_a_short_episode_is_never_read():
    replay = _filled([12, 12], capacity=2)
    replay.add_episode(np.full((3, 1), 7.0), [0, 1], [1.0, 1.0], [0.0, 0.0], np.zeros((3, 2)))
    batch = gather_sequences(
        replay.obs,
        replay.actions,
        replay.rewards,
        replay.terminated,
        replay.lengths,
        np.array([0]),
        np.array([0]),
        6,
    )  # slot 0 now holds the 2-step episode, followed by the old 12-step one
    assert batch.obs[0, :, 0].tolist() == [7, 7, 7, 0, 0, 0, 0]
    assert batch.mask[0].tolist() == [True, True, False, False, False, False]


def test_uniform_over_steps_and_capacity():
    replay = _filled([2, 12], capacity=2)
    idx, _ = replay.sample_steps(20_000)
    assert abs(np.mean(idx == 1) - 12 / 14) < 0.02  # episodes drawn in proportion to length
    replay = _filled([4, 4, 4], capacity=2)
    assert len(replay) == 2 and replay.n_steps == 8


def test_stack_and_torch():
    a, b = _filled([5]).sample(3, 4, 1), _filled([6]).sample(3, 4, 1)
    both = to_torch(stack_batches([a, b]))
    assert both.obs.shape == (2, 3, 6, 1) and both.mask.dtype.is_floating_point is False
    assert both.initial_state.shape == (2, 3, 2)


def test_bad_input_raises():
    replay = EpisodeReplay(4, 5, obs_dim=1, state_dim=2)
    with pytest.raises(ValueError, match="empty"):
        replay.sample(2, 3)
    with pytest.raises(ValueError, match="T \\+ 1"):
        replay.add_episode(np.zeros((3, 1)), [0, 1, 2], [0, 0, 0], [0, 0, 0], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="max_len"):
        replay.add_episode(np.zeros((7, 1)), [0] * 6, [0] * 6, [0] * 6, np.zeros((7, 2)))
    with pytest.raises(ValueError, match="states"):
        replay.add_episode(np.zeros((3, 1)), [0, 1], [0, 0], [0, 0])
