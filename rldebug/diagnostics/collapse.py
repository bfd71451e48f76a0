"""Does the agent "learn just one action", and why? (chapter 1)

:func:`action_collapse` reads the Q-values of a set of states (and, if you have them, how
often the agent took each action) and reports two numbers: how much Q differs between the
actions of a state (the spread over actions), and the share of states whose greedy action
is the most common one. Its verdict separates the usual causes:

* ``"tied"``: the actions' values are equal (to float precision) in most states, so
  ``argmax`` returns the first action: every output was regressed toward the same target
  (no ``gather``, no mask);
* ``"state_blind"``: Q(s, .) is the same vector in every state, so one action wins
  everywhere: the output does not depend on the input (a dead network: every ReLU off,
  zero first-layer weights, an observation that never reaches the network);
* ``"one_action"``: one action is greedy in most states although the actions' values
  differ and depend on the state (values pulled toward targets shared by all states, or
  a task in which one action really is best almost everywhere);
* ``"acting"``: Q has several greedy actions, but the agent took one action most of the
  time: the action selection does not read this Q (``argmax`` over the wrong axis);
* ``"random"``: the agent took every action about equally often: it never acts greedily
  (epsilon stuck at 1, a schedule that never decays), or its greedy action changes from
  step to step because Q carries no information about the actions (the (B, 1) - (B,)
  broadcast pulls every Q toward the batch's mean target);
* ``"ok"``: none of these.

What it cannot tell apart: the causes inside one verdict (a dead ReLU layer from zero
weights; an argmax bug from any other acting bug; epsilon stuck at 1 from the broadcast
bug, or from an agent that is still early in its exploration). A loss that writes targets into whole columns
(``wanted[:, actions] = y``) leaves no fixed mark on Q: at a small learning rate Q looks
ordinary, at a large one the values diverge, and Q-values with NaN are refused with an
error that says so. Its fingerprint is in the gradient: ``gradient_mask_report`` sees
each row send gradient to several outputs.

:func:`collapse_check` is the "one action" row of ``rldebug.diagnose``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ActionCollapseReport", "action_collapse", "collapse_check"]

VERDICTS = {
    "ok": "no sign of collapse",
    "tied": (
        "the actions' values are equal in most states, and argmax returns the first of equal "
        "values: every output was regressed toward the same target (use gather, or the copy "
        "trick, so that only the taken action gets an error)"
    ),
    "state_blind": (
        "Q(s, .) is the same vector in every state: the output does not depend on the input "
        "(a dead network: every ReLU off, zero first-layer weights, or the observation never "
        "reaches the network); look at the first layer's gradient and the share of active units"
    ),
    "one_action": (
        "one action is greedy in most states although the actions' values differ: values "
        "pulled toward targets that all states share, or a task in which this action really "
        "is best almost everywhere"
    ),
    "acting": (
        "Q has several greedy actions but the agent took one action most of the time: the "
        "action selection does not read this Q (argmax over the wrong axis: on a (1, A) "
        "output argmax(dim=0) is always 0)"
    ),
    "random": (
        "the agent took every action about equally often: it never acts greedily (epsilon "
        "stuck at 1, a schedule that never decays), or its greedy action changes at every "
        "step because Q carries no information (a (B, 1) - (B,) broadcast in the loss: "
        "check_td_shapes)"
    ),
}


@dataclass
class ActionCollapseReport:
    """What :func:`action_collapse` measured, and its verdict (a key of ``VERDICTS``)."""

    greedy_counts: np.ndarray  # (A,) states whose greedy action is each action
    common_action: int  # the most common greedy action
    greedy_share: float  # share of states whose greedy action is common_action
    spread_over_actions: float  # median over states of max_a Q - min_a Q
    spread_over_states: float  # median over actions of max_s Q - min_s Q
    tied_share: float  # share of states whose values are all equal (float precision)
    taken_share: float | None  # share of the most taken action (None: no counts given)
    taken_from_uniform: float | None  # total variation distance of taken actions to uniform
    verdict: str

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    @property
    def summary(self) -> str:
        n_states = int(self.greedy_counts.sum())
        text = (
            f"greedy action {self.common_action} in {self.greedy_share:.0%} of {n_states} "
            f"states; spread over actions {self.spread_over_actions:.3g} (median), over "
            f"states {self.spread_over_states:.3g}; all actions tied in {self.tied_share:.0%}"
        )
        if self.taken_share is not None:
            text += f"; most taken action {self.taken_share:.0%} of steps"
        verdict = VERDICTS[self.verdict]
        return text + (": OK" if self.ok else f": {self.verdict.upper()}: {verdict}")

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"ActionCollapseReport({self.summary!r})"


def _as_array(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def action_collapse(
    q_values,
    taken_counts=None,
    *,
    share_threshold: float = 0.6,
    uniform_distance: float = 0.05,
) -> ActionCollapseReport:
    """Spread of Q over the actions of each state, and the share of the commonest greedy action.

    ``q_values``: (S, A) Q-values of S states (a tensor or an array), for instance the
    network's output on the states of a replay buffer or on every start state.
    ``taken_counts``: optional (A,) how often the agent took each action while training
    (``np.bincount(actions, minlength=A)``); without it ``"acting"`` and ``"random"`` cannot
    be seen. One action is said to dominate from ``share_threshold`` of the states (or steps)
    on; the taken actions count as uniform within ``uniform_distance`` (total variation).
    """
    q = _as_array(q_values, "q_values")
    if q.ndim != 2:
        raise ValueError(f"q_values must be (states, actions), got shape {q.shape}")
    n_states, n_actions = q.shape
    if n_states < 2 or n_actions < 2:
        raise ValueError(f"need at least 2 states and 2 actions, got shape {q.shape}")
    bad_rows = ~np.isfinite(q).all(axis=1)
    if bad_rows.any():
        raise ValueError(
            f"q_values has NaN or inf in {int(bad_rows.sum())} of {n_states} states: the "
            "values diverged (a step size too large for the update). Note that argmax of a "
            "NaN row returns the NaN's index, so a diverged agent can look as if it learned "
            "one action"
        )
    if not 0.0 < share_threshold <= 1.0:
        raise ValueError(f"share_threshold must be in (0, 1], got {share_threshold}")

    greedy = q.argmax(axis=1)  # (S,)
    greedy_counts = np.bincount(greedy, minlength=n_actions)
    common_action = int(greedy_counts.argmax())
    greedy_share = float(greedy_counts[common_action] / n_states)
    by_action = q.max(axis=1) - q.min(axis=1)  # (S,) spread over the actions of each state
    by_state = q.max(axis=0) - q.min(axis=0)  # (A,) spread of each action over the states
    scale = max(float(np.abs(q).max()), 1e-30)
    precision = 1e-6 * scale  # float32 keeps about 7 digits of the largest value
    tied_share = float((by_action <= precision).mean())

    taken_share = taken_from_uniform = None
    if taken_counts is not None:
        taken = _as_array(taken_counts, "taken_counts")
        if taken.shape != (n_actions,):
            raise ValueError(
                f"taken_counts must be ({n_actions},), one count per action, got shape "
                f"{taken.shape}; np.bincount(actions, minlength={n_actions}) gives it"
            )
        if not np.isfinite(taken).all() or (taken < 0).any() or taken.sum() <= 0:
            raise ValueError("taken_counts must be finite, >= 0, and not all 0")
        taken = taken / taken.sum()
        taken_share = float(taken.max())
        taken_from_uniform = float(0.5 * np.abs(taken - 1.0 / n_actions).sum())

    if float(by_state.max()) <= precision:
        verdict = "state_blind"
    elif float(np.median(by_action)) <= precision:
        verdict = "tied"
    elif greedy_share >= share_threshold:
        verdict = "one_action"
    elif taken_share is not None and taken_share >= share_threshold:
        verdict = "acting"
    elif taken_from_uniform is not None and taken_from_uniform <= uniform_distance:
        verdict = "random"
    else:
        verdict = "ok"
    return ActionCollapseReport(
        greedy_counts=greedy_counts,
        common_action=common_action,
        greedy_share=greedy_share,
        spread_over_actions=float(np.median(by_action)),
        spread_over_states=float(np.median(by_state)),
        tied_share=tied_share,
        taken_share=taken_share,
        taken_from_uniform=taken_from_uniform,
        verdict=verdict,
    )


UNTRAINED = (
    "A network before training shows this too (its output biases outweigh its inputs), so "
    "it only warns: judge it after training, on states your agent meets."
)


def batch_states(batch) -> torch.Tensor:
    """The observations of a replay batch (``obs``, ``observations`` or ``states``)."""
    from rldebug.diagnostics.gradients import OBS_FIELDS, _field

    obs = _field(batch, OBS_FIELDS)
    if not isinstance(obs, torch.Tensor):
        raise ValueError(f"the batch has no observations as a tensor (fields {OBS_FIELDS})")
    return obs


def states_or_random(states, obs_dim: int) -> tuple[torch.Tensor, bool]:
    """``states`` as a float tensor (S, obs_dim), or 256 random inputs when None; and
    whether they are random."""
    if states is None:
        return torch.randn(256, obs_dim, generator=torch.Generator().manual_seed(0)), True
    states = torch.as_tensor(states, dtype=torch.float32)
    if states.ndim != 2 or states.shape[1] != obs_dim or len(states) < 2:
        raise ValueError(f"states must be (S >= 2, {obs_dim}), got shape {tuple(states.shape)}")
    return states, False


def collapse_check(q_network, states, *, random_inputs: bool = False) -> tuple:
    """The "one action" row of ``rldebug.diagnose``: :func:`action_collapse` on Q(states, .).

    ``states``: (S, obs_dim) observations (``random_inputs``: drawn at random, not met by an
    agent). Returns (status, summary, report, details), status "pass", "FAIL" or "warn".
    Tied values, an output blind to the state and diverged values fail; one greedy action in
    most states only warns, since an untrained network shows it too.
    """
    with torch.no_grad():
        q = q_network(states)
    while isinstance(q, (tuple, list)):  # (logits, value) or (out, state): the first
        q = q[0]
    if not isinstance(q, torch.Tensor) or q.ndim != 2 or q.shape[1] < 2:
        shape = tuple(q.shape) if isinstance(q, torch.Tensor) else type(q).__name__
        raise ValueError(f"the output is {shape}, not (states, actions) with 2+ actions")
    where = f"{len(q)} random inputs" if random_inputs else f"{len(q)} of the agent's states"
    try:
        report = action_collapse(q)
    except ValueError as err:  # NaN or inf: the values diverged
        return "FAIL", f"Q is NaN or inf on {where}: the values diverged", err, str(err)
    summary = (
        f"greedy action {report.common_action} in {report.greedy_share:.0%} of {where}; "
        f"spread over actions {report.spread_over_actions:.3g}"
    )
    if report.verdict in ("tied", "state_blind"):
        return "FAIL", f"{summary}: {report.verdict.upper()}", report, str(report)
    if report.verdict == "one_action":
        details = f"{report}. {UNTRAINED}"
        if random_inputs:
            details += " Pass states= (observations your agent meets) to judge it on them."
        return "warn", f"{summary}: ONE ACTION (or untrained)", report, details
    return "pass", summary, report, str(report)
