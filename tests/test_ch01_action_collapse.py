"""Chapter 1's action_collapse: it tells the causes of "it learns one action" apart, on
agents trained with each bug, passes the correct agent, and refuses bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rldebug
from rldebug import qlearning as ql
from rldebug.diagnostics.collapse import VERDICTS, action_collapse

rldebug.configure_torch(1)


@pytest.fixture(scope="module")
def tables():
    return ql.taxi_tables()


def loss_all_outputs(q_values, actions, targets):
    return ((q_values - targets.unsqueeze(1)) ** 2).mean()


def loss_broadcast(q_values, actions, targets):
    return ((q_values.gather(1, actions.unsqueeze(1)) - targets) ** 2).mean()


def copy_trick_columns(q_values, actions, targets):
    wanted = q_values.detach().clone()
    wanted[:, actions] = targets  # the bug: whole columns, not (row, action) pairs
    return ((q_values - wanted) ** 2).mean()


def argmax_wrong_axis(q_values):
    rows = q_values.reshape(-1, 1, q_values.shape[-1])  # each taxi's (1, A) output
    return rows.argmax(dim=1)[:, 0].reshape(q_values.shape[:-1])  # argmax over the batch axis


def verdicts(run, tables):
    return [
        action_collapse(run.weights[k, tables.start_states], run.actions_taken[k]).verdict
        for k in range(len(run.weights))
    ]


TRAINED = {  # train_linear_taxi arguments -> the verdict on every seed
    "correct": (dict(loss_fn=ql.masked_q_loss), "ok"),
    "all outputs": (dict(loss_fn=loss_all_outputs), "tied"),
    "argmax axis": (dict(loss_fn=ql.masked_q_loss, greedy_actions=argmax_wrong_axis), "acting"),
    "epsilon 1": (dict(loss_fn=ql.masked_q_loss, epsilon=1.0), "random"),
    "broadcast": (dict(loss_fn=loss_broadcast), "random"),
}


@pytest.mark.parametrize("name", list(TRAINED))
def test_each_trained_agent_gets_its_verdict(name, tables):
    kwargs, expected = TRAINED[name]
    run = ql.train_linear_taxi(n_seeds=3, lr=16.0, tables=tables, progress=False, **kwargs)
    assert verdicts(run, tables) == [expected] * 3


def test_column_indexing_diverges_and_is_refused(tables):
    run = ql.train_linear_taxi(
        copy_trick_columns, n_seeds=2, lr=96.0, tables=tables, progress=False
    )
    with pytest.raises(ValueError, match="NaN or inf in .* states: the values diverged"):
        action_collapse(run.weights[0, tables.start_states])


def test_a_dead_network_is_state_blind():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(500, 32), nn.ReLU(), nn.Linear(32, 6))
    with torch.no_grad():
        net[0].bias.fill_(-1.0)  # every unit off for every one-hot input
        q = net(torch.eye(500))
    report = action_collapse(q)
    assert report.verdict == "state_blind" and report.greedy_share == 1.0
    assert "dead network" in report.summary


def test_the_library_dqn_on_one_hot_taxi_is_ok(tables):
    from rldebug.agents import dqn

    result = dqn.train(ql.taxi_dqn_config(final_eval_episodes=0), seeds=[1])
    assert action_collapse(ql.q_table_of(result.q_nets[0])[tables.start_states]).ok


def test_one_action_on_synthetic_values():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(200, 4))
    q[:, 2] += 5.0  # action 2 best almost everywhere, values still differ by state
    report = action_collapse(q)
    assert report.verdict == "one_action" and report.common_action == 2
    assert report.greedy_share > 0.95


def test_every_verdict_has_a_message():
    assert set(VERDICTS) == {"ok", "tied", "state_blind", "one_action", "acting", "random"}


@pytest.mark.parametrize(
    ("q", "counts", "message"),
    [
        (np.zeros(6), None, r"must be \(states, actions\)"),
        (np.zeros((3, 4, 6)), None, r"must be \(states, actions\)"),
        (np.zeros((1, 6)), None, "at least 2 states and 2 actions"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), None, "NaN or inf in 1 of 2 states"),
        (np.ones((4, 3)), [1, 2], r"taken_counts must be \(3,\)"),
        (np.ones((4, 3)), [0, 0, 0], "not all 0"),
        (np.ones((4, 3)), [1, -1, 2], ">= 0"),
    ],
)
def test_bad_input_is_refused(q, counts, message):
    with pytest.raises(ValueError, match=message):
        action_collapse(q, counts)


def test_non_numbers_are_refused():
    with pytest.raises(TypeError, match="must hold numbers"):
        action_collapse(np.array([["a", "b"], ["c", "d"]]))
