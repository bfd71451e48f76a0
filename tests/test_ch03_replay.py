"""The replay buffer, rollout sampling and the evaluation helpers of chapter 3."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rldebug.nets import q_network
from rldebug.replay import ReplayBuffer, Transitions, sample_from_rollout, to_torch
from rldebug.training import as_vector_env, evaluate, greedy_policy, linear_schedule, make_vec_env


def _add(buffer, start, n, obs_dim=3):
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(obs_dim, 1)
    buffer.add(obs, np.arange(n) % 2, np.ones(n), obs + 1, np.zeros(n), np.zeros(n))


def test_buffer_wraps_around_and_keeps_pairs():
    buffer = ReplayBuffer(5, (3,), seed=0)
    _add(buffer, 0, 3)
    _add(buffer, 3, 4)  # 7 added into 5 slots: 0 and 1 are overwritten
    assert len(buffer) == 5 and buffer.pos == 2
    assert sorted(buffer.obs[:, 0]) == [2, 3, 4, 5, 6]
    batch = buffer.sample(200)
    assert isinstance(batch, Transitions)
    assert batch.obs.shape == (200, 3) and batch.actions.shape == (200,)
    np.testing.assert_array_equal(batch.next_obs, batch.obs + 1)  # s' stays paired with s
    assert set(batch.obs[:, 0]) == {2, 3, 4, 5, 6}  # uniform over everything stored


def test_sample_with_replacement_from_a_small_buffer():
    buffer = ReplayBuffer(100, (2,))
    _add(buffer, 0, 3, obs_dim=2)
    assert buffer.sample(64).obs.shape == (64, 2)


def test_buffer_errors_are_clear():
    buffer = ReplayBuffer(10, (4,))
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(8)
    with pytest.raises(ValueError, match=r"obs must have shape \(N, 4\)"):
        buffer.add(np.zeros(4), [0], [0.0], np.zeros(4), [0], [0])
    with pytest.raises(ValueError, match="actions must have shape"):
        buffer.add(np.zeros((2, 4)), [0], [0.0, 0.0], np.zeros((2, 4)), [0, 0], [0, 0])
    with pytest.raises(ValueError, match="next_obs"):
        buffer.add(np.zeros((2, 4)), [0, 0], [0, 0], np.zeros((2, 3)), [0, 0], [0, 0])
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0, (4,))


def test_to_torch_dtypes_and_mask():
    buffer = ReplayBuffer(10, (2,))
    buffer.add(np.zeros((2, 2)), [0, 1], [1.0, 2.0], np.ones((2, 2)), [1.0, 0.0], [0.0, 1.0])
    batch = to_torch(buffer.sample(4))
    assert batch.actions.dtype == torch.int64 and batch.obs.dtype == torch.float32
    assert torch.equal(batch.bootstrap_mask, 1.0 - batch.terminated)


def test_sample_from_rollout_skips_autoreset_steps():
    T, N = 6, 2
    obs = np.arange((T + 1) * N, dtype=np.float32).reshape(T + 1, N, 1)
    terminated = np.zeros((T, N), dtype=bool)
    truncated = np.zeros((T, N), dtype=bool)
    terminated[1, 0] = True  # step 2 of env 0 is its autoreset step
    truncated[3, 1] = True  # step 4 of env 1 is its autoreset step
    batch = sample_from_rollout(
        obs, np.zeros((T, N), int), np.ones((T, N)), terminated, truncated, 500,
        np.random.default_rng(0),
    )  # fmt: skip
    np.testing.assert_array_equal(batch.next_obs, batch.obs + N)  # obs[t + 1] of the same env
    assert obs[2, 0, 0] not in batch.obs and obs[4, 1, 0] not in batch.obs
    assert len(np.unique(batch.obs)) == T * N - 2


def test_linear_schedule():
    assert linear_schedule(1.0, 0.1, 10, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 10, 5) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 10, 50) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0, 0) == 0.1


def test_make_vec_env_modes():
    native = make_vec_env("CartPole-v1", 3)
    assert native.num_envs == 3 and type(native).__name__ == "CartPoleVectorEnv"
    stacked = make_vec_env(
        "CartPole-v1", 2, wrappers=[lambda e: gym.wrappers.FrameStackObservation(e, 3)]
    )
    assert stacked.single_observation_space.shape == (3, 4)
    with pytest.raises(ValueError, match="sync"):
        make_vec_env(
            "CartPole-v1", 2, wrappers=[lambda e: e], vectorization_mode="vector_entry_point"
        )
    single = as_vector_env(gym.make("CartPole-v1"))
    assert single.num_envs == 1
    with pytest.raises(TypeError):
        as_vector_env("CartPole-v1")


def test_evaluate_is_seeded_and_vectorised():
    torch.manual_seed(0)
    net = q_network((4,), 2, hidden=(8,))
    envs = make_vec_env("CartPole-v1", 4)
    a = evaluate(greedy_policy(net), envs, 6, seed=3)  # two waves of 4 envs
    b = evaluate(greedy_policy(net), envs, 6, seed=3)
    assert a.returns.shape == (6,) and a.first_obs.shape == (6, 4)
    np.testing.assert_array_equal(a.returns, b.returns)
    np.testing.assert_array_equal(a.returns, a.lengths)  # CartPole: reward 1 per step
    g = (1 - 0.99**a.lengths) / (1 - 0.99)
    np.testing.assert_allclose(a.discounted_returns, g, rtol=1e-6)
    other = evaluate(greedy_policy(net), envs, 6, seed=4)
    assert not np.array_equal(a.first_obs, other.first_obs)
