"""Checkers for chapter 3, "A DQN that learns": replay sampling, the probe environment
(in :mod:`rldebug.checkers.ch03_probe`) and the DQN loss."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from rldebug.agents.dqn import dqn_loss as _reference_loss
from rldebug.checkers.ch03_probe import (
    PROBE_ENV,
    ConstantRewardEnv,
    check_probe_env,
    probe_env_or_reference,
)
from rldebug.checking import CheckFailed, Exercise, PlantedBug, compare_outputs, forced_edge
from rldebug.nets import q_network
from rldebug.replay import Transitions
from rldebug.replay import sample_from_rollout as _reference_sample

__all__ = [
    "DQN_LOSS",
    "EXERCISES",
    "PROBE_ENV",
    "SAMPLE_FROM_ROLLOUT",
    "ConstantRewardEnv",
    "check_dqn_loss",
    "check_probe_env",
    "check_sample_from_rollout",
    "probe_env_or_reference",
]


# --------------------------------------------------------------------------------------
# Exercise 1: sample transitions from a vector-env rollout (NEXT_STEP autoreset)
# --------------------------------------------------------------------------------------


def _rollout_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, ("batch of 1", "one env"))
    T, N, D = int(rng.integers(12, 40)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
    if edge == "one env":
        N = 1
    obs = rng.normal(size=(T + 1, N, D)).round(3).astype(np.float32)
    terminated = rng.random((T, N)) < 0.12
    truncated = (rng.random((T, N)) < 0.06) & ~terminated
    terminated[int(rng.integers(0, T - 1)), int(rng.integers(0, N))] = True  # at least one end
    # the step after an end is the autoreset step: reward 0, flags False (as gymnasium does)
    after_end = np.zeros_like(terminated)
    after_end[1:] = (terminated | truncated)[:-1]
    terminated &= ~after_end
    truncated &= ~after_end
    rewards = rng.normal(size=(T, N)).round(2).astype(np.float32)
    rewards[after_end] = 0.0
    n_valid = int((~after_end).sum())
    # sometimes the batch is larger than what is stored: sampling must still work
    batch_size = int(rng.integers(n_valid + 1, 2 * n_valid + 2) if rng.random() < 0.4
                     else rng.integers(4, max(5, n_valid // 2)))  # fmt: skip
    if edge == "batch of 1" or rng.random() < 0.1:
        batch_size = 1
    return {
        "obs": obs,
        "actions": rng.integers(0, 3, size=(T, N)),
        "rewards": rewards,
        "terminated": terminated,
        "truncated": truncated,
        "batch_size": batch_size,
        "rng": np.random.default_rng(int(rng.integers(2**31))),
    }


def _valid(terminated, truncated):
    done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
    valid = np.ones_like(done)
    valid[1:] = ~done[:-1]
    return valid


def _gather(obs, actions, rewards, terminated, truncated, t, n, next_t):
    return Transitions(
        obs=np.asarray(obs)[t, n],
        actions=np.asarray(actions)[t, n],
        rewards=np.asarray(rewards)[t, n],
        next_obs=np.asarray(obs)[next_t, n],
        terminated=np.asarray(terminated)[t, n],
        truncated=np.asarray(truncated)[t, n],
    )


def _most_recent_only(obs, actions, rewards, terminated, truncated, batch_size, rng):
    valid_t, valid_n = np.nonzero(_valid(terminated, truncated))
    k = min(batch_size, len(valid_t))
    t, n = valid_t[-k:], valid_n[-k:]  # the last k stored transitions, always the same
    return _gather(obs, actions, rewards, terminated, truncated, t, n, t + 1)


def _without_replacement(obs, actions, rewards, terminated, truncated, batch_size, rng):
    valid_t, valid_n = np.nonzero(_valid(terminated, truncated))
    k = min(batch_size, len(valid_t))  # random.sample-style: the batch shrinks
    pick = rng.choice(len(valid_t), size=k, replace=False)
    t, n = valid_t[pick], valid_n[pick]
    return _gather(obs, actions, rewards, terminated, truncated, t, n, t + 1)


def _next_obs_off_by_one(obs, actions, rewards, terminated, truncated, batch_size, rng):
    valid_t, valid_n = np.nonzero(_valid(terminated, truncated))
    pick = rng.integers(0, len(valid_t), size=batch_size)
    t, n = valid_t[pick], valid_n[pick]
    return _gather(obs, actions, rewards, terminated, truncated, t, n, t)  # s' = s


def _crosses_autoreset(obs, actions, rewards, terminated, truncated, batch_size, rng):
    valid_t, valid_n = np.nonzero(np.ones(np.shape(terminated), dtype=bool))  # all steps
    pick = rng.integers(0, len(valid_t), size=batch_size)
    t, n = valid_t[pick], valid_n[pick]
    return _gather(obs, actions, rewards, terminated, truncated, t, n, t + 1)


def _draw(obs, actions, rewards, terminated, truncated, batch_size, rng, valid):
    """The reference's draw over another validity mask (the planted mask bugs)."""
    valid_t, valid_n = np.nonzero(valid)
    pick = rng.integers(0, len(valid_t), size=batch_size)
    t, n = valid_t[pick], valid_n[pick]
    return _gather(obs, actions, rewards, terminated, truncated, t, n, t + 1)


