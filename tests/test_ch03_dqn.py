"""The reference DQN: its pieces, and short training runs on every kind of env it supports."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rldebug
from rldebug.agents.dqn import Config, dqn_loss, greedy_actions, td_targets, train, update_target
from rldebug.dashboard import Dashboard, plot_dashboard
from rldebug.nets import q_network
from rldebug.replay import Transitions

rldebug.configure_torch(1)
SMALL = dict(
    total_steps=400, learning_starts=100, log_every=100, eval_every=200, eval_episodes=2,
    final_eval_episodes=2, hidden=(16,), batch_size=16,
)  # fmt: skip


def _batch(B=6, D=3):
    g = torch.Generator().manual_seed(0)
    return Transitions(
        obs=torch.randn(B, D, generator=g),
        actions=torch.randint(0, 2, (B,), generator=g),
        rewards=torch.randn(B, generator=g),
        next_obs=torch.randn(B, D, generator=g),
        terminated=torch.tensor([1.0, 0, 0, 0, 0, 0])[:B],
        truncated=torch.tensor([0.0, 1, 0, 0, 0, 0])[:B],
    )


def test_td_targets_by_hand():
    torch.manual_seed(0)
    q_net, target_net = q_network((3,), 2, (8,)), q_network((3,), 2, (8,))
    b = _batch()
    nq_t = target_net(b.next_obs).detach()
    expected = b.rewards + 0.9 * (1 - b.terminated) * nq_t.max(1).values
    torch.testing.assert_close(td_targets(q_net, target_net, b, 0.9), expected)
    a_online = q_net(b.next_obs).argmax(1)
    double = b.rewards + 0.9 * (1 - b.terminated) * nq_t[torch.arange(6), a_online]
    torch.testing.assert_close(td_targets(q_net, target_net, b, 0.9, double=True), double)
    cut = td_targets(q_net, target_net, b, 0.9, bootstrap_on_truncation=False)
    assert cut[1] == b.rewards[1] and cut[0] == b.rewards[0]  # both rows stop bootstrapping


def test_dqn_loss_semi_gradient():
    torch.manual_seed(0)
    q_net, target_net = q_network((3,), 2, (8,)), q_network((3,), 2, (8,))
    target_net.requires_grad_(False)
    b = _batch()
    loss, parts = dqn_loss(q_net, target_net, b, 0.9, return_parts=True)
    assert loss.shape == () and parts.q_sa.shape == (6,) and parts.targets.shape == (6,)
    assert not parts.targets.requires_grad
    torch.testing.assert_close(loss, F.smooth_l1_loss(parts.q_sa, parts.targets))
    mse = dqn_loss(q_net, target_net, b, 0.9, huber=False)
    torch.testing.assert_close(mse, F.mse_loss(parts.q_sa, parts.targets))
    loss.backward()
    assert all(p.grad is not None for p in q_net.parameters())


def test_update_target_hard_and_soft():
    a, b = q_network((2,), 2, (4,)), q_network((2,), 2, (4,))
    before = [p.clone() for p in b.parameters()]
    update_target(b, a, tau=0.25)
    for t, p, old in zip(b.parameters(), a.parameters(), before):
        torch.testing.assert_close(t, 0.25 * p + 0.75 * old)
    update_target(b, a, tau=1.0)
    for t, p in zip(b.parameters(), a.parameters()):
        assert torch.equal(t, p)


def test_greedy_actions():
    net = q_network((2,), 3, (4,))
    obs = torch.zeros(50, 2)
    actions = greedy_actions(net, obs)
    assert actions.shape == (50,) and len(set(actions.tolist())) == 1  # same state, same action


def test_config_validation():
    with pytest.raises(ValueError, match="tau"):
        Config(tau=0.0)
    with pytest.raises(ValueError):
        Config(num_envs=0)


def test_train_on_native_vector_env_fills_every_curve():
    calls = []
    r = train(Config(**SMALL), seeds=[1], callback=calls.append)
    n_points = len(r.steps)
    assert n_points == 4 and r.steps[-1] == 400
    for curve in (r.losses, r.mean_max_q, r.td_errors, r.grad_norms):
        assert curve.shape == (n_points, 1)
    assert len(r.epsilons) == n_points and r.epsilons[0] == 1.0 and r.epsilons[-1] < 1.0
    assert r.final_return.shape == (1,)
    assert r.eval_returns.shape == r.eval_q0.shape == r.eval_g0.shape == (2, 1)  # 200 + final
    assert calls and calls[-1] is r
    again = train(Config(**SMALL), seeds=[1])  # same seed, same run
    np.testing.assert_array_equal(again.losses, r.losses)
    np.testing.assert_array_equal(again.eval_returns, r.eval_returns)


def test_train_skips_autoreset_transitions(monkeypatch):
    import rldebug.agents.dqn_seeds as dqn_seeds

    stored = []
    original = dqn_seeds.SeedReplay.add

    def spy(self, keep, obs, actions, rewards, next_obs, terminated, truncated):
        stored.append((obs[keep], next_obs[keep]))
        return original(self, keep, obs, actions, rewards, next_obs, terminated, truncated)

    monkeypatch.setattr(dqn_seeds.SeedReplay, "add", spy)
    train(Config(**{**SMALL, "total_steps": 300, "learning_starts": 400}))
    obs = np.concatenate([o for o, _ in stored])
    nxt = np.concatenate([n for _, n in stored])
    # CartPole moves a little per step: a jump to a fresh start state would be large
    assert len(obs) < 300  # some steps were autoreset steps and were skipped
    assert np.abs(nxt[:, 0] - obs[:, 0]).max() < 0.1


def test_train_with_frame_stack_on_sineroad():
    import sineroad  # noqa: F401  (registers the ids)

    stack = lambda e: gym.wrappers.FrameStackObservation(e, 3)
    r = train(Config(env_id="SineRoad-v0", wrappers=(stack,), num_envs=2, **SMALL), seeds=[0, 1])
    assert r.q_nets[1](torch.zeros(1, 3, 2)).shape == (1, 3)


def test_train_on_sineroad_native_vector_env():
    import sineroad  # noqa: F401  (registers the ids)

    r = train(Config(env_id="SineRoad-v0", num_envs=3, **SMALL))
    assert np.isfinite(r.final_return).all()


def test_dashboard_static_and_live():
    r = train(Config(**SMALL), seeds=[0, 1])
    fig = plot_dashboard({"a": r, "b": r}, title="t")
    assert len(fig.axes) == 6
    assert len(fig.axes[1].lines) == 4  # two seeds of two runs
    live = Dashboard(every=1)
    live(r)  # outside Jupyter: draws without displaying
    assert live.axes.flat[0].lines
    with pytest.raises(ValueError, match="seed 7"):
        r.run(7)


def test_the_agent_does_not_draw_the_env_s_random_numbers(monkeypatch):
    """Seed 5's env is reset with 5 (gymnasium: a generator of SeedSequence(5)); the agent's
    generator, the one that samples the replay, must be another stream."""
    import rldebug.agents.dqn_seeds as dqn_seeds

    generators = []
    original = dqn_seeds.SeedReplay.sample

    def spy(self, batch_size, rngs, draw):
        generators.extend(rngs)
        return original(self, batch_size, rngs, draw)

    monkeypatch.setattr(dqn_seeds.SeedReplay, "sample", spy)
    train(Config(**{**SMALL, "total_steps": 120, "learning_starts": 40}), seeds=[5])
    seq = generators[0].bit_generator.seed_seq
    assert (seq.entropy, seq.spawn_key) != (5, ())
