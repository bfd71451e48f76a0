"""Checkers for chapter 8, "Recurrent PPO"."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from rldebug.agents.ppo import Minibatch, Rollout
from rldebug.agents.ppo import gae as _gae_reference
from rldebug.agents.ppo import sequence_minibatches as _minibatches_reference
from rldebug.cells import unroll as _cells_unroll
from rldebug.checkers.ch05 import explain_unroll
from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge


# ----------------------------------------------------------------------------- exercise 1
def _unroll_reference(cell, x, h0, starts):
    """:func:`rldebug.cells.unroll` under the exercise's argument names."""
    return _cells_unroll(cell, x, h0, starts)


def _unroll_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    t, b = int(rng.integers(3, 12)), int(rng.integers(1, 6))
    if forced_edge(case_index, ("batch of 1",)):
        b = 1
    n_in, hidden = int(rng.integers(1, 5)), int(rng.integers(2, 7))
    torch.manual_seed(int(rng.integers(2**31)))
    cell = nn.GRUCell(n_in, hidden)
    starts = rng.random((t, b)) < 0.25
    starts[int(rng.integers(1, t)), int(rng.integers(b))] = True  # at least one reset inside
    return {
        "cell": cell,
        "x": torch.as_tensor(rng.normal(size=(t, b, n_in)), dtype=torch.float32),
        "h0": torch.as_tensor(rng.normal(size=(b, hidden)), dtype=torch.float32),
        "starts": torch.as_tensor(starts),
    }


def _unroll_no_reset(cell, x, h0, starts):
    h, outs = h0, []
    for t in range(x.shape[0]):
        h = cell(x[t], h)
        outs.append(h)
    return torch.stack(outs), h


def _unroll_reset_after(cell, x, h0, starts):
    keep = 1.0 - starts.float().unsqueeze(-1)
    h, outs = h0, []
    for t in range(x.shape[0]):
        h = cell(x[t], h) * keep[t]
        outs.append(h)
    return torch.stack(outs), h


def _unroll_reset_to_h0(cell, x, h0, starts):
    h, outs = h0, []
    for t in range(x.shape[0]):
        h = torch.where(starts[t].unsqueeze(-1), h0, h)
        h = cell(x[t], h)
        outs.append(h)
    return torch.stack(outs), h


def _unroll_not_carried(cell, x, h0, starts):
    outs = [cell(x[t], torch.zeros_like(h0)) for t in range(x.shape[0])]
    return torch.stack(outs), outs[-1]


def _unroll_detached(cell, x, h0, starts):
    keep = 1.0 - starts.float().unsqueeze(-1)
    h, outs = h0, []
    for t in range(x.shape[0]):
        h = cell(x[t], h.detach() * keep[t])  # right values; the gradient stops at one step
        outs.append(h)
    return torch.stack(outs), h


def _compare_unroll(got, expected):
    if not (isinstance(got, tuple) and len(got) == 2):
        return "unroll should return a pair (outputs (T, B, H), last hidden state (B, H))"
    return compare_outputs(got, expected, rtol=1e-4, atol=1e-5, where="(outputs, h_last)")


UNROLL = Exercise(
    name="unroll",
    reference=_unroll_reference,
    make_case=_unroll_case,
    compare=_compare_unroll,
    explain=lambda case, got, expected: explain_unroll(case["starts"], got, expected),
    check_gradients=True,
    answer_name="unroll",
    answer_parts=("outputs", "last state"),
    grad_hint="Keep h attached from one step to the next (no h.detach(), .data or "
    "torch.no_grad() inside the loop): the PPO loss backpropagates through the whole unroll.",
    reference_path="rldebug.cells.unroll",
    bugs=[
        PlantedBug(
            "the hidden state is never reset at episode starts",
            _unroll_no_reset,
            "Multiply h by (1 - starts[t]) before the step on x[t]: a new episode must not "
            "remember the last one.",
        ),
        PlantedBug(
            "the state is zeroed after the step instead of before it",
            _unroll_reset_after,
            "starts[t] says that x[t] is the first observation of an episode: zero h, then "
            "step on x[t].",
        ),
        PlantedBug(
            "the state is reset to h0 instead of zeros",
            _unroll_reset_to_h0,
            "h0 is the state the segment started from, in the middle of an episode; a new "
            "episode starts from zeros.",
        ),
        PlantedBug(
            "the state is not carried from one step to the next",
            _unroll_not_carried,
            "Feed the state returned at step t into step t + 1; a zero state at every step "
            "turns the GRU into a feed-forward network.",
        ),
        PlantedBug(
            "the state is detached between steps (the gradient stops after one step)",
            _unroll_detached,
            "The values are right, but h.detach() cuts every path from a loss at step t back "
            "to the steps before it: the GRU cannot learn to remember. Carry h as it is.",
        ),
    ],
)


