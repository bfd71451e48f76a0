"""The memory probe: how far back does a recurrent model's output depend on its inputs?

A flat curve beyond lag 0 means the network has no memory (for example because the state
is zeroed at every step: a "fancy linear layer").

The model can be an ``nn.LSTM`` / ``nn.GRU`` in either layout (``batch_first`` is read
from the module), a cell (``nn.LSTMCell``, ``nn.GRUCell``), a step function
``f(obs (B, D), state) -> (out (B, K), state)`` or a sequence function
``f(inputs (B, T, D), state) -> (outputs (B, T, K), state)`` with ``state`` whatever the
model uses (``None`` means zeros). Before measuring anything the probe checks that each
sample's outputs depend on that sample's inputs only (see
:func:`rldebug.diagnostics.adapters.check_rows_independent`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rldebug.diagnostics.adapters import as_sequence_fn, check_rows_independent

__all__ = ["MemoryProbe", "memory_probe"]


@dataclass
class MemoryProbe:
    """How strongly the output at the last step t depends on the input at t - lag.

    ``sensitivity[k]`` is the mean |d out_t / d in_{t-k}| (method "gradient") or the mean
    |Δ out_t| when in_{t-k} alone is perturbed (method "perturbation"). ``horizon`` is the
    largest lag whose sensitivity exceeds ``rel_threshold`` times the peak.
    """

    lags: np.ndarray
    sensitivity: np.ndarray
    method: str = "gradient"
    rel_threshold: float = 0.01
    abs_threshold: float = 1e-7
    label: str = ""

    @property
    def horizon(self) -> int:
        """Largest lag at which the output still measurably depends on the input."""
        peak = float(np.max(self.sensitivity)) if self.sensitivity.size else 0.0
        threshold = max(self.rel_threshold * peak, self.abs_threshold)
        above = np.flatnonzero(self.sensitivity > threshold)
        return int(self.lags[above[-1]]) if above.size else -1

    @property
    def has_memory(self) -> bool:
        """True when some input before step t measurably changes the output at t."""
        return self.horizon > 0

    def __str__(self) -> str:
        max_lag = int(self.lags[-1])
        horizon = self.horizon
        prefix = f"{self.label}: " if self.label else ""
        if horizon < 0:
            return f"{prefix}output at t depends on no input at all (sensitivity is zero)"
        if horizon == 0:
            return (
                f"{prefix}output at t depends only on the input at t: no memory "
                "(a feed-forward net)"
            )
        if horizon >= max_lag:
            return (
                f"{prefix}output at t depends on inputs at least {max_lag} steps back "
                f"(the probe's max_lag; sensitivity at lag {max_lag} is "
                f"{self.sensitivity[-1] / max(self.sensitivity.max(), 1e-30):.1%} of its peak)"
            )
        return (
            f"{prefix}output at t depends on inputs up to {horizon} steps back "
            f"(sensitivity above {self.rel_threshold:.0%} of its peak)"
        )

    def plot(self, ax=None, *, logy: bool = True, label: str | None = None):
        """Sensitivity against lag; returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        if ax is None:
            fig, ax = plt.subplots(figsize=(6, 3))
        else:
            fig = ax.figure
        floor = 1e-12
        values = np.maximum(self.sensitivity, floor) if logy else self.sensitivity
        ax.plot(self.lags, values, marker=".", label=label or self.label or self.method)
        if logy:
            ax.set_yscale("log")
            if np.any(self.sensitivity <= floor) and not getattr(ax, "_zero_note", False):
                ax.annotate(
                    f"exact zeros drawn at {floor:g}",
                    (0.99, 0.09),
                    xycoords="axes fraction",
                    ha="right",
                    va="bottom",
                    fontsize=8,
                    color="0.4",
                )
                ax._zero_note = True
        ax.set_xlabel("lag k (steps back from t)")
        what = "|d out_t / d in_{t-k}|" if self.method == "gradient" else "|Δ out_t|"
        ax.set_ylabel(f"mean {what}")
        ax.set_title("Memory probe: does the output at t depend on the input at t-k?")
        if label or self.label:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


def _outputs_of(result: Any, where: str) -> torch.Tensor:
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise TypeError(
            f"{where} must return (outputs, final_state), got {type(result).__name__}; "
            "wrap your model, e.g. `lambda x, h: model(x, h)`"
        )
    outputs = result[0]
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"{where} returned outputs of type {type(outputs).__name__}, not a Tensor")
    return outputs


def _call(
    sequence_fn, inputs: torch.Tensor, state: Any, input_dim: int
) -> tuple[torch.Tensor, Any]:
    try:
        result = sequence_fn(inputs, state)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"the model failed on inputs of shape {tuple(inputs.shape)} (batch, time, "
            f"{input_dim} features): {err}. Is {input_dim} the size of one observation?"
        ) from err
    return _outputs_of(result, "the model"), result[1]


