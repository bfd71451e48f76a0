"""diagnose's "one action" row: it reads Q on states and fails only on what no correct
network shows (tied values, an output blind to the state, diverged values). Checked on
networks of other styles: a plain nn.Sequential, a CleanRL-style QNetwork class trained on
one-hot Taxi, and stable-baselines3's DQN."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rldebug
from rldebug import qlearning as ql
from rldebug.diagnostics.collapse import collapse_check

rldebug.configure_torch(1)


def _quiet(obj, *args, **kwargs):
    return rldebug.diagnose(obj, *args, show=False, **kwargs)


def _sequential(obs_dim=4, n_actions=2, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(obs_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_actions)
    )


class QNetwork(nn.Module):
    """A Q-network as CleanRL's dqn.py writes it."""

    def __init__(self, n_obs, n_actions):
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(n_obs, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, n_actions),
        )

    def forward(self, x):
        return self.network(x)


@pytest.fixture(scope="module")
def taxi():
    """Taxi's optimal Q (value iteration on its tables) and its start states, one-hot."""
    tables = ql.taxi_tables()
    q = torch.zeros(tables.reward.shape)  # (500, 6)
    for _ in range(400):
        q = tables.reward + 0.99 * (1 - tables.terminated) * q.max(1).values[tables.next_state]
    return q, torch.eye(500)[tables.start_states]


def _fit(q_star, loss_kind, steps=2000, seed=0):
    """Regress a CleanRL QNetwork on Taxi's optimal Q from random (state, action) pairs."""
    torch.manual_seed(seed)
    net, one_hot = QNetwork(500, 6), torch.eye(500)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(steps):
        states, actions = torch.randint(500, (128,)), torch.randint(6, (128,))
        q_values, targets = net(one_hot[states]), q_star[states, actions]  # (B, A), (B,)
        if loss_kind == "gather":
            loss = F.mse_loss(q_values.gather(1, actions[:, None]).squeeze(1), targets)
        else:  # the copy trick indexing whole columns: wanted[:, actions]
            wanted = q_values.detach().clone()
            wanted[:, actions] = targets
            loss = F.mse_loss(q_values, wanted)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net


def test_a_trained_cleanrl_network_passes_and_column_indexing_is_one_action(taxi):
    q_star, start_states = taxi
    correct = _quiet(_fit(q_star, "gather"), states=start_states)["one action"]
    assert correct.status == "pass", correct
    assert "300 of the agent's states" in correct.summary
    columns = _quiet(_fit(q_star, "columns"), states=start_states)
    assert columns["one action"].status == "warn" and not columns.failed
    assert columns["one action"].report.greedy_share > 0.95
    assert "ONE ACTION" in str(columns) and "before training" in str(columns)


@pytest.mark.parametrize("seed", range(5))
def test_random_networks_are_never_failed(seed, taxi):
    for net, states in [(_sequential(seed=seed), None), (QNetwork(500, 6), taxi[1])]:
        check = _quiet(net, states=states)["one action"]
        assert check.status in ("pass", "warn"), check


def test_random_inputs_say_so():
    check = _quiet(_sequential())["one action"]
    assert "256 random inputs" in check.summary
    if check.status == "warn":
        assert "Pass states=" in check.details


def test_dead_tied_and_diverged_networks_fail():
    dead = _sequential()
    with torch.no_grad():
        dead[0].bias.fill_(-100.0)  # every ReLU off for every input
    assert _quiet(dead).failed == ["one action"]
    assert "STATE_BLIND" in _quiet(dead)["one action"].summary

    tied = _sequential(n_actions=3)
    with torch.no_grad():
        tied[4].weight[:] = tied[4].weight[0]  # every output the same function of the state
        tied[4].bias.fill_(0.5)
    assert "TIED" in _quiet(tied)["one action"].summary

    diverged = _sequential()
    with torch.no_grad():
        diverged[4].bias.fill_(float("nan"))
    check = _quiet(diverged)["one action"]
    assert check.status == "FAIL" and "diverged" in check.summary


def test_a_loss_reads_q_on_its_batch():
    q_net = _sequential(n_actions=3)
    batch = ql.QBatch(
        torch.randn(16, 4), torch.randint(3, (16,)), torch.randn(16), torch.randn(16, 4),
        torch.zeros(16), torch.zeros(16),
    )  # fmt: skip

    def loss(model, b):
        return F.mse_loss(model(b.obs).gather(1, b.actions[:, None]).squeeze(1), b.rewards)

    diagnosis = _quiet(loss, batch, model=q_net)
    assert "16 of the agent's states" in diagnosis["one action"].summary


def test_bad_states_and_outputs():
    with pytest.raises(ValueError, match=r"states must be \(S >= 2, 4\)"):
        _quiet(_sequential(), states=torch.zeros(8, 5))
    value_net = nn.Linear(4, 1)  # one output: not a value per action
    assert _quiet(value_net)["one action"].status == "not run"
    with pytest.raises(ValueError, match="not \\(states, actions\\)"):
        collapse_check(value_net, torch.zeros(4, 4))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_stable_baselines3_dqn():
    sb3 = pytest.importorskip("stable_baselines3")
    model = sb3.DQN("MlpPolicy", "CartPole-v1", learning_starts=200, seed=0, device="cpu")
    model.learn(300)
    check = rldebug.diagnose(model, show=False)["one action"]
    assert check.status in ("pass", "warn") and "300 of the agent's states" in check.summary
    with torch.no_grad():
        model.q_net.q_net[0].bias.fill_(-100.0)  # a dead first layer
    assert "STATE_BLIND" in rldebug.diagnose(model, show=False)["one action"].summary
