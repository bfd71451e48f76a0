"""Recurrent PPO (chapter 8): the pieces, and the first-epoch check."""

from __future__ import annotations

import numpy as np
import pytest
import sineroad
import torch
import torch.nn as nn
import torch.nn.functional as F

from rldebug.agents.ppo import (
    ActorCritic,
    Config,
    Result,
    collect_rollout,
    gae,
    seed_of,
    sequence_minibatches,
    start_envs,
    train,
)
from rldebug.cells import unroll
from rldebug.diagnostics.ppo import FirstEpochCheckFailed, first_epoch_check
from rldebug.results import first_reached, kept_to_end
from rldebug.seedbatch import SeedBatch


def test_unroll_matches_nn_gru_and_resets():
    torch.manual_seed(0)
    gru = nn.GRU(2, 4)
    cell = nn.GRUCell(2, 4)
    cell.load_state_dict({k.replace("_l0", ""): v for k, v in gru.state_dict().items()})
    x, h0 = torch.randn(6, 3, 2), torch.randn(3, 4)
    starts = torch.zeros(6, 3, dtype=torch.bool)
    out, last = unroll(cell, x, h0, starts)
    ref, ref_last = gru(x, h0[None])
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(last, ref_last[0])
    starts[3, 1] = True  # env 1 starts a new episode at t = 3: same as a fresh unroll there
    out, _ = unroll(cell, x, h0, starts)
    fresh, _ = gru(x[3:, 1:2], torch.zeros(1, 1, 4))
    torch.testing.assert_close(out[3:, 1:2], fresh)
    with pytest.raises(ValueError, match="episode_start"):
        unroll(cell, x, h0, starts[:, :2])


def test_kept_means_every_late_evaluation():
    steps = np.arange(0, 11) * 1000  # evaluations at 0, 1000, ..., 10000
    ret = np.full((11, 3), 500.0)
    ret[:5] = 20.0
    ret[8, 1] = 400.0  # seed 1 dips at 8000, inside the last 20%
    ret[6, 2] = 400.0  # seed 2 dips at 6000, before it
    result = Result(seeds=[0, 1, 2], eval_steps=steps, eval_returns=ret, agent=None,
                    config=Config(), normalizer=None, first_check=None, approx_kl=None)  # fmt: skip
    assert result.kept(475).tolist() == [True, False, True]
    assert result.steps_to(475).tolist() == [5000, 5000, 5000]


def test_reached_and_kept_work_on_any_curve_lists_included():
    # the benchmark applies them to sb3-contrib's curves: plain lists, one seed, or never
    steps, curve = [1536, 3072, 4608, 6144], [[100.0], [480.0], [470.0], [500.0]]
    assert first_reached(steps, curve, 475).tolist() == [3072]
    assert kept_to_end(steps, curve, 475).tolist() == [True]  # the last 20%: 6144 alone
    assert kept_to_end(steps, curve, 475, last_fraction=0.3).tolist() == [False]  # 470 at 4608
    assert np.isnan(first_reached(steps, [[1.0]] * 4, 475)).all()


def test_gae_terminated_truncated_and_reset_step():
    # one env: steps 0, 1 then truncation at 1; step 2 is the reset step (mask False).
    rewards = torch.tensor([[1.0], [1.0], [0.0], [1.0]])
    values = torch.tensor([[0.5], [0.4], [3.0], [0.2], [0.1]])  # values[2]: V(final obs)
    truncated = torch.tensor([[False], [True], [False], [False]])
    terminated = torch.zeros(4, 1, dtype=torch.bool)
    mask = torch.tensor([[True], [True], [False], [True]])
    adv = gae(rewards, values, terminated, truncated, mask, gamma=0.9, lam=0.5)
    d1 = 1.0 + 0.9 * 3.0 - 0.4  # bootstraps from the true final observation
    d0 = 1.0 + 0.9 * 0.4 - 0.5
    d3 = 1.0 + 0.9 * 0.1 - 0.2
    torch.testing.assert_close(adv[:, 0], torch.tensor([d0 + 0.45 * d1, d1, 0.0, d3]))
    adv_term = gae(rewards, values, truncated, terminated, mask, gamma=0.9, lam=0.5)
    assert adv_term[1, 0].item() == pytest.approx(1.0 - 0.4)  # terminated: no bootstrap


def test_vector_env_next_step_autoreset():
    env = sineroad.make_vec("CartPoleNoVel-v1", 3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 2)
    done = np.zeros(3, dtype=bool)
    for _ in range(60):
        obs, r, term, trunc, _ = env.step(np.zeros(3, dtype=np.int64))
        assert not (done & (r != 0)).any()  # a reset step gives reward 0
        done = term | trunc
    env.close()


def _rollout(recurrent: bool = True, envs: int = 8, steps: int = 40):
    torch.manual_seed(0)
    env = sineroad.make_vec("CartPoleNoVel-v1", envs)
    agent = ActorCritic(2, 2, hidden=8, recurrent=recurrent)
    batch, rngs = SeedBatch([agent]), [np.random.default_rng(0)]
    carry = start_envs(batch, [env], seeds=[0])
    rollout, carry, _ = collect_rollout(batch, [env], carry, steps, rngs)
    rollout, carry, _ = collect_rollout(batch, [env], carry, steps, rngs)  # h0 is not zero here
    return agent, seed_of(rollout, 0)


@pytest.mark.parametrize("recurrent", [True, False])
def test_training_pass_recomputes_the_rollout(recurrent):
    agent, rollout = _rollout(recurrent)
    assert (~rollout.mask).any() and rollout.starts[1:].any()  # episodes ended inside
    adv = torch.zeros_like(rollout.rewards)
    order = np.array([1, 0, 4, 5, 3, 2, 6, 7])
    for mb in sequence_minibatches(rollout, adv, adv, order, 2):
        logits, _, _ = agent.unroll(mb.obs, mb.h0, mb.starts)
        new_logp = F.log_softmax(logits, -1).gather(-1, mb.actions[..., None]).squeeze(-1)
        report = first_epoch_check(new_logp, mb.logprobs, mask=mb.mask)
        assert report.ok, report
        assert report.approx_kl < 1e-10


def test_first_epoch_check_catches_a_state_not_reset():
    agent, rollout = _rollout()
    logits, _, _ = agent.unroll(rollout.obs, rollout.h0, torch.zeros_like(rollout.starts))
    new_logp = F.log_softmax(logits, -1).gather(-1, rollout.actions[..., None]).squeeze(-1)
    report = first_epoch_check(new_logp, rollout.logprobs, mask=rollout.mask)
    assert not report.ok and report.max_ratio_dev > 1e-4
    assert "FAILED" in str(report)
    with pytest.raises(FirstEpochCheckFailed, match="hidden state"):
        report.raise_if_failed()
    with pytest.raises(ValueError, match="shape"):
        first_epoch_check(new_logp, rollout.logprobs[:, :3])


def test_train_smoke():
    cfg = Config(total_steps=256, num_envs=4, num_steps=32, eval_every=128, eval_episodes=2)
    result = train(cfg, seeds=[0, 1], progress=False)
    assert result.eval_returns.shape == (3, 2) and result.final_return.shape == (2,)
    assert result.first_check.shape == (2, 2)
    assert result.first_check.max() < 1e-5
    with pytest.raises(ValueError, match="minibatches"):
        Config(num_envs=3)
