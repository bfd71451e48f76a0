"""Checkers for chapter 5, "Recurrent networks and hidden state"."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge
from rldebug.recurrent import masked_sequence_loss as _reference_loss
from rldebug.recurrent import rollout_with_resets as _reference_rollout

# ---------------------------------------------------------------------------------------
# exercise 1: the per-step rollout with reset masks
# ---------------------------------------------------------------------------------------


def _make_rollout_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    steps, batch = int(rng.integers(3, 12)), int(rng.integers(1, 5))
    if forced_edge(case_index, ("batch of 1",)):
        batch = 1
    in_dim, hidden = int(rng.integers(1, 5)), int(rng.integers(2, 6))
    torch.manual_seed(int(rng.integers(2**31)))
    cell = nn.GRUCell(in_dim, hidden)
    starts = rng.random((steps, batch)) < 0.2
    starts[int(rng.integers(1, steps)), int(rng.integers(batch))] = True  # one start inside
    starts[0, int(rng.integers(batch))] = True  # and one before the very first step
    return {
        "cell": cell,
        "inputs": torch.as_tensor(rng.normal(size=(steps, batch, in_dim)), dtype=torch.float32),
        "episode_starts": torch.as_tensor(starts),
        "h0": torch.as_tensor(rng.normal(size=(batch, hidden)), dtype=torch.float32),
    }


def _never_resets(cell, inputs, episode_starts, h0):
    h, outputs = h0, []
    for t in range(inputs.shape[0]):
        h = cell(inputs[t], h)  # the state flows from one episode into the next: the leak
        outputs.append(h)
    return torch.stack(outputs), h


def _resets_after_the_step(cell, inputs, episode_starts, h0):
    h, outputs = h0, []
    for t in range(inputs.shape[0]):
        h = cell(inputs[t], h)
        outputs.append(h)
        h = h * (1.0 - episode_starts[t].float()).unsqueeze(-1)  # one step too late
    return torch.stack(outputs), h


def _resets_every_step(cell, inputs, episode_starts, h0):
    outputs = [cell(inputs[t], torch.zeros_like(h0)) for t in range(inputs.shape[0])]
    return torch.stack(outputs), outputs[-1]


def _reset_ignores_h0(cell, inputs, episode_starts, h0):
    h, outputs = torch.zeros_like(h0), []  # starts from zeros instead of the carried h0
    for t in range(inputs.shape[0]):
        h = h * (1.0 - episode_starts[t].float()).unsqueeze(-1)
        h = cell(inputs[t], h)
        outputs.append(h)
    return torch.stack(outputs), h


def _detached_between_steps(cell, inputs, episode_starts, h0):
    h, outputs = h0, []
    for t in range(inputs.shape[0]):
        h = h * (1.0 - episode_starts[t].float()).unsqueeze(-1)
        h = cell(inputs[t], h)
        outputs.append(h)
        h = h.detach()  # the values are right; the gradient stops after one step
    return torch.stack(outputs), h


def _first_wrong_step(got, expected):
    """(t, b) of the first wrong output (in time), or None."""
    try:
        diff = (torch.as_tensor(got[0]).detach() - expected[0].detach()).abs()
    except (TypeError, RuntimeError, IndexError):
        return None
    if diff.shape != expected[0].shape:
        return None
    wrong = (diff > 1e-4).any(dim=-1).nonzero()
    return (int(wrong[0, 0]), int(wrong[0, 1])) if len(wrong) else None


def explain_unroll(starts, got, expected) -> str:
    """Where an unroll first goes wrong (in time), and what the state must be there."""
    found = _first_wrong_step(got, expected)
    if found is None:
        return "Return (outputs (T, B, H), the last state (B, H)): the last state is outputs[-1]."
    t, b = found
    episode_starts = starts[:, b].nonzero().flatten().tolist()
    if bool(starts[t, b]):
        what = "a step that starts an episode: the cell must see a zero state there"
    elif t == 0:
        what = "the very first step: the cell must see h0 there"
    else:
        what = "a step inside an episode: the cell must see the state carried from step t - 1"
    return (
        f"The first wrong output is at step {t} of environment {b}, {what}. Episodes of "
        f"environment {b} start at steps {episode_starts}."
    )


def _explain_rollout(case, got, expected) -> str:
    return explain_unroll(case["episode_starts"], got, expected)


def _compare_rollout(got, expected) -> str | None:
    if not (isinstance(got, tuple) and len(got) == 2):
        return (
            f"rollout should return a tuple (outputs (T, B, H), h_T (B, H)), got "
            f"{type(got).__name__}"
        )
    problem = compare_outputs(got[0], expected[0], atol=1e-5, where="outputs")
    if problem is None:
        problem = compare_outputs(got[1], expected[1], atol=1e-5, where="final state h_T")
    return problem


ROLLOUT = Exercise(
    name="rollout",
    reference=_reference_rollout,
    make_case=_make_rollout_case,
    compare=_compare_rollout,
    explain=_explain_rollout,
    n_cases=10,
    check_gradients=True,
    answer_name="rollout",
    answer_parts=("outputs", "last state h_T"),
    grad_hint="Keep h attached from one step to the next (no h.detach(), .data or "
    "torch.no_grad() inside the loop): training backpropagates through the whole unroll.",
    reference_path="rldebug.recurrent.rollout_with_resets",
    bugs=[
        PlantedBug(
            "the state is never reset at episode starts (it leaks into the next episode)",
            _never_resets,
            "Before calling the cell at step t, zero h where episode_starts[t] is True: "
            "h = h * (1 - episode_starts[t].float()).unsqueeze(-1).",
        ),
        PlantedBug(
            "the state is reset after the step instead of before it",
            _resets_after_the_step,
            "episode_starts[t] says that inputs[t] is a new episode's first observation, so "
            "the cell must already see a zero state at step t.",
        ),
        PlantedBug(
            "the state is reset at every step (a fancy linear layer, no memory)",
            _resets_every_step,
            "Carry h from one step to the next; zero it only where an episode starts.",
        ),
        PlantedBug(
            "h0 is ignored (the rollout starts from zeros)",
            _reset_ignores_h0,
            "An environment in the middle of an episode carries its state into the rollout: "
            "start from h0.",
        ),
        PlantedBug(
            "the state is detached between steps (the gradient stops after one step)",
            _detached_between_steps,
            "The values are right, but h.detach() cuts every path from a loss at step t back "
            "to the steps before it: the cell cannot learn to remember. Carry h as it is.",
        ),
    ],
)


def check_rollout(fn, *, seed=None):
    """Check a reader's ``rollout(cell, inputs, episode_starts, h0) -> (outputs, h_T)``."""
    ROLLOUT.check(fn, seed=seed)


