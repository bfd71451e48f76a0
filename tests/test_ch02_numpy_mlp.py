"""The numpy MLP of chapter 2: gradients equal torch autograd, Adam equals torch.optim.Adam,
and each switchable bug does what its name says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rldebug.diagnostics.gradcheck import check_gradients, relative_error
from rldebug.numpy_dqn import dqn_loss_grad
from rldebug.numpy_mlp import (
    MLP,
    Adam,
    Bugs,
    adam_step,
    dense_relu_backward,
    huber,
    huber_grad,
    huber_grad_with_jump,
)


def _torch_mlp_grads(net: MLP, x: np.ndarray, grad_out: np.ndarray) -> list[np.ndarray]:
    params = [torch.tensor(p, requires_grad=True) for p in net.params]
    h = torch.tensor(x)
    for layer in range(net.n_layers):
        h = h @ params[2 * layer] + params[2 * layer + 1][..., None, :]
        if layer < net.n_layers - 1:
            h = torch.relu(h)
    h.backward(torch.tensor(grad_out))
    return [p.grad.numpy() for p in params]


@pytest.mark.parametrize("members", [None, 3])
def test_mlp_backward_equals_torch_autograd(members):
    rng = np.random.default_rng(0)
    net = MLP([5, 7, 6, 3], n_members=members, rng=rng)
    lead = () if members is None else (members,)
    x = rng.normal(size=lead + (11, 5))
    grad_out = rng.normal(size=lead + (11, 3))
    net.forward(x)
    dx = net.backward(grad_out)
    for mine, theirs in zip(net.grads, _torch_mlp_grads(net, x, grad_out)):
        assert relative_error(mine, theirs) < 1e-12
    assert dx.shape == x.shape


def test_dense_relu_backward_equals_torch():
    rng = np.random.default_rng(1)
    x, W, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), rng.normal(size=5)
    g = rng.normal(size=(4, 5))
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    torch.relu(xt @ Wt + bt).backward(torch.tensor(g))
    for mine, theirs in zip(dense_relu_backward(x, W, b, g), (xt.grad, Wt.grad, bt.grad)):
        assert relative_error(mine, theirs.numpy()) < 1e-12


def test_adam_step_and_inplace_adam_equal_torch():
    rng = np.random.default_rng(2)
    p0 = rng.normal(size=20)
    grads = [rng.normal(size=20) for _ in range(7)]
    p, m, v = p0.copy(), np.zeros(20), np.zeros(20)
    flat = p0.copy()
    opt = Adam(flat, lr=0.01)
    for t, g in enumerate(grads, start=1):
        p, m, v = adam_step(p, g, m, v, t, lr=0.01)
        opt.step(g)
    tp = torch.nn.Parameter(torch.tensor(p0))
    topt = torch.optim.Adam([tp], lr=0.01)
    for g in grads:
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flat, p, rtol=1e-12, atol=1e-14)


def test_huber_grad_is_derivative_of_huber():
    e = np.linspace(-3, 3, 101)
    numeric = (huber(e + 1e-6) - huber(e - 1e-6)) / 2e-6
    np.testing.assert_allclose(huber_grad(e), numeric, atol=1e-6)


def _dqn_gradcheck(bugs: Bugs) -> float:
    rng = np.random.default_rng(3)
    net = MLP([4, 8, 8, 2], rng=np.random.default_rng(4), bugs=bugs)
    obs, a = rng.normal(size=(16, 4)), rng.integers(0, 2, 16)
    y, mask = rng.normal(size=16), np.ones(16)
    _, g = dqn_loss_grad(net.forward(obs), a, y, mask, bugs)
    net.backward(g)
    analytic = [gr.copy() for gr in net.grads]
    errors = check_gradients(
        lambda: dqn_loss_grad(net.forward(obs, keep=False), a, y, mask)[0], net.params, analytic
    )
    return max(errors.values())


def test_correct_network_passes_gradient_check():
    assert _dqn_gradcheck(Bugs()) < 1e-6


@pytest.mark.parametrize(
    "bug",
    [
        "no_input_outer_product",
        "relu_derivative_always_one",
        "scalar_loss_gradient",
        "huber_gradient_jump",
    ],
)
def test_gradient_bugs_fail_gradient_check(bug):
    assert _dqn_gradcheck(Bugs.only(bug)) > 1e-2


def test_bug_flags_change_the_model():
    rng = np.random.default_rng(5)
    positive = MLP([4, 8, 2], rng=rng, bugs=Bugs.only("all_positive_init"))
    assert all((W >= 0).all() for W in positive.W)
    scalar = MLP([4, 8, 2], rng=rng, bugs=Bugs.only("scalar_bias"))
    assert [b.shape for b in scalar.b] == [(1,), (1,)]
    with pytest.raises(ValueError, match="unknown bug"):
        Bugs.only("typo")


def test_bad_input_raises_clear_errors():
    net = MLP([4, 8, 2], n_members=3)
    with pytest.raises(ValueError, match="input must have shape"):
        net.forward(np.zeros((5, 4)))
    with pytest.raises(RuntimeError, match="forward"):
        MLP([4, 2]).backward(np.zeros((1, 2)))
    with pytest.raises(ValueError, match="grad_out must have shape"):
        net.forward(np.zeros((3, 5, 4)))
        net.backward(np.zeros((3, 5, 3)))


def test_relu_derivative_always_one_passes_every_error_down():
    """With the bug, a unit that was off in the forward pass still passes its error down."""
    rng = np.random.default_rng(6)
    x, g = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    right = MLP([4, 16, 2], rng=np.random.default_rng(7))
    bug = MLP(
        [4, 16, 2], rng=np.random.default_rng(7), bugs=Bugs.only("relu_derivative_always_one")
    )
    h = np.maximum(x @ right.W[0] + right.b[0], 0.0)
    right.forward(x), bug.forward(x)
    right.backward(g), bug.backward(g)
    np.testing.assert_allclose(bug.db[0], (g @ right.W[1].T).sum(axis=0))  # no mask at all
    np.testing.assert_allclose(right.db[0], ((g @ right.W[1].T) * (h > 0)).sum(axis=0))
    np.testing.assert_allclose(bug.dW[1], right.dW[1])  # the top layer is untouched


def test_stale_weights_backprop_sends_the_error_through_updated_weights():
    rng = np.random.default_rng(8)
    x, g = rng.normal(size=(8, 4)), rng.normal(size=(8, 2))
    stale = MLP([4, 16, 2], rng=np.random.default_rng(9), bugs=Bugs.only("stale_weights_backprop"))
    right = MLP([4, 16, 2], rng=np.random.default_rng(9))
    w1_before = right.W[1].copy()
    with pytest.raises(ValueError, match="optimizer"):
        stale.forward(x)
        stale.backward(g)
    opt_stale, opt_right = Adam(stale.flat, lr=0.1), Adam(right.flat, lr=0.1)
    stale.forward(x), right.forward(x)
    stale.backward(g, optimizer=opt_stale)  # steps inside
    right.backward(g)
    opt_right.step(right.grad)
    assert opt_stale.t == opt_right.t == 1
    np.testing.assert_allclose(stale.W[1], right.W[1])  # the top layer: the same step
    h = np.maximum(x @ right.W[0] + right.b[0], 0.0)  # right.W[0] already moved: recompute
    h_before = np.maximum(x @ MLP([4, 16, 2], rng=np.random.default_rng(9)).W[0], 0.0)
    np.testing.assert_allclose(right.dW[0], x.T @ ((g @ w1_before.T) * (h_before > 0)))
    np.testing.assert_allclose(stale.dW[0], x.T @ ((g @ stale.W[1].T) * (h_before > 0)))
    assert not np.allclose(stale.W[0], right.W[0])
    del h


def test_huber_gradient_jump_is_the_questions_derivative():
    e = np.array([-3.0, -1.001, -0.999, 0.0, 0.5, 0.999, 1.001, 3.0])
    np.testing.assert_allclose(
        huber_grad_with_jump(e), [-0.25, -0.25, -0.4995, 0.0, 0.25, 0.4995, 0.25, 0.25]
    )


def test_every_bug_but():
    bugs = Bugs.every(but=["single_sample_updates"])
    assert not bugs.single_sample_updates and bugs.aliased_target
    with pytest.raises(ValueError, match="unknown bugs"):
        Bugs.every(but=["typo"])
