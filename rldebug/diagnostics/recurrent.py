"""Diagnostics for recurrent agents: memory, leaks between episodes, rollout/training match.

Three checks, each answering one question about a recurrent model:

* :func:`memory_probe`: does the output at step t depend on the input at step t - k?
  A flat curve beyond lag 0 means the network has no memory (for example because the
  state is zeroed at every step: a "fancy linear layer").
* :func:`hidden_state_leak_test`: does the first output of a new episode depend on the
  previous episode? It does when the state is not reset at episode starts.
* :func:`rollout_consistency`: does the training pass recompute exactly the outputs
  (log-probs, Q-values, values) that the rollout saw? It does not when the training
  pass handles the state differently from the rollout (zero state per step, missing
  resets, wrong initial state).

The model protocol of :func:`memory_probe` is

    model_fn(inputs, state) -> (outputs, final_state)

with ``inputs`` a float tensor of shape (B, T, D) (batch first), ``state`` whatever the
model uses (``None`` means zeros) and ``outputs`` of shape (B, T, K).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rldebug.diagnostics.memory import MemoryProbe, memory_probe

__all__ = [
    "MemoryProbe",
    "memory_probe",
    "LeakReport",
    "HiddenStateLeakError",
    "hidden_state_leak_test",
    "ConsistencyReport",
    "RolloutConsistencyError",
    "rollout_consistency",
    "check_rollout_consistency",
]


# ---------------------------------------------------------------------------------------
# hidden-state leak test
# ---------------------------------------------------------------------------------------


class HiddenStateLeakError(RuntimeError):
    """A new episode's outputs depend on the previous episode."""


@dataclass
class LeakReport:
    """Whether a new episode's first outputs depend on what came before it."""

    leaks: bool
    max_abs_diff: float
    n_trials: int
    atol: float
    step_diffs: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def first_leaking_step(self) -> int | None:
        """Index (within the new episode) of the first output that differs, or None."""
        above = np.flatnonzero(self.step_diffs > self.atol)
        return int(above[0]) if above.size else None

    def __str__(self) -> str:
        if self.leaks:
            return (
                f"hidden state LEAKS across episodes: output {self.first_leaking_step} of a new "
                f"episode changes by up to {self.max_abs_diff:.3g} with the previous episode "
                f"({self.n_trials} trials). Reset the state when episode_start is True "
                "(and make sure policy_step returns deterministic outputs, not samples)."
            )
        return (
            f"no leak: a new episode's first {len(self.step_diffs)} outputs do not depend on "
            f"the previous episode (max |Δ| = {self.max_abs_diff:.1e} over {self.n_trials} trials)"
        )

    def raise_if_leaks(self) -> LeakReport:
        """Raise :class:`HiddenStateLeakError` when the state leaks; else return self."""
        if self.leaks:
            raise HiddenStateLeakError(str(self))
        return self


