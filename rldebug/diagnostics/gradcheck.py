"""Gradient checks: finite differences and torch autograd against a hand-written backward.

A hand-written backward pass is right when it agrees with two independent witnesses:

* :func:`numerical_gradient`: central finite differences, ``(f(p + h) - f(p - h)) / 2h``
  one entry at a time (slow, needs float64, works on any function);
* :func:`torch_gradients`: the same computation written with torch operations, whose
  autograd gives the exact gradient.

:func:`relative_error` says how far apart two gradients are. In float64, a correct
backward agrees with autograd to about 1e-12 and with central differences to about 1e-7;
a wrong one is off by 1e-2 to 1.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "relative_error",
    "numerical_gradient",
    "check_gradients",
    "torch_gradients",
    "check_layer",
    "LayerCheck",
]


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """``||a - b|| / (||a|| + ||b||)``: 0 for equal arrays, 1 for opposite ones."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the gradients have different shapes: {a.shape} and {b.shape}")
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    if scale == 0.0:
        return 0.0
    return float(np.linalg.norm(a - b) / scale)


def numerical_gradient(
    f: Callable[[], float],
    param: np.ndarray,
    eps: float = 1e-6,
    max_entries: int | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to ``param``.

    ``param`` is perturbed in place (and restored), so ``f`` must read it. Use float64:
    in float32 the rounding error of ``f`` swamps the difference. With ``max_entries``
    only that many randomly chosen entries are estimated; the others are NaN.
    """
    if param.dtype != np.float64:
        raise TypeError(f"use float64 for finite differences, got {param.dtype}")
    grad = np.full(param.shape, np.nan)
    flat_index = np.arange(param.size)
    if max_entries is not None and max_entries < param.size:
        rng = np.random.default_rng(0) if rng is None else rng
        flat_index = rng.choice(param.size, size=max_entries, replace=False)
    for k in flat_index:
        i = np.unravel_index(k, param.shape)
        old = param[i]
        param[i] = old + eps
        up = float(f())
        param[i] = old - eps
        down = float(f())
        param[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def check_gradients(
    f: Callable[[], float],
    params: Sequence[np.ndarray],
    analytic: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    eps: float = 1e-6,
    max_entries: int | None = None,
) -> dict[str, float]:
    """Relative error between ``analytic`` gradients and finite differences, per parameter.

    Entries not estimated (see ``max_entries``) are left out of the comparison.
    """
    if len(params) != len(analytic):
        raise ValueError(f"{len(params)} parameters but {len(analytic)} gradients")
    names = list(names) if names is not None else [f"param{i}" for i in range(len(params))]
    out = {}
    for name, p, g in zip(names, params, analytic):
        if np.shape(g) != np.shape(p):
            raise ValueError(
                f"the gradient of {name} has shape {np.shape(g)}, the parameter {np.shape(p)}"
            )
        num = numerical_gradient(f, p, eps=eps, max_entries=max_entries)
        keep = ~np.isnan(num)
        out[name] = relative_error(np.asarray(g)[keep], num[keep])
    return out


def torch_gradients(
    fn: Callable[..., object], inputs: Mapping[str, np.ndarray], wrt: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Gradients of the scalar ``fn(**tensors)`` (written with torch ops) by autograd.

    ``inputs`` are numpy arrays, turned into float64 tensors; the gradients come back as
    numpy arrays, for the inputs named in ``wrt`` (default: all).
    """
    import torch

    wrt = list(inputs) if wrt is None else list(wrt)
    tensors = {
        k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=k in wrt)
        if np.issubdtype(np.asarray(v).dtype, np.floating)
        else torch.as_tensor(np.asarray(v))
        for k, v in inputs.items()
    }
    out = fn(**tensors)
    if out.dim() != 0:
        raise ValueError(f"fn must return a scalar, got shape {tuple(out.shape)}")
    out.backward()
    return {k: tensors[k].grad.numpy() for k in wrt}


