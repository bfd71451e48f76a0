"""The gradient-check diagnostic: it accepts right gradients and flags wrong ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rldebug.diagnostics.gradcheck import (
    check_gradients,
    check_layer,
    numerical_gradient,
    relative_error,
    torch_gradients,
)
from rldebug.numpy_mlp import dense_relu_backward, dense_relu_forward


def test_relative_error():
    a = np.array([1.0, 2.0])
    assert relative_error(a, a) == 0.0
    assert relative_error(a, -a) == pytest.approx(1.0)
    assert relative_error(np.zeros(2), np.zeros(2)) == 0.0
    with pytest.raises(ValueError, match="different shapes"):
        relative_error(a, np.ones(3))


def test_numerical_gradient_of_a_quadratic():
    p = np.array([1.0, -2.0, 3.0])
    grad = numerical_gradient(lambda: float((p**2).sum()), p)
    np.testing.assert_allclose(grad, 2 * p, rtol=1e-8)
    np.testing.assert_array_equal(p, [1.0, -2.0, 3.0])  # restored
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, p.astype(np.float32))


def test_numerical_gradient_subset():
    p = np.arange(10.0)
    grad = numerical_gradient(lambda: float((p**2).sum()), p, max_entries=3)
    assert np.isnan(grad).sum() == 7


def test_check_gradients_flags_a_wrong_gradient():
    p = np.array([1.0, 2.0])
    right = check_gradients(lambda: float((p**3).sum()), [p], [3 * p**2])
    wrong = check_gradients(lambda: float((p**3).sum()), [p], [2 * p])
    assert right["param0"] < 1e-7 and wrong["param0"] > 1e-2


def test_check_layer_on_dense_relu():
    rng = np.random.default_rng(0)
    inputs = dict(x=rng.normal(size=(4, 3)), W=rng.normal(size=(3, 5)), b=rng.normal(size=5))
    report = check_layer(
        dense_relu_forward,
        dense_relu_backward,
        inputs,
        torch_forward=lambda x, W, b: torch.relu(x @ W + b),
    )
    assert max(report["finite differences"].values()) < 1e-6
    assert max(report["torch autograd"].values()) < 1e-12


def test_check_layer_flags_a_missing_relu_derivative():
    rng = np.random.default_rng(1)
    inputs = dict(x=rng.normal(size=(6, 3)), W=rng.normal(size=(3, 4)), b=rng.normal(size=4))

    def no_derivative(x, W, b, grad_out):
        return grad_out @ W.T, x.T @ grad_out, grad_out.sum(axis=0)

    report = check_layer(dense_relu_forward, no_derivative, inputs)
    assert max(report["finite differences"].values()) > 1e-2


def test_torch_gradients():
    grads = torch_gradients(lambda a, b: (a * b).sum(), {"a": np.ones(3), "b": np.arange(3.0)})
    np.testing.assert_allclose(grads["a"], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="scalar"):
        torch_gradients(lambda a: a * 2, {"a": np.ones(3)})
