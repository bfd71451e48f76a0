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
    state_of_envs,
    store_state,
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


# The LSTM's (h, c) beside the GRU's h: every helper treats both parts alike.


def _lstm_state(layers=1, batch=3, hidden=4):
    return (torch.randn(layers, batch, hidden), torch.randn(layers, batch, hidden))


@pytest.mark.parametrize(
    "bad, error, words",
    [
        ([torch.ones(1, 3, 4), torch.ones(1, 3, 4)], TypeError, "not a list"),
        ((torch.ones(1, 3, 4),) * 3, TypeError, "tuple of 3 items"),
        ((torch.ones(1, 3, 4), torch.ones(1, 2, 4)), ValueError, "same shape"),
        (torch.ones(4), ValueError, "GRU state h"),
        ("h", TypeError, "a str"),
        ((torch.ones(2, 5, 4), (torch.ones(1, 2, 4),) * 2), TypeError, "return value of nn.LSTM"),
    ],
)
def test_state_helpers_reject_what_is_not_a_state(bad, error, words):
    for helper in (
        lambda s: reset_state(s, True),
        detach_state,
        store_state,
        lambda s: state_of_envs(s, [0]),
    ):
        with pytest.raises(error, match=words):
            helper(bad)


def test_carried_lstm_state_is_h_and_c_and_matches_one_call():
    torch.manual_seed(4)
    net = RecurrentNet(3, 2, 8, cell="lstm")
    obs = torch.randn(2, 6, 3)
    seq, (h_seq, c_seq) = net(obs, None)
    state, outs = None, []
    for t in range(6):
        out, state = net.step(obs[:, t], state)
        outs.append(out)
    assert isinstance(state, tuple) and state[0].shape == state[1].shape == (1, 2, 8)
    assert torch.allclose(torch.stack(outs, 1), seq, atol=1e-6)
    assert torch.allclose(state[0], h_seq, atol=1e-6) and torch.allclose(state[1], c_seq, atol=1e-6)
    with pytest.raises(TypeError, match="an LSTM: its state is a tuple"):
        net(obs, h_seq)  # h alone, no c
    with pytest.raises(TypeError, match="a GRU: its state is one tensor"):
        RecurrentNet(3, 2, 8)(obs, (h_seq, c_seq))


def test_reset_zeroes_h_and_c_and_keeps_the_graph_of_the_others():
    h, c = (part.requires_grad_(True) for part in _lstm_state())
    new_h, new_c = reset_state((h, c), [True, False, True])
    for new in (new_h, new_c):
        assert new[:, [0, 2]].abs().sum() == 0 and new.requires_grad
    assert torch.equal(new_h[:, 1], h[:, 1]) and torch.equal(new_c[:, 1], c[:, 1])


def test_detach_cuts_both_h_and_c():
    x = torch.randn(1, 3, 4, requires_grad=True)
    h, c = detach_state((x * 2, x * 3))
    assert not h.requires_grad and not c.requires_grad
    assert torch.equal(h, (x * 2).detach()) and torch.equal(c, (x * 3).detach())


def test_store_state_is_a_detached_copy_for_gru_and_lstm():
    for state in (torch.randn(1, 3, 4, requires_grad=True), _lstm_state()):
        stored = store_state(state)
        parts = stored if isinstance(stored, tuple) else (stored,)
        live = state if isinstance(state, tuple) else (state,)
        with torch.no_grad():
            for part in live:
                part.zero_()  # a later in-place change to the live state
        assert all(not p.requires_grad and p.abs().sum() > 0 for p in parts)


def test_state_of_envs_picks_the_same_envs_in_h_and_c():
    h, c = _lstm_state(layers=2, batch=5)
    sub_h, sub_c = state_of_envs((h, c), [1, 4])
    assert sub_h.shape == sub_c.shape == (2, 2, 4)
    assert torch.equal(sub_h, h[:, [1, 4]]) and torch.equal(sub_c, c[:, [1, 4]])
    assert torch.equal(state_of_envs(h, slice(0, 2)), h[:, :2])  # a GRU's h
    assert state_of_envs(None, [0]) is None


def test_packed_lstm_state_is_each_episodes_own_last_h_and_c():
    torch.manual_seed(5)
    lstm = nn.LSTM(2, 5, batch_first=True)
    episodes = [torch.randn(n, 2) for n in (4, 7, 1)]
    padded, lengths = pad_episodes(episodes)
    _, (h_packed, c_packed) = packed_forward(lstm, padded, lengths)
    _, (h_padded, c_padded) = lstm(padded)
    for b, episode in enumerate(episodes):
        _, (h_alone, c_alone) = lstm(episode[None])
        assert torch.allclose(h_packed[:, b], h_alone[:, 0], atol=1e-6)
        assert torch.allclose(c_packed[:, b], c_alone[:, 0], atol=1e-6)
    assert not torch.allclose(c_padded[:, 0], c_packed[:, 0])  # ran over the padding
