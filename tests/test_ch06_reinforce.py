"""Chapter 6's pieces of rldebug.agents.reinforce: the loss, the two training passes, the
checkers built on them (fast, CPU). The agent's loop is tested in test_agents_reinforce.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rldebug.agents.reinforce import (
    Policy,
    episode_log_probs,
    masked_returns,
    per_step_log_probs,
    reinforce_loss,
)
from rldebug.checkers import ch06
from rldebug.checking import CheckFailed

torch.set_num_threads(1)


def test_masked_returns_restart_at_the_episode_end():
    rewards = torch.tensor([[1.0, 1.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    returns = masked_returns(rewards, mask, 0.5)
    torch.testing.assert_close(returns[0], torch.tensor([1.5, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(returns[1], torch.tensor([1.875, 1.75, 1.5, 1.0]))


def test_reinforce_loss_averages_over_real_steps_only():
    log_probs = torch.full((2, 4), -1.0, requires_grad=True)
    rewards = torch.ones(2, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    loss = reinforce_loss(log_probs, rewards, mask, 0.9)
    loss.backward()
    assert log_probs.grad[1, 1:].abs().max() == 0  # the padding gets no gradient
    assert reinforce_loss(log_probs, rewards, torch.zeros(2, 4), 0.9) == 0  # nothing played


def test_the_per_step_pass_never_trains_the_recurrent_weights():
    torch.manual_seed(0)
    policy = Policy(3, 2, hidden=6, num_layers=2)
    obs, actions, mask = torch.randn(2, 5, 3), torch.randint(0, 2, (2, 5)), torch.ones(2, 5)
    loss = reinforce_loss(per_step_log_probs(policy, obs, actions, mask), obs[..., 0], mask, 0.9)
    loss.backward()
    assert all(cell.weight_hh.grad.abs().max() == 0 for cell in policy.cells)
    assert all(cell.weight_ih.grad.abs().max() > 0 for cell in policy.cells)
    policy.zero_grad()
    good = episode_log_probs(policy, obs, actions, mask)
    reinforce_loss(good, obs[..., 0], mask, 0.9).backward()
    assert all(cell.weight_hh.grad.abs().max() > 0 for cell in policy.cells)


def test_checkers_accept_the_references_and_the_chapters_solution():
    ch06.check_reinforce_loss(reinforce_loss, seed=0)
    ch06.check_episode_log_probs(episode_log_probs, seed=0)

    def from_features(policy, obs, actions, mask):  # the chapter's solution
        logits = policy.head(policy.features(obs))
        taken = F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return taken * mask

    ch06.check_episode_log_probs(from_features, seed=1)


def test_checker_names_the_chapters_bug():
    with pytest.raises(CheckFailed, match="length-1 sequence"):
        ch06.check_episode_log_probs(per_step_log_probs, seed=0)