def _skips_ending_steps(obs, actions, rewards, terminated, truncated, batch_size, rng):
    done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
    valid = _valid(terminated, truncated) & ~done  # the last step of each episode is lost
    return _draw(obs, actions, rewards, terminated, truncated, batch_size, rng, valid)


def _terminated_only(obs, actions, rewards, terminated, truncated, batch_size, rng):
    valid = _valid(terminated, np.zeros_like(truncated))  # a time limit also autoresets
    return _draw(obs, actions, rewards, terminated, truncated, batch_size, rng, valid)


def _last_row_dropped(obs, actions, rewards, terminated, truncated, batch_size, rng):
    valid = _valid(terminated, truncated)
    valid[-1] = False  # obs has T + 1 rows: the last step has its next observation
    return _draw(obs, actions, rewards, terminated, truncated, batch_size, rng, valid)


_DRAW = (
    "To be compared draw by draw, draw as the reference does: valid_t, valid_n = "
    "np.nonzero(valid); pick = rng.integers(0, len(valid_t), size=batch_size)."
)


def _locate(obs_rows, obs):
    """(t, n) of each row of ``obs_rows`` among the rollout's obs[:-1], or None."""
    steps, envs = obs.shape[0] - 1, obs.shape[1]
    flat = obs[:-1].reshape(steps * envs, -1)
    found = []
    for row in obs_rows.reshape(len(obs_rows), -1):
        hits = np.nonzero((flat == row).all(axis=1))[0]
        found.append(divmod(int(hits[0]), envs) if len(hits) else None)
    return found


def _explain_sample(case, got, expected) -> str:
    obs, valid = np.asarray(case["obs"]), _valid(case["terminated"], case["truncated"])
    try:
        rows = np.asarray(got.obs, dtype=obs.dtype)
        if rows.shape != np.asarray(expected.obs).shape:
            return _DRAW
        where = _locate(rows, obs)
        for i, tn in enumerate(where):
            if tn is None:
                return f"Row {i} of your obs is not an observation of the rollout. " + _DRAW
            t, n = tn
            if not valid[t, n]:
                return (
                    f"Row {i} of your batch is step {t} of env {n}, the reset step right after "
                    "an episode ended (terminated or truncated): its next_obs is the first "
                    "observation of a new episode. Mark that step invalid."
                )
            for name, stored in (
                ("next_obs", obs[t + 1, n]),
                ("actions", case["actions"][t, n]),
                ("rewards", case["rewards"][t, n]),
                ("terminated", case["terminated"][t, n]),
                ("truncated", case["truncated"][t, n]),
            ):
                if not np.array_equal(np.asarray(getattr(got, name))[i], stored):
                    return (
                        f"Row {i} of your batch is step {t} of env {n}, but its {name} is not "
                        f"{name}[{t}, {n}]"
                        + (" (it is obs[t + 1] of the same env)" if name == "next_obs" else "")
                        + "."
                    )
    except (AttributeError, IndexError, TypeError, ValueError):
        return _DRAW
    return (
        "Every transition in your batch is a real one, paired correctly, so the difference "
        "is in which transitions are drawn. Check the validity mask first: only the step "
        "right after an episode's end (terminated or truncated) is invalid; the step that "
        "ends an episode and the last row (its next observation is obs[T]) are valid. " + _DRAW
    )


