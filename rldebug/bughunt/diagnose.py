"""Run every diagnostic of the book on an agent: :func:`run_all_diagnostics`.

Each diagnostic needs some hooks on the agent (see the agent modules); it runs when the
agent has them and is marked "not applicable" when it does not. Two small checks live
here because no earlier chapter needed them as functions of their own:
:func:`truncation_probe` (does the TD target bootstrap on a time limit?) and
:func:`burn_in_gradient` (does the loss send gradient into the burn-in steps?).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rldebug.diagnostics.gradients import check_td_shapes, gradient_mask_report
from rldebug.diagnostics.ppo import first_epoch_check
from rldebug.diagnostics.recurrent import (
    hidden_state_leak_test,
    memory_probe,
    rollout_consistency,
)

__all__ = [
    "DIAGNOSTICS",
    "Finding",
    "TruncationProbe",
    "truncation_probe",
    "BurnInReport",
    "burn_in_gradient",
    "run_all_diagnostics",
    "flagged",
]


@dataclass
class TruncationProbe:
    """What a TD target does on a time limit and on a real ending."""

    bootstraps_on_truncation: bool
    stops_on_termination: bool
    max_error: float  # largest |target - r - gamma (1 - terminated) max Q(s')|

    @property
    def ok(self) -> bool:
        return self.bootstraps_on_truncation and self.stops_on_termination

    def __str__(self) -> str:
        if self.ok:
            return "TD target bootstraps on truncated steps and stops on terminated ones: OK"
        problems = []
        if not self.bootstraps_on_truncation:
            problems.append("it does NOT bootstrap on truncated steps (time limit = terminal?)")
        if not self.stops_on_termination:
            problems.append("it bootstraps past terminated steps")
        return "TD target is wrong: " + "; ".join(problems)


def truncation_probe(
    td_target_fn: Callable[..., torch.Tensor], gamma: float, n_actions: int = 3, seed: int = 0
) -> TruncationProbe:
    """Feed ``td_target_fn(rewards, next_q, terminated, truncated)`` a batch where some
    steps are truncated, some terminated and some neither, and compare with
    r + gamma (1 - terminated) max_a' Q(s', a')."""
    gen = torch.Generator().manual_seed(seed)
    n = 12
    rewards = torch.randn(n, generator=gen)
    next_q = torch.randn(n, n_actions, generator=gen) + 3.0  # clearly non-zero values
    terminated = torch.zeros(n)
    truncated = torch.zeros(n)
    terminated[:4] = 1.0  # rows 0-3 end for real
    truncated[4:8] = 1.0  # rows 4-7 hit the time limit
    with torch.no_grad():
        got = td_target_fn(rewards, next_q, terminated, truncated).reshape(-1)
    expected = rewards + gamma * (1 - terminated) * next_q.max(dim=1).values
    err = (got - expected).abs()
    return TruncationProbe(
        bootstraps_on_truncation=bool(err[4:8].max() < 1e-5),
        stops_on_termination=bool(err[:4].max() < 1e-5),
        max_error=float(err.max()),
    )


@dataclass
class BurnInReport:
    """Mean |d loss / d obs_t| at every step of a training window."""

    per_step: np.ndarray  # (L,)
    burn_in: int

    @property
    def ok(self) -> bool:
        return bool(self.per_step[: self.burn_in].max(initial=0.0) == 0.0)

    def __str__(self) -> str:
        leak = float(self.per_step[: self.burn_in].max(initial=0.0))
        if self.ok:
            return f"no gradient reaches the {self.burn_in} burn-in steps: OK"
        return (
            f"the loss sends gradient into the {self.burn_in} burn-in steps (up to {leak:.2g}): "
            "run the burn-in under torch.no_grad() and start the trained part from its state"
        )

    def plot(self, ax=None):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 2.5))
        steps = np.arange(len(self.per_step))
        ax.bar(steps, np.maximum(self.per_step, 1e-12), color="C0")
        ax.axvspan(-0.5, self.burn_in - 0.5, color="C3", alpha=0.15, label="burn-in")
        ax.set_yscale("log")
        ax.set_xlabel("step of the training window")
        ax.set_ylabel("mean |d loss / d obs_t|")
        ax.legend(fontsize=8)
        return ax.figure


