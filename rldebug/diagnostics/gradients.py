"""Which outputs of a Q-network does the loss reach? (chapter 1)

:func:`gradient_mask_report` runs your loss once on your batch and records the gradient of
the loss with respect to every output of your network. In Q-learning each sample should
send gradient to exactly one output, the action it took, and only through the Q(s, .)
pass (not through the next-state pass that builds the target). It also checks that each
sample's gradient depends on that sample alone, which catches the (B, 1) - (B,) broadcast.

:func:`check_td_shapes` is the one-line guard to put before the subtraction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rldebug.qlearning import check_td_shapes

__all__ = ["GradientMaskReport", "check_td_shapes", "gradient_mask_report"]


@dataclass
class GradientMaskReport:
    """The gradient of the loss with respect to the network's Q(s, .) output."""

    grad: np.ndarray  # (B, A): d loss / d Q(s_i, a)
    actions: np.ndarray | None  # (B,) taken actions, when known
    other_calls: list[str] = field(default_factory=list)  # the other forward passes
    rows_independent: bool | None = None  # None: not checked
    tolerance: float = 1e-12

    @property
    def received(self) -> np.ndarray:
        """(B, A) bool: which outputs received a non-zero gradient."""
        scale = max(float(np.abs(self.grad).max()), 1e-30)
        return np.abs(self.grad) > self.tolerance * scale

    @property
    def problems(self) -> list[str]:
        found = []
        received = self.received
        per_row = received.sum(axis=1)
        if not received.any():
            found.append("no output received gradient: is the loss detached from the network?")
        elif per_row.max() > 1:
            found.append(
                f"{int((per_row > 1).sum())} of {len(per_row)} rows send gradient to "
                f"several outputs (up to {int(per_row.max())}): the error is not masked to "
                "the taken action"
            )
        if self.actions is not None and received.any():
            rows = np.arange(len(self.actions))
            off = received.copy()
            off[rows, self.actions] = False
            if off.any() and per_row.max() <= 1:
                found.append(
                    f"{int(off.any(axis=1).sum())} rows send gradient to an action that was "
                    "not taken (max over actions instead of the taken one?)"
                )
        for call in self.other_calls:
            if "received gradient" in call:
                found.append(call + ": the target is not detached")
        if self.rows_independent is False:
            found.append(
                "a sample's gradient depends on the other samples' targets: a (B, 1) - (B,) "
                "broadcast?"
            )
        return found

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        received = self.received
        n_rows, n_actions = received.shape
        counts = sorted(set(received.sum(axis=1).tolist()))
        shown = "/".join(str(c) for c in counts)
        text = f"each row: {shown} of {n_actions} outputs received gradient"
        if self.actions is not None and received.any():
            taken = received[np.arange(n_rows), self.actions]
            text += ", the taken action" if taken.all() else ", NOT always the taken action"
        if self.rows_independent is not None:
            text += "; rows independent" if self.rows_independent else "; rows mixed"
        problems = self.problems
        return text + (": OK" if not problems else ": BUG: " + "; ".join(problems))

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"GradientMaskReport({self.summary!r})"

    def plot(self, max_rows: int = 16, title: str | None = None):
        """Heat map of |d loss / d Q(s_i, a)| (each row scaled to its maximum), the taken
        actions circled. Returns the Figure."""
        import matplotlib.pyplot as plt

        grad = np.abs(self.grad[:max_rows])
        grad = grad / np.maximum(grad.max(axis=1, keepdims=True), 1e-30)  # each row: max 1
        fig, ax = plt.subplots(figsize=(1.2 + 0.45 * grad.shape[1], 0.9 + 0.22 * grad.shape[0]))
        ax.imshow(grad, cmap="Greys", aspect="auto", vmin=0, vmax=1)
        if self.actions is not None:
            rows = np.arange(len(grad))
            ax.scatter(
                self.actions[: len(grad)], rows, s=90, facecolors="none", edgecolors="C3", lw=1.5
            )
        ax.set_xlabel("output (action); circles: taken", fontsize=9)
        ax.set_ylabel("sample")
        ax.set_xticks(range(grad.shape[1]))
        ax.set_title(title or ("OK" if self.ok else "BUG"), fontsize=10)
        fig.tight_layout()
        return fig


