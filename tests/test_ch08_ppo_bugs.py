"""Chapter 8's planted bugs (ppo.Config's reset switches) and the first-epoch report's wording."""

from __future__ import annotations

import numpy as np
import pytest
import sineroad
import torch
import torch.nn.functional as F

from rldebug.agents.ppo import (
    ActorCritic,
    Config,
    collect_rollout,
    ppo_loss,
    seed_of,
    sequence_minibatches,
    start_envs,
    train,
)
from rldebug.diagnostics.ppo import first_epoch_check
from rldebug.seedbatch import SeedBatch


def _logp(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return F.log_softmax(logits, -1).gather(-1, actions[..., None]).squeeze(-1)


def _rollout(reset: bool, envs: int = 4, steps: int = 40):
    """Two rollouts of a small GRU agent; the second starts from a state that is not zero."""
    torch.manual_seed(0)
    env = sineroad.make_vec("CartPoleNoVel-v1", envs)
    agent = ActorCritic(2, 2, hidden=8)
    batch, rngs = SeedBatch([agent]), [np.random.default_rng(0)]
    carry = start_envs(batch, [env], seeds=[0])
    rollout, carry, _ = collect_rollout(batch, [env], carry, steps, rngs, reset=reset)
    rollout, carry, _ = collect_rollout(batch, [env], carry, steps, rngs, reset=reset)
    env.close()
    rollout = seed_of(rollout, 0)
    assert rollout.starts[1:].any()  # episodes start inside the rollout
    return agent, rollout


@pytest.mark.parametrize("reset", [True, False])
def test_rollout_switch_only_changes_the_rollouts_resets(reset):
    agent, rollout = _rollout(reset)
    with torch.no_grad():
        with_resets, _, _ = agent.unroll(rollout.obs, rollout.h0, rollout.starts)
        without, _, _ = agent.unroll(rollout.obs, rollout.h0, torch.zeros_like(rollout.starts))
    acted_like = with_resets if reset else without
    other = without if reset else with_resets
    new = _logp(acted_like, rollout.actions)
    assert first_epoch_check(new, rollout.logprobs, mask=rollout.mask).ok
    assert not first_epoch_check(_logp(other, rollout.actions), rollout.logprobs).ok
    # the episode starts are still recorded: the training unroll can reset there
    assert rollout.starts.sum() > 0 and not rollout.mask.all()


def test_unroll_switch_only_stops_the_training_unroll_resetting():
    agent, rollout = _rollout(reset=True)
    adv = torch.zeros_like(rollout.rewards)
    (mb,) = sequence_minibatches(rollout, adv, adv, np.arange(4), 1)
    _, correct = ppo_loss(agent, mb, 0.2, Config())
    _, leaky = ppo_loss(agent, mb, 0.2, Config(reset_in_unroll=False))
    assert correct["ratio_dev"] < 1e-5 and leaky["ratio_dev"] > 1e-4
    with torch.no_grad():
        with_resets, _, _ = agent.unroll(mb.obs, mb.h0, mb.starts)
        zero_starts, _, _ = agent.unroll(mb.obs, mb.h0, torch.zeros_like(mb.starts))
    correct_logp, leaky_logp = _logp(with_resets, mb.actions), _logp(zero_starts, mb.actions)
    ratio = (leaky_logp - mb.logprobs).exp()
    assert leaky["ratio_dev"] == ((ratio - 1).abs() * mb.mask).max()  # the unroll without resets
    assert first_epoch_check(correct_logp, mb.logprobs, mask=mb.mask).ok
    # before the first episode start the two passes agree; after it they differ
    first_start = int(mb.starts[1:].any(1).float().argmax()) + 1
    torch.testing.assert_close(leaky_logp[:first_start], correct_logp[:first_start])
    assert not torch.equal(leaky_logp, correct_logp)


def test_switches_in_training_pass_or_fail_the_ratio_check():
    small = dict(total_steps=512, num_envs=4, num_steps=32, eval_every=256, eval_episodes=2)
    runs = {
        name: train(Config(**small, **switches), seeds=[0], progress=False)
        for name, switches in {
            "correct": {},
            "never": {"reset_in_rollout": False, "reset_in_unroll": False},
            "rollout only": {"reset_in_unroll": False},
        }.items()
    }
    assert runs["correct"].first_check.max() < 1e-5
    assert runs["never"].first_check.max() < 1e-5  # consistent, yet wrong
    assert runs["rollout only"].first_check.max() > 1e-4
    explicit = train(
        Config(**small, reset_in_rollout=True, reset_in_unroll=True), seeds=[0], progress=False
    )
    np.testing.assert_array_equal(explicit.eval_returns, runs["correct"].eval_returns)


def test_first_epoch_report_names_the_first_and_the_worst_step():
    old = np.zeros((6, 3))  # (step, env)
    new = old.copy()
    new[2, 1] = 0.01  # the first step off
    new[5, 0] = 0.3  # the worst, later
    new[4, 2] = 0.02
    report = first_epoch_check(new, old, dims=("step", "env"))
    assert report.first_index == (2, 1) and report.worst_index == (5, 0)
    assert report.n_offending == 3
    text = str(report)
    assert "first at (env 1, step 2), worst at (env 0, step 5)" in text
    assert "3 of 18 steps off" in text
    # batch-first data: still the earliest step, not the first env
    flipped = first_epoch_check(new.T, old.T, dims=("env", "step"))
    assert flipped.first_index == (1, 2) and "first at (env 1, step 2)" in str(flipped)
    # without names: plain indices, row-major
    assert "first at index (2, 1), worst at index (5, 0)" in str(first_epoch_check(new, old))
    passed = first_epoch_check(old, old)
    assert passed.ok and passed.first_index == () and "first at" not in str(passed)
