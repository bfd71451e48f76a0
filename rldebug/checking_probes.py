"""What the exercise checkers look at besides an answer's value.

Side effects: :func:`snapshot` freezes an argument's data before a call and
:func:`changed_argument` names the first argument (or field, or network weight) that the
call changed in place. Gradients: :func:`gradients` differentiates a fixed random
projection of an answer with respect to the inputs and weights a gradient may reach
(:func:`gradient_sources`), so that two answers can be compared gradient by gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "cpu")  # a torch.Tensor


def is_named_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def to_comparable(value: Any) -> Any:
    """Torch tensors become numpy arrays; containers are converted element-wise."""
    if is_tensor(value):
        return value.detach().cpu().numpy()
    if is_named_tuple(value):
        return type(value)(*(to_comparable(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(to_comparable(v) for v in value)
    if isinstance(value, Mapping):
        return {k: to_comparable(v) for k, v in value.items()}
    return value


def snapshot(value: Any) -> Any:
    """A frozen copy of an argument's data, to see later whether a call changed it.

    Random generators are left out: drawing from one changes it, as it should.
    """
    if isinstance(value, np.random.Generator):
        return None
    if is_tensor(value):
        return value.detach().cpu().clone()
    if hasattr(value, "state_dict"):  # a torch module: its weights
        return {k: v.detach().cpu().clone() for k, v in value.state_dict().items()}
    if isinstance(value, np.ndarray):
        return value.copy()
    if is_named_tuple(value):
        return dict(zip(value._fields, (snapshot(v) for v in value)))
    if isinstance(value, (list, tuple)):
        return [snapshot(v) for v in value]
    if isinstance(value, Mapping):
        return {k: snapshot(v) for k, v in value.items()}
    try:
        return copy.deepcopy(value)
    except Exception:  # something that cannot be copied cannot be compared either
        return None


def _same_data(a: Any, b: Any) -> bool:
    a, b = to_comparable(a), to_comparable(b)
    if isinstance(a, list) and isinstance(b, list):  # list == list cannot compare arrays
        return len(a) == len(b) and all(_same_data(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype.kind in "fc":
            return bool(np.array_equal(a, b, equal_nan=True))
        return bool(np.array_equal(a, b))
    try:
        return bool(a == b)
    except Exception:  # an object without a usable == : assume it is unchanged
        return True


def _first_change(before: Any, after: Any, path: str) -> str | None:
    """The path of the first part of ``after`` that differs from ``before``, or None."""
    if before is None:
        return None
    if isinstance(before, dict):
        if not isinstance(after, dict) or before.keys() != after.keys():
            return path
        for key in before:
            found = _first_change(before[key], after[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(before, list):
        if not isinstance(after, list) or len(before) != len(after):
            return path
        if all(not isinstance(v, (dict, list)) for v in before):
            return None if _same_data(before, after) else path
        for i, (b, a) in enumerate(zip(before, after)):
            found = _first_change(b, a, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if _same_data(before, after) else path


def changed_argument(before: Mapping[str, Any], args: Mapping[str, Any]) -> str | None:
    for name, value in args.items():
        found = _first_change(before.get(name), snapshot(value), name)
        if found:
            return found
    return None


def float_tensors(value: Any) -> list[Any]:
    """The floating-point tensors inside an answer, in a fixed order."""
    if is_tensor(value):
        return [value] if value.is_floating_point() else []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in float_tensors(v)]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in float_tensors(v)]
    return []


def gradient_sources(args: Mapping[str, Any], leaves: Mapping[str, Any]) -> dict[str, Any]:
    """What a gradient can reach: the differentiable inputs and every network's weights."""
    sources = dict(leaves)
    for name, value in args.items():
        if hasattr(value, "named_parameters"):
            for pname, param in value.named_parameters():
                if param.requires_grad:
                    sources[f"{name}.{pname}"] = param
    return sources


def gradients(output: Any, sources: Mapping[str, Any], use: Sequence[bool]) -> dict[str, Any]:
    """d (a fixed random projection of the answer) / d source, for every source.

    The projection weights depend only on the output's shapes, so the reader's answer and
    the reference's are probed in the same direction. ``use[i]`` says which of the
    answer's tensors the reference differentiates.
    """
    import torch

    total = None
    for i, (tensor, wanted) in enumerate(zip(float_tensors(output), use)):
        if not (wanted and tensor.requires_grad):
            continue
        weights = torch.randn(
            tensor.shape, generator=torch.Generator().manual_seed(1000 + i), dtype=tensor.dtype
        )
        term = (tensor * weights).sum()
        total = term if total is None else total + term
    if total is None or not sources:
        return dict.fromkeys(sources)
    grads = torch.autograd.grad(total, list(sources.values()), allow_unused=True, retain_graph=True)
    return {name: None if g is None else g.detach() for name, g in zip(sources, grads)}


def gradients_match(a: Any, b: Any) -> bool:
    a_zero, b_zero = a is None or not bool(a.any()), b is None or not bool(b.any())
    if a_zero or b_zero:
        return a_zero and b_zero
    scale = max(1.0, float(b.abs().max()))
    return bool(np.allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5 * scale))
