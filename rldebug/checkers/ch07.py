"""Checkers for chapter 7, "DRQN and episode replay"."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rldebug.agents.drqn import QNetwork
from rldebug.agents.drqn import drqn_loss as _drqn_loss
from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge, type_phrase
from rldebug.episode_replay import SequenceBatch
from rldebug.episode_replay import gather_sequences as _reference_gather

# ---------------------------------------------------------------------------------------
# exercise 1: cutting sequences out of stored episodes
# ---------------------------------------------------------------------------------------


def _make_gather_case(rng: np.random.Generator) -> dict:
    slots, max_len = int(rng.integers(3, 6)), int(rng.integers(6, 12))
    dim, seq_len, batch = int(rng.integers(1, 3)), int(rng.integers(3, 6)), int(rng.integers(4, 8))
    lengths = rng.integers(2, max_len + 1, size=slots)
    lengths[0] = int(
        rng.integers(2, max_len - 2)
    )  # slot 0 holds a short episode: stale data after it
    episode_idx = rng.integers(0, slots, size=batch)
    starts = rng.integers(-seq_len + 1, lengths[episode_idx])  # some begin before the episode
    episode_idx[0], starts[0] = 0, lengths[0] - 2  # runs past the end of episode 0
    starts[1] = -int(rng.integers(1, seq_len))  # starts before its episode
    return {
        # every slot is full of data; after its episode's length that data is stale
        "obs": rng.normal(size=(slots, max_len + 1, dim)).astype(np.float32),
        "actions": rng.integers(0, 3, size=(slots, max_len)),
        "rewards": rng.normal(size=(slots, max_len)).astype(np.float32),
        "terminated": (rng.random((slots, max_len)) < 0.3).astype(np.float32),
        "lengths": lengths,
        "episode_idx": episode_idx,
        "starts": starts,
        "seq_len": seq_len,
    }


def _cut(obs, actions, rewards, terminated, episode_idx, pos, obs_valid, step_valid):
    """Shared tail of the planted bugs: gather at ``pos`` and zero what is not valid."""
    rows = episode_idx[:, None]
    safe = np.clip(pos, 0, obs.shape[1] - 1)
    step_safe = np.minimum(safe[:, :-1], actions.shape[1] - 1)
    return SequenceBatch(
        obs=np.where(obs_valid[..., None], obs[rows, safe], 0.0).astype(np.float32),
        actions=np.where(step_valid, actions[rows, step_safe], 0),
        rewards=np.where(step_valid, rewards[rows, step_safe], 0.0),
        terminated=np.where(step_valid, terminated[rows, step_safe], 0.0),
        mask=step_valid,
        episode_start=pos == 0,
    )


def _runs_past_the_end(obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len):
    pos = starts[:, None] + np.arange(seq_len + 1)[None, :]
    obs_valid = (pos >= 0) & (pos < obs.shape[1])  # the slot's end, not the episode's
    step_valid = (pos[:, :-1] >= 0) & (pos[:, :-1] < actions.shape[1])
    return _cut(obs, actions, rewards, terminated, episode_idx, pos, obs_valid, step_valid)


def _padding_not_masked(obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len):
    batch = _reference_gather(
        obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len
    )
    return batch._replace(mask=np.ones_like(batch.mask))


def _next_obs_off_by_one(obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len):
    pos = starts[:, None] + np.arange(seq_len + 1)[None, :]
    length = lengths[episode_idx][:, None]
    step_valid = (pos[:, :-1] >= 0) & (pos[:, :-1] < length)
    shifted = pos + 1  # obs[:, i] is read one position too late: the obs *after* step i
    obs_valid = (shifted >= 0) & (shifted <= length)
    batch = _cut(obs, actions, rewards, terminated, episode_idx, pos, obs_valid, step_valid)
    rows, safe = episode_idx[:, None], np.clip(shifted, 0, obs.shape[1] - 1)
    return batch._replace(obs=np.where(obs_valid[..., None], obs[rows, safe], 0.0))


def _negative_start_wraps(obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len):
    pos = starts[:, None] + np.arange(seq_len + 1)[None, :]
    length = lengths[episode_idx][:, None]
    rows = episode_idx[:, None]
    pos = np.minimum(pos, obs.shape[1] - 1)  # clipped above only
    step_pos = np.minimum(pos[:, :-1], actions.shape[1] - 1)
    step_valid = pos[:, :-1] < length  # no lower bound: negative positions count as real
    obs_valid = pos <= length
    return SequenceBatch(  # Python indexing: position -1 is the end of the slot
        obs=np.where(obs_valid[..., None], obs[rows, pos], 0.0).astype(np.float32),
        actions=np.where(step_valid, actions[rows, step_pos], 0),
        rewards=np.where(step_valid, rewards[rows, step_pos], 0.0),
        terminated=np.where(step_valid, terminated[rows, step_pos], 0.0),
        mask=step_valid,
        episode_start=pos == 0,
    )


def _start_flag_at_sequence_start(
    obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len
):
    batch = _reference_gather(
        obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len
    )
    flags = np.zeros_like(batch.episode_start)
    flags[:, 0] = True  # "the sequence starts here", whether or not the episode does
    return batch._replace(episode_start=flags)


def _explain_gather(case, got, expected) -> str:
    """Which sequence and position is wrong first, and what that position is."""
    try:
        for name in expected._fields:
            mine = np.asarray(getattr(got, name), dtype=np.float64)
            wanted = np.asarray(getattr(expected, name), dtype=np.float64)
            if mine.shape != wanted.shape:
                return ""
            wrong = np.argwhere(~np.isclose(mine, wanted)).tolist()
            if wrong:
                break
        else:
            return ""
    except (AttributeError, TypeError, ValueError):
        return ""
    i, j = wrong[0][:2]
    episode, start = int(case["episode_idx"][i]), int(case["starts"][i])
    length, pos = int(case["lengths"][episode]), start + j
    if pos < 0:
        where = "before the episode's first step: padding"
    elif pos > length or (pos == length and name != "obs"):
        where = f"past the episode's end (its length is {length}): padding"
    else:
        where = "inside the episode: real data"
    return (
        f"The first wrong value is {name}[{i}, {j}]: sequence {i} starts at position {start} "
        f"of episode slot {episode}, so index {j} is position {pos}, {where}."
    )


GATHER = Exercise(
    name="gather_sequences",
    reference=_reference_gather,
    make_case=_make_gather_case,
    explain=_explain_gather,
    n_cases=15,
    reference_path="rldebug.episode_replay.gather_sequences",
    bugs=[
        PlantedBug(
            "the sequence runs past the end of its episode (into stale data from an older "
            "episode in the same slot)",
            _runs_past_the_end,
            "A position p of episode e is a real step only if 0 <= p < lengths[e] (and a real "
            "observation if 0 <= p <= lengths[e]); zero everything else.",
        ),
        PlantedBug(
            "the padding is not masked (mask is True on padded steps)",
            _padding_not_masked,
            "mask must be False wherever the step lies outside the episode, so the loss "
            "ignores it.",
        ),
        PlantedBug(
            "off-by-one next observation: obs[:, i] is the observation after step i, not before",
            _next_obs_off_by_one,
            "Take L + 1 observations starting at the start position itself: obs[:, i] is what "
            "the agent saw before acting at step i, obs[:, i + 1] what it saw after.",
        ),
        PlantedBug(
            "a negative start wraps around to the end of the slot (Python negative indexing)",
            _negative_start_wraps,
            "Positions before the episode's first step are padding: require p >= 0 and clip "
            "the indices before gathering.",
        ),
        PlantedBug(
            "episode_start marks the first position of every sequence instead of the "
            "episode's first step",
            _start_flag_at_sequence_start,
            "episode_start[:, i] is True only where position start + i == 0: the state is "
            "reset where the episode begins, not where the sequence happens to begin.",
        ),
    ],
)


def check_gather_sequences(fn, *, seed=None):
    """Check ``gather_sequences(obs, actions, rewards, terminated, lengths, episode_idx, starts, seq_len)``."""
    GATHER.check(fn, seed=seed)


# ---------------------------------------------------------------------------------------
# exercise 2: the DRQN loss with burn-in and masks
# ---------------------------------------------------------------------------------------


def _sequences(rng: np.random.Generator, batch: int, burn_in: int, length: int, dim: int,
               hidden: int) -> dict:  # fmt: skip
    """B sequences of L steps, with the three situations a loss must handle."""
    # each sequence: its episode covers positions [first, last) of the L steps
    first = np.zeros(batch, dtype=int)
    last = np.full(batch, length)
    first[1] = int(rng.integers(1, burn_in + 1)) if burn_in else 0  # burn-in before the episode
    last[2] = int(rng.integers(burn_in + 1, length))  # the episode ends early: padding after
    pos = np.arange(length)[None, :]
    mask = (pos >= first[:, None]) & (pos < last[:, None])  # (B, L)
    obs_pos = np.arange(length + 1)[None, :]
    obs_valid = (obs_pos >= first[:, None]) & (obs_pos <= last[:, None])
    terminated = np.zeros((batch, length), dtype=np.float32)
    terminated[2, last[2] - 1] = 1.0  # that early end is a real one
    terminated[0, int(rng.integers(burn_in, length))] = 1.0
    begins_here = np.zeros(batch, dtype=bool)  # the others began before the sequence did
    begins_here[1] = True
    state = np.tanh(3.0 * rng.normal(size=(batch, hidden)))
    state[1] = 0.0  # a sequence that starts before its episode starts from zeros
    return {
        "obs": rng.normal(size=(batch, length + 1, dim)) * obs_valid[..., None],
        "actions": rng.integers(0, 3, size=(batch, length)) * mask,
        "rewards": rng.normal(size=(batch, length)) * mask,
        "terminated": terminated * mask,
        "mask": mask,
        "episode_start": (obs_pos == first[:, None]) & begins_here[:, None],
        "initial_state": state,
    }


LOSS_EDGES = ("burn_in = 0", "gamma = 0")


def _make_loss_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, LOSS_EDGES)
    batch, steps = int(rng.integers(3, 6)), int(rng.integers(3, 6))
    burn_in = 0 if edge == "burn_in = 0" or rng.random() < 0.25 else int(rng.integers(1, 4))
    dim, hidden, length = int(rng.integers(1, 3)), 4, burn_in + steps
    torch.manual_seed(int(rng.integers(2**31)))
    q_net = QNetwork(dim, 3, hidden)
    target_net = QNetwork(dim, 3, hidden).requires_grad_(False)
    with torch.no_grad():  # strong recurrent weights: the initial state is remembered for long
        q_net.cell.weight_hh.mul_(4.0)
        target_net.cell.weight_hh.mul_(4.0)
    fields = _sequences(rng, batch, burn_in, length, dim, hidden)
    seq = SequenceBatch(
        obs=torch.as_tensor(fields["obs"], dtype=torch.float32),
        actions=torch.as_tensor(fields["actions"]),
        rewards=torch.as_tensor(fields["rewards"], dtype=torch.float32),
        terminated=torch.as_tensor(fields["terminated"]),
        mask=torch.as_tensor(fields["mask"]),
        episode_start=torch.as_tensor(fields["episode_start"]),
        initial_state=torch.as_tensor(fields["initial_state"], dtype=torch.float32),
    )
    return {
        "q_net": q_net,
        "target_net": target_net,
        "batch": seq,
        "gamma": 0.0 if edge == "gamma = 0" else float(rng.choice([0.0, 0.9, 0.95, 0.99])),
        "burn_in": burn_in,
    }


def _reference_loss(q_net, target_net, batch, gamma, burn_in):
    """The chapter's loss: one masked mean over every valid trained step."""
    errors, mask = _drqn_loss(q_net, target_net, batch, gamma, burn_in, per_step=True)
    return errors.sum() / mask.sum()


