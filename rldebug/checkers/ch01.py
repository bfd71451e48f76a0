"""Checkers for chapter 1, "Q-targets and masking".

Three exercises: the TD target, the masked Q-loss (``gather``) and the Keras-style
target-copy loss. The loss checkers compare the value of your loss *and* its gradient
with respect to the network's output, so they see which outputs your loss reaches.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge, type_phrase
from rldebug.qlearning import copy_trick_loss as _copy_trick_reference
from rldebug.qlearning import masked_q_loss as _masked_reference
from rldebug.qlearning import td_target as _td_reference

__all__ = [
    "EXERCISES",
    "TD_TARGET",
    "MASKED_Q_LOSS",
    "COPY_TRICK_LOSS",
    "check_td_target",
    "check_masked_q_loss",
    "check_copy_trick_loss",
]


def _tensor(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=shape).round(3).astype(np.float32))


# --------------------------------------------------------------------------------------
# Exercise 1: the TD target
# --------------------------------------------------------------------------------------


TD_EDGES = ("batch of 1", "all terminated", "gamma = 0")


def _td_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, TD_EDGES)
    batch = 1 if edge == "batch of 1" or rng.random() < 0.25 else int(rng.integers(2, 33))
    n_actions = int(rng.integers(2, 7))
    terminated = (rng.random(batch) < 0.25).astype(np.float32)
    truncated = ((rng.random(batch) < 0.25) & (terminated == 0)).astype(np.float32)
    if edge == "all terminated" or rng.random() < 0.25:  # every episode ended for real
        terminated[:], truncated[:] = 1.0, 0.0
    elif batch > 1:
        terminated[-1], truncated[-1] = 1.0, 0.0  # at least one real end...
        terminated[0], truncated[0] = 0.0, 1.0  # ...and one time-limit cut
    next_q = _tensor(rng, batch, n_actions) * 3
    return {
        "rewards": _tensor(rng, batch),
        # as if computed by a network without torch.no_grad(): it requires grad
        "next_q_values": next_q.requires_grad_(True),
        "terminated": torch.from_numpy(terminated),
        "truncated": torch.from_numpy(truncated),
        "gamma": 0.0 if edge == "gamma = 0" else float(rng.choice([0.0, 0.5, 0.9, 0.99, 1.0])),
    }


def _compare_target(got, expected) -> str | None:
    problem = compare_outputs(got, expected, where="target")
    if problem:
        return problem
    if got.requires_grad and not expected.requires_grad:
        return (
            "your target has the right values but still requires grad: it is attached to the "
            "graph of next_q_values"
        )
    return None


def _td_no_termination(rewards, next_q_values, terminated, truncated, gamma):
    with torch.no_grad():
        return rewards + gamma * next_q_values.max(dim=1).values


def _td_done_is_terminal(rewards, next_q_values, terminated, truncated, gamma):
    with torch.no_grad():
        done = torch.clamp(terminated + truncated, max=1.0)
        return rewards + gamma * (1 - done) * next_q_values.max(dim=1).values


def _td_batch_max(rewards, next_q_values, terminated, truncated, gamma):
    with torch.no_grad():
        return rewards + gamma * (1 - terminated) * next_q_values.max()


def _td_not_detached(rewards, next_q_values, terminated, truncated, gamma):
    return rewards + gamma * (1 - terminated) * next_q_values.max(dim=1).values


def _td_explain(case, got, expected) -> str:
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (case["next_q_values"].shape[1],):
        return "Your target has one entry per action: take the max over dim=1 (the actions)."
    return (
        "target = rewards + gamma * (1 - terminated) * next_q_values.max(dim=1).values, "
        "under torch.no_grad(); `truncated` does not enter it."
    )


TD_TARGET = Exercise(
    name="td_target",
    reference=_td_reference,
    make_case=_td_case,
    compare=_compare_target,
    explain=_td_explain,
    reference_path="rldebug.qlearning.td_target",
    bugs=[
        PlantedBug(
            "the target forgets (1 - terminated)",
            _td_no_termination,
            "After a real end there is no next state to bootstrap from: multiply the "
            "bootstrap term by (1 - terminated).",
        ),
        PlantedBug(
            "truncation is treated as termination (done = terminated or truncated)",
            _td_done_is_terminal,
            "A time limit cuts the episode, not the task: s' still has a value. Only "
            "`terminated` stops the bootstrap; `truncated` does not enter the target.",
        ),
        PlantedBug(
            "the max is taken over the whole batch, not over each row's actions",
            _td_batch_max,
            "max_a' Q(s', a') is one number per sample: next_q_values.max(dim=1).values.",
        ),
        PlantedBug(
            "the target is not detached",
            _td_not_detached,
            "Compute the target under torch.no_grad() (or .detach() it): the loss must move "
            "Q(s, a) towards the target, not the target towards Q(s, a).",
        ),
    ],
)


# --------------------------------------------------------------------------------------
# Exercises 2 and 3: the two losses
# --------------------------------------------------------------------------------------


class _LossCase(dict):
    """The arguments of one loss call. ``q_values`` arrives as a network's output (a
    non-leaf tensor with a graph), as it does in an agent: every copy of the case builds a
    fresh graph, so in-place edits and gradients behave as they would there."""

    def __deepcopy__(self, memo):
        fresh = {k: copy.deepcopy(v, memo) for k, v in self.items() if k != "q_values"}
        leaf = self["q_values"].detach().clone().requires_grad_(True)
        return {"q_values": leaf * 1.0, **fresh}  # "* 1.0": an output, not a leaf


def _loss_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, ("batch of 1",))
    batch = 1 if edge or rng.random() < 0.25 else int(rng.integers(2, 33))
    n_actions = int(rng.integers(2, 7))
    return _LossCase(
        q_values=_tensor(rng, batch, n_actions),
        actions=torch.from_numpy(rng.integers(0, n_actions, size=batch)),
        targets=_tensor(rng, batch),
    )


def _grad_wrt_leaf(loss: torch.Tensor) -> torch.Tensor | None:
    """d loss / d (the leaf behind q_values), found by walking the loss's graph."""
    if not loss.requires_grad or loss.grad_fn is None:
        return None
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):  # an AccumulateGrad node: the leaf
            (grad,) = torch.autograd.grad(loss, node.variable, retain_graph=True)
            return grad
        todo.extend(next_node for next_node, _ in node.next_functions)
    return None