# ----------------------------------------------------------------------------- exercise 2
def _episodes(rng: np.random.Generator, t: int, b: int, p_end: float = 0.2):
    """Flags of B environments under next-step autoreset: (terminated, truncated, mask)."""
    term = np.zeros((t, b), dtype=bool)
    trunc = np.zeros((t, b), dtype=bool)
    mask = np.ones((t, b), dtype=bool)
    done = rng.random(b) < 0.2  # the previous rollout may have ended an episode
    for step in range(t):
        mask[step] = ~done
        ends = (rng.random(b) < p_end) & ~done
        kind = rng.random(b) < 0.5
        term[step] = ends & kind
        trunc[step] = ends & ~kind
        done = ends
    return term, trunc, mask


GAE_EDGES = ("one env", "gamma = 0", "lambda = 0")


def _gae_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, GAE_EDGES)
    t, b = int(rng.integers(6, 16)), int(rng.integers(1, 5))
    if edge == "one env":
        b = 1
    term, trunc, mask = _episodes(rng, t, b)
    trunc[int(rng.integers(0, t - 2)), 0] = True  # at least one truncation (if not masked)
    trunc[:, 0] &= mask[:, 0]
    term[:, 0] &= ~trunc[:, 0]
    rewards = rng.normal(size=(t, b)).round(2) * mask
    return {
        "rewards": torch.as_tensor(rewards, dtype=torch.float32),
        "values": torch.as_tensor(rng.normal(size=(t + 1, b)).round(2), dtype=torch.float32),
        "terminated": torch.as_tensor(term),
        "truncated": torch.as_tensor(trunc),
        "mask": torch.as_tensor(mask),
        "gamma": 0.0 if edge == "gamma = 0" else float(rng.choice([0.0, 0.9, 0.98, 0.99])),
        "lam": 0.0 if edge == "lambda = 0" else float(rng.choice([0.0, 0.8, 0.95, 1.0])),
    }


def _gae_generic(rewards, values, terminated, truncated, mask, gamma, lam, *, bug):
    term, trunc, m = terminated.float(), truncated.float(), mask.float()
    horizon = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[0])
    for t in reversed(range(horizon)):
        next_value = values[t + 1]
        if bug == "autoreset_obs":
            later = values[min(t + 2, horizon)]
            next_value = torch.where(truncated[t], later, next_value)
        ended = torch.maximum(term[t], trunc[t])
        if bug == "truncation_terminal":
            delta = rewards[t] + gamma * next_value * (1.0 - ended) - values[t]
        else:
            delta = rewards[t] + gamma * next_value * (1.0 - term[t]) - values[t]
        if bug == "no_reset":
            running = delta + gamma * lam * running
            adv[t] = running * m[t]
            continue
        running = delta + gamma * lam * (1.0 - ended) * running
        if bug != "ignores_mask":
            running = running * m[t]
        adv[t] = running
    return adv


def _gae_truncation_terminal(**case):
    return _gae_generic(**case, bug="truncation_terminal")


def _gae_no_reset(**case):
    return _gae_generic(**case, bug="no_reset")


def _gae_autoreset_obs(**case):
    return _gae_generic(**case, bug="autoreset_obs")


def _gae_ignores_mask(**case):
    return _gae_generic(**case, bug="ignores_mask")


def _explain_gae(case, got, expected) -> str:
    """What the last wrong step (the first one a backward loop reaches) is, and its rule."""
    try:
        wrong = (torch.as_tensor(got).float() - expected).abs() > 1e-4
    except (TypeError, RuntimeError, ValueError):
        return ""
    if wrong.shape != expected.shape or not bool(wrong.any()):
        return ""
    t, b = (int(i) for i in wrong.nonzero()[-1])  # largest t: where the backward loop went off
    flags = {k: bool(case[k][t, b]) for k in ("terminated", "truncated", "mask")}
    if not flags["mask"]:
        rule = "a reset step (mask False): the env ignored the action, its advantage is 0"
    elif flags["truncated"]:
        rule = (
            "a truncation (a time limit, not the task, ended the episode): bootstrap from "
            "values[t + 1], the true final observation, and stop the running sum there. A "
            "GAE that looks only at `terminated` carries the next episode into this one"
        )
    elif flags["terminated"]:
        rule = "a termination: no bootstrap (values[t + 1] * (1 - terminated[t])), and the running sum stops"
    elif t == len(expected) - 1:
        rule = "the last step of the rollout: bootstrap from values[T] and start the sum from 0"
    else:
        rule = (
            "a step inside an episode: delta = r + gamma * values[t + 1] - values[t], "
            "A_t = delta + gamma * lam * A_{t + 1}"
        )
    return f"The last wrong advantage is at step {t} of environment {b}, {rule}."


