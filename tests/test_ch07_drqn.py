"""DRQN: the batched GRU is PyTorch's GRU, agents are independent, the pipeline is consistent."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rldebug.agents import drqn
from rldebug.agents.drqn import RecurrentQNetwork, drqn_loss
from rldebug.episode_replay import stack_batches, to_torch


def test_one_agent_is_pytorchs_gru():
    torch.manual_seed(0)
    net = RecurrentQNetwork(3, 4, hidden_size=5, n_agents=1)
    gru, head = nn.GRU(3, 5, batch_first=True), nn.Linear(5, 4)
    with torch.no_grad():
        gru.weight_ih_l0.copy_(net.w_ih[0].T)
        gru.weight_hh_l0.copy_(net.w_hh[0].T)
        gru.bias_ih_l0.copy_(net.b_ih[0, 0])
        gru.bias_hh_l0.copy_(net.b_hh[0, 0])
        head.weight.copy_(net.w_q[0].T)
        head.bias.copy_(net.b_q[0, 0])
    x, h0 = torch.randn(2, 7, 3), torch.randn(1, 2, 5)
    q, h = net(x[None], h0)
    out, h_ref = gru(x, h0)
    torch.testing.assert_close(q[0], head(out))
    torch.testing.assert_close(h, h_ref)


def test_agents_are_independent_and_resets_work():
    torch.manual_seed(1)
    net = RecurrentQNetwork(2, 3, 4, n_agents=3)
    x = torch.randn(3, 2, 6, 2)
    q, _ = net(x)
    with torch.no_grad():
        net.w_hh[1].add_(1.0)  # change agent 1 only
    q2, _ = net(x)
    torch.testing.assert_close(q[0], q2[0])
    assert not torch.allclose(q[1], q2[1])
    start = torch.zeros(3, 2, 6, dtype=torch.bool)
    start[:, :, 3] = True  # a new episode at step 3: same as a fresh unroll of steps 3..5
    q_reset, _ = net(x, torch.randn(3, 2, 4), start)
    q_fresh, _ = net(x[:, :, 3:])
    torch.testing.assert_close(q_reset[:, :, 3:], q_fresh)
    q_empty, h = net(x[:, :, :0], torch.ones(3, 2, 4))
    assert q_empty.shape == (3, 2, 0, 3) and torch.all(h == 1)


def test_zero_state_every_step_has_no_memory():
    net = RecurrentQNetwork(1, 3, 4, zero_state_every_step=True)
    x = torch.randn(1, 2, 5, 1)
    q, _ = net(x)
    q_last, _ = net(x[:, :, -1:])
    torch.testing.assert_close(q[:, :, -1:], q_last)


def test_bad_shapes_raise():
    net = RecurrentQNetwork(2, 3, 4, n_agents=2)
    with pytest.raises(ValueError, match=r"\(S, B, T, D\)"):
        net(torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="state"):
        net(torch.zeros(2, 1, 3, 2), torch.zeros(2, 3, 4))


@pytest.fixture(scope="module")
def untrained():
    """Episodes collected by an untrained net (no update yet): stored states are exact."""
    return drqn.train(
        seeds=[0, 1],
        total_steps=1000,
        num_envs=4,
        learning_starts=10_000,
        eval_every=10_000,
        eval_episodes=2,
    )


def test_stored_state_reproduces_what_the_actor_saw(untrained):
    net, replay = untrained.q_net.agent(1), untrained.replays[1]
    assert len(replay) == 4 and replay.n_steps == 800
    stored = drqn.q_value_discrepancy(net, replay, [0, 5], stored_state=True)
    zero = drqn.q_value_discrepancy(net, replay, [0, 5], stored_state=False)
    assert stored.max() < 1e-5, stored
    assert zero[0] > 100 * max(stored[0], 1e-6)
    assert zero[1] < zero[0]  # burn-in brings the zero state closer


def test_loss_gives_each_agent_its_own_gradient(untrained):
    cfg = untrained.config
    net = untrained.q_net
    target = copy.deepcopy(net)
    rng = np.random.default_rng(0)
    batches = [r.sample(8, 5, 3, rng=rng) for r in untrained.replays]
    both = to_torch(stack_batches(batches))
    drqn_loss(net, target, both, cfg.gamma, 3, double=True).backward()
    grad_both = net.w_hh.grad[0].clone()
    alone_net, alone_target = net.agent(0), target.agent(0)
    alone = to_torch(stack_batches(batches[:1]))
    drqn_loss(alone_net, alone_target, alone, cfg.gamma, 3, double=True).backward()
    torch.testing.assert_close(grad_both, alone_net.w_hh.grad[0])


def test_training_runs_and_reports(untrained):
    r = untrained
    assert r.final_returns.shape == (2, 2)
    assert len(r.eval_steps) == len(r.eval_returns) >= 1
    res = drqn.train(
        seeds=[3],
        total_steps=1000,
        num_envs=4,
        learning_starts=850,
        train_every=100,
        eval_every=500,
        eval_episodes=2,
        batch_size=4,
        backward_per_step=True,
        target_network=False,
        bootstrap_on_truncation=False,
        recurrence=False,
    )
    assert res.n_updates > 0 and np.isfinite(res.final_return).all()


def test_final_returns_skips_the_curve_but_not_the_result():
    """final_returns evaluates only at the end; the training and the final score are the same."""
    small = dict(total_steps=1_200, num_envs=4, learning_starts=400, train_every=16,
                 eval_every=400, eval_episodes=2)  # fmt: skip
    full = drqn.train(seeds=[0, 1], **small)
    assert len(full.eval_steps) == 3
    np.testing.assert_array_equal(
        drqn.final_returns(seeds=[0, 1], **{**small, "eval_every": 1_200}), full.final_return
    )
    only_final = {k: v for k, v in small.items() if k != "eval_every"}
    np.testing.assert_array_equal(drqn.final_returns(seeds=[0, 1], **only_final), full.final_return)


def test_memoryless_baseline_reads_what_the_drqn_reads():
    """The frame-stacked DQN gets the previous action too when the DRQN does (a fair comparison)."""
    small = dict(total_steps=400, num_envs=2, learning_starts=200, eval_every=400,
                 eval_episodes=1)  # fmt: skip

    def inputs(result):  # the width of the first Linear layer
        return next(m for m in result.q_net.modules() if isinstance(m, torch.nn.Linear)).in_features

    with_action = drqn.memoryless_dqn(seed=0, frame_stack=4, **small)
    assert inputs(with_action) == 4 * (1 + 3)  # 4 x (offset + one-hot action)
    alone = drqn.memoryless_dqn(seed=0, frame_stack=4, prev_action=False, **small)
    assert inputs(alone) == 4
    like = drqn.DRQNConfig(prev_action=False)
    assert inputs(drqn.memoryless_dqn(seed=0, like=like, **small)) == 1
