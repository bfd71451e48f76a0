"""The numpy MLP of chapter 2: gradients equal torch autograd, Adam equals torch.optim.Adam,
and each switchable bug does what its name says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rldebug.diagnostics.gradcheck import check_gradients, relative_error
from rldebug.numpy_dqn import dqn_loss_grad
from rldebug.numpy_mlp import MLP, Adam, Bugs, adam_step, dense_relu_backward, huber, huber_grad


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
    "bug", ["no_input_outer_product", "inplace_relu_derivative", "scalar_loss_gradient"]
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