SAMPLE_FROM_ROLLOUT = Exercise(
    name="sample_from_rollout",
    reference=_reference_sample,
    make_case=_rollout_case,
    reference_path="rldebug.replay.sample_from_rollout",
    explain=_explain_sample,
    bugs=[
        PlantedBug(
            "only the most recent transitions are sampled",
            _most_recent_only,
            "Uniform sampling draws from the whole buffer; the last few transitions are "
            "strongly correlated and make every batch look the same.",
        ),
        PlantedBug(
            "sampling without replacement shrinks the batch",
            _without_replacement,
            "Sample with replacement (rng.integers): the batch keeps batch_size rows even "
            "when the buffer holds fewer transitions.",
        ),
        PlantedBug(
            "next_obs is paired with the wrong step (off by one)",
            _next_obs_off_by_one,
            "The observation after step t is obs[t + 1] of the same env.",
        ),
        PlantedBug(
            "transitions that cross an autoreset are sampled",
            _crosses_autoreset,
            "With NEXT_STEP autoreset the step after terminated/truncated only resets the "
            "env: its next_obs is a new episode's first observation. Mark it invalid.",
        ),
        PlantedBug(
            "the step that ends an episode is never sampled",
            _skips_ending_steps,
            "The step where terminated or truncated is True is a real transition (the agent "
            "acted and got its last reward); only the *next* step, the reset step, is "
            "invalid: valid[1:] = ~done[:-1].",
        ),
        PlantedBug(
            "only terminated marks the reset step (truncated is ignored)",
            _terminated_only,
            "A time limit also resets the env on the next step: done = terminated | truncated "
            "decides which steps are invalid.",
        ),
        PlantedBug(
            "the last step of the rollout is never sampled",
            _last_row_dropped,
            "obs has T + 1 rows: the next observation of the last step is obs[T], so the last "
            "step is a valid transition.",
        ),
    ],
)


def check_sample_from_rollout(fn: Callable[..., Any], *, seed: int | None = None) -> None:
    """Check a reader's ``sample_from_rollout(obs, actions, rewards, terminated, truncated,
    batch_size, rng)``."""
    SAMPLE_FROM_ROLLOUT.check(fn, seed=seed)


# --------------------------------------------------------------------------------------
# Exercise 2: the DQN loss of a batch (value AND gradient are checked)
# --------------------------------------------------------------------------------------


class _LossAndGrads(NamedTuple):
    loss: Any  # the scalar loss value
    q_grad: Any  # gradient of the loss w.r.t. the online net's parameters, flattened
    target_grad: Any  # same for the target net: must be zero


DQN_EDGES = ("batch of 1", "all terminated", "gamma = 0")


