"""Checkers for chapter 2, "Backprop from scratch".

The dense backward and the Adam step are checked on random shapes against the numpy
reference in ``rldebug.numpy_mlp``, which the tests prove equal to torch autograd and to
``torch.optim.Adam``; after a pass the checker also prints the agreement with torch.

The target copy (in :mod:`rldebug.checkers.ch02_target`) is checked for its side effects
as much as its values.
"""

from __future__ import annotations

import numpy as np

from rldebug.checkers.ch02_target import TARGET_COPY, check_target_copy
from rldebug.checking import Exercise, PlantedBug, compare_outputs
from rldebug.numpy_mlp import adam_step as _adam_reference
from rldebug.numpy_mlp import dense_relu_backward as _dense_reference

__all__ = [
    "ADAM_STEP",
    "DENSE_RELU_BACKWARD",
    "EXERCISES",
    "TARGET_COPY",
    "check_adam_step",
    "check_dense_relu_backward",
    "check_target_copy",
    "torch_adam_steps",
    "torch_dense_relu_backward",
]

# --------------------------------------------------------------------------- exercise 1


def _dense_case(rng: np.random.Generator) -> dict:
    batch, n_in, n_out = (int(k) for k in rng.integers(1, 7, size=3))
    if n_in == n_out:  # keep the two axes apart so a missing transpose shows in the shape
        n_out += 1
    x = rng.normal(size=(batch, n_in))
    if rng.random() < 0.5:
        x = np.maximum(x, 0.0)  # the output of a previous ReLU layer
    return {
        "x": x,
        "W": rng.normal(size=(n_in, n_out)),
        "b": rng.normal(size=n_out),
        "grad_out": rng.normal(size=(batch, n_out)),
    }


def _dense_parts(x, W, b, grad_out):
    z = x @ W + b
    return z, grad_out * (z > 0)


def _no_outer_product(x, W, b, grad_out):
    _, delta = _dense_parts(x, W, b, grad_out)
    dW = np.broadcast_to(delta.sum(axis=0), W.shape).copy()  # the error, copied to every input
    return delta @ W.T, dW, delta.sum(axis=0)


def _scalar_bias(x, W, b, grad_out):
    _, delta = _dense_parts(x, W, b, grad_out)
    return delta @ W.T, x.T @ delta, np.full(b.shape, delta.sum())


def _missing_transpose(x, W, b, grad_out):
    _, delta = _dense_parts(x, W, b, grad_out)
    return delta @ W.T, delta.T @ x, delta.sum(axis=0)


def _no_relu_derivative(x, W, b, grad_out):
    delta = grad_out
    return delta @ W.T, x.T @ delta, delta.sum(axis=0)


def _activation_not_derivative(x, W, b, grad_out):
    z = x @ W + b
    delta = grad_out * np.maximum(z, 0.0)  # multiplies by relu(z) instead of relu'(z)
    return delta @ W.T, x.T @ delta, delta.sum(axis=0)


def _derivative_in_place_on_input(x, W, b, grad_out):
    _, delta = _dense_parts(x, W, b, grad_out)
    dx = delta @ W.T
    x[x > 0] = 1.0  # the previous ReLU's derivative, written over the stored input
    return dx, x.T @ delta, delta.sum(axis=0)


def _compare_dense(got, expected):
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return "dense_relu_backward must return three arrays: (dx, dW, db)"
    for name, g, e in zip(("dx", "dW", "db"), got, expected):
        problem = compare_outputs(g, e, rtol=1e-6, atol=1e-8, where=name)
        if problem:
            return problem
    return None


def _explain_dense(case, got, expected):
    shapes = {k: np.shape(v) for k, v in case.items()}
    return (
        f"shapes: x {shapes['x']}, W {shapes['W']}, b {shapes['b']}, grad_out "
        f"{shapes['grad_out']}; dx must be {shapes['x']}, dW {shapes['W']}, db {shapes['b']}"
    )


DENSE_RELU_BACKWARD = Exercise(
    name="dense_relu_backward",
    reference=_dense_reference,
    make_case=_dense_case,
    compare=_compare_dense,
    explain=_explain_dense,
    reference_path="rldebug.numpy_mlp.dense_relu_backward",
    bugs=[
        PlantedBug(
            "the weight gradient has no outer product with the input",
            _no_outer_product,
            "dW[i, j] = sum over the batch of x[:, i] * delta[:, j]: dW = x.T @ delta. The "
            "error alone (delta summed over the batch) is the *bias* gradient.",
        ),
        PlantedBug(
            "one scalar bias gradient shared by the whole layer",
            _scalar_bias,
            "Each unit has its own bias: db = delta.sum(axis=0), one number per output unit.",
        ),
        PlantedBug(
            "a transpose is missing",
            _missing_transpose,
            "dW must have W's shape (n_in, n_out): x.T @ delta, not delta.T @ x.",
        ),
        PlantedBug(
            "the ReLU derivative is missing",
            _no_relu_derivative,
            "Multiply grad_out by relu'(z) = (z > 0) before anything else: units that were "
            "off in the forward pass pass no gradient.",
        ),
        PlantedBug(
            "the ReLU output is used instead of its derivative",
            _activation_not_derivative,
            "relu'(z) is 1 where z > 0 and 0 elsewhere, not relu(z).",
        ),
        PlantedBug(
            "the derivative was written in place over the stored input",
            _derivative_in_place_on_input,
            "Something overwrote x with its 0/1 ReLU mask before dW = x.T @ delta was "
            "computed: compute masks as new arrays, (x > 0), never by assigning into x.",
        ),
    ],
)

