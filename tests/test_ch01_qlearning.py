"""Chapter 1 library: the TD target, the two losses and the Taxi tables."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import rldebug
from rldebug import qlearning as ql

rldebug.configure_torch(1)


@pytest.fixture(scope="module")
def tables():
    return ql.taxi_tables()


def test_td_target_bootstraps_on_truncation_only():
    next_q = torch.tensor([[1.0, 3.0], [2.0, 0.0], [5.0, 4.0]], requires_grad=True)
    rewards = torch.tensor([1.0, 1.0, 1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])
    truncated = torch.tensor([0.0, 0.0, 1.0])
    y = ql.td_target(rewards, next_q, terminated, truncated, 0.5)
    assert torch.allclose(y, torch.tensor([2.5, 1.0, 3.5]))
    assert not y.requires_grad
    assert ql.td_target(rewards, next_q, terminated, truncated, 0.5, detach=False).requires_grad


@pytest.mark.parametrize(
    ("shapes", "match"),
    [
        (((3,), (3, 2, 1), (3,), (3,)), "next_q_values must be"),
        (((3, 1), (3, 2), (3,), (3,)), "rewards must be"),
        (((3,), (3, 2), (2,), (3,)), "terminated must be"),
    ],
)
def test_td_target_rejects_bad_shapes(shapes, match):
    args = [torch.zeros(s) for s in shapes]
    with pytest.raises(ValueError, match=match):
        ql.td_target(*args, 0.9)


def test_check_td_shapes_names_the_broadcast():
    with pytest.raises(ValueError, match=r"\(32, 1\).*\(32,\).*broadcasts to \(32, 32\)"):
        ql.check_td_shapes(torch.zeros(32, 1), torch.zeros(32))
    with pytest.raises(ValueError, match="cannot be subtracted"):
        ql.check_td_shapes(torch.zeros(3), torch.zeros(4))
    assert ql.check_td_shapes(torch.zeros(32), torch.zeros(32)) is None


def test_only_the_taken_action_gets_gradient_and_copy_trick_is_scaled():
    torch.manual_seed(0)
    q = torch.randn(8, 5, requires_grad=True)
    actions = torch.randint(5, (8,))
    targets = torch.randn(8)
    (g_gather,) = torch.autograd.grad(ql.masked_q_loss(q, actions, targets), q)
    (g_copy,) = torch.autograd.grad(ql.copy_trick_loss(q, actions, targets), q)
    mask = torch.zeros(8, 5, dtype=torch.bool)
    mask[torch.arange(8), actions] = True
    assert torch.all(g_gather[~mask] == 0) and torch.all(g_gather[mask] != 0)
    assert torch.allclose(g_copy * 5, g_gather)
    assert torch.equal(q.detach(), q.detach().clone())  # the copy trick did not edit q


def test_losses_reject_bad_input():
    q = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="broadcasts to"):
        ql.masked_q_loss(q, torch.zeros(4, dtype=torch.long), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="actions must be in"):
        ql.masked_q_loss(q, torch.full((4,), 3), torch.zeros(4))
    with pytest.raises(ValueError, match="long tensor"):
        ql.copy_trick_loss(q, torch.zeros(4), torch.zeros(4))


def test_vector_taxi_matches_gymnasium(tables):
    env = gym.make("Taxi-v4")
    gen = torch.Generator().manual_seed(0)
    vec = ql.VectorTaxi(tables, (1,), gen)
    vec.reset()
    obs, _ = env.reset(seed=0)
    vec.state[0] = obs
    rng = np.random.default_rng(0)
    for _ in range(450):  # crosses at least one time limit
        action = int(rng.integers(6))
        obs2, reward, term, trunc, _ = env.step(action)
        s2, r, te, tr, after = vec.step(torch.tensor([action]))
        assert (int(s2[0]), float(r[0]), bool(te[0]), bool(tr[0])) == (obs2, reward, term, trunc)
        if term or trunc:
            obs2, _ = env.reset(seed=int(rng.integers(1000)))
            vec.state[0] = obs2
    with pytest.raises(ValueError, match="actions must be"):
        vec.step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(RuntimeError, match="reset"):
        ql.VectorTaxi(tables, (1,), gen).step(torch.zeros(1, dtype=torch.long))


def test_value_iteration_is_optimal(tables):
    q_star = ql.q_value_iteration(tables, 0.99)
    assert q_star.shape == (500, 6)
    best = float(ql.greedy_returns(q_star, tables)[0])
    assert 7.5 < best < 8.5
    worse = float(ql.greedy_returns(torch.zeros(500, 6), tables)[0])  # always "south"
    assert worse < -100


def test_one_hot_matmul_is_a_lookup():
    w = torch.randn(10, 3, requires_grad=True)
    s = torch.tensor([2, 7, 2])
    a = ql.one_hot(s, 10) @ w
    b = w[s]
    assert torch.equal(a, b)
    (ga,) = torch.autograd.grad(a.square().sum(), w)
    (gb,) = torch.autograd.grad(b.square().sum(), w)
    assert torch.allclose(ga, gb)


def test_linear_taxi_learns(tables):
    run = ql.train_linear_taxi(
        n_seeds=2, n_updates=1000, eval_every=500, tables=tables, progress=False
    )
    assert run.weights.shape == (2, 500, 6)
    assert run.returns.shape == (2, 3)
    assert run.returns[:, -1].min() > 5.0
    assert run.actions_taken.sum() == 2 * 64 * 1000


def test_linear_taxi_seeds_are_one_run_each(tables):
    """``seeds=`` trains each seed as its own run: the same as n_seeds=1 with that seed."""
    short = dict(n_updates=30, eval_every=10, tables=tables, progress=False)
    both = ql.train_linear_taxi(seeds=[1003, 1007], **short)
    alone = ql.train_linear_taxi(n_seeds=1, seed=1007, **short)
    assert both.weights.shape == (2, 500, 6) and both.returns.shape == (2, 4)
    assert torch.equal(both.weights[1], alone.weights[0])
    np.testing.assert_array_equal(both.returns[1], alone.returns[0])
    np.testing.assert_array_equal(both.actions_taken[1], alone.actions_taken[0])
    with pytest.raises(ValueError, match="seeds is empty"):
        ql.train_linear_taxi(seeds=[], **short)