def _loss_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, DQN_EDGES)
    torch.manual_seed(int(rng.integers(2**31)))
    B = 1 if edge == "batch of 1" or rng.random() < 0.2 else int(rng.integers(8, 40))
    D, A = int(rng.integers(2, 6)), int(rng.integers(2, 5))
    q_net = q_network((D,), A, hidden=(16,))
    target_net = q_network((D,), A, hidden=(16,))  # different weights: a lagging copy
    terminated = rng.random(B) < 0.25
    truncated = (rng.random(B) < 0.2) & ~terminated
    if edge == "all terminated" or rng.random() < 0.2:  # every episode ended for real
        terminated[:], truncated[:] = True, False
    elif B > 1:  # both kinds of ending
        terminated[0], truncated[1] = True, True
        terminated[1] = False
    batch = Transitions(
        obs=torch.as_tensor(rng.normal(size=(B, D)), dtype=torch.float32),
        actions=torch.as_tensor(rng.integers(0, A, size=B), dtype=torch.int64),
        rewards=torch.as_tensor(rng.normal(size=B), dtype=torch.float32),
        next_obs=torch.as_tensor(rng.normal(size=(B, D)), dtype=torch.float32),
        terminated=torch.as_tensor(terminated, dtype=torch.float32),
        truncated=torch.as_tensor(truncated, dtype=torch.float32),
    )
    return {
        "q_net": q_net,
        "target_net": target_net,
        "batch": batch,
        "gamma": 0.0 if edge == "gamma = 0" else float(rng.choice([0.0, 0.9, 0.99, 0.99])),
    }