def _library_loss(q_net, target_net, batch, gamma, burn_in):
    """The library's loss, without its Double DQN targets."""
    return _drqn_loss(q_net, target_net, batch, gamma, burn_in, double=False)


def _trained_q(q_net, batch, burn_in, state, grad_in_burn_in=False):
    if grad_in_burn_in:
        _, h = q_net(batch.obs[:, :burn_in], state, batch.episode_start[:, :burn_in])
    else:
        with torch.no_grad():
            _, h = q_net(batch.obs[:, :burn_in], state, batch.episode_start[:, :burn_in])
    q, _ = q_net(batch.obs[:, burn_in:], h, batch.episode_start[:, burn_in:])
    a = batch.actions[:, burn_in:].unsqueeze(-1)
    return q[:, :-1].gather(-1, a).squeeze(-1)  # (B, T)


def _targets(target_net, batch, gamma, burn_in, state, *, terminal=True):
    with torch.no_grad():
        q_target, _ = target_net(batch.obs, state, batch.episode_start)
        next_value = q_target[:, burn_in + 1 :].max(dim=-1).values
        ended = batch.terminated[:, burn_in:] if terminal else 0.0
        return batch.rewards[:, burn_in:] + gamma * (1.0 - ended) * next_value


def _masked(q_sa, targets, mask):
    mask = mask.float()
    return (F.smooth_l1_loss(q_sa, targets, reduction="none") * mask).sum() / mask.sum()


