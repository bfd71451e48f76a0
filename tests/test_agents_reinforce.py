"""rldebug.agents.reinforce: many seeds at once equal each seed alone; GRU and LSTM states."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

import rldebug
from rldebug.agents import reinforce as rf
from rldebug.results import SeedsResult
from rldebug.seedbatch import SeedBatch

rldebug.configure_torch(1)

TINY = rf.Config(  # a small learning rate keeps the episodes short: a test of seconds
    env_id="CartPoleNoVel-v1",
    hidden=8,
    episodes=3,
    updates=100,
    lr=1e-3,
    eval_every=10,
    eval_episodes=2,
)


@pytest.mark.parametrize("unroll", ["episode", "per_step"])
def test_seed_k_of_a_batched_run_is_the_run_on_seed_k_alone(unroll):
    config = dataclasses.replace(TINY, unroll=unroll, carry_state=unroll == "episode")
    batched = rf.train(config, seeds=[0, 1, 2])
    assert isinstance(batched, SeedsResult)
    assert batched.losses.shape == (config.updates, 3)
    assert batched.eval_returns.shape == (config.updates // 10, 3)
    for k, seed in enumerate([0, 1, 2]):
        alone = rf.train(config, seeds=[seed])
        np.testing.assert_allclose(batched.losses[:, k], alone.losses[:, 0], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(batched.eval_returns[:, k], alone.eval_returns[:, 0])
        np.testing.assert_array_equal(batched.steps[:, k], alone.steps[:, 0])
    assert len({tuple(batched.train_returns[:, k]) for k in range(3)}) == 3  # not one stream


def test_the_policy_has_nn_grus_weights_and_values():
    torch.manual_seed(3)
    policy = rf.Policy(4, 2, hidden=6, num_layers=2)
    torch.manual_seed(3)
    gru, head = nn.GRU(4, 6, num_layers=2, batch_first=True), nn.Linear(6, 2)
    assert torch.equal(policy.cells[1].weight_hh, gru.weight_hh_l1)
    assert torch.equal(policy.head.weight, head.weight)
    obs = torch.randn(3, 7, 4)
    torch.testing.assert_close(policy(obs), head(gru(obs)[0]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_step_by_step_equals_the_whole_episode_unroll(cell):
    torch.manual_seed(0)
    policy = rf.Policy(2, 2, hidden=5, num_layers=2, cell=cell, obs_scale=[2.0, 0.5])
    obs = torch.randn(3, 6, 2)
    state = policy.initial_state(3)
    if cell == "lstm":
        assert isinstance(state, tuple) and state[0].shape == state[1].shape == (2, 3, 5)
    else:
        assert state.shape == (2, 3, 5)
    logits = []
    for t in range(6):
        out, state = policy.step(obs[:, t], state)
        logits.append(out)
    torch.testing.assert_close(torch.stack(logits, dim=1), policy(obs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rollout_and_training_pass_agree_only_for_the_whole_episode_unroll(cell):
    torch.manual_seed(1)
    policy = rf.Policy(4, 2, hidden=8, cell=cell, obs_scale=rf.OBS_SCALE)
    with torch.no_grad():  # stronger recurrence than the initialisation: the past matters
        policy.cells[0].weight_hh.mul_(4)
    batch = rf.play_episodes(policy, "CartPole-v1", 6, seed=0)
    assert batch.obs.shape[:2] == batch.mask.shape == batch.actions.shape
    torch.testing.assert_close(batch.mask.cummin(dim=1).values, batch.mask)  # 1s, then 0s
    assert int(batch.mask.sum(1).max()) == batch.mask.shape[1]
    with torch.no_grad():
        good = rf.episode_log_probs(policy, batch.obs, batch.actions, batch.mask)
        bad = rf.per_step_log_probs(policy, batch.obs, batch.actions, batch.mask)
    torch.testing.assert_close(good, batch.log_probs * batch.mask, rtol=0, atol=1e-5)
    assert (bad - batch.log_probs * batch.mask).abs().max() > 1e-3
    memoryless = rf.play_episodes(policy, "CartPole-v1", 5, seed=0, carry_state=False)
    with torch.no_grad():
        per_step = rf.per_step_log_probs(
            policy, memoryless.obs, memoryless.actions, memoryless.mask
        )
    torch.testing.assert_close(per_step, memoryless.log_probs * memoryless.mask, atol=1e-5, rtol=0)


def test_the_lstm_agent_trains_and_keeps_h_and_c():
    config = dataclasses.replace(TINY, cell="lstm", num_layers=2, updates=4, eval_every=2)
    result = rf.train(config, seeds=[0, 1])
    assert np.isfinite(result.losses).all() and result.eval_returns.shape == (2, 2)
    plain = result.policy.seed(1)
    assert isinstance(plain.initial_state(1), tuple)
    np.testing.assert_allclose(
        rf.evaluate(result.policy, "CartPoleNoVel-v1", 3, seed=7)[1],
        rf.evaluate(plain, "CartPoleNoVel-v1", 3, seed=7)[0],
    )


def test_a_solved_seed_is_frozen():
    probe = rf.train(dataclasses.replace(TINY, updates=1, eval_every=1, solved_at=1e9), [0, 1])
    first = probe.eval_returns[0]  # each seed's evaluation after its first update
    assert first[0] != first[1]
    bar = first.max()  # only the better seed "solves" at the first evaluation
    config = dataclasses.replace(TINY, updates=4, eval_every=1, solved_at=bar)
    result = rf.train(config, seeds=[0, 1])
    winner, other = int(first.argmax()), int(first.argmin())
    assert result.solved[winner] and result.train_returns.shape == (4, 2)
    assert np.isnan(result.train_returns[1:, winner]).all()  # plays no more training episodes
    assert result.steps[-1, winner] == result.steps[0, winner]
    frozen, after_one = result.policy.seed(winner), probe.policy.seed(winner)
    for a, b in zip(frozen.parameters(), after_one.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the weights that solved it
    assert not torch.equal(
        result.policy.seed(other).head.weight, probe.policy.seed(other).head.weight
    )
    everyone = rf.train(dataclasses.replace(config, solved_at=0.0), seeds=[0, 1])
    assert everyone.solved.all() and everyone.train_returns.shape == (1, 2)  # all stop


def test_result_shapes_and_evaluate():
    config = dataclasses.replace(TINY, updates=3, eval_every=2)
    result = rf.train(config, seeds=[4, 5])
    assert result.seeds == [4, 5] and list(result.eval_steps) == [2, 3]
    assert result.eval_env_steps.shape == (2, 2) and result.solved_steps.shape == (2,)
    np.testing.assert_array_equal(result.final_return, result.eval_returns[-1])
    assert isinstance(result.policy, SeedBatch)
    assert rf.evaluate(result.policy, "CartPoleNoVel-v1", 2, seed=[1, 2]).shape == (2,)


def test_observations_are_scaled_by_the_termination_limits():
    policy = rf.make_policy(rf.NOVEL_CONFIG)
    np.testing.assert_allclose(policy.obs_scale.numpy(), [2.4, 12 * 2 * np.pi / 360], rtol=1e-6)
    twin = rf.Policy(2, 2, hidden=32)
    twin.load_state_dict({**policy.state_dict(), "obs_scale": torch.ones(2)})
    obs = torch.randn(2, 5, 2)
    torch.testing.assert_close(policy(obs), twin(obs / policy.obs_scale))


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="unroll"):
        rf.train(rf.Config(unroll="sometimes"))
    with pytest.raises(ValueError, match="cell"):
        rf.train(rf.Config(cell="rnn"))
    with pytest.raises(ValueError, match="episodes"):
        rf.train(rf.Config(episodes=0))
    with pytest.raises(ValueError, match="seeds"):
        rf.train(rf.Config(), seeds=[])
    with pytest.raises(ValueError, match="env_id"):
        rf.train(rf.Config(env_id="Pendulum-v1"))
    policy = rf.Policy(2, 2, 4)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        rf.episode_log_probs(
            policy, torch.randn(2, 5, 2), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 5)
        )
    with pytest.raises(ValueError, match="same shape"):
        rf.reinforce_loss(torch.zeros(2, 5), torch.zeros(2, 4), torch.ones(2, 5), 0.9)