GAE = Exercise(
    name="gae",
    reference=_gae_reference,
    make_case=_gae_case,
    compare=lambda got, exp: compare_outputs(got, exp, rtol=1e-4, atol=1e-5, where="advantages"),
    explain=_explain_gae,
    reference_path="rldebug.agents.ppo.gae",
    bugs=[
        PlantedBug(
            "truncation is treated as termination",
            _gae_truncation_terminal,
            "A truncated episode was cut by the time limit, not ended by the task: bootstrap "
            "from values[t + 1] (multiply by 1 - terminated[t] only).",
        ),
        PlantedBug(
            "the running sum is not reset at episode ends",
            _gae_no_reset,
            "Multiply the carried sum by 1 - (terminated[t] or truncated[t]): the next "
            "episode's advantages must not leak into this one.",
        ),
        PlantedBug(
            "truncated episodes bootstrap from the next episode's first observation",
            _gae_autoreset_obs,
            "Under next-step autoreset the observation right after a truncation (values[t + 1]) "
            "is the true final observation; the one after the reset step belongs to a new "
            "episode.",
        ),
        PlantedBug(
            "the ignored reset step is treated as a real step",
            _gae_ignores_mask,
            "On a reset step (mask False) the environment ignored the action: its advantage "
            "must be 0.",
        ),
    ],
)


# ----------------------------------------------------------------------------- exercise 3
def _minibatch_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    m = int(rng.choice([2, 3, 4]))
    b = m * (1 if forced_edge(case_index, ("one env per minibatch",)) else int(rng.integers(1, 4)))
    t = m * int(rng.integers(2, 5))
    d, hidden = int(rng.integers(1, 4)), int(rng.integers(2, 5))
    term, trunc, mask = _episodes(rng, t, b)

    def f(*shape):
        return torch.as_tensor(rng.normal(size=shape).round(3), dtype=torch.float32)

    rollout = Rollout(
        obs=f(t, b, d),
        starts=torch.as_tensor(rng.random((t, b)) < 0.2),
        actions=torch.as_tensor(rng.integers(0, 3, size=(t, b))),
        logprobs=f(t, b),
        values=f(t + 1, b),
        rewards=f(t, b),
        terminated=torch.as_tensor(term),
        truncated=torch.as_tensor(trunc),
        mask=torch.as_tensor(mask),
        h0=f(b, hidden),
    )
    return {
        "rollout": rollout,
        "advantages": f(t, b),
        "returns": f(t, b),
        "env_order": rng.permutation(b),
        "num_minibatches": m,
    }


_FIELDS = ("obs", "starts", "actions", "logprobs", "advantages", "returns", "mask")


def _columns(rollout, advantages, returns):
    r = rollout
    return dict(
        obs=r.obs,
        starts=r.starts,
        actions=r.actions,
        logprobs=r.logprobs,
        advantages=advantages,
        returns=returns,
        mask=r.mask,
    )


def _mb_timestep_shuffle(rollout, advantages, returns, env_order, num_minibatches):
    cols = _columns(rollout, advantages, returns)
    t, b = rollout.actions.shape
    flat_order = torch.as_tensor(np.random.default_rng(0).permutation(t * b))
    out = []
    for k, idx in enumerate(flat_order.chunk(num_minibatches)):
        envs = torch.as_tensor(np.asarray(env_order)).chunk(num_minibatches)[k]
        fields = {
            n: x.reshape(t * b, *x.shape[2:])[idx].reshape(t, -1, *x.shape[2:])
            for n, x in cols.items()
        }  # (T, B) -> (T*B) -> shuffled -> (T, b): single timesteps of mixed envs
        out.append(Minibatch(**fields, h0=rollout.h0[envs]))
    return out


def _mb_reshape_not_transpose(rollout, advantages, returns, env_order, num_minibatches):
    cols = _columns(rollout, advantages, returns)
    t, b = rollout.actions.shape
    out = []
    for idx in torch.as_tensor(np.asarray(env_order)).chunk(num_minibatches):
        fields = {
            n: x.reshape(b, t, *x.shape[2:])[idx].transpose(0, 1) for n, x in cols.items()
        }  # (T, B) read as (B, T): each "sequence" mixes environments and times
        out.append(Minibatch(**fields, h0=rollout.h0[idx]))
    return out


def _mb_split_time(rollout, advantages, returns, env_order, num_minibatches):
    cols = _columns(rollout, advantages, returns)
    t = rollout.actions.shape[0]
    out = []
    for times in torch.arange(t).chunk(num_minibatches):
        fields = {n: x[times] for n, x in cols.items()}  # (T, B) -> (T/M, B)
        out.append(Minibatch(**fields, h0=rollout.h0))
    return out


