"""Chapter 1's bug hunt: a DQN loss with three planted bugs, which the reader finds and fixes.

The checker must reject the loss as the chapter prints it (naming all three bugs), every
realistic partial fix (naming what is left), and the blank stub; it must accept every
correct fix, whichever way it picks the taken action. The chapter's diagnostics must see
the bugs they claim to see.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rldebug import qlearning as ql
from rldebug.checkers import ch01
from rldebug.checking import CheckFailed, not_implemented_stub
from rldebug.diagnostics.gradients import gradient_mask_report

COLUMNS = "targets written into whole columns"
ATTACHED = "the target is not detached"
TRUNCATION = "truncation is treated as termination"


def buggy_dqn_loss(model, b, gamma=0.99):
    """The loss as the chapter prints it (the copy trick, three bugs)."""
    q_values = model(b.obs)  # (B, A)
    next_q = model(b.next_obs)  # (B, A)
    done = torch.maximum(b.terminated, b.truncated)  # 1.0 where the episode is over
    targets = b.rewards + gamma * (1 - done) * next_q.max(dim=1).values  # (B,)
    wanted = q_values.detach().clone()  # the outputs, with the targets written in
    wanted[:, b.actions] = targets
    return ((q_values - wanted) ** 2).mean()


def _loss(model, b, gamma, *, pick="gather", detach=True, bootstrap_cut=True, rows=True):
    """A hand-written fix; each keyword undoes one of the three fixes."""
    q_values = model(b.obs)
    with torch.no_grad() if detach else contextlib.nullcontext():
        next_v = model(b.next_obs).max(dim=1).values
        done = b.terminated if bootstrap_cut else torch.maximum(b.terminated, b.truncated)
        targets = b.rewards + gamma * (1 - done) * next_v
    if pick == "copy":
        wanted = q_values.detach().clone()
        if rows:
            wanted[torch.arange(len(b.actions)), b.actions] = targets
        else:
            wanted[:, b.actions] = targets
        return ((q_values - wanted) ** 2).mean()
    if pick == "gather":
        q_sa = q_values.gather(1, b.actions.unsqueeze(1)).squeeze(1)
    elif pick == "one_hot":
        q_sa = (q_values * F.one_hot(b.actions, q_values.shape[1])).sum(dim=1)
    else:  # "arange"
        q_sa = q_values[torch.arange(len(b.actions)), b.actions]
    return F.mse_loss(q_sa, targets)


def _message(fn, seed=0) -> str:
    with pytest.raises(CheckFailed) as caught:
        ch01.check_fixed_dqn_loss(fn, seed=seed)
    return str(caught.value)


def _accepts(fn):
    for seed in range(4):
        with contextlib.redirect_stdout(io.StringIO()):
            ch01.check_fixed_dqn_loss(fn, seed=seed)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_rejects_the_blank_stub():
    assert "not implemented yet" in _message(not_implemented_stub)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rejects_the_printed_loss_naming_all_three_bugs(seed):
    message = _message(buggy_dqn_loss, seed).splitlines()[0]
    assert all(bug in message for bug in (COLUMNS, ATTACHED, TRUNCATION)), message


PARTIAL = {  # what the reader fixed -> the bugs the message must name (and no other)
    "columns only": (dict(pick="copy", detach=False, bootstrap_cut=False), [ATTACHED, TRUNCATION]),
    "no_grad only": (dict(pick="copy", rows=False, bootstrap_cut=False), [COLUMNS, TRUNCATION]),
    "truncation only": (dict(pick="copy", rows=False, detach=False), [COLUMNS, ATTACHED]),
    "columns and no_grad": (dict(pick="copy", bootstrap_cut=False), [TRUNCATION]),
    "columns and truncation": (dict(pick="copy", detach=False), [ATTACHED]),
    "no_grad and truncation": (dict(pick="copy", rows=False), [COLUMNS]),
    "gather, target attached": (dict(detach=False), [ATTACHED]),
    "gather, truncation left": (dict(bootstrap_cut=False), [TRUNCATION]),
    "one-hot mask, truncation left": (dict(pick="one_hot", bootstrap_cut=False), [TRUNCATION]),
}


@pytest.mark.parametrize("case", list(PARTIAL))
def test_rejects_partial_fixes_naming_what_is_left(case):
    kwargs, left = PARTIAL[case]
    for seed in range(3):
        first = _message(lambda m, b, g: _loss(m, b, g, **kwargs), seed).splitlines()[0]
        for bug in (COLUMNS, ATTACHED, TRUNCATION):
            assert (bug in first) == (bug in left), f"{case}: {first}"


def test_names_the_broadcast_and_the_shared_copy():
    def no_squeeze(model, b, gamma):
        q_sa = model(b.obs).gather(1, b.actions.unsqueeze(1))
        with torch.no_grad():
            targets = b.rewards + gamma * (1 - b.terminated) * model(b.next_obs).max(1).values
        return ((q_sa - targets) ** 2).mean()

    def shared_copy(model, b, gamma):
        q_values = model(b.obs)
        with torch.no_grad():
            targets = b.rewards + gamma * (1 - b.terminated) * model(b.next_obs).max(1).values
        wanted = q_values.detach()
        wanted[torch.arange(len(b.actions)), b.actions] = targets
        return ((q_values - wanted) ** 2).mean()

    assert "(B, 1) - (B,) broadcast" in _message(no_squeeze)
    assert "detach() without clone()" in _message(shared_copy)


def test_names_a_batch_changed_in_place():
    def adds_into_rewards(model, b, gamma):
        q_sa = model(b.obs).gather(1, b.actions.unsqueeze(1)).squeeze(1)
        with torch.no_grad():
            targets = b.rewards  # not a copy: the += below writes into the caller's batch
            targets += gamma * (1 - b.terminated) * model(b.next_obs).max(1).values
        return ((q_sa - targets) ** 2).mean()

    assert "changes its argument `batch.rewards`" in _message(adds_into_rewards)


@pytest.mark.parametrize("pick", ["gather", "one_hot", "arange", "copy"])
def test_accepts_every_correct_fix(pick):
    _accepts(lambda model, b, gamma: _loss(model, b, gamma, pick=pick))


def test_accepts_a_detached_target_built_with_detach():
    def with_detach(net, batch, gamma):
        q_sa = net(batch.obs).gather(1, batch.actions[:, None])[:, 0]
        next_v = net(batch.next_obs).detach().max(dim=1).values
        return ((q_sa - (batch.rewards + gamma * (1 - batch.terminated) * next_v)) ** 2).mean()

    _accepts(with_detach)


def test_the_chapters_diagnostics_see_two_of_the_bugs():
    """What the chapter's solution shows: gradient_mask_report sees the attached target and
    the whole columns; flipping `truncated` alone changes the loss (the third bug)."""
    tables = ql.taxi_tables()
    env = ql.VectorTaxi(tables, (32,), torch.Generator().manual_seed(1))
    states = env.reset()
    actions = torch.randint(6, (32,), generator=torch.Generator().manual_seed(0))
    next_states, rewards, terminated, truncated, _ = env.step(actions)
    batch = ql.QBatch(
        ql.one_hot(states, 500), actions, rewards, ql.one_hot(next_states, 500), terminated,
        truncated,
    )  # fmt: skip
    torch.manual_seed(0)
    q_net = nn.Linear(500, 6, bias=False)
    report = gradient_mask_report(q_net, buggy_dqn_loss, batch)
    assert not report.ok and "not detached" in report.summary, report.summary
    fixed = gradient_mask_report(q_net, lambda m, b: _loss(m, b, 0.99), batch)
    assert fixed.ok, fixed.summary
    flipped = batch._replace(truncated=1.0 - batch.truncated)
    with torch.no_grad():
        assert float(buggy_dqn_loss(q_net, batch)) != float(buggy_dqn_loss(q_net, flipped))
        assert float(_loss(q_net, batch, 0.99)) == float(_loss(q_net, flipped, 0.99))