def burn_in_gradient(agent: Any) -> BurnInReport:
    """Run ``agent.sequence_loss`` on a sampled window and measure the gradient reaching
    each step's observation; the first ``agent.burn_in`` steps must get none."""
    batch = agent.sample_sequence_batch()
    obs = batch.obs.detach().clone().requires_grad_(True)
    loss = agent.sequence_loss(batch._replace(obs=obs))
    (grad,) = torch.autograd.grad(loss, obs, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(obs)
    per_step = grad.abs().mean(dim=(0, 2)).detach().double().numpy()  # (b, L, D) -> (L,)
    return BurnInReport(per_step=per_step, burn_in=int(agent.burn_in))


@dataclass
class Finding:
    """One diagnostic's verdict on one agent."""

    diagnostic: str
    applicable: bool
    flagged: bool = False
    summary: str = "not applicable: the agent lacks the hooks"
    report: Any = None

    def __str__(self) -> str:
        mark = "FLAGGED" if self.flagged else ("ok" if self.applicable else "n/a")
        return f"{self.diagnostic:<20} {mark:<8} {self.summary}"


def _td_shapes(agent):
    batch = agent.sample_batch()
    q_sa, target = agent.q_and_target(agent.q_network, batch)
    try:
        check_td_shapes(q_sa, target)
    except ValueError as err:
        return True, str(err), err
    return False, f"q_sa and target are both {tuple(q_sa.shape)}: OK", None


def _gradient_mask(agent):
    report = gradient_mask_report(agent.q_network, agent.loss_fn, agent.sample_batch())
    return not report.ok, report.summary, report


def _truncation(agent):
    probe = truncation_probe(agent.td_target, agent.gamma, agent.n_actions)
    return not probe.ok, str(probe), probe


def _leak(agent):
    report = hidden_state_leak_test(agent.policy_step, agent.obs_dim, n_trials=6)
    return report.leaks, str(report), report


def _memory(agent):
    probe = memory_probe(agent.training_fn, agent.obs_dim, seq_len=16, max_lag=8, batch_size=16)
    return not probe.has_memory, str(probe), probe


def _consistency(agent):
    old = agent.rollout_outputs()
    report = rollout_consistency(old, agent.training_outputs(), dims=("env", "step"))
    return not report.ok, str(report), report


def _first_epoch(agent):
    new, old, mask = agent.first_epoch_stats()
    report = first_epoch_check(new, old, mask)
    return not report.ok, str(report), report


def _burn_in(agent):
    report = burn_in_gradient(agent)
    return not report.ok, str(report), report


# name -> (hooks the agent needs, the check)
_CHECKS: dict[str, tuple[tuple[str, ...], Callable]] = {
    "td shapes": (("q_network", "sample_batch", "q_and_target"), _td_shapes),
    "gradient mask": (("q_network", "loss_fn", "sample_batch"), _gradient_mask),
    "truncation probe": (("td_target", "gamma", "n_actions"), _truncation),
    "leak test": (("policy_step", "obs_dim"), _leak),
    "memory probe": (("training_fn", "obs_dim"), _memory),
    "rollout consistency": (("rollout_outputs", "training_outputs"), _consistency),
    "first-epoch check": (("first_epoch_stats",), _first_epoch),
    "burn-in gradient": (("sample_sequence_batch", "sequence_loss", "burn_in"), _burn_in),
}
DIAGNOSTICS: tuple[str, ...] = tuple(_CHECKS)


def run_all_diagnostics(agent: Any, *, seed: int = 0) -> dict[str, Finding]:
    """Run every diagnostic the agent has hooks for; ``{name: Finding}`` for all of them.

    ``Finding.flagged`` is True where a diagnostic found a problem; diagnostics the agent
    has no hooks for come back with ``applicable=False``. The agent's environments and
    random generators move on (the checks collect fresh data), its weights do not.
    """
    torch.manual_seed(seed)
    findings = {}
    for name, (hooks, check) in _CHECKS.items():
        missing = [hook for hook in hooks if not hasattr(agent, hook)]
        if missing:
            needs = ", ".join(f"agent.{hook}" for hook in missing)
            findings[name] = Finding(
                name, applicable=False, summary=f"not applicable: needs {needs}"
            )
            continue
        is_flagged, summary, report = check(agent)
        findings[name] = Finding(name, True, bool(is_flagged), summary, report)
    return findings


def flagged(findings: dict[str, Finding]) -> list[str]:
    """The names of the diagnostics that found a problem."""
    return [name for name, f in findings.items() if f.flagged]