def _get_actions(batch: Any) -> torch.Tensor | None:
    for name in ("actions", "action"):
        if isinstance(batch, Mapping) and name in batch:
            return batch[name]
        if hasattr(batch, name):
            return getattr(batch, name)
    return None


def _slice_batch(batch: Any, index: int, size: int) -> Any:
    """The batch restricted to sample ``index``; None if the batch cannot be sliced."""

    def cut(value):
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == size:
            return value[index : index + 1]
        return value

    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(cut(v) for v in batch))
    if isinstance(batch, Mapping):
        return {k: cut(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(cut(v) for v in batch)
    if isinstance(batch, torch.Tensor):
        return cut(batch)
    return None


def _output_grads(model: torch.nn.Module, loss_fn: Callable, batch: Any):
    """Run ``loss_fn(model, batch)``; return the model's outputs and d loss / d output."""
    outputs: list[torch.Tensor] = []

    def hook(module, inputs, output):
        outputs.append(output)

    handle = model.register_forward_hook(hook)
    try:
        loss = loss_fn(model, batch)
    finally:
        handle.remove()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"loss_fn must return a scalar tensor, got {shape}"
            + (
                ": a (B, B) loss is the (B, 1) - (B,) broadcast"
                if isinstance(loss, torch.Tensor) and loss.ndim == 2
                else ""
            )
        )
    if not outputs:
        raise ValueError("loss_fn(model, batch) never called the model")
    with_grad = [i for i, o in enumerate(outputs) if o.requires_grad]
    grads: list[torch.Tensor | None] = [None] * len(outputs)
    if with_grad and loss.requires_grad:
        found = torch.autograd.grad(
            loss, [outputs[i] for i in with_grad], allow_unused=True, retain_graph=False
        )
        for i, g in zip(with_grad, found):
            grads[i] = torch.zeros_like(outputs[i]) if g is None else g
    return outputs, grads


def gradient_mask_report(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batch: Any,
    actions: torch.Tensor | None = None,
    check_rows: int = 8,
) -> GradientMaskReport:
    """Which of ``model``'s outputs does ``loss_fn(model, batch)`` send gradient to?

    ``loss_fn`` is your own loss: it calls ``model`` on the batch's observations (and may
    call it again for the next observations). The first call is taken as Q(s, .). The
    taken actions come from ``actions`` or from ``batch.actions`` / ``batch["actions"]``.
    Parameter gradients are not touched (no ``.backward()``).

    With ``check_rows > 0`` and a batch of tensors with the batch size first (a named
    tuple, dict, tuple or tensor), the loss is also run on single samples: each row of the
    batch gradient must be the single-sample gradient times one common factor.
    """
    outputs, grads = _output_grads(model, loss_fn, batch)
    first = outputs[0]
    if first.ndim != 2:
        raise ValueError(f"the model's output must be (B, A), got {tuple(first.shape)}")
    grad = grads[0] if grads[0] is not None else torch.zeros_like(first)
    if actions is None:
        actions = _get_actions(batch)
    acts = None if actions is None else actions.detach().cpu().numpy().astype(int).reshape(-1)
    other_calls = []
    for i, g in enumerate(grads[1:], start=2):
        if g is not None and bool((g != 0).any()):
            other_calls.append(f"forward pass {i} of the network also received gradient")
        else:
            other_calls.append(f"forward pass {i}: no gradient (fine for a target)")
    report = GradientMaskReport(grad.detach().cpu().double().numpy(), acts, other_calls)
    size = first.shape[0]
    n_check = min(check_rows, size)
    if n_check > 1 and _slice_batch(batch, 0, size) is not None and report.received.any():
        singles = []
        for i in range(n_check):
            _, g1 = _output_grads(model, loss_fn, _slice_batch(batch, i, size))
            singles.append(torch.zeros(first.shape[1]) if g1[0] is None else g1[0][0].detach())
        full = grad[:n_check].detach().double()
        single = torch.stack(singles).double()
        scale = float((full * single).sum() / (single * single).sum().clamp_min(1e-300))
        residual = float((full - scale * single).norm())
        report.rows_independent = residual <= 1e-5 * float(full.norm()) + 1e-12
    return report