def _burn_in_with_gradient(q_net, target_net, batch, gamma, burn_in):
    q_sa = _trained_q(q_net, batch, burn_in, batch.initial_state, grad_in_burn_in=True)
    targets = _targets(target_net, batch, gamma, burn_in, batch.initial_state)
    return _masked(q_sa, targets, batch.mask[:, burn_in:])


def _mean_over_padding(q_net, target_net, batch, gamma, burn_in):
    q_sa = _trained_q(q_net, batch, burn_in, batch.initial_state)
    targets = _targets(target_net, batch, gamma, burn_in, batch.initial_state)
    mask = batch.mask[:, burn_in:].float()
    return (F.smooth_l1_loss(q_sa, targets, reduction="none") * mask).mean()


def _target_from_zero_state(q_net, target_net, batch, gamma, burn_in):
    q_sa = _trained_q(q_net, batch, burn_in, batch.initial_state)
    targets = _targets(target_net, batch, gamma, burn_in, torch.zeros_like(batch.initial_state))
    return _masked(q_sa, targets, batch.mask[:, burn_in:])


def _target_on_next_obs_only(q_net, target_net, batch, gamma, burn_in):
    q_sa = _trained_q(q_net, batch, burn_in, batch.initial_state)
    with torch.no_grad():  # the target net sees only obs[burn_in + 1:], from a zero state
        next_obs = batch.obs[:, burn_in + 1 :]
        q_next, _ = target_net(next_obs, None, batch.episode_start[:, burn_in + 1 :])
        targets = (
            batch.rewards[:, burn_in:]
            + gamma * (1.0 - batch.terminated[:, burn_in:]) * q_next.max(dim=-1).values
        )
    return _masked(q_sa, targets, batch.mask[:, burn_in:])


