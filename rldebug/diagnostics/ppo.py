"""The first-epoch check of PPO: before any update, the policy ratio must be exactly 1.

On the first minibatch of the first epoch the weights have not moved since the rollout,
so the training pass must recompute *exactly* the log-probabilities the rollout saw:
``ratio = exp(new_logp - old_logp) = 1`` and the approximate KL is 0. Anything else means
the training pass does not see what the rollout saw: a hidden state kept inside the module,
a state not reset at episode starts, a minibatch that cuts sequences apart, dropout, or
observations normalised differently. The check costs nothing: the numbers are already
computed by the loss.

```python
report = first_epoch_check(new_logp, batch.logprobs, mask=batch.mask)
report.raise_if_failed()   # or: assert report.ok, report
```
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["FirstEpochReport", "FirstEpochCheckFailed", "first_epoch_check"]


class FirstEpochCheckFailed(AssertionError):
    """The policy ratio is not 1 before any update."""


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True)
class FirstEpochReport:
    """What :func:`first_epoch_check` measured."""

    max_ratio_dev: float  # max |ratio - 1| over the valid steps
    approx_kl: float  # mean of (ratio - 1) - log(ratio), the low-variance KL estimate
    worst_index: tuple  # where |ratio - 1| is largest
    n_steps: int  # number of valid steps compared
    tol: float
    dims: tuple = ()  # names of the axes, for example ("step", "env")
    first_index: tuple = ()  # the earliest step with |ratio - 1| > tol (() when none)
    n_offending: int = 0  # valid steps with |ratio - 1| > tol

    @property
    def ok(self) -> bool:
        return self.max_ratio_dev <= self.tol

    def __str__(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        text = (
            f"first-epoch check {verdict}: max |ratio - 1| = {self.max_ratio_dev:.3g}, "
            f"approx KL = {self.approx_kl:.3g} over {self.n_steps} steps (tolerance {self.tol:g})"
        )
        if not self.ok:
            # The first offending step points at the cause (the first state that differs);
            # the worst is only where the difference has grown largest. Name both.
            text += (
                f"; first at {self._name(self.first_index)}, worst at {self.where} "
                f"({self.n_offending} of {self.n_steps} steps off). Before any update the "
                "training pass "
                "must recompute the rollout's log-probs exactly: check the hidden state "
                "(stored initial state, resets at episode starts, whole sequences per "
                "minibatch)."
            )
        return text

    @property
    def where(self) -> str:
        """The worst entry, with its axes named when ``dims`` is known."""
        return self._name(self.worst_index)

    def _name(self, index: tuple) -> str:
        """``(env 3, step 41)`` when ``dims`` is known (env first), else ``index (41, 3)``."""
        if not self.dims:
            return f"index {index}"
        return (
            "("
            + ", ".join(
                f"{n} {i}" for n, i in sorted(zip(self.dims, index), key=lambda p: p[0] != "env")
            )
            + ")"
        )

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise FirstEpochCheckFailed(str(self))


def first_epoch_check(
    new_logp, old_logp, mask=None, *, tol: float = 1e-5, dims: tuple = ()
) -> FirstEpochReport:
    """Compare the training pass's log-probs with the rollout's, before any update.

    Args:
        new_logp: log pi(a_t | ...) recomputed by the training pass, any shape (e.g. (T, B)).
        old_logp: the log-probs stored during the rollout, same shape.
        mask: optional bool array, same shape: which steps count (False on padding and on
            reset steps whose action the environment ignored).
        tol: largest |ratio - 1| accepted (float32 recomputation is exact to ~1e-7).
        dims: the axes' names, for example ``("step", "env")`` for a (T, B) buffer: the
            report then says "(env 3, step 41)" instead of an index.

    Returns:
        A :class:`FirstEpochReport` with ``max_ratio_dev``, ``approx_kl`` and ``ok``.
    """
    new, old = _numpy(new_logp), _numpy(old_logp)
    if new.shape != old.shape:
        raise ValueError(
            f"new_logp has shape {new.shape} but old_logp has shape {old.shape}: compare the "
            "log-prob of the taken action at the same steps (for example both (T, B))"
        )
    valid = np.ones(new.shape, dtype=bool) if mask is None else _numpy(mask).astype(bool)
    if valid.shape != new.shape:
        raise ValueError(f"mask has shape {valid.shape}, the log-probs have shape {new.shape}")
    if not valid.any():
        raise ValueError("the mask selects no step: nothing to compare")
    log_ratio = np.where(valid, new - old, 0.0)
    ratio = np.exp(log_ratio)
    dev = np.abs(ratio - 1.0)
    worst = np.unravel_index(int(np.argmax(dev)), dev.shape) if dev.ndim else ()
    offending = np.argwhere(dev > tol)  # (n, ndim) indices, in row-major order
    if "step" in dims and len(dims) == dev.ndim:  # the earliest in time, whatever the layout
        offending = offending[np.argsort(offending[:, list(dims).index("step")], kind="stable")]
    first = offending[0] if len(offending) and dev.ndim else ()
    kl = ((ratio - 1.0) - log_ratio)[valid].mean()
    return FirstEpochReport(
        max_ratio_dev=float(dev.max()),
        approx_kl=float(kl),
        worst_index=tuple(int(i) for i in worst),
        n_steps=int(valid.sum()),
        tol=tol,
        dims=tuple(dims),
        first_index=tuple(int(i) for i in first),
        n_offending=len(offending),
    )
