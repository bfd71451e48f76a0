"""Checkers for chapter 1, "Q-targets and masking".

Three exercises: the Keras-style target-copy loss, the TD target, and a bug hunt (a DQN
loss with three of this chapter's bugs, to find and fix). The loss checkers compare the
value of your loss *and* its gradient (with respect to the network's output, or to the
network's weights), so they see which outputs your loss reaches.
"""

from __future__ import annotations

import copy
import functools
import itertools

import numpy as np
import torch
from torch import nn

from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge, type_phrase
from rldebug.qlearning import QBatch
from rldebug.qlearning import copy_trick_loss as _copy_trick_reference
from rldebug.qlearning import td_target as _td_reference

__all__ = [
    "EXERCISES",
    "TD_TARGET",
    "COPY_TRICK_LOSS",
    "FIXED_DQN_LOSS",
    "check_td_target",
    "check_copy_trick_loss",
    "check_fixed_dqn_loss",
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
# The copy-trick loss
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

# --------------------------------------------------------------------------------------
# The bug hunt: a DQN loss with three planted bugs, fixed by the reader
# --------------------------------------------------------------------------------------


def _agent_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    """A small network, a batch of transitions with both kinds of ending, and a gamma."""
    edge = forced_edge(case_index, ("batch of 1",))
    batch_size = 1 if edge or rng.random() < 0.15 else int(rng.integers(2, 33))
    obs_dim, n_actions = int(rng.integers(2, 9)), int(rng.integers(2, 7))
    with torch.random.fork_rng():  # the reader's own torch random state stays as it was
        torch.manual_seed(int(rng.integers(2**31)))
        model = nn.Sequential(nn.Linear(obs_dim, 8), nn.Tanh(), nn.Linear(8, n_actions))
    terminated = (rng.random(batch_size) < 0.25).astype(np.float32)
    truncated = ((rng.random(batch_size) < 0.25) & (terminated == 0)).astype(np.float32)
    if batch_size > 1:  # at least one real end and one time-limit cut
        terminated[-1], truncated[-1] = 1.0, 0.0
        terminated[0], truncated[0] = 0.0, 1.0
    actions = rng.integers(0, n_actions, size=batch_size)
    if batch_size > 1:  # the cut sample's action is its own: a column bug cannot hide it
        others = rng.integers(0, n_actions - 1, size=batch_size - 1)
        actions[1:] = others + (others >= actions[0])
    batch = QBatch(
        obs=_tensor(rng, batch_size, obs_dim),
        actions=torch.from_numpy(actions),
        rewards=_tensor(rng, batch_size),
        next_obs=_tensor(rng, batch_size, obs_dim),
        terminated=torch.from_numpy(terminated),
        truncated=torch.from_numpy(truncated),
    )
    return {"model": model, "batch": batch, "gamma": float(rng.choice([0.5, 0.9, 0.99]))}


def _agent_loss(
    model, batch, gamma=0.99, *, copy_trick, columns=False, attached=False, done_ends=False
):
    """The fixed loss and its buggy variants; each keyword plants one bug."""
    q_values = model(batch.obs)  # (B, A)
    with torch.enable_grad() if attached else torch.no_grad():
        next_q = model(batch.next_obs)  # (B, A)
        done = torch.maximum(batch.terminated, batch.truncated) if done_ends else batch.terminated
        targets = batch.rewards + gamma * (1 - done) * next_q.max(dim=1).values  # (B,)
    if not copy_trick:
        q_sa = q_values.gather(1, batch.actions.unsqueeze(1)).squeeze(1)  # (B, 1) -> (B,)
        return ((q_sa - targets) ** 2).mean()
    wanted = q_values.detach().clone()  # (B, A)
    if columns:
        wanted[:, batch.actions] = targets  # all B rows x the B taken columns
    else:
        wanted[torch.arange(len(batch.actions)), batch.actions] = targets
    return ((q_values - wanted) ** 2).mean()


_fixed_gather = functools.partial(_agent_loss, copy_trick=False)
_fixed_copy_trick = functools.partial(_agent_loss, copy_trick=True)

_HUNT_BUGS = {  # keyword: (the bug's name, the fix)
    "columns": (
        "targets written into whole columns (wanted[:, actions])",
        "wanted[:, actions] fills every row's taken-action columns: index (row, action) pairs "
        "with wanted[torch.arange(B), actions], or use gather.",
    ),
    "attached": (
        "the target is not detached (the next-state pass keeps its graph)",
        "Compute next_q and the target under torch.no_grad(): gradient_mask_report says "
        "'not detached' when the second forward pass receives gradient.",
    ),
    "done_ends": (
        "truncation is treated as termination (done = terminated or truncated)",
        "Only `terminated` stops the bootstrap; a time-limit cut still has a next state: "
        "a loss that changes when only `truncated` changes has this bug.",
    ),
}


def _hunt_bugs() -> list[PlantedBug]:
    """Every combination of the three planted bugs, in both styles (copy trick, gather)."""
    found = []
    for copy_trick, keys in ((True, tuple(_HUNT_BUGS)), (False, ("attached", "done_ends"))):
        for n in range(len(keys), 0, -1):
            for combo in itertools.combinations(keys, n):
                name = " + ".join(_HUNT_BUGS[key][0] for key in combo)
                fn = functools.partial(
                    _agent_loss, copy_trick=copy_trick, **dict.fromkeys(combo, True)
                )
                style = "copy trick" if copy_trick else "gather"
                hint = " ".join(_HUNT_BUGS[key][1] for key in combo)
                found.append(PlantedBug(f"{name} [{style}]", fn, hint))
    return found


def _hunt_shares_memory(model, batch, gamma):
    q_values = model(batch.obs)
    with torch.no_grad():
        targets = (
            batch.rewards + gamma * (1 - batch.terminated) * model(batch.next_obs).max(dim=1).values
        )
    wanted = q_values.detach()  # no clone(): the same memory as q_values
    wanted[torch.arange(len(batch.actions)), batch.actions] = targets
    return ((q_values - wanted) ** 2).mean()  # always 0


def _hunt_broadcast(model, batch, gamma):
    q_sa = model(batch.obs).gather(1, batch.actions.unsqueeze(1))  # (B, 1): not squeezed
    with torch.no_grad():
        targets = (
            batch.rewards + gamma * (1 - batch.terminated) * model(batch.next_obs).max(dim=1).values
        )
    return ((q_sa - targets) ** 2).mean()  # (B, 1) - (B,) -> (B, B)


_BROADCAST_HINT = (
    "gather(1, actions.unsqueeze(1)) is (B, 1) and the target is (B,): their difference "
    "broadcasts to (B, B). Add .squeeze(1) after the gather (check_td_shapes catches this)."
)


def _compare_agent_loss(got, expected) -> str | None:
    if not isinstance(got, torch.Tensor):
        return (
            f"your loss is {type_phrase(got)}; return a torch.Tensor (a scalar): a number "
            "taken out with .item() or numpy carries no gradient"
        )
    if got.ndim != 0:
        return f"your loss has shape {tuple(got.shape)}; return one number (a 0-d tensor)"
    return compare_outputs(got, expected, where="loss")


class _BugHunt(Exercise):
    """An exercise whose planted bugs differ in value, in gradient, or both: a bug is named
    only when the reader's loss matches it in both (two bugs may share a value and differ in
    their gradient, such as a target with and without its graph)."""

    def _identify(self, case, got, use, changed=None):
        if use is None and changed is None:
            try:
                use = [True]
                self._differentiate(got, use)
            except (RuntimeError, TypeError):  # no tensor, or a broken graph: value only
                use, got.grads = None, None
        return super()._identify(case, got, use, changed)


FIXED_DQN_LOSS = _BugHunt(
    name="fixed_dqn_loss",
    reference=_fixed_gather,
    make_case=_agent_case,
    compare=_compare_agent_loss,
    check_gradients=True,
    answer_name="loss",
    reference_path="rldebug.checkers.ch01 (the fixed loss, with gather)",
    grad_hint=(
        "Which weights a loss reaches decides what learns: only the taken action's output "
        "gets an error, and the target (the next-state pass) gets no gradient at all."
    ),
    alternatives=(_fixed_copy_trick,),  # the copy trick, fixed: the gather loss / |A|
    bugs=[
        *_hunt_bugs(),
        PlantedBug(
            "the copy shares memory with the network's output (detach() without clone())",
            _hunt_shares_memory,
            "q_values.detach() is a view of the same numbers: writing the target into it "
            "writes it into q_values too, and the loss is 0. Use q_values.detach().clone().",
        ),
        PlantedBug(
            "the (B, 1) - (B,) broadcast makes a (B, B) loss", _hunt_broadcast, _BROADCAST_HINT
        ),
    ],
)


EXERCISES = [COPY_TRICK_LOSS, TD_TARGET, FIXED_DQN_LOSS]


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


def check_fixed_dqn_loss(fn, *, seed=None):
    """Check a reader's ``fixed_dqn_loss(model, batch, gamma)`` (by position)."""
    FIXED_DQN_LOSS.check(_positionally(fn), seed=seed)


def check_copy_trick_loss(fn, *, seed=None):
    """Check a reader's ``copy_trick_loss(q_values, actions, targets)`` (by position)."""
    COPY_TRICK_LOSS.check(_positionally(fn), seed=seed)