def _flat_output(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(-1).to(torch.float64)
    if isinstance(value, np.ndarray) or np.isscalar(value):
        return torch.as_tensor(np.asarray(value, dtype=np.float64)).reshape(-1)
    if isinstance(value, (tuple, list)):
        parts = [_flat_output(v) for v in value if v is not None]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
    raise TypeError(
        "policy_step must return a Tensor, an array, or a tuple of them (for example the "
        f"logits or Q-values, not a sampled action), got {type(value).__name__}"
    )


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def hidden_state_leak_test(
    policy_step: Callable[[torch.Tensor, bool], Any],
    obs_dim: int,
    *,
    episode_len: int = 10,
    n_trials: int = 8,
    seed: int = 0,
    atol: float = 1e-6,
    new_episode_len: int = 3,
    obs_scale: float = 1.0,
    batch_dim: bool = False,
) -> LeakReport:
    """Does a new episode's output depend on the previous episode?

    ``policy_step(obs, episode_start)`` is the stateful acting function under test: it
    keeps its hidden state itself (like an agent object) and returns the logits, Q-values
    or any deterministic output (not a sampled action). ``obs`` has shape (obs_dim,), or
    (1, obs_dim) when ``batch_dim=True``.

    Each trial plays a different random "previous episode" (1 to ``episode_len`` steps),
    then a new episode (``episode_start=True`` on its first step) whose first
    ``new_episode_len`` observations are the same in every trial. Without a leak these
    outputs are identical in every trial. The global random generators (torch, numpy,
    ``random``) are reseeded at every new episode and restored afterwards, so a policy
    that samples draws the same samples in every trial; still, return logits or Q-values
    where you can: a sampled action hides a small leak.
    """
    if n_trials < 2:
        raise ValueError(f"n_trials must be >= 2 to compare episodes, got {n_trials}")
    if episode_len < 1 or new_episode_len < 1:
        raise ValueError("episode_len and new_episode_len must be >= 1")
    gen = torch.Generator().manual_seed(seed)

    def obs_of(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0) if batch_dim else x

    new_episode = obs_scale * torch.randn(new_episode_len, obs_dim, generator=gen)
    previous = []
    for _ in range(n_trials):
        length = int(torch.randint(1, episode_len + 1, (1,), generator=gen))
        previous.append(obs_scale * torch.randn(length, obs_dim, generator=gen))

    def first_call(obs: torch.Tensor) -> Any:
        try:
            return policy_step(obs, True)
        except (RuntimeError, ValueError, IndexError) as err:
            raise ValueError(
                f"policy_step failed on an observation of shape {tuple(obs.shape)}: {err}. "
                f"Is obs_dim={obs_dim} the size of one observation (batch_dim={batch_dim})?"
            ) from err

    results = []
    saved = torch.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        with torch.no_grad():
            first_call(obs_of(previous[0][0]))
            for episode in previous:
                for t, obs in enumerate(episode):
                    policy_step(obs_of(obs), t == 0)
                # The same random numbers in every new episode: a policy that samples
                # (epsilon-greedy, dropout) draws the same samples unless its state leaks.
                _seed_all(seed)
                outs = [
                    _flat_output(policy_step(obs_of(obs), t == 0))
                    for t, obs in enumerate(new_episode)
                ]
                results.append(torch.stack(outs))  # (new_episode_len, K)
    finally:
        torch.set_rng_state(saved[0])
        np.random.set_state(saved[1])
        random.setstate(saved[2])
    stacked = torch.stack(results)  # (n_trials, new_episode_len, K)
    step_diffs = (stacked - stacked[0]).abs().amax(dim=(0, 2)).numpy()  # (new_episode_len,)
    max_diff = float(step_diffs.max()) if step_diffs.size else 0.0
    return LeakReport(
        leaks=bool(max_diff > atol),
        max_abs_diff=max_diff,
        n_trials=n_trials,
        atol=atol,
        step_diffs=step_diffs,
    )


# ---------------------------------------------------------------------------------------
# rollout / training consistency
# ---------------------------------------------------------------------------------------


class RolloutConsistencyError(RuntimeError):
    """The training pass does not recompute what the rollout saw."""


@dataclass
class ConsistencyReport:
    """How far the training pass's outputs are from the rollout's, on valid entries."""

    max_abs_diff: float
    ok: bool
    worst_index: tuple[int, ...] | None
    n_mismatched: int
    n_valid: int
    atol: float
    name: str = "log-probs"
    dims: tuple[str, ...] = ()
    first_mismatch: tuple[int, ...] | None = None

    def _where(self, index: tuple[int, ...] | None) -> str:
        if index is None:
            return "?"
        names = list(self.dims) + [f"dim{i}" for i in range(len(self.dims), len(index))]
        return "(" + ", ".join(f"{n} {i}" for n, i in zip(names, index)) + ")"

    def __str__(self) -> str:
        head = (
            f"training pass recomputes the rollout's {self.name}: max |Δ| = {self.max_abs_diff:.2g}"
        )
        if self.ok:
            return f"{head} — OK"
        # The first mismatch points at the cause (the first step whose state differs); the
        # worst is only where the error has grown largest. Name both, and which is which.
        return (
            f"{head} — MISMATCH: first mismatch at {self._where(self.first_mismatch)}, "
            f"worst at {self._where(self.worst_index)}; "
            f"{self.n_mismatched} of {self.n_valid} entries differ by more than {self.atol:g}"
        )


def _as_float_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} must be a tensor or an array of numbers: {err}") from None