def _compare_loss(got, expected) -> str | None:
    if not isinstance(got, torch.Tensor):
        return (
            f"your loss is {type_phrase(got)}; return a torch.Tensor (a scalar): a number "
            "taken out with .item() or numpy carries no gradient"
        )
    if got.ndim == 2 and got.shape[0] == got.shape[1] and got.shape[0] > 1:
        b = got.shape[0]
        return (
            f"your loss is ({b}, {b}): q_sa is ({b}, 1) and the target is ({b},), and "
            "subtracting them broadcasts every sample against every target"
        )
    if got.ndim != 0:
        return f"your loss has shape {tuple(got.shape)}; return one number (a 0-d tensor)"
    problem = compare_outputs(got, expected, where="loss")
    if problem:
        return problem
    if expected.requires_grad and not got.requires_grad:
        return (
            "your loss has the right value but does not require grad: nothing reaches the "
            "network (was it built from .item(), numpy, .detach() or under torch.no_grad()?)"
        )
    grad_got, grad_exp = _grad_wrt_leaf(got), _grad_wrt_leaf(expected)
    if grad_exp is not None and grad_got is not None:
        problem = compare_outputs(grad_got, grad_exp, where="gradient w.r.t. q_values")
        if problem:
            return "your loss has the right value but not the right gradient: " + problem
    return None


def _explain_loss(case, got, expected) -> str:
    grad = _grad_wrt_leaf(got) if isinstance(got, torch.Tensor) and got.ndim == 0 else None
    if grad is None:
        return ""
    received = (grad != 0).sum(dim=1)
    if int(received.max()) > 1:
        return (
            f"Your loss sends gradient to up to {int(received.max())} outputs per sample; "
            "only the taken action's output should get an error."
        )
    return ""


def _masked_broadcast(q_values, actions, targets):
    q_sa = q_values.gather(1, actions.unsqueeze(1))  # (B, 1): not squeezed
    return ((q_sa - targets) ** 2).mean()  # (B, 1) - (B,) -> (B, B)


def _masked_uses_max(q_values, actions, targets):
    return ((q_values.max(dim=1).values - targets) ** 2).mean()


def _masked_all_outputs(q_values, actions, targets):
    return ((q_values - targets.unsqueeze(1)) ** 2).mean()


def _masked_detached(q_values, actions, targets):
    q_sa = q_values.detach().gather(1, actions.unsqueeze(1)).squeeze(1)
    return ((q_sa - targets) ** 2).mean()


