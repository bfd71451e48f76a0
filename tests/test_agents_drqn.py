"""DRQN: the plain one-seed agent, lifted to many seeds, with a GRU or an LSTM."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

import rldebug
from rldebug.agents import drqn
from rldebug.agents.drqn import Config, QNetwork, drqn_loss
from rldebug.cells import LSTMCell
from rldebug.episode_replay import EpisodeReplay, to_torch

rldebug.configure_torch(1)

TINY = Config(total_steps=2_000, num_envs=4, learning_starts=400, train_every=8, batch_size=8,
              eval_every=400, eval_episodes=2, hidden_size=16, target_update_every=5)  # fmt: skip


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seed_k_of_a_batched_run_is_the_run_on_seed_k_alone(cell):
    cfg = replace(TINY, cell=cell)
    batched = drqn.train(cfg, seeds=[0, 1, 2])
    assert batched.n_updates == 151 and batched.losses.shape == (5, 3)
    for k, seed in enumerate([0, 1, 2]):
        alone = drqn.train(cfg, seeds=[seed])
        assert alone.n_updates == batched.n_updates
        np.testing.assert_allclose(alone.losses[:, 0], batched.losses[:, k], rtol=1e-5)
        np.testing.assert_allclose(alone.eval_returns[:, 0], batched.eval_returns[:, k])
        for name, value in alone.q_net.seed(0).state_dict().items():
            torch.testing.assert_close(batched.q_net.seed(k).state_dict()[name], value)


def test_the_network_is_pytorchs_gru_and_lstm():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3)
    for cell, rnn_class in (("gru", nn.GRU), ("lstm", nn.LSTM)):
        net = QNetwork(3, 4, hidden_size=5, cell=cell)
        rnn = rnn_class(3, 5, batch_first=True)
        rnn.load_state_dict({f"{k}_l0": v for k, v in net.cell.state_dict().items()})
        q, state = net(x)
        out, ref_state = rnn(x)
        torch.testing.assert_close(q, net.head(out))
        if cell == "gru":
            torch.testing.assert_close(state, ref_state[0])
        else:
            torch.testing.assert_close(state[0], ref_state[0][0])
            torch.testing.assert_close(state[1], ref_state[1][0])


def test_head_keeps_pytorchs_uniform_initialisation():
    torch.manual_seed(0)
    net = QNetwork(4, 3, hidden_size=64)
    bound = 1 / 64**0.5
    for p in net.parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_resets_at_episode_starts_zero_h_and_c(cell):
    torch.manual_seed(1)
    net = QNetwork(2, 3, 4, cell=cell)
    x = torch.randn(2, 6, 2)
    state = net.initial_state(2)
    state = tuple(torch.randn_like(p) for p in state) if cell == "lstm" else torch.randn(2, 4)
    start = torch.zeros(2, 6, dtype=torch.bool)
    start[:, 3] = True  # a new episode at step 3: the same as a fresh unroll of steps 3..5
    q_reset, _ = net(x, state, start)
    q_fresh, _ = net(x[:, 3:])
    torch.testing.assert_close(q_reset[:, 3:], q_fresh)
    q_empty, same = net(x[:, :0], state)
    assert q_empty.shape == (2, 0, 3) and same is state
    # the one-step actor computes what the unroll computes, resets included
    h = net.initial_state(2)
    for t in range(6):
        q_t, h = net.step(x[:, t], h, start[:, t])
        torch.testing.assert_close(q_t, net(x[:, : t + 1])[0][:, t] if t < 3 else q_fresh[:, t - 3])


def test_zero_state_every_step_has_no_memory():
    net = QNetwork(1, 3, 4, zero_state_every_step=True)
    x = torch.randn(2, 5, 1)
    q, _ = net(x)
    torch.testing.assert_close(q[:, -1:], net(x[:, -1:])[0])


def test_lstm_state_is_stored_restored_and_detached_between_segments():
    """The replay stores (h, c) packed; the loss restores it and the burn-in is cut off."""
    torch.manual_seed(2)
    net = QNetwork(1, 3, 4, cell="lstm")
    obs = torch.randn(1, 13, 1)  # one episode of 12 steps
    with torch.no_grad():
        states = [drqn.pack_state(net.initial_state(1))]
        h = net.initial_state(1)
        for t in range(12):
            _, h = net.step(obs[:, t], h)
            states.append(drqn.pack_state(h))
    packed = torch.cat(states).numpy()  # (T + 1, 2H): the state before every observation
    assert packed.shape == (13, 8) and np.abs(packed[:, 4:]).max() > 0  # c is stored too
    replay = EpisodeReplay(2, 12, 1, state_dim=8, seed=0)
    replay.add_episode(obs[0].numpy(), np.zeros(12, int), np.ones(12), np.zeros(12), packed)
    batch = to_torch(replay.sequences(np.array([0]), np.array([7]), seq_len=3, burn_in=2))
    restored = drqn.unpack_state(batch.initial_state, net)
    assert isinstance(restored, tuple) and isinstance(net.cell, LSTMCell)
    torch.testing.assert_close(torch.cat(restored, -1), torch.as_tensor(packed[5:6]))
    # from the stored state, the training pass sees what the actor saw
    q_train = drqn_experiments().training_pass_q(net, batch, 2)
    q_actor = drqn_experiments().q_from_episode_start(net, replay, np.array([0]), np.array([7]), 3)
    torch.testing.assert_close(q_train, q_actor)
    # the burn-in segment is detached: no gradient reaches the stored state through it
    init = tuple(p.clone().requires_grad_() for p in restored)
    loss = drqn_loss(net, copy.deepcopy(net), batch._replace(initial_state=torch.cat(init, -1)),
                     0.9, 2)  # fmt: skip
    loss.backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in init)


def drqn_experiments():
    from rldebug.agents import drqn_experiments as module

    return module


def test_stored_state_reproduces_what_the_actor_saw_for_both_cells():
    for cell in ("gru", "lstm"):
        cfg = replace(TINY, cell=cell, total_steps=800, learning_starts=10_000)  # no update
        result = drqn.train(cfg, seeds=[0, 1])
        net, replay = result.q_net.seed(1), result.replays[1]
        assert len(replay) == 4 and replay.n_steps == 800
        probe = drqn_experiments().q_value_discrepancy
        stored = probe(net, replay, [0, 5], stored_state=True)
        zero = probe(net, replay, [0, 5], stored_state=False)
        assert stored.max() < 1e-5, (cell, stored)
        assert zero[0] > 100 * max(stored[0], 1e-6)


def test_mistake_switches_run():
    cfg = replace(TINY, total_steps=800, backward_per_step=True, target_network=False,
                  bootstrap_on_truncation=False, recurrence=False, stored_state=False,
                  optimizer_step=False)  # fmt: skip
    result = drqn.train(cfg, seeds=[3])
    assert result.n_updates > 0 and np.isfinite(result.final_return).all()
    for name, value in result.q_net.state_dict().items():  # no optimizer step: unchanged
        torch.testing.assert_close(value, result.initial_params[name])


def test_per_step_backward_adds_the_gradients_of_every_step():
    errors = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    mask = torch.ones(1, 3)
    drqn.backward(errors * 1.0, mask)
    once = errors.grad.clone()
    errors.grad = None
    drqn.backward(errors * 1.0, mask, per_step=True)
    torch.testing.assert_close(errors.grad, 3 * once)


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="cell"):
        Config(cell="rnn")
    with pytest.raises(ValueError, match="burn_in"):
        Config(burn_in=-1)
    with pytest.raises(ValueError, match="seeds"):
        drqn.train(TINY, seeds=[])
    with pytest.raises(TypeError, match="drqn.Config"):
        drqn.train({"total_steps": 100})
    net = QNetwork(2, 3, 4)
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        net(torch.zeros(5, 2))
    replay = EpisodeReplay(2, 6, 2, state_dim=4, seed=0)
    replay.add_episode(
        np.zeros((7, 2)), np.zeros(6, int), np.ones(6), np.zeros(6), np.zeros((7, 4))
    )
    batch = to_torch(replay.sample(3, 2, burn_in=1))
    with pytest.raises(ValueError, match="burn_in"):
        drqn_loss(net, net, batch, 0.9, 3)
    with pytest.raises(TypeError, match="seed"):
        drqn_experiments().q_value_discrepancy(drqn.train(replace(TINY, total_steps=400,
                                               learning_starts=10_000)).q_net, None, [0])  # fmt: skip