def _mb_h0_unordered(rollout, advantages, returns, env_order, num_minibatches):
    cols = _columns(rollout, advantages, returns)
    b = rollout.actions.shape[1]
    out = []
    plain = torch.arange(b).chunk(num_minibatches)
    for k, idx in enumerate(torch.as_tensor(np.asarray(env_order)).chunk(num_minibatches)):
        fields = {n: x[:, idx] for n, x in cols.items()}
        out.append(Minibatch(**fields, h0=rollout.h0[plain[k]]))
    return out


def _column_keys(minibatch) -> list[tuple]:
    """One key per environment column: its values in every field and its h0 row."""
    fields = [np.asarray(_to_numbers(getattr(minibatch, n)), dtype=np.float64) for n in _FIELDS]
    h0 = np.asarray(_to_numbers(minibatch.h0), dtype=np.float64)
    return [
        tuple(f[:, j].tobytes() for f in fields) + (h0[j].tobytes(),) for j in range(h0.shape[0])
    ]


def _to_numbers(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


def _compare_minibatches(got, expected):
    """Order-free: the groups may come in any order, and the environments inside a group
    too, as long as every field and h0 keep each environment's column together."""
    if not isinstance(got, (list, tuple)) or len(got) != len(expected):
        n = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
        return f"expected a list of {len(expected)} Minibatch, got {n}"
    wanted = [_column_keys(e) for e in expected]
    try:
        have = [_column_keys(g) for g in got]
    except (AttributeError, IndexError, TypeError, ValueError):
        have = None
    if have is not None and sorted(map(sorted, have)) == sorted(map(sorted, wanted)):
        return None
    for k, g in enumerate(got):  # report against the reference group it overlaps most
        overlap = [len(set(have[k]) & set(w)) if have else 0 for w in wanted]
        best = max(range(len(wanted)), key=lambda i: (overlap[i], i == k))
        problem = compare_outputs(g, expected[best], rtol=0, atol=0, where=f"minibatch[{k}]")
        if problem:
            return problem
    return (
        "your minibatches hold whole environment columns but group them differently: "
        "minibatch k must hold the environments of the k-th chunk of env_order"
    )


def _explain_minibatches(case, got, expected):
    obs = case["rollout"].obs
    try:
        for mb in got:
            for j in range(mb.obs.shape[1]):
                column = mb.obs[:, j]
                if column.shape != obs[:, 0].shape or not any(
                    torch.equal(column, obs[:, i]) for i in range(obs.shape[1])
                ):
                    return (
                        "your minibatch columns are not whole environment sequences: steps of "
                        "different environments or times are mixed, so the unroll cannot start "
                        "from the stored initial state"
                    )
    except (AttributeError, IndexError, TypeError):
        return ""
    return "check that h0 and every field use the same environment indices, in env_order"


MINIBATCHES = Exercise(
    name="sequence_minibatches",
    reference=_minibatches_reference,
    make_case=_minibatch_case,
    compare=_compare_minibatches,
    explain=_explain_minibatches,
    reference_path="rldebug.agents.ppo.sequence_minibatches",
    bugs=[
        PlantedBug(
            "minibatches shuffle single timesteps",
            _mb_timestep_shuffle,
            "A recurrent minibatch is a set of environments, each with all T steps in order: "
            "index columns, rollout.obs[:, idx].",
        ),
        PlantedBug(
            "the (T, B) rollout is reshaped to (B, T) instead of transposed",
            _mb_reshape_not_transpose,
            "reshape keeps the memory order (time-major): select columns with x[:, idx].",
        ),
        PlantedBug(
            "time is split instead of environments",
            _mb_split_time,
            "Pieces of a sequence after the first have no stored initial state: split the "
            "environments, keep all T steps.",
        ),
        PlantedBug(
            "the initial states do not follow the environments",
            _mb_h0_unordered,
            "Use the same indices for h0 as for the sequences: rollout.h0[idx].",
        ),
    ],
)

EXERCISES = [UNROLL, GAE, MINIBATCHES]


def check_unroll(fn, *, seed=None):
    """Check a reader's ``unroll(cell, x, h0, starts)``."""
    UNROLL.check(fn, seed=seed)


def check_gae(fn, *, seed=None):
    """Check a reader's ``gae(rewards, values, terminated, truncated, mask, gamma, lam)``."""
    GAE.check(fn, seed=seed)


def check_sequence_minibatches(fn, *, seed=None):
    """Check a reader's ``sequence_minibatches(rollout, advantages, returns, env_order, M)``."""
    MINIBATCHES.check(fn, seed=seed)