def rollout_consistency(
    rollout_outputs: Any,
    training_outputs: Any,
    *,
    mask: Any = None,
    atol: float = 1e-5,
    name: str = "log-probs",
    dims: Sequence[str] | None = None,
) -> ConsistencyReport:
    """Compare what the rollout computed with what the training pass recomputes.

    Both arguments have the same shape, e.g. (n_envs, n_steps) log-probs of the taken
    actions; tensors or arrays. ``mask`` (same shape, or the leading dimensions of it)
    marks the valid entries; padding is ignored. ``dims`` names the axes in the message;
    the default is ("env", "step", ...) for batch-first data: pass ("step", "env") for
    a time-major (T, B) buffer.

    Before the first update the two must agree to float precision: the same weights on
    the same inputs with the same states. A mismatch means the training pass handles the
    hidden state differently from the rollout.
    """
    old = _as_float_array(rollout_outputs, "rollout_outputs")
    new = _as_float_array(training_outputs, "training_outputs")
    if old.shape != new.shape:
        raise ValueError(
            f"rollout_outputs has shape {old.shape} but training_outputs has shape "
            f"{new.shape}: they must match entry for entry (same envs, same steps, same "
            "order). Check batch_first and any (T, B) <-> (B, T) transposes."
        )
    if mask is None:
        valid = np.ones(old.shape, dtype=bool)
    else:
        valid = _as_float_array(mask, "mask") != 0
        if valid.shape != old.shape:
            if valid.shape != old.shape[: valid.ndim]:
                raise ValueError(
                    f"mask has shape {valid.shape}, which matches neither the outputs' shape "
                    f"{old.shape} nor its leading dimensions"
                )
            valid = np.broadcast_to(
                valid.reshape(valid.shape + (1,) * (old.ndim - valid.ndim)), old.shape
            )
    diff = np.abs(old - new)
    diff = np.where(np.isnan(diff) & ~(np.isnan(old) & np.isnan(new)), np.inf, diff)
    diff = np.where(np.isnan(diff), 0.0, diff)  # NaN in both: the same
    diff = np.where(valid, diff, 0.0)
    n_valid = int(valid.sum())
    max_diff = float(diff.max()) if diff.size else 0.0
    bad = diff > atol
    n_bad = int(bad.sum())
    worst = first = None
    if n_bad:
        worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        first = tuple(int(i) for i in np.argwhere(bad)[0])
    if dims is None:
        dims = ("env", "step", "output")[: old.ndim] if old.ndim > 1 else ("index",)
    return ConsistencyReport(
        max_abs_diff=max_diff,
        ok=n_bad == 0,
        worst_index=worst,
        n_mismatched=n_bad,
        n_valid=n_valid,
        atol=atol,
        name=name,
        dims=tuple(dims),
        first_mismatch=first,
    )


def check_rollout_consistency(
    rollout_outputs: Any,
    training_outputs: Any,
    *,
    mask: Any = None,
    atol: float = 1e-5,
    name: str = "log-probs",
    dims: Sequence[str] | None = None,
) -> ConsistencyReport:
    """:func:`rollout_consistency`, raising :class:`RolloutConsistencyError` on a mismatch.

    Call it once per update, before the first optimiser step, in a training loop.
    """
    report = rollout_consistency(
        rollout_outputs, training_outputs, mask=mask, atol=atol, name=name, dims=dims
    )
    if not report.ok:
        raise RolloutConsistencyError(
            f"{report}. The training pass must use the same initial state and the same "
            "episode resets as the rollout (and no state zeroed at every step)."
        )
    return report
