"""Tests for the chapter 6 agent: rldebug.agents.reinforce (fast, CPU)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rldebug.agents.reinforce import (
    OBS_SCALE,
    CartPoleVec,
    Config,
    GRUCellPolicy,
    GRUPolicy,
    SeedBatchedGRUPolicy,
    collect_episodes,
    episode_log_probs,
    evaluate,
    masked_returns,
    per_step_log_probs,
    reinforce_loss,
    train,
)

torch.set_num_threads(1)


def test_novel_env_hides_the_velocities():
    full = CartPoleVec(3, "CartPole-v1", normalize=False)
    novel = CartPoleVec(3, "CartPoleNoVel-v1", normalize=False)
    obs_full, obs_novel = full.reset(seed=5), novel.reset(seed=5)
    assert obs_novel.shape == (3, 2)
    np.testing.assert_array_equal(obs_novel, obs_full[:, [0, 2]])
    actions = np.array([0, 1, 1])
    np.testing.assert_array_equal(novel.step(actions)[0], full.step(actions)[0][:, [0, 2]])


def test_novel_env_matches_the_registered_id():
    import sineroad  # noqa: F401  (registers CartPoleNoVel-v1)

    single = gym.make("CartPoleNoVel-v1")
    assert single.observation_space.shape == (CartPoleVec(1, "CartPoleNoVel-v1").obs_dim,)


def test_env_rejects_bad_use():
    env = CartPoleVec(2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.array([0, 1]))
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="0 or 1"):
        env.step(np.array([0, 2]))
    with pytest.raises(ValueError, match="env_id"):
        CartPoleVec(2, "Pendulum-v1")


def test_gru_layer_and_unrolled_cell_are_the_same_model():
    torch.manual_seed(0)
    layer = GRUPolicy(3, 2, 8)
    cell = GRUCellPolicy.from_gru_policy(layer)
    obs = torch.randn(4, 7, 3)
    torch.testing.assert_close(layer(obs), cell(obs), rtol=0, atol=1e-6)


def test_seed_batched_policy_is_independent_gru_policies():
    torch.manual_seed(0)
    singles = [GRUPolicy(2, 2, 6) for _ in range(3)]
    batched = SeedBatchedGRUPolicy(singles)
    obs = torch.randn(3 * 2, 5, 2)  # 3 seeds x 2 episodes, seed-major
    logits = batched(obs)
    for i, single in enumerate(singles):
        torch.testing.assert_close(logits[2 * i : 2 * i + 2], single(obs[2 * i : 2 * i + 2]))
        torch.testing.assert_close(batched.policy(i)(obs[:2]), single(obs[:2]))
    # A loss on seed 1's rows moves only seed 1's parameters.
    logits[2:4].sum().backward()
    for p in batched.parameters():
        assert p.grad[0].abs().max() == 0 and p.grad[2].abs().max() == 0
        assert p.grad[1].abs().max() > 0


def test_seed_batched_step_matches_forward():
    batched = SeedBatchedGRUPolicy.create([0, 1], 2, 2, 5)
    obs = torch.randn(4, 6, 2)
    h = batched.initial_state(4)
    steps = []
    for t in range(6):
        out, h = batched.step(obs[:, t], h)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, dim=1), batched(obs))


def test_seed_batched_rejects_uneven_rows():
    batched = SeedBatchedGRUPolicy.create([0, 1], 2, 2, 5)
    with pytest.raises(ValueError, match="split evenly"):
        batched(torch.randn(3, 4, 2))


@pytest.mark.parametrize("make", [lambda: GRUPolicy(4, 2, 8), lambda: GRUCellPolicy(4, 2, 8)])
def test_rollout_and_training_agree_only_for_the_whole_episode_unroll(make):
    torch.manual_seed(1)
    policy = make()
    with torch.no_grad():  # stronger recurrence than the initialisation: the past matters
        for name, p in policy.named_parameters():
            if "hh" in name:
                p.mul_(4)
    batch = collect_episodes(policy, CartPoleVec(6), seed=0)
    assert batch.obs.shape[:2] == batch.mask.shape == batch.actions.shape
    lengths = batch.mask.sum(1)
    assert int(lengths.max()) == batch.mask.shape[1]
    # The mask is a prefix of ones: one episode, then padding.
    torch.testing.assert_close(batch.mask.cummin(dim=1).values, batch.mask)
    with torch.no_grad():
        good = episode_log_probs(policy, batch.obs, batch.actions, batch.mask)
        bad = per_step_log_probs(policy, batch.obs, batch.actions, batch.mask)
    torch.testing.assert_close(good, batch.log_probs * batch.mask, rtol=0, atol=1e-5)
    assert (bad - batch.log_probs * batch.mask).abs().max() > 1e-3


def test_memoryless_rollout_agrees_with_the_per_step_pass():
    torch.manual_seed(2)
    policy = GRUCellPolicy(4, 2, 8)
    batch = collect_episodes(policy, CartPoleVec(5), carry_state=False, seed=0)
    with torch.no_grad():
        per_step = per_step_log_probs(policy, batch.obs, batch.actions, batch.mask)
    torch.testing.assert_close(per_step, batch.log_probs * batch.mask, rtol=0, atol=1e-5)


def test_masked_returns_restart_at_the_episode_end():
    rewards = torch.tensor([[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    returns = masked_returns(rewards, mask, 0.5)
    torch.testing.assert_close(returns[0], torch.tensor([1.5, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(returns[1], torch.tensor([1.875, 1.75, 1.5, 1.0]))


def test_reinforce_loss_per_seed_is_the_sum_of_single_losses():
    torch.manual_seed(3)
    log_probs, rewards = -torch.rand(2, 3, 6), torch.rand(2, 3, 6)
    mask = (torch.arange(6) < torch.randint(1, 7, (2, 3, 1))).float()
    mask[:, 0] = 1.0
    both = reinforce_loss(log_probs, rewards, mask, 0.9)
    single = sum(reinforce_loss(log_probs[i], rewards[i], mask[i], 0.9) for i in range(2))
    torch.testing.assert_close(both, single)
    with pytest.raises(ValueError, match="same shape"):
        reinforce_loss(log_probs, rewards[:, :, :5], mask, 0.9)


def test_training_pass_rejects_mismatched_shapes():
    policy = GRUPolicy(2, 2, 4)
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        episode_log_probs(
            policy, torch.randn(2, 5, 2), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 5)
        )


def test_train_smoke_and_history_shapes():
    policy = SeedBatchedGRUPolicy.create([0, 1], 2, 2, 8)
    config = Config(env_id="CartPoleNoVel-v1", episodes=4, updates=3, eval_every=2, eval_episodes=2)
    history = train(policy, config, seed=0)
    assert history.train_return.shape == (3, 2) and history.steps.shape == (3, 2)
    assert list(history.eval_update) == [2, 3] and history.eval_return.shape == (2, 2)
    assert not history.solved.any()
    assert evaluate(policy, "CartPoleNoVel-v1", 2).shape == (2,)
    with pytest.raises(ValueError, match="unroll"):
        train(policy, Config(unroll="sometimes"))


def test_a_solved_seed_is_frozen():
    policy = SeedBatchedGRUPolicy.create([0, 1], 2, 2, 8)
    config = Config(
        env_id="CartPoleNoVel-v1",
        episodes=4,
        updates=4,
        eval_every=1,
        eval_episodes=2,
        solved_at=0.0,
    )  # every seed "solves" at the first eval
    history = train(policy, config, seed=0)
    assert history.solved.all() and history.train_return.shape == (1, 2)


def test_normalize_divides_by_the_termination_limits():
    raw = CartPoleVec(2, "CartPoleNoVel-v1", normalize=False).reset(seed=3)
    scaled = CartPoleVec(2, "CartPoleNoVel-v1").reset(seed=3)
    np.testing.assert_allclose(scaled, raw / OBS_SCALE[[0, 2]], rtol=1e-6)


def test_two_layer_gru_and_stacked_cells_are_the_same_model():
    torch.manual_seed(4)
    layer = GRUPolicy(4, 2, 6, num_layers=2)
    cells = GRUCellPolicy.from_gru_policy(layer)
    obs = torch.randn(3, 9, 4)
    torch.testing.assert_close(layer(obs), cells(obs), rtol=0, atol=1e-6)
    h_layer, h_cells = layer.initial_state(3), cells.initial_state(3)
    assert h_layer.shape == h_cells.shape == (2, 3, 6)
    with pytest.raises(ValueError, match="one-layer"):
        SeedBatchedGRUPolicy([layer])


def test_same_weights_and_seed_give_the_same_training_run():
    torch.manual_seed(5)
    layer = GRUPolicy(4, 2, 8)
    twin = GRUCellPolicy.from_gru_policy(layer)
    config = Config(episodes=4, updates=3, eval_every=3, eval_episodes=2)
    a, b = train(layer, config, seed=1), train(twin, config, seed=1)
    np.testing.assert_array_equal(a.steps, b.steps)
