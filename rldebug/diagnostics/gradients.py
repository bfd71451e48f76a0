"""Which outputs of a Q-network does the loss reach? (chapter 1)

:func:`gradient_mask_report` runs your loss once on your batch and records the gradient of
the loss with respect to every output of your network. In Q-learning each sample should
send gradient to exactly one output, the action it took, and only through the Q(s, .)
pass (not through the next-state pass that builds the target, nor through a target
network). It also checks that each sample's gradient depends on that sample alone, which
catches the (B, 1) - (B,) broadcast, and measures how the gradient on the taken action
scales with the number of actions: a loss averaged over all B x |A| outputs (the
target-copy trick) gives 1/|A| of the gradient of ``gather``.

The Q(s, .) pass is the network call whose input is the batch's observations and whose
output requires grad, whatever the order of the calls in your loss.

:func:`check_td_shapes` is the one-line guard to put before the subtraction.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rldebug.diagnostics.adapters import positional_parameters
from rldebug.qlearning import check_td_shapes

__all__ = ["GradientMaskReport", "check_td_shapes", "gradient_mask_report"]

OBS_FIELDS = ("obs", "observations", "states", "state", "s")
ACTION_FIELDS = ("actions", "action")
ALIASED = (
    "the loss is exactly 0 because the prediction is aliased: the network's output was "
    "overwritten by the target (detach() without clone() shares memory); use "
    "q.detach().clone() for the copy"
)


@dataclass
class GradientMaskReport:
    """The gradient of the loss with respect to the network's Q(s, .) output."""

    grad: np.ndarray  # (B, A): d loss / d Q(s_i, a)
    actions: np.ndarray | None  # (B,) taken actions, when known
    other_calls: list[str] = field(default_factory=list)  # the other forward passes
    rows_independent: bool | None = None  # None: not checked
    tolerance: float = 1e-12
    relative_to_gather: float | None = None  # gradient on the taken action / gather's
    aliased: bool = False  # the Q(s, .) output was overwritten after the forward pass
    loss_value: float | None = None
    warnings: list[str] = field(default_factory=list)  # torch's warnings, with counts

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
        if self.aliased:
            found.append(ALIASED)
        elif not received.any() and self.loss_value == 0.0:
            found.append(
                "the loss is exactly 0 and no output received gradient: is the prediction "
                "aliased with the target (detach() without clone())?"
            )
        elif not received.any():
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
        if self.relative_to_gather is not None:
            text += f"; gradient {self.relative_to_gather:.2g}x gather's"
            if self.relative_to_gather < 0.9:
                text += " (a mean over all outputs shrinks it as 1/|A|)"
        if self.warnings:
            text += "; torch warned: " + " | ".join(self.warnings)
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


def _field(batch: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        if isinstance(batch, Mapping) and name in batch:
            return batch[name]
        if not isinstance(batch, Mapping) and hasattr(batch, name):
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


@dataclass
class _Call:
    """One forward pass of a hooked network, and the gradient its output received."""

    network: str  # "model" or "target"
    inputs: tuple
    output: torch.Tensor
    values: torch.Tensor  # the output's values right after the forward pass
    grad: torch.Tensor | None = None


def _reads(call: _Call, obs: Any) -> bool:
    first = call.inputs[0] if call.inputs else None
    if not isinstance(first, torch.Tensor) or not isinstance(obs, torch.Tensor):
        return False
    return first is obs or (first.shape == obs.shape and bool(torch.equal(first, obs.float())))


def _run_loss(loss_fn, model, batch, target=None, widen: int | None = None):
    """Run the loss with every forward pass of ``model`` (and ``target``) recorded.

    ``widen=k`` doubles the action axis of model call k (its outputs repeated), to see
    how the gradient on the taken action scales with the number of actions.
    Returns (calls, loss). A loss function that calls ``.backward()`` itself and
    returns None is supported: its gradients are caught on the way.
    """
    calls: list[_Call] = []

    def recorder(network: str):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor):
                return None
            index = sum(c.network == "model" for c in calls)
            if network == "model" and widen == index:
                output = torch.cat([output, output], dim=1)
            call = _Call(network, inputs, output, output.detach().clone())
            calls.append(call)
            if output.requires_grad:
                output.register_hook(lambda g, call=call: setattr(call, "grad", g))
            return output if network == "model" and widen == index else None

        return hook

    handles = [model.register_forward_hook(recorder("model"))]
    if target is not None:
        handles.append(target.register_forward_hook(recorder("target")))
    try:
        loss = (
            loss_fn(batch)
            if len(positional_parameters(loss_fn, required=True)) == 1
            else loss_fn(model, batch)
        )
    finally:
        for handle in handles:
            handle.remove()
    if loss is not None and (not isinstance(loss, torch.Tensor) or loss.numel() != 1):
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"loss_fn must return a scalar tensor (or None after calling backward()), got "
            f"{shape}"
            + (
                ": a (B, B) loss is the (B, 1) - (B,) broadcast"
                if isinstance(loss, torch.Tensor) and loss.ndim == 2
                else ""
            )
        )
    if not any(c.network == "model" for c in calls):
        raise ValueError("loss_fn(model, batch) never called the model")
    with_grad = [c for c in calls if c.output.requires_grad]
    if loss is not None and with_grad and loss.requires_grad:
        found = torch.autograd.grad(
            loss, [c.output for c in with_grad], allow_unused=True, retain_graph=False
        )
        for call, g in zip(with_grad, found):
            call.grad = g
    for call in calls:
        if call.grad is None and call.output.requires_grad:
            call.grad = torch.zeros_like(call.output)
    return calls, loss


