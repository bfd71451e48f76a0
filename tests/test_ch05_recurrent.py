"""The recurrent building blocks of chapter 5: resets, detaching, padding and packing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rldebug
from rldebug.recurrent import (
    RecurrentNet,
    detach_state,
    last_valid,
    masked_mean,
    masked_sequence_loss,
    packed_forward,
    pad_episodes,
    reset_state,
    rollout_with_resets,
    sequence_mask,
    zero_state,
)

rldebug.configure_torch(1)


def test_reset_state_zeroes_only_flagged_envs_gru_and_lstm():
    h = torch.ones(2, 3, 4)  # (L, B, H)
    out = reset_state(h, torch.tensor([False, True, False]))
    assert out[:, 1].abs().sum() == 0 and out[:, [0, 2]].eq(1).all()
    h, c = reset_state((torch.ones(1, 3, 4), torch.ones(1, 3, 4)), [True, False, False])
    assert h[:, 0].abs().sum() == 0 and c[:, 0].abs().sum() == 0 and c[:, 1:].eq(1).all()
    assert reset_state(None, True) is None
    assert reset_state(torch.ones(3, 4), True).abs().sum() == 0  # (B, H), scalar flag


def test_reset_state_rejects_wrong_batch():
    with pytest.raises(ValueError, match="one flag per environment"):
        reset_state(torch.ones(1, 3, 4), torch.tensor([True, False]))


def test_zero_state_shapes():
    assert zero_state(nn.GRU(3, 5, 2), 4).shape == (2, 4, 5)
    h, c = zero_state(nn.LSTM(3, 5), 4)
    assert h.shape == c.shape == (1, 4, 5)


def test_detach_state_cuts_graph_keeps_values():
    x = torch.randn(2, 3, requires_grad=True)
    h = x * 2
    d = detach_state(h)
    assert not d.requires_grad and torch.equal(d, h)
    h2, c2 = detach_state((h, h))
    assert not h2.requires_grad and not c2.requires_grad


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_forward_with_resets_equals_separate_episodes(cell):
    torch.manual_seed(0)
    net = RecurrentNet(3, 2, 8, cell=cell)
    obs = torch.randn(2, 7, 3)
    starts = torch.zeros(2, 7, dtype=torch.bool)
    starts[:, 0] = True
    starts[0, 4] = True  # env 0: a new episode at step 4
    out, _ = net(obs, None, starts)
    second, _ = net(obs[:1, 4:], None)  # that episode on its own, from zeros
    assert torch.allclose(out[:1, 4:], second, atol=1e-6)
    whole, _ = net(obs[1:], None)  # env 1 has one episode
    assert torch.allclose(out[1:], whole, atol=1e-6)


def test_step_by_step_equals_sequence():
    torch.manual_seed(1)
    net = RecurrentNet(3, 2, 8, num_layers=2)
    obs = torch.randn(4, 6, 3)
    seq, h_seq = net(obs, None)
    state, outs = None, []
    for t in range(6):
        out, state = net.step(obs[:, t], state)
        outs.append(out)
    assert torch.allclose(torch.stack(outs, 1), seq, atol=1e-6)
    assert torch.allclose(state, h_seq, atol=1e-6)


def test_forward_rejects_time_major_input():
    net = RecurrentNet(3, 2)
    with pytest.raises(ValueError, match="batch_first"):
        net(torch.randn(5, 3))


def test_rollout_with_resets_equals_layer_per_episode():
    torch.manual_seed(2)
    cell = nn.GRUCell(2, 4)
    inputs = torch.randn(5, 1, 2)
    starts = torch.tensor([[False], [False], [True], [False], [False]])
    h0 = torch.randn(1, 4)
    out, h_t = rollout_with_resets(cell, inputs, starts, h0)
    fresh, _ = rollout_with_resets(cell, inputs[2:], torch.zeros(3, 1, dtype=torch.bool), 0 * h0)
    assert torch.allclose(out[2:], fresh) and torch.equal(h_t, out[-1])


def test_masks_and_masked_loss():
    mask = sequence_mask(torch.tensor([1, 3]), 4)
    assert mask.tolist() == [[True, False, False, False], [True, True, True, False]]
    values = torch.tensor([[1.0, 9, 9, 9], [2.0, 3, 4, 9]])
    assert masked_mean(values, mask).item() == pytest.approx(2.5)
    loss = masked_sequence_loss(values, torch.zeros(2, 4), torch.tensor([1, 3]))
    assert loss.item() == pytest.approx((1 + 4 + 9 + 16) / 4)


def test_packed_equals_padded_on_valid_steps():
    torch.manual_seed(3)
    gru = nn.GRU(2, 5, batch_first=True)
    episodes = [torch.randn(n, 2) for n in (4, 7, 1)]
    padded, lengths = pad_episodes(episodes)
    assert padded.shape == (3, 7, 2)
    out_packed, h_packed = packed_forward(gru, padded, lengths)
    out_padded, _ = gru(padded)
    mask = sequence_mask(lengths, 7)
    assert torch.allclose(out_packed[mask], out_padded[mask], atol=1e-6)
    assert out_packed[~mask].abs().sum() == 0
    assert torch.allclose(h_packed[0], last_valid(out_padded, lengths), atol=1e-6)
