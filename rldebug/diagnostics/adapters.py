"""Run the recurrent diagnostics on models in any of PyTorch's layouts.

The diagnostics speak one protocol, ``f(inputs (B, T, D), state) -> (outputs (B, T, K),
state)``. :func:`as_sequence_fn` turns the other common forms into it:

* ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``: ``batch_first`` is read from the module, so the
  sequence-first default is fed (T, B, D) and its output transposed back;
* ``nn.LSTMCell`` / ``nn.GRUCell`` / ``nn.RNNCell``: called once per step, the (h, c)
  pair of an LSTM cell carried as it is;
* a step function ``f(obs (B, D), state) -> (out (B, K), state)``: called once per step;
* a sequence function ``f(inputs (B, T, D), state) -> (out (B, T, K), state)``: as it is;
* an sb3-contrib recurrent policy (``model.policy`` of a ``RecurrentPPO``): whole
  sequences through its training path.

:func:`check_rows_independent` verifies that output row b depends on input row b only.
A sequence-first model fed batch-first data (or a layer that mixes the samples of a batch)
breaks this, and every conclusion drawn from such outputs would be wrong.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["LayoutError", "as_sequence_fn", "check_rows_independent", "step_through"]

SequenceFn = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


class LayoutError(ValueError):
    """The outputs of one sample depend on the inputs of another."""


def _cell_output(state: Any) -> torch.Tensor:
    return state[0] if isinstance(state, tuple) else state  # an LSTM cell gives (h, c)


def step_through(step_fn: Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]) -> SequenceFn:
    """``f(inputs (B, T, D), state)`` that calls ``step_fn(obs (B, D), state)`` T times."""

    def run(inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        outputs = []
        for t in range(inputs.shape[1]):
            out, state = step_fn(inputs[:, t], state)
            outputs.append(out)
        return torch.stack(outputs, dim=1), state

    return run


def _rnn_fn(rnn: nn.RNNBase, batch_first: bool | None) -> SequenceFn:
    first = rnn.batch_first if batch_first is None else batch_first

    def run(inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        if first:
            return rnn(inputs, state)
        out, state = rnn(inputs.transpose(0, 1), state)  # (B, T, D) -> (T, B, D)
        return out.transpose(0, 1), state

    return run


def _cell_fn(cell: nn.RNNCellBase) -> SequenceFn:
    def one_step(obs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        state = cell(obs, state)
        return _cell_output(state), state

    return step_through(one_step)


def _returns_pair(result: Any) -> bool:
    return isinstance(result, (tuple, list)) and len(result) == 2


def _is_step_fn(model_fn: Callable, input_dim: int) -> bool:
    """Does ``model_fn`` read one step (B, D) rather than a sequence (B, T, D)?

    A function that fails on a sequence, or maps it to 2-D outputs, is a step function.
    """
    probe = torch.zeros(2, 3, input_dim)
    try:
        with torch.no_grad():
            result = model_fn(probe, None)
    except Exception:
        return True
    outputs = result[0] if _returns_pair(result) else result
    return isinstance(outputs, torch.Tensor) and outputs.ndim == 2


def as_sequence_fn(
    model: Any, input_dim: int, *, batch_first: bool | None = None, step: bool | None = None
) -> SequenceFn:
    """The batch-first sequence protocol for ``model`` (see the module's docstring).

    ``batch_first=False`` says that a sequence function reads (T, B, D). ``step=True`` or
    ``False`` says whether a function reads one step or a sequence; ``None`` finds out by
    calling it on a short sequence.
    """
    if isinstance(model, nn.RNNBase):
        return _rnn_fn(model, batch_first)
    if isinstance(model, nn.RNNCellBase):
        return _cell_fn(model)
    if hasattr(model, "lstm_actor") and hasattr(model, "get_distribution"):
        from rldebug.integrations.sb3 import RecurrentPolicyHooks  # an sb3-contrib policy

        return RecurrentPolicyHooks(model).training_fn
    if not callable(model):
        raise TypeError(
            "expected a recurrent model: an nn.LSTM/GRU/RNN, a cell, or a function "
            f"f(inputs, state) -> (outputs, state); got a {type(model).__name__}"
        )
    if step is None:
        step = _is_step_fn(model, input_dim)
    if step:
        return step_through(model)
    if batch_first is False:

        def time_major(inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
            out, state = model(inputs.transpose(0, 1), state)
            return out.transpose(0, 1), state

        return time_major
    return model


def _rnn_layouts(model: Any) -> str:
    """Names the sequence-first RNNs inside ``model``, for the layout message."""
    if not isinstance(model, nn.Module):
        return ""
    found = [
        name or type(module).__name__
        for name, module in model.named_modules()
        if isinstance(module, nn.RNNBase) and not module.batch_first
    ]
    if not found:
        return ""
    return f" It contains sequence-first RNNs (batch_first=False): {', '.join(found)}."


def check_rows_independent(
    sequence_fn: SequenceFn, inputs: torch.Tensor, model: Any = None, *, atol: float = 1e-6
) -> None:
    """Raise :class:`LayoutError` unless output row b depends on input row b only.

    Perturbs sample 0 and checks that no other sample's outputs move.
    """
    with torch.no_grad():
        base = sequence_fn(inputs, None)[0]
        moved = inputs.clone()
        moved[0] += 1.0 + inputs[0].abs()
        changed = sequence_fn(moved, None)[0]
    if base.shape[0] < 2:
        return
    diff = float((changed[1:] - base[1:]).abs().max())
    scale = float(base.abs().max()) + 1e-12
    if diff > atol * max(1.0, scale):
        raise LayoutError(
            "changing the inputs of sample 0 changed the outputs of other samples (by up to "
            f"{diff:.3g}): the model mixes the samples of a batch, so no conclusion can be "
            "drawn. Most often the layout is wrong: nn.LSTM and nn.GRU read (T, B, D) "
            "unless batch_first=True, and the probe feeds (B, T, D); pass batch_first=False "
            "for a sequence-first model (a BatchNorm in training mode mixes samples too)."
            + _rnn_layouts(model)
        )


def positional_parameters(fn: Callable, required: bool = False) -> list[str]:
    """Names of the positional parameters of ``fn`` (of ``forward`` for a module); with
    ``required``, only those without a default value."""
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [
        p.name
        for p in params
        if p.kind in kinds and not (required and p.default is not inspect.Parameter.empty)
    ]