def _q_call(calls: list[_Call], obs: Any) -> int:
    """Index of Q(s, .): reads the observations and requires grad, whatever the order."""
    model_calls = [c for c in calls if c.network == "model"]
    for wanted in (
        lambda c: _reads(c, obs) and c.output.requires_grad,
        lambda c: c.output.requires_grad,
        lambda c: _reads(c, obs),
    ):
        for i, call in enumerate(model_calls):
            if wanted(call):
                return i
    return 0


def _warning_lines(caught: list) -> list[str]:
    counts = Counter(str(w.message).split(". ")[0].splitlines()[0] for w in caught)
    return [f"{text} ({n}x)" if n > 1 else text for text, n in counts.items()]


def _taken_norm(grad: torch.Tensor, actions: np.ndarray | None) -> float:
    if actions is None:
        return float(grad.norm())
    return float(grad[torch.arange(len(actions)), torch.as_tensor(actions)].norm())


def gradient_mask_report(
    model: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor | None],
    batch: Any,
    actions: torch.Tensor | None = None,
    check_rows: int = 8,
    *,
    target: torch.nn.Module | None = None,
    measure_scale: bool = True,
) -> GradientMaskReport:
    """Which of ``model``'s outputs does ``loss_fn(model, batch)`` send gradient to?

    ``loss_fn`` is your own loss: ``loss_fn(model, batch)`` or ``loss_fn(batch)`` (a
    closure over your networks, as in a single-file script). It may return the loss, or
    call ``.backward()`` itself and return None. Q(s, .) is the call of ``model`` on the
    batch's observations (``obs``, ``observations`` or ``states``) whose output requires
    grad; ``target`` (a target network) is hooked too, and its output must receive no
    gradient. The taken actions come from ``actions`` or from the batch. When the loss
    returns a value, parameter gradients are not touched (no ``.backward()``).

    With ``check_rows > 0`` and a batch of tensors with the batch size first (a named
    tuple, dict, tuple or tensor), the loss is also run on single samples: each row of the
    batch gradient must be the single-sample gradient times one common factor. With
    ``measure_scale`` the loss is run once more with the action axis doubled, which
    gives the gradient's size relative to ``gather`` (1/|A| for a mean over all outputs).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calls, loss = _run_loss(loss_fn, model, batch, target)
    obs = _field(batch, OBS_FIELDS)
    q_index = _q_call(calls, obs)
    model_calls = [c for c in calls if c.network == "model"]
    q = model_calls[q_index]
    if q.output.ndim != 2:
        raise ValueError(f"the model's output must be (B, A), got {tuple(q.output.shape)}")
    grad = q.grad if q.grad is not None else torch.zeros_like(q.output)
    if actions is None:
        actions = _field(batch, ACTION_FIELDS)
    acts = None if actions is None else actions.detach().cpu().numpy().astype(int).reshape(-1)
    other_calls = []
    for n, call in enumerate(c for c in calls if c is not q):
        what = "the target network" if call.network == "target" else f"forward pass {n + 2}"
        if call.grad is not None and bool((call.grad != 0).any()):
            other_calls.append(f"{what} also received gradient")
        else:
            other_calls.append(f"{what}: no gradient (fine for a target)")
    report = GradientMaskReport(
        grad.detach().cpu().double().numpy(),
        acts,
        other_calls,
        aliased=not torch.equal(q.output.detach(), q.values),
        loss_value=None if loss is None else float(loss.detach()),
        warnings=_warning_lines(caught),
    )
    size = q.output.shape[0]
    if not report.received.any():
        return report
    quiet = warnings.catch_warnings()  # single-sample runs warn about shapes on correct code
    with quiet:
        warnings.simplefilter("ignore")
        if measure_scale and acts is not None:
            report.relative_to_gather = _scale_against_gather(
                loss_fn, model, batch, target, q_index, grad, acts
            )
        n_check = min(check_rows, size)
        if n_check > 1 and _slice_batch(batch, 0, size) is not None:
            singles = []
            for i in range(n_check):
                one, _ = _run_loss(loss_fn, model, _slice_batch(batch, i, size), target)
                single_q = [c for c in one if c.network == "model"][q_index]
                g1 = single_q.grad
                singles.append(torch.zeros(q.output.shape[1]) if g1 is None else g1[0].detach())
            full = grad[:n_check].detach().double()
            single = torch.stack(singles).double()
            scale = float((full * single).sum() / (single * single).sum().clamp_min(1e-300))
            residual = float((full - scale * single).norm())
            report.rows_independent = residual <= 1e-5 * float(full.norm()) + 1e-12
    return report


def _scale_against_gather(loss_fn, model, batch, target, q_index, grad, acts) -> float | None:
    """How the taken action's gradient changes when the action axis is doubled.

    ``gather`` does not care how many actions there are (ratio 1); a mean over all
    B x |A| outputs halves (ratio 1/2): its gradient is |A|^log2(ratio) of gather's.
    """
    try:
        wide_calls, _ = _run_loss(loss_fn, model, batch, target, widen=q_index)
    except Exception:  # a loss that relies on a fixed number of actions
        return None
    wide = [c for c in wide_calls if c.network == "model"][q_index].grad
    if wide is None or wide.shape[1] != 2 * grad.shape[1]:
        return None
    before = _taken_norm(grad.detach(), acts)
    after = _taken_norm(wide[:, : grad.shape[1]].detach(), acts)
    if before == 0.0 or after == 0.0:
        return None
    return grad.shape[1] ** math.log2(after / before)