def _no_terminal(q_net, target_net, batch, gamma, burn_in):
    q_sa = _trained_q(q_net, batch, burn_in, batch.initial_state)
    targets = _targets(target_net, batch, gamma, burn_in, batch.initial_state, terminal=False)
    return _masked(q_sa, targets, batch.mask[:, burn_in:])


def _burn_in_in_the_loss(q_net, target_net, batch, gamma, burn_in):
    q, _ = q_net(batch.obs, batch.initial_state, batch.episode_start)  # every step trained
    q_sa = q[:, :-1].gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
    targets = _targets(target_net, batch, gamma, 0, batch.initial_state)
    return _masked(q_sa, targets, batch.mask)


def _graph_leaves(loss: torch.Tensor) -> list[torch.Tensor]:
    """The parameters a loss depends on, found by walking its autograd graph."""
    leaves, seen, stack = [], set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            leaves.append(node.variable)
        stack.extend(fn for fn, _ in node.next_functions)
    return leaves


def _gradient_signature(loss: torch.Tensor) -> np.ndarray:
    """Sorted norms of d loss / d parameter: equal for the same gradient, whoever computes it."""
    leaves = _graph_leaves(loss)
    grads = torch.autograd.grad(loss, leaves, retain_graph=True, allow_unused=True)
    return np.sort([0.0 if g is None else float(g.norm()) for g in grads])