# --------------------------------------------------------------------------- exercise 2


def _adam_case(rng: np.random.Generator) -> dict:
    shape = tuple(int(k) for k in rng.integers(1, 6, size=int(rng.integers(1, 3))))
    betas = (0.9, 0.999) if rng.random() < 0.6 else (float(rng.uniform(0.5, 0.95)), 0.99)
    return {
        "param": rng.normal(size=shape),
        "grad": rng.normal(size=shape),
        "m": 0.1 * rng.normal(size=shape),
        "v": 0.01 * rng.random(size=shape),
        "t": int(rng.choice([1, 1, 2, 3, 5, 10, 100])),
        "lr": float(rng.choice([1e-3, 1e-2, 0.1])),
        "betas": betas,
        "eps": 1e-8,
    }


def _adam_parts(grad, m, v, betas):
    beta1, beta2 = betas
    return beta1 * m + (1 - beta1) * grad, beta2 * v + (1 - beta2) * grad**2


def _no_bias_correction(param, grad, m, v, t, lr, betas, eps):
    m, v = _adam_parts(grad, m, v, betas)
    return param - lr * m / (np.sqrt(v) + eps), m, v


def _t_from_zero(param, grad, m, v, t, lr, betas, eps):
    m, v = _adam_parts(grad, m, v, betas)
    with np.errstate(divide="ignore", invalid="ignore"):
        m_hat = m / (1 - betas[0] ** (t - 1))
        v_hat = v / (1 - betas[1] ** (t - 1))
        return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def _shifted_t(param, grad, m, v, t, lr, betas, eps):
    m, v = _adam_parts(grad, m, v, betas)
    m_hat = m / (1 - betas[0] ** (t + 0.1))
    v_hat = v / (1 - betas[1] ** (t + 0.1))
    return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def _no_sqrt(param, grad, m, v, t, lr, betas, eps):
    m, v = _adam_parts(grad, m, v, betas)
    m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
    return param - lr * m_hat / (v_hat + eps), m, v


def _v_not_squared(param, grad, m, v, t, lr, betas, eps):
    beta1, beta2 = betas
    m = beta1 * m + (1 - beta1) * grad
    v = beta2 * v + (1 - beta2) * grad  # the gradient, not its square
    with np.errstate(invalid="ignore"):
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        return param - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def _updates_in_place(param, grad, m, v, t, lr, betas, eps):
    beta1, beta2 = betas
    m *= beta1  # writes into the caller's arrays
    m += (1 - beta1) * grad
    v *= beta2
    v += (1 - beta2) * grad**2
    param -= lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return param, m, v