def _online_target_with_grad(q_net, target_net, batch, gamma):
    q_sa = q_net(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    next_q = q_net(batch.next_obs).max(dim=1).values  # online net, and gradients flow
    target = batch.rewards + gamma * (1 - batch.terminated) * next_q
    return F.smooth_l1_loss(q_sa, target)


def _no_terminal_mask(q_net, target_net, batch, gamma):
    q_sa = q_net(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        target = batch.rewards + gamma * target_net(batch.next_obs).max(dim=1).values
    return F.smooth_l1_loss(q_sa, target)


def _truncation_is_terminal(q_net, target_net, batch, gamma):
    q_sa = q_net(batch.obs).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        done = torch.maximum(batch.terminated, batch.truncated)
        target = batch.rewards + gamma * (1 - done) * target_net(batch.next_obs).max(1).values
    return F.smooth_l1_loss(q_sa, target)


def _gather_wrong_axis(q_net, target_net, batch, gamma):
    q_sa = q_net(batch.obs).gather(0, batch.actions.unsqueeze(1)).squeeze(1)  # rows, not columns
    with torch.no_grad():
        target = (
            batch.rewards
            + gamma * (1 - batch.terminated) * target_net(batch.next_obs).max(dim=1).values
        )
    return F.smooth_l1_loss(q_sa, target)


def _broadcast_b1_b(q_net, target_net, batch, gamma):
    q_sa = q_net(batch.obs).gather(1, batch.actions.unsqueeze(1))  # (B, 1): no squeeze
    with torch.no_grad():
        target = (
            batch.rewards
            + gamma * (1 - batch.terminated) * target_net(batch.next_obs).max(dim=1).values
        )  # (B,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the broadcast; the bug ignores it
        return F.smooth_l1_loss(q_sa, target)  # (B, 1) - (B,) -> (B, B)


def _with_grads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a loss function and return its value and the gradients it sends to each net."""

    def run(q_net, target_net, batch, gamma):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            loss = fn(q_net=q_net, target_net=target_net, batch=batch, gamma=gamma)
        if not isinstance(loss, torch.Tensor):
            return loss  # compare says what is wrong
        if loss.dim() != 0:
            raise CheckFailed(
                f"your loss has shape {tuple(loss.shape)}: it must be a scalar (reduce with "
                "the mean over the batch)"
            )
        if loss.requires_grad:
            loss.backward()

        def flat(net):
            return torch.cat(
                [
                    (p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                    for p in net.parameters()
                ]
            )

        return _LossAndGrads(loss.detach(), flat(q_net), flat(target_net))

    return run


def _compare_loss(got, expected) -> str | None:
    if not isinstance(got, _LossAndGrads):
        return compare_outputs(got, expected.loss, where="loss")
    problem = compare_outputs(got.loss, expected.loss, rtol=1e-4, atol=1e-6, where="loss")
    if problem:
        return problem
    if float(got.q_grad.abs().sum()) == 0.0:
        return (
            "your loss sends no gradient to q_net: did you compute Q(s, a) under "
            "torch.no_grad() or call .detach()/.item() on it?"
        )
    if float(got.target_grad.abs().sum()) > 0.0:
        return (
            "your loss sends gradients into target_net: compute the target under "
            "torch.no_grad() (semi-gradient: the target is a constant)"
        )
    return compare_outputs(got.q_grad, expected.q_grad, rtol=1e-4, atol=1e-6,
                           where="gradient w.r.t. q_net")  # fmt: skip


def _explain_loss(case, got, expected) -> str:
    b = case["batch"]
    return (
        f"The batch has B = {len(b.rewards)} rows; q_net(batch.obs) is (B, A). Expected: "
        "q_sa = Q(s, a) of the taken action (B,), target = r + gamma * (1 - terminated) * "
        "max_a' target_net(s', a') (B,) under torch.no_grad(), loss = "
        "F.smooth_l1_loss(q_sa, target)."
    )


class _GradExercise(Exercise):
    """An exercise whose functions are compared through ``_with_grads``."""

    def check(self, fn, *, seed=None, n_cases=None):
        if not callable(fn):
            return super().check(fn, seed=seed, n_cases=n_cases)
        inner = Exercise(
            name=self.name,
            reference=_with_grads(self.reference),
            make_case=self.make_case,
            bugs=[PlantedBug(b.name, _with_grads(b.fn), b.hint) for b in self.bugs],
            compare=self.compare,
            explain=self.explain,
            n_cases=self.n_cases,
            reference_path=self.reference_path,
        )
        return inner.check(_with_grads(fn), seed=seed, n_cases=n_cases)


def _reference_dqn_loss(q_net, target_net, batch, gamma):
    return _reference_loss(q_net, target_net, batch, gamma)


_reference_dqn_loss.__doc__ = _reference_loss.__doc__

DQN_LOSS = _GradExercise(
    name="dqn_loss",
    reference=_reference_dqn_loss,
    make_case=_loss_case,
    compare=_compare_loss,
    explain=_explain_loss,
    n_cases=20,
    reference_path="rldebug.agents.dqn.dqn_loss",
    bugs=[
        PlantedBug(
            "the target comes from the online network, with gradients",
            _online_target_with_grad,
            "Compute the target from target_net inside torch.no_grad(): a target that "
            "moves with every update is chased by the very weights it depends on.",
        ),
        PlantedBug(
            "terminal states bootstrap (no (1 - terminated))",
            _no_terminal_mask,
            "After a real end there is no future: multiply the bootstrap by (1 - terminated).",
        ),
        PlantedBug(
            "truncation is treated as terminal",
            _truncation_is_terminal,
            "A time limit is not an end of the task: bootstrap on truncated, mask only terminated.",
        ),
        PlantedBug(
            "Q-values gathered along the wrong axis",
            _gather_wrong_axis,
            "q_net(obs) is (B, A): gather the action along dim 1, q.gather(1, a.unsqueeze(1)).",
        ),
        PlantedBug(
            "a (B, 1) Q(s, a) minus a (B,) target broadcasts to (B, B)",
            _broadcast_b1_b,
            "squeeze(1) after gather so that q_sa and the target are both (B,).",
        ),
    ],
)


def check_dqn_loss(fn: Callable[..., Any], *, seed: int | None = None) -> None:
    """Check a reader's ``dqn_loss(q_net, target_net, batch, gamma)``."""
    DQN_LOSS.check(fn, seed=seed)


EXERCISES = [SAMPLE_FROM_ROLLOUT, PROBE_ENV, DQN_LOSS]