def _compare_loss(got, expected) -> str | None:
    if not isinstance(got, torch.Tensor):
        return (
            f"your loss is {type_phrase(got)}; a scalar torch.Tensor was expected (a number "
            "taken out with .item() or numpy carries no gradient)"
        )
    if got.ndim != 0:
        return (
            f"your loss has shape {tuple(got.shape)}; a scalar was expected (the masked mean "
            "over every valid trained step)"
        )
    problem = compare_outputs(got, expected, rtol=1e-4, atol=1e-5, where="loss")
    if problem:
        return problem
    if got.grad_fn is None:
        return (
            "your loss has the right value but carries no gradient (built from .item() or "
            "numpy, detached, or computed under torch.no_grad())"
        )
    mine, ref = _gradient_signature(got), _gradient_signature(expected)
    if mine.shape != ref.shape or not np.allclose(mine, ref, rtol=1e-3, atol=1e-6):
        return (
            "your loss has the right value but not the right gradient: it flows through "
            "different steps or weights than the reference's"
        )
    return None


def _explain_loss(case, got, expected) -> str:
    batch, steps = case["batch"].actions.shape
    k = case["burn_in"]
    return (
        f"Here B = {batch}, L = {steps}, burn_in = {k}: positions "
        f"0..{k - 1} only rebuild the state (under torch.no_grad(), from batch.initial_state); "
        f"the loss is the masked mean over positions {k}..{steps - 1}, with targets from "
        "target_net unrolled over all L + 1 observations from the same initial state."
        if k
        else f"Here B = {batch}, L = {steps} and burn_in = 0: no "
        "burn-in, so the online net starts at position 0 from batch.initial_state (still "
        "the stored state, not zeros) and every valid step is in the loss."
    )


DRQN_LOSS = Exercise(
    name="drqn_loss",
    reference=_reference_loss,
    make_case=_make_loss_case,
    compare=_compare_loss,
    explain=_explain_loss,
    n_cases=20,
    alternatives=[_library_loss],
    reference_path="rldebug.agents.drqn.drqn_loss",
    bugs=[
        PlantedBug(
            "the burn-in steps get gradient (the burn-in is not inside torch.no_grad())",
            _burn_in_with_gradient,
            "Unroll the first burn_in steps under torch.no_grad(); only the trained steps "
            "build a graph. The loss value is the same, the gradient is not.",
        ),
        PlantedBug(
            "the loss is averaged over the padding too (divided by all steps, not valid ones)",
            _mean_over_padding,
            "Divide the masked sum by mask.sum(), the number of valid trained steps.",
        ),
        PlantedBug(
            "the target net starts from a zero state instead of the stored initial state",
            _target_from_zero_state,
            "Unroll target_net over the same sequence from batch.initial_state, the state the "
            "online net starts from.",
        ),
        PlantedBug(
            "the target net is not unrolled over the same sequence (it sees only the next "
            "observations, from zeros)",
            _target_on_next_obs_only,
            "Run target_net over all of batch.obs (burn-in included) from batch.initial_state, "
            "then take positions burn_in + 1 onwards.",
        ),
        PlantedBug(
            "no (1 - terminated): the target bootstraps past a real end of episode",
            _no_terminal,
            "targets = r + gamma * (1 - terminated) * max_a' Q_target(s', a').",
        ),
        PlantedBug(
            "the burn-in steps are trained too (the loss covers the whole sequence)",
            _burn_in_in_the_loss,
            "The burn-in only rebuilds the state: the loss covers positions burn_in onwards.",
        ),
    ],
)


def check_drqn_loss(fn, *, seed=None):
    """Check ``drqn_loss(q_net, target_net, batch, gamma, burn_in) -> scalar``."""
    DRQN_LOSS.check(fn, seed=seed)


EXERCISES = [GATHER, DRQN_LOSS]