def _non_finite(got, expected, where):
    """A sentence for NaN/inf in ``got``; "" when both have the same NaN/inf; None if finite."""
    try:
        g = np.asarray(got, dtype=np.float64)
        e = np.asarray(expected, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if g.shape != e.shape or (np.isfinite(g).all() and np.isfinite(e).all()):
        return None
    same = np.array_equal(np.isnan(g), np.isnan(e)) and np.array_equal(
        np.where(np.isfinite(g), 0.0, g), np.where(np.isfinite(e), 0.0, e), equal_nan=True
    )
    if same and np.allclose(g[np.isfinite(g)], e[np.isfinite(e)], rtol=1e-7, atol=1e-10):
        return ""
    return f"your {where} contains NaN or inf ({int((~np.isfinite(g)).sum())} of {g.size} entries)"


def _compare_adam(got, expected):
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return "adam_step must return three arrays: (param, m, v)"
    for name, g, e in zip(("param", "m", "v"), got, expected):
        problem = _non_finite(g, e, f"new {name}")
        if problem == "":
            continue
        problem = problem or compare_outputs(g, e, rtol=1e-7, atol=1e-10, where=f"new {name}")
        if problem:
            return problem
    return None


def _explain_adam(case, got, expected):
    (beta1, beta2), t = case["betas"], case["t"]
    return (
        f"On this case t = {t}, betas = ({beta1:.3g}, {beta2:.3g}): m = beta1 m + (1 - beta1) "
        f"g, v = beta2 v + (1 - beta2) g**2, then param - lr * (m / {1 - beta1**t:.4g}) / "
        f"(sqrt(v / {1 - beta2**t:.4g}) + eps); return the new m and v, not the corrected ones."
    )


ADAM_STEP = Exercise(
    name="adam_step",
    reference=_adam_reference,
    make_case=_adam_case,
    compare=_compare_adam,
    explain=_explain_adam,
    reference_path="rldebug.numpy_mlp.adam_step",
    bugs=[
        PlantedBug(
            "the bias correction is missing",
            _no_bias_correction,
            "m and v start at zero, so early on they are too small: divide by "
            "(1 - beta1**t) and (1 - beta2**t).",
        ),
        PlantedBug(
            "t counts from 0 in the bias correction",
            _t_from_zero,
            "t is the number of this step, 1 on the first call: 1 - beta**0 = 0 divides by "
            "zero on the first step.",
        ),
        PlantedBug(
            "the bias correction uses t + 0.1",
            _shifted_t,
            "The correction is 1 - beta**t for the integer step number t, nothing added.",
        ),
        PlantedBug(
            "the square root of v is missing",
            _no_sqrt,
            "The step is lr * m_hat / (sqrt(v_hat) + eps): without the root it has the "
            "wrong scale (1/|g| instead of about 1).",
        ),
        PlantedBug(
            "v averages the gradient instead of its square",
            _v_not_squared,
            "v is the running mean of grad**2 (a magnitude); the gradient itself goes into m.",
        ),
        PlantedBug(
            "param, m and v are updated in place",
            _updates_in_place,
            "adam_step returns the new (param, m, v) and must leave its arguments as they "
            "were: `m = beta1 * m + (1 - beta1) * grad`, not `m *= beta1`. An optimizer that "
            "writes into arrays the caller still holds (the previous step's m, a copy of the "
            "weights kept for comparison) changes them behind its back.",
        ),
    ],
)

EXERCISES = [DENSE_RELU_BACKWARD, ADAM_STEP, TARGET_COPY]


# --------------------------------------------------------------------------- torch witnesses


def torch_dense_relu_backward(x, W, b, grad_out):
    """(dx, dW, db) of ``relu(x @ W + b)`` by torch autograd, in float64."""
    import torch

    t = {
        k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True)
        for k, v in {"x": x, "W": W, "b": b}.items()
    }
    out = torch.relu(t["x"] @ t["W"] + t["b"])
    out.backward(torch.tensor(np.asarray(grad_out, dtype=np.float64)))
    return t["x"].grad.numpy(), t["W"].grad.numpy(), t["b"].grad.numpy()


def torch_adam_steps(param, grads, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    """Parameters after ``torch.optim.Adam`` steps with the given gradients, in float64."""
    import torch

    p = torch.nn.Parameter(torch.tensor(np.asarray(param, dtype=np.float64)))
    opt = torch.optim.Adam([p], lr=lr, betas=betas, eps=eps)
    for g in grads:
        p.grad = torch.tensor(np.asarray(g, dtype=np.float64))
        opt.step()
    return p.detach().numpy()


def _worst_torch_error_dense(fn, rng, n=10) -> float:
    from rldebug.diagnostics.gradcheck import relative_error

    worst = 0.0
    for _ in range(n):
        case = _dense_case(rng)
        mine = fn(**{k: v.copy() for k, v in case.items()})
        theirs = torch_dense_relu_backward(**case)
        worst = max(worst, *(relative_error(a, b) for a, b in zip(mine, theirs)))
    return worst


def _worst_torch_error_adam(fn, rng, n=10, steps=5) -> float:
    from rldebug.diagnostics.gradcheck import relative_error

    worst = 0.0
    for _ in range(n):
        case = _adam_case(rng)
        grads = [rng.normal(size=case["param"].shape) for _ in range(steps)]
        p, m, v = case["param"], np.zeros_like(case["param"]), np.zeros_like(case["param"])
        for t, g in enumerate(grads, start=1):
            p, m, v = fn(p.copy(), g, m.copy(), v.copy(), t, case["lr"], case["betas"], case["eps"])
        theirs = torch_adam_steps(case["param"], grads, case["lr"], case["betas"], case["eps"])
        worst = max(worst, relative_error(p - case["param"], theirs - case["param"]))
    return worst


def check_dense_relu_backward(fn, *, seed=None):
    """Check a reader's ``dense_relu_backward(x, W, b, grad_out) -> (dx, dW, db)``."""
    DENSE_RELU_BACKWARD.check(fn, seed=seed)
    err = _worst_torch_error_dense(fn, np.random.default_rng(seed))
    print(f"  and agrees with torch autograd: worst relative error {err:.1e} on 10 random shapes")


def check_adam_step(fn, *, seed=None):
    """Check a reader's ``adam_step(param, grad, m, v, t, lr, betas, eps) -> (param, m, v)``."""
    ADAM_STEP.check(fn, seed=seed)
    err = _worst_torch_error_adam(fn, np.random.default_rng(seed))
    print(
        f"  and agrees with torch.optim.Adam over 5 steps: worst relative error {err:.1e} "
        "(on the parameter change)"
    )