def _sensitivity(
    sequence_fn, inputs: torch.Tensor, state: Any, method: str, max_lag: int, noise: torch.Tensor
) -> tuple[np.ndarray, Any]:
    """Mean sensitivity of the last output to the input at every lag 0..max_lag."""
    batch_size, seq_len, input_dim = inputs.shape
    last = seq_len - 1
    lags = np.arange(max_lag + 1)

    def check_shape(outputs: torch.Tensor, batch: int) -> None:
        if outputs.ndim != 3 or outputs.shape[0] != batch or outputs.shape[1] != seq_len:
            raise ValueError(
                f"the model must return outputs of shape (B, T, K) = ({batch}, {seq_len}, K) "
                f"for inputs of shape ({batch}, {seq_len}, {input_dim}), got "
                f"{tuple(outputs.shape)}. Is the model batch_first?"
            )

    if method == "gradient":
        inputs = inputs.clone().requires_grad_(True)
        outputs, final = _call(sequence_fn, inputs, state, input_dim)
        check_shape(outputs, batch_size)
        total = torch.zeros(seq_len)
        n_out = outputs.shape[2]
        for k in range(n_out):  # one backward pass per output unit: the Jacobian's rows
            if not outputs.requires_grad:
                break
            (grad,) = torch.autograd.grad(
                outputs[:, last, k].sum(), inputs, retain_graph=k < n_out - 1, allow_unused=True
            )
            if grad is not None:  # (B, T, D) -> (T,)
                total += grad.abs().mean(dim=(0, 2)).detach()
        per_step = (total / n_out).numpy()
    else:
        n_copies = max_lag + 1
        perturbed = inputs.repeat(n_copies + 1, 1, 1)  # copy 0 is unperturbed
        for lag in lags:  # copy lag + 1 has the input at t - lag perturbed
            rows = slice((lag + 1) * batch_size, (lag + 2) * batch_size)
            perturbed[rows, last - lag] += noise
        with torch.no_grad():
            outputs, final = _call(sequence_fn, perturbed, state, input_dim)
        check_shape(outputs, batch_size * (n_copies + 1))
        end = outputs[:, last].reshape(n_copies + 1, batch_size, -1)  # (copies, B, K)
        change = (end[1:] - end[0]).abs().mean(dim=(1, 2))  # (copies,)
        per_step = np.zeros(seq_len)
        per_step[last - lags] = change.numpy()
    return np.array([per_step[last - lag] for lag in lags], dtype=float), final


def memory_probe(
    model_fn: Any,
    input_dim: int,
    *,
    seq_len: int = 30,
    max_lag: int = 20,
    batch_size: int = 64,
    method: str = "gradient",
    seed: int = 0,
    input_scale: float = 1.0,
    perturbation: float = 1.0,
    state: Any = None,
    rel_threshold: float = 0.01,
    label: str = "",
    batch_first: bool | None = None,
    step: bool | None = None,
) -> MemoryProbe:
    """Measure how far back the output at the last step depends on the inputs.

    Feeds random inputs of shape (batch_size, seq_len, input_dim) through the model (any
    form listed in the module's docstring) and measures, for every lag k in 0..max_lag,
    how much the output at t = seq_len - 1 depends on the input at t - k: the mean
    absolute gradient (``method="gradient"``) or the mean absolute change of the output
    when only that input is perturbed (``method="perturbation"``, which also works for
    models that are not differentiable).

    ``batch_first=False`` declares a sequence function that reads (T, B, D) (modules
    such as ``nn.LSTM`` say it themselves); ``step`` says whether a function reads one
    step (True) or a whole sequence (False), found out by a trial call when ``None``.
    Raises :class:`~rldebug.diagnostics.adapters.LayoutError` when one sample's outputs
    depend on another sample's inputs.
    """
    if method not in ("gradient", "perturbation"):
        raise ValueError(f'method must be "gradient" or "perturbation", got {method!r}')
    if not 0 <= max_lag < seq_len:
        raise ValueError(f"need 0 <= max_lag < seq_len, got max_lag={max_lag}, seq_len={seq_len}")
    if input_dim < 1 or batch_size < 1:
        raise ValueError(f"input_dim and batch_size must be >= 1, got {input_dim}, {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    inputs = input_scale * torch.randn(batch_size, seq_len, input_dim, generator=gen)
    noise = perturbation * torch.randn(batch_size, input_dim, generator=gen)
    sequence_fn = as_sequence_fn(model_fn, input_dim, batch_first=batch_first, step=step)
    _call(sequence_fn, inputs[:2, :2], None, input_dim)  # a readable error for a bad size
    check_rows_independent(sequence_fn, inputs[: min(batch_size, 4)], model_fn)
    sensitivity, final = _sensitivity(sequence_fn, inputs, state, method, max_lag, noise)
    probe = MemoryProbe(np.arange(max_lag + 1), sensitivity, method, rel_threshold, label=label)
    if step is None and final is not None and not probe.has_memory and sequence_fn is model_fn:
        # A step function that also accepts 3-D inputs looks memoryless when fed a whole
        # sequence with state None: step through it before concluding "no memory".
        try:
            stepped = as_sequence_fn(model_fn, input_dim, step=True)
            check_rows_independent(stepped, inputs[: min(batch_size, 4)], model_fn)
            again, _ = _sensitivity(stepped, inputs, state, method, max_lag, noise)
        except Exception:  # not a step function after all: the first reading stands
            return probe
        probe = MemoryProbe(probe.lags, again, method, rel_threshold, label=label)
    return probe
