"""The DRQN's encoder, its SineRoad-v0 recipe, and the two switches of the question's loop
(one episode per update, the last transition skipped)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import rldebug
from rldebug.agents import drqn
from rldebug.agents.drqn import Config, QNetwork
from rldebug.agents.drqn_experiments import SINE_ROAD_RECIPE

rldebug.configure_torch(1)

# The recipe, shrunk: short episodes, few steps, a small net.
TINY = replace(Config(**SINE_ROAD_RECIPE), total_steps=480, num_envs=4, learning_starts=160,
               batch_size=4, hidden_size=8, encoder=6, eval_every=480, eval_episodes=2,
               env_kwargs={"max_episode_steps": 20})  # fmt: skip


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_encoder_shapes_and_step_matches_the_unroll(cell):
    torch.manual_seed(0)
    net = QNetwork(3, 4, hidden_size=5, cell=cell, encoder=7)
    assert net.encoder[0].weight.shape == (7, 3) and net.cell.input_size == 7
    obs = torch.randn(2, 6, 3)  # (B, T, D)
    q, state = net(obs)
    assert q.shape == (2, 6, 4)
    if cell == "lstm":  # (h, c), each (B, H)
        assert isinstance(state, tuple) and [s.shape for s in state] == [(2, 5), (2, 5)]
    else:
        assert state.shape == (2, 5)
    step_state = net.initial_state(2)
    for t in range(6):  # the actor's one-step calls give the unroll's values
        q_t, step_state = net.step(obs[:, t], step_state)
        torch.testing.assert_close(q_t, q[:, t])


def test_no_encoder_is_the_cell_on_the_observation():
    net = QNetwork(3, 4, hidden_size=5)
    assert isinstance(net.encoder, torch.nn.Identity) and net.cell.input_size == 3


def test_bad_encoder_and_observation_width_raise_clearly():
    for bad in (0, -4, 2.5, True, "64"):
        with pytest.raises(ValueError, match="encoder"):
            Config(encoder=bad)
    net = QNetwork(3, 4, hidden_size=5, encoder=7)
    with pytest.raises(ValueError, match="D = 3"):
        net(torch.zeros(2, 6, 7))  # the encoder's width is not the observation's


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recipe_trains_with_both_cells(cell):
    result = drqn.train(replace(TINY, cell=cell), seeds=[0, 1])
    assert result.n_updates > 0 and np.isfinite(result.final_return).all()
    assert result.config.prev_action is False and result.config.gamma == 0.8
    net = result.q_net.seed(1)
    assert net.encoder[0].weight.shape == (6, 2)  # SineRoad-v0: position and time
    before = result.initial_params["encoder__0__weight"][1]  # stacked (S, E, D): seed 1
    assert (net.encoder[0].weight - before).abs().max() > 0


def test_skip_last_transition_stores_one_step_less_per_episode():
    full = drqn.train(replace(TINY, learning_starts=10_000), seeds=[0])
    short = drqn.train(replace(TINY, learning_starts=10_000, skip_last_transition=True), [0])
    n = len(full.replays[0])
    assert len(short.replays[0]) == n > 0
    assert (full.replays[0].lengths[:n] == 20).all() and (short.replays[0].lengths[:n] == 19).all()


def test_one_episode_per_update_trains():
    result = drqn.train(replace(TINY, one_episode_per_update=True), seeds=[0, 1])
    assert result.n_updates > 0 and np.isfinite(result.losses[-1]).all()
    for name, value in result.q_net.state_dict().items():
        assert not torch.equal(value, result.initial_params[name]), name