# ---------------------------------------------------------------------------------------
# exercise 2: the masked loss over padded sequences
# ---------------------------------------------------------------------------------------


def _make_loss_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, ("batch of 1", "no padding"))
    batch = 1 if edge == "batch of 1" or rng.random() < 0.2 else int(rng.integers(2, 6))
    steps = int(rng.integers(4, 12))
    lengths = rng.integers(1, steps + 1, size=batch)
    if edge == "no padding" or rng.random() < 0.2:  # every sequence is full length
        lengths[:] = steps
    elif batch > 1:
        lengths[int(rng.integers(batch))] = int(rng.integers(1, max(2, steps // 2)))  # short
    lengths[int(rng.integers(batch))] = steps  # the longest sequence sets T
    mask = np.arange(steps)[None, :] < lengths[:, None]
    targets = np.where(mask, rng.normal(size=(batch, steps)), 0.0)  # padding is zeros
    return {
        "outputs": torch.as_tensor(rng.normal(size=(batch, steps)), dtype=torch.float32),
        "targets": torch.as_tensor(targets, dtype=torch.float32),
        "lengths": torch.as_tensor(lengths),
    }


def _mask_not_applied(outputs, targets, lengths):
    return ((outputs - targets) ** 2).mean()


def _mean_over_padding(outputs, targets, lengths):
    mask = torch.arange(outputs.shape[1])[None, :] < lengths[:, None]
    return (((outputs - targets) ** 2) * mask).mean()  # divides by B*T, padding included


def _padding_at_the_front(outputs, targets, lengths):
    steps = outputs.shape[1]
    mask = torch.arange(steps)[None, :] >= (steps - lengths)[:, None]  # the last `length` steps
    return (((outputs - targets) ** 2) * mask).sum() / mask.sum()


def _mean_of_sequence_means(outputs, targets, lengths):
    mask = (torch.arange(outputs.shape[1])[None, :] < lengths[:, None]).float()
    per_sequence = (((outputs - targets) ** 2) * mask).sum(dim=1) / mask.sum(dim=1)
    return per_sequence.mean()  # a 1-step episode weighs as much as a 10-step one


def _from_item(outputs, targets, lengths):
    mask = torch.arange(outputs.shape[1])[None, :] < lengths[:, None]
    total = sum(e.item() for e in ((outputs - targets) ** 2)[mask])  # Python floats
    return torch.tensor(total / int(mask.sum()))  # the right number, with no graph


def _explain_loss(case, got, expected) -> str:
    lengths = case["lengths"].tolist()
    steps = case["outputs"].shape[1]
    return (
        f"lengths = {lengths} with T = {steps}: the valid steps of sequence b are its first "
        f"lengths[b]; the loss is the sum of (outputs - targets)**2 over those "
        f"{sum(lengths)} steps divided by {sum(lengths)}."
    )


def _compare_loss(got, expected) -> str | None:
    if isinstance(got, torch.Tensor) and got.ndim != 0:
        return f"your loss has shape {tuple(got.shape)}; a scalar (0-dim tensor) was expected"
    return compare_outputs(got, expected, atol=1e-5, where="loss")


MASKED_LOSS = Exercise(
    name="masked_sequence_loss",
    reference=_reference_loss,
    make_case=_make_loss_case,
    compare=_compare_loss,
    explain=_explain_loss,
    grad_inputs=("outputs",),
    check_gradients=True,
    answer_name="loss",
    reference_path="rldebug.recurrent.masked_sequence_loss",
    bugs=[
        PlantedBug(
            "the mask is not applied (padding steps are in the loss)",
            _mask_not_applied,
            "Build mask = arange(T)[None, :] < lengths[:, None] and keep only those errors.",
        ),
        PlantedBug(
            "the mean runs over the padding too (divided by B*T, not by the valid steps)",
            _mean_over_padding,
            "Divide the masked sum by mask.sum(), the number of valid steps.",
        ),
        PlantedBug(
            "the mask assumes padding at the front, but the sequences are padded at the end",
            _padding_at_the_front,
            "pad_sequence pads at the end: the valid steps are the first lengths[b] ones.",
        ),
        PlantedBug(
            "each sequence is averaged first, then the sequences (short ones weigh too much)",
            _mean_of_sequence_means,
            "Average over all valid steps at once: masked sum / number of valid steps.",
        ),
        PlantedBug(
            "the loss is assembled from Python numbers (.item() or float)",
            _from_item,
            "torch.tensor(some_float) is a new leaf: loss.backward() reaches nothing. Keep "
            "the whole computation in tensor operations: (errors * mask).sum() / mask.sum().",
        ),
    ],
)


def check_masked_sequence_loss(fn, *, seed=None):
    """Check a reader's ``masked_sequence_loss(outputs, targets, lengths) -> scalar``."""
    MASKED_LOSS.check(fn, seed=seed)


EXERCISES = [ROLLOUT, MASKED_LOSS]