@dataclass
class LayerCheck:
    """The verdict of :func:`check_layer`: every input's gradient against each witness.

    ``errors[witness][input]`` is a relative error; the check passes when every error is
    below its witness's threshold. It reads like the dict it holds (``check["finite
    differences"]["W"]``).
    """

    errors: dict[str, dict[str, float]]
    thresholds: dict[str, float]

    def __getitem__(self, witness: str) -> dict[str, float]:
        return self.errors[witness]

    def items(self):
        return self.errors.items()

    def keys(self):
        return self.errors.keys()

    @property
    def worst(self) -> tuple[str, str, float]:
        """(witness, input, relative error) of the largest error relative to its threshold."""
        entries = [(w, k, e) for w, errs in self.errors.items() for k, e in errs.items()]
        return max(entries, key=lambda entry: entry[2] / self.thresholds[entry[0]])

    @property
    def ok(self) -> bool:
        witness, _, error = self.worst
        return error <= self.thresholds[witness]

    def __str__(self) -> str:
        witness, name, error = self.worst
        verdict = "OK" if self.ok else "WRONG"
        return (
            f"gradient check {verdict}: worst is {name} against {witness}, relative error "
            f"{error:.1e} (threshold {self.thresholds[witness]:.0e})"
        )


THRESHOLDS = {"finite differences": 1e-5, "torch autograd": 1e-8}


def _positional(fn: Callable) -> list[str]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]


def _call_backward(backward, forward, arrays: dict[str, np.ndarray], grad_out: np.ndarray):
    """Call a function-style ``backward(**inputs, grad_out)`` or a method-style
    ``backward(grad)`` (after a forward pass, which caches what it needs)."""
    params = _positional(backward)
    copies = {k: v.copy() for k, v in arrays.items()}
    if "grad_out" in params or not params:
        grads = backward(**copies, grad_out=grad_out)
    elif len(params) == 1:
        forward(**copies)
        grads = backward(grad_out)
    else:
        grads = backward(*copies.values(), grad_out)
    if isinstance(grads, np.ndarray) or np.isscalar(grads):
        grads = (grads,)
    grads = [np.asarray(g, dtype=np.float64) for g in grads]
    if len(grads) != len(arrays):
        raise ValueError(f"backward returned {len(grads)} gradients for {len(arrays)} inputs")
    for (name, value), grad in zip(arrays.items(), grads):
        if grad.shape != value.shape:
            hint = (
                ": sum over the batch axis only (grad_out.sum(axis=0)), not over everything"
                if grad.ndim == 0
                else ""
            )
            raise ValueError(
                f"backward returned a gradient of shape {grad.shape} for {name}, which has "
                f"shape {value.shape}: a gradient has the shape of its input{hint}"
            )
    return grads


def check_layer(
    forward: Callable[..., np.ndarray],
    backward: Callable[..., Sequence[np.ndarray]],
    inputs: Mapping[str, np.ndarray],
    *,
    torch_forward: Callable[..., object] | None = None,
    rng: np.random.Generator | None = None,
    eps: float = 1e-6,
) -> LayerCheck:
    """Check any layer: ``forward(**inputs) -> out`` and ``backward(**inputs, grad_out) ->``
    one gradient per input, in the order of ``inputs``.

    ``backward`` may also be a method ``backward(grad)`` of a layer object whose
    ``forward`` caches what it needs (one gradient per input, or a single array for a
    single input). The loss is ``sum(out * R)`` for a fixed random ``R``, so
    ``grad_out = R``. Returns a :class:`LayerCheck`: the relative error of every input's
    gradient against finite differences (and against torch autograd when
    ``torch_forward`` is given), with a verdict (``.ok``, ``.worst``).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    arrays = {k: np.array(v, dtype=np.float64) for k, v in inputs.items()}
    R = rng.normal(size=np.shape(forward(**arrays)))
    grads = _call_backward(backward, forward, arrays, R)

    def loss() -> float:
        return float(np.sum(forward(**arrays) * R))

    errors = {
        "finite differences": check_gradients(loss, list(arrays.values()), grads, list(arrays), eps)
    }
    if torch_forward is not None:
        import torch

        R_t = torch.tensor(R)
        auto = torch_gradients(lambda **t: (torch_forward(**t) * R_t).sum(), arrays)
        errors["torch autograd"] = {k: relative_error(g, auto[k]) for k, g in zip(arrays, grads)}
    return LayerCheck(errors, {w: THRESHOLDS[w] for w in errors})
