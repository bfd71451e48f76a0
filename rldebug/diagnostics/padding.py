"""Does padding leak into a loss? The check for padded sequences that no curve shows.

A batch of sequences padded to one length carries a ``mask`` (B, T), True on real steps.
Whatever sits on the padded steps is not data, so the loss must not depend on it: fill
the padding with other values and the loss must stay the same. A loss that averages over
every slot (``.mean()`` instead of a masked mean) changes, and so does one that lets the
padding reach a real step's target. Nothing crashes and the agent often learns anyway,
a little worse; this check is how you find out.

>>> report = padding_leak_test(my_loss, batch)        # batch: a named tuple with .mask
>>> report.ok, str(report)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PaddingReport", "padding_leak_test"]


@dataclass
class PaddingReport:
    """How much a loss moved when only its batch's padded steps changed."""

    loss: float
    max_change: float
    n_padded: int
    ok: bool
    atol: float

    def __str__(self) -> str:
        if self.ok:
            return (
                f"the loss ({self.loss:.4g}) does not change when the {self.n_padded} padded "
                f"steps change: OK"
            )
        return (
            f"the loss ({self.loss:.4g}) changes by up to {self.max_change:.3g} when only the "
            f"{self.n_padded} padded steps change: PADDING LEAKS into the loss. Average over "
            "the real steps only: (error * mask).sum() / mask.sum()"
        )


def _refill(value: Any, pad: torch.Tensor, gen: torch.Generator) -> Any:
    """``value`` with new contents on the padded steps (B, T) of its first two axes."""
    if not isinstance(value, torch.Tensor) or value.dim() < 2:
        return value
    steps = min(value.shape[1], pad.shape[1])
    if value.shape[0] != pad.shape[0] or value.dtype == torch.bool:
        return value
    where = torch.zeros(value.shape[:2], dtype=torch.bool)
    where[:, :steps] = pad[:, :steps]
    where = where.reshape(*where.shape, *([1] * (value.dim() - 2))).expand_as(value)
    if value.is_floating_point():
        noise = 5.0 * torch.randn(value.shape, generator=gen, dtype=value.dtype)
    else:  # indices (actions): other valid indices, drawn from the values present
        present = value.unique()
        noise = present[torch.randint(len(present), value.shape, generator=gen)]
    return torch.where(where, noise, value)


def padding_leak_test(
    loss_fn: Callable[[Any], torch.Tensor],
    batch: Any,
    *,
    mask_field: str = "mask",
    n_trials: int = 3,
    atol: float = 1e-6,
    seed: int = 0,
) -> PaddingReport:
    """Refill the padded steps of ``batch`` ``n_trials`` times; the loss must not move.

    Args:
        loss_fn: ``loss_fn(batch) -> scalar``, your loss as training calls it.
        batch: a named tuple whose ``mask_field`` (B, T) is True on real steps. Every other
            tensor field with the same B and at least T steps on axis 1 gets new values
            (noise for floats, other present values for integers) where the mask is False.
        atol: the largest change tolerated (float noise).
    """
    if not hasattr(batch, "_replace") or not hasattr(batch, mask_field):
        raise TypeError(
            f"batch must be a named tuple with a {mask_field!r} field (B, T), True on real "
            f"steps; got {type(batch).__name__}"
        )
    mask = torch.as_tensor(getattr(batch, mask_field)).bool()
    if mask.dim() != 2:
        raise ValueError(f"{mask_field} must be (B, T), got shape {tuple(mask.shape)}")
    pad = ~mask
    if not bool(pad.any()):
        raise ValueError(
            f"the batch has no padded steps ({mask_field} is all True): nothing to test; "
            "sample a batch with sequences shorter than the longest"
        )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        base = float(loss_fn(batch))
        changes = []
        for _ in range(n_trials):
            fields = {
                name: _refill(value, pad, gen) if name != mask_field else value
                for name, value in batch._asdict().items()
            }
            changes.append(abs(float(loss_fn(batch._replace(**fields))) - base))
    max_change = max(changes) if changes else 0.0
    n_padded = int(pad.sum())
    return PaddingReport(base, max_change, n_padded, max_change <= atol, atol)
