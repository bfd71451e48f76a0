"""train_population: S independent DQNs trained in lockstep with stacked weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rldebug
from rldebug.agents.dqn import (
    DQNConfig,
    StackedQNetwork,
    _freeze_adam_slice,
    _stacked_loss,
    dqn_loss,
    train,
    train_population,
)
from rldebug.nets import q_network
from rldebug.replay import Transitions
from rldebug.utils import set_seed

rldebug.configure_torch(1)


def _nets(n, hidden=(8, 8)):
    nets = []
    for s in range(n):
        torch.manual_seed(s)
        nets.append(q_network((4,), 2, hidden))
    return nets


def _stacked_batch(S=3, B=5):
    g = torch.Generator().manual_seed(0)
    return Transitions(
        obs=torch.randn(S, B, 4, generator=g),
        actions=torch.randint(0, 2, (S, B), generator=g),
        rewards=torch.randn(S, B, generator=g),
        next_obs=torch.randn(S, B, 4, generator=g),
        terminated=(torch.rand(S, B, generator=g) < 0.3).float(),
        truncated=torch.zeros(S, B),
    )


def test_stacked_forward_and_loss_match_the_single_networks():
    nets, targets = _nets(3), _nets(3)
    stacked, stacked_target = StackedQNetwork(nets), StackedQNetwork(targets)
    b = _stacked_batch()
    out = stacked(b.obs)  # (S, B, A)
    cfg = DQNConfig(double=True)
    losses, _ = _stacked_loss(stacked, stacked_target, b, cfg)
    for s in range(3):
        torch.testing.assert_close(out[s], nets[s](b.obs[s]))
        single = Transitions(*(x[s] for x in b))
        expected = dqn_loss(nets[s], targets[s], single, cfg.gamma, double=True)
        torch.testing.assert_close(losses[s], expected)
    with pytest.raises(ValueError, match="S=3"):
        stacked(torch.zeros(5, 4))


def test_a_subset_of_seeds_runs_only_those_networks():
    stacked, target = StackedQNetwork(_nets(3)), StackedQNetwork(_nets(3))
    b = _stacked_batch()
    full, _ = _stacked_loss(stacked, target, b, DQNConfig())
    seeds = torch.tensor([0, 2])
    part = Transitions(*(x[seeds] for x in b))  # (S, B, ...) -> (2, B, ...)
    losses, parts = _stacked_loss(stacked, target, part, DQNConfig(), seeds)
    torch.testing.assert_close(losses, full[seeds])
    assert parts.q_values.shape == (2, 5, 2)
    losses.sum().backward()
    for p in stacked.parameters():
        assert p.grad[1].abs().sum() == 0  # the left-out seed gets no gradient
        assert p.grad[0].abs().sum() > 0 and p.grad[2].abs().sum() > 0
    with pytest.raises(ValueError, match="S=2"):
        stacked(b.obs, seeds)  # three seeds' observations for two networks


def test_seed_i_loss_changes_only_seed_i_weights():
    stacked, target = StackedQNetwork(_nets(3)), StackedQNetwork(_nets(3))
    losses, _ = _stacked_loss(stacked, target, _stacked_batch(), DQNConfig())
    losses[1].backward()
    for p in stacked.parameters():
        assert p.grad[1].abs().sum() > 0
        assert p.grad[0].abs().sum() == 0 and p.grad[2].abs().sum() == 0
    # one Adam step on the summed loss moves only the seeds with a gradient
    before = [p.detach().clone() for p in stacked.parameters()]
    torch.optim.Adam(stacked.parameters(), lr=0.1).step()
    for p, old in zip(stacked.parameters(), before):
        assert not torch.equal(p[1], old[1])
        assert torch.equal(p[0], old[0]) and torch.equal(p[2], old[2])


def test_per_seed_clipping_matches_torch():
    nets, targets = _nets(2), _nets(2)
    stacked = StackedQNetwork(nets)
    b = _stacked_batch(S=2)
    losses, _ = _stacked_loss(stacked, StackedQNetwork(targets), b, DQNConfig())
    (losses * torch.tensor([1.0, 1000.0])).sum().backward()  # seed 1's gradient is huge
    norms = stacked.clip_grad_norm_(1.0)
    for s in range(2):
        single = Transitions(*(x[s] for x in b))
        loss = dqn_loss(nets[s], targets[s], single, 0.99) * (1.0 if s == 0 else 1000.0)
        loss.backward()
        expected = torch.nn.utils.clip_grad_norm_(nets[s].parameters(), 1.0)
        torch.testing.assert_close(norms[s], expected)
        torch.testing.assert_close(stacked.biases[-1].grad[s, 0], nets[s][-1].bias.grad)


def test_one_seed_population_learns():
    cfg = DQNConfig(hidden=(64, 64), total_steps=6_000, eval_every=0, final_eval_episodes=5)
    (r,) = train_population(cfg, [0])
    assert r.steps[-1] == 6_000 and len(r.losses) == len(r.steps)
    assert r.final_return > 100  # a random policy scores about 22
    assert r.q_net(torch.zeros(1, 4)).shape == (1, 2)  # an ordinary q_network


def test_population_curves_and_determinism():
    small = dict(total_steps=400, learning_starts=100, log_every=100, eval_every=200,
                 eval_episodes=2, final_eval_episodes=3, hidden=(16,), batch_size=16)  # fmt: skip
    rs = train_population(DQNConfig(**small), [3, 4])
    assert [r.config.seed for r in rs] == [3, 4]
    for r in rs:
        assert len(r.steps) == 4 and len(r.eval_steps) == 2
        assert len(r.final_eval.returns) == 3
    assert rs[0].losses != rs[1].losses
    again = train_population(DQNConfig(**small), [3, 4])
    assert again[0].losses == rs[0].losses and again[1].eval_returns == rs[1].eval_returns


def test_a_seed_that_stops_keeps_its_weights_while_the_others_learn():
    nets = [q_network((4,), 2, (8,)) for _ in range(2)]
    stacked = StackedQNetwork(nets)
    opt = torch.optim.Adam(stacked.parameters(), lr=1e-2)
    obs = torch.randn(2, 16, 4)
    for _ in range(3):  # build up Adam's moments for both seeds
        opt.zero_grad()
        stacked(obs).pow(2).mean(dim=(1, 2)).sum().backward()
        opt.step()
    frozen = [p.detach().clone() for p in stacked.parameters()]
    _freeze_adam_slice(opt, 0)
    learning = torch.tensor([0.0, 1.0])
    for _ in range(3):
        opt.zero_grad()
        (stacked(obs).pow(2).mean(dim=(1, 2)) * learning).sum().backward()
        opt.step()
    for before, p in zip(frozen, stacked.parameters()):
        torch.testing.assert_close(p[0], before[0], rtol=0, atol=0)  # seed 0: not one bit
    assert any(not torch.equal(p[1], b[1]) for b, p in zip(frozen, stacked.parameters()))


@pytest.mark.parametrize("population", [True, False])
def test_stop_when_solved_judges_training_episodes(population):
    small = dict(total_steps=800, learning_starts=400, eval_every=0, final_eval_episodes=2,
                 hidden=(16,), batch_size=16, stop_when_solved=0.0, solved_episodes=3)  # fmt: skip
    cfg = DQNConfig(**small)
    runs = train_population(cfg, [3, 4]) if population else [train(cfg, seed=3)]
    for r in runs:
        # three finished episodes (all >= 0) come long before learning starts: no update
        assert r.stopped_at is not None and r.stopped_at < 400
        set_seed(r.config.seed)
        fresh = q_network((4,), 2, (16,))
        for p, q in zip(r.q_net.parameters(), fresh.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
    with pytest.raises(ValueError, match="solved_episodes"):
        DQNConfig(solved_episodes=0)


def test_a_seed_that_stops_mid_run_logs_nan_and_its_partner_keeps_learning():
    # solved = one training episode of >= 15 steps: with updates from step 0, the seeds
    # stop at different steps, each while the other may still be learning
    cfg = DQNConfig(total_steps=600, learning_starts=0, eval_every=0, final_eval_episodes=2,
                    hidden=(16,), batch_size=16, log_every=40, stop_when_solved=15.0,
                    solved_episodes=1)  # fmt: skip
    runs = train_population(cfg, [0, 1, 2, 3])
    stops = [r.stopped_at for r in runs]
    assert all(s is not None for s in stops) and len(set(stops)) > 1
    for r in runs:
        steps, losses = np.array(r.steps), np.array(r.losses)
        # a logged point whose whole window came after the stop has no loss
        assert np.isnan(losses[steps - cfg.log_every >= r.stopped_at]).all()
        assert np.isfinite(losses[steps <= r.stopped_at]).all()