_BROADCAST_HINT = (
    "q_values.gather(1, actions.unsqueeze(1)) is (B, 1) and the target is (B,): their "
    "difference broadcasts to (B, B), B*B errors that pair each sample with every target. "
    "Add .squeeze(1) after the gather (rldebug.qlearning.check_td_shapes catches this)."
)
_ALL_OUTPUTS_HINT = (
    "Only the taken action has a target. Pick Q(s_i, a_i) with "
    "q_values.gather(1, actions.unsqueeze(1)).squeeze(1) before the subtraction."
)

MASKED_Q_LOSS = Exercise(
    name="masked_q_loss",
    reference=_masked_reference,
    make_case=_loss_case,
    compare=_compare_loss,
    explain=_explain_loss,
    reference_path="rldebug.qlearning.masked_q_loss",
    bugs=[
        PlantedBug(
            "the (B, 1) - (B,) broadcast makes a (B, B) loss", _masked_broadcast, _BROADCAST_HINT
        ),
        PlantedBug(
            "the max over actions is used instead of the taken action",
            _masked_uses_max,
            "The loss trains the action that was taken: gather with `actions`, not max.",
        ),
        PlantedBug(
            "every output is regressed on the target (no gather)",
            _masked_all_outputs,
            _ALL_OUTPUTS_HINT,
        ),
        PlantedBug(
            "the loss is detached from the network",
            _masked_detached,
            "Do not .detach() q_values (or go through numpy): the loss must keep its graph.",
        ),
    ],
)


def _copy_shares_memory(q_values, actions, targets):
    wanted = q_values.detach()  # no clone(): the same memory as q_values
    wanted[torch.arange(len(actions)), actions] = targets  # also overwrites q_values
    return ((q_values - wanted) ** 2).mean()  # always 0


def _copy_every_entry(q_values, actions, targets):
    wanted = q_values.detach().clone()
    wanted[:] = targets.unsqueeze(1)  # every action gets the target
    return ((q_values - wanted) ** 2).mean()


def _copy_column_index(q_values, actions, targets):
    wanted = q_values.detach().clone()
    wanted[:, actions] = targets  # (B, B) assignment: wrong entries
    return ((q_values - wanted) ** 2).mean()


def _copy_sum_over_actions(q_values, actions, targets):
    wanted = q_values.detach().clone()
    wanted[torch.arange(len(actions)), actions] = targets
    return ((q_values - wanted) ** 2).sum(dim=1).mean()


COPY_TRICK_LOSS = Exercise(
    name="copy_trick_loss",
    reference=_copy_trick_reference,
    make_case=_loss_case,
    compare=_compare_loss,
    explain=_explain_loss,
    reference_path="rldebug.qlearning.copy_trick_loss",
    bugs=[
        PlantedBug(
            "the copy shares memory with the network's output (detach() without clone())",
            _copy_shares_memory,
            "q_values.detach() is a view of the same numbers: writing the target into it "
            "writes it into q_values too, and the loss is 0. Use q_values.detach().clone().",
        ),
        PlantedBug(
            "every entry of the copy is overwritten with the target",
            _copy_every_entry,
            "Overwrite one entry per row, the taken action: wanted[torch.arange(B), actions].",
        ),
        PlantedBug(
            "the target is written into the taken actions' columns of every row (wanted[:, actions])",
            _copy_column_index,
            "wanted[:, actions] selects B columns in every row. Index row i and column a_i "
            "together: wanted[torch.arange(B), actions] = targets.",
        ),
        PlantedBug(
            "the squared errors are summed over actions (that is the gather loss, |A| times larger)",
            _copy_sum_over_actions,
            "The copy trick's loss is the mean over all B x |A| entries: .mean(), not "
            ".sum(dim=1).mean().",
        ),
    ],
)

EXERCISES = [TD_TARGET, MASKED_Q_LOSS, COPY_TRICK_LOSS]


def _positionally(fn):
    """Call ``fn`` with the case's arguments in order, so any parameter names work."""
    if not callable(fn):
        return fn  # the checker names the problem

    def call(**case):
        return fn(*case.values())

    return call


def check_td_target(fn, *, seed=None):
    """Check a reader's ``td_target(rewards, next_q_values, terminated, truncated, gamma)``.

    The arguments are passed in that order, by position: the names are yours."""
    TD_TARGET.check(_positionally(fn), seed=seed)


def check_masked_q_loss(fn, *, seed=None):
    """Check a reader's ``masked_q_loss(q_values, actions, targets)`` (by position)."""
    MASKED_Q_LOSS.check(_positionally(fn), seed=seed)


def check_copy_trick_loss(fn, *, seed=None):
    """Check a reader's ``copy_trick_loss(q_values, actions, targets)`` (by position)."""
    COPY_TRICK_LOSS.check(_positionally(fn), seed=seed)
