"""The one mechanism for many seeds (SeedBatch) and the written-out cells it needs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import rldebug
from rldebug.cells import make_cell, unroll
from rldebug.results import SeedsResult, first_reached, kept_to_end
from rldebug.seedbatch import SeedBatch, clip_grad_norm_per_seed, per_seed, seeded

rldebug.configure_torch(1)


class _Net(nn.Module):
    def __init__(self, cell="gru"):
        super().__init__()
        self.cell = make_cell(cell, 3, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x, state, starts=None):  # x (T, B, 3)
        out, state = unroll(self.cell, x, state, starts)
        return self.head(out), state

    def initial_state(self, batch):
        return self.cell.initial_state(batch)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_written_out_cells_are_pytorchs_cells(cell):
    torch.manual_seed(0)
    ours = make_cell(cell, 3, 5)
    torch.manual_seed(0)
    theirs = (nn.GRUCell if cell == "gru" else nn.LSTMCell)(3, 5)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)  # same names, same initialisation
    x, h = torch.randn(4, 3), torch.randn(4, 5)
    state = h if cell == "gru" else (h, torch.randn(4, 5))
    torch.testing.assert_close(ours(x, state), theirs(x, state))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_unroll_resets_h_and_c_before_an_episode_start(cell):
    torch.manual_seed(0)
    net = _Net(cell)
    x = torch.randn(6, 2, 3)
    starts = torch.zeros(6, 2)
    starts[3, 1] = 1
    state = net.initial_state(2)
    state = tuple(s + 1 for s in state) if isinstance(state, tuple) else state + 1
    out, _ = net(x, state, starts)
    fresh, _ = net(x[3:, 1:], net.initial_state(1))  # env 1 from step 3, from zeros
    torch.testing.assert_close(out[3:, 1:], fresh)
    with pytest.raises(ValueError, match="time-major"):
        unroll(net.cell, x[0], state)
    with pytest.raises(ValueError, match="cell must be"):
        make_cell("rnn", 3, 5)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seed_k_of_the_batch_is_the_plain_network_of_seed_k(cell):
    seeds = [3, 7, 11]
    nets = seeded(lambda: _Net(cell), seeds)
    batch = SeedBatch(seeded(lambda: _Net(cell), seeds))
    x = torch.randn(3, 6, 4, 3)  # (S, T, B, D)
    starts = (torch.rand(3, 6, 4) < 0.2).float()
    states = [n.initial_state(4) for n in nets]
    stacked_state = (
        tuple(torch.stack(p) for p in zip(*states)) if cell == "lstm" else torch.stack(states)
    )
    zeros = batch.call("initial_state", 4)  # any method of the plain network, per seed
    assert (zeros[0] if cell == "lstm" else zeros).shape == (3, 4, 5)
    out, last = batch(x, stacked_state, starts)
    (out.square().sum()).backward()
    for k, net in enumerate(nets):
        want, want_last = net(x[k], states[k], starts[k])
        torch.testing.assert_close(out[k], want)
        want.square().sum().backward()
        for name, p in net.named_parameters():
            torch.testing.assert_close(getattr(batch, name.replace(".", "__")).grad[k], p.grad)
        for a, b in zip(batch.seed(k).parameters(), net.parameters()):
            torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="seed axis first"):
        batch(x[:2], stacked_state, starts)


def test_adam_on_the_stack_is_one_adam_per_seed_and_clipping_is_per_seed():
    seeds = [0, 1]
    nets = seeded(lambda: nn.Linear(4, 2), seeds)
    batch = SeedBatch(seeded(lambda: nn.Linear(4, 2), seeds))
    opt = torch.optim.Adam(batch.parameters(), lr=0.1)
    opts = [torch.optim.Adam(n.parameters(), lr=0.1) for n in nets]
    x = torch.randn(2, 8, 4)
    x[1] *= 100  # seed 1's gradient is huge: clipping it must not shrink seed 0's
    for _ in range(3):
        opt.zero_grad()
        batch(x).square().mean(dim=(1, 2)).sum().backward()
        norms = clip_grad_norm_per_seed(batch.parameters(), 1.0)
        opt.step()
        for k, (net, o) in enumerate(zip(nets, opts)):
            o.zero_grad()
            net(x[k]).square().mean().backward()
            norm = nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            torch.testing.assert_close(norms[k], norm)
            o.step()
    for k, net in enumerate(nets):
        torch.testing.assert_close(batch.seed(k).weight, net.weight)


def test_results_helpers():
    steps = np.array([10, 20, 30, 40, 50])
    returns = np.array([[0, 500], [500, 500], [100, 500], [500, 500], [500, 400]])
    np.testing.assert_array_equal(first_reached(steps, returns, 475), [20, 10])
    np.testing.assert_array_equal(first_reached(steps, returns, 900), [np.nan, np.nan])
    np.testing.assert_array_equal(kept_to_end(steps, returns, 475), [True, False])
    r = SeedsResult(seeds=[0, 1], eval_steps=steps, eval_returns=returns)
    np.testing.assert_array_equal(r.kept(475, last_fraction=0.5), [False, False])
    with pytest.raises(ValueError, match="rows"):
        first_reached(steps[:2], returns, 1)


def test_per_seed_lifts_a_plain_loss_with_two_networks_and_a_named_tuple_batch():
    from rldebug.agents.dqn import dqn_loss
    from rldebug.nets import q_network
    from rldebug.replay import Transitions
    from rldebug.seedbatch import per_seed

    seeds = [0, 5]
    make = lambda: q_network((4,), 2, (8,))  # noqa: E731
    q_nets, targets = seeded(make, seeds), seeded(make, [1, 6])
    q_batch, target_batch = SeedBatch(seeded(make, seeds)), SeedBatch(seeded(make, [1, 6]))
    g = torch.Generator().manual_seed(0)
    batch = Transitions(
        obs=torch.randn(2, 7, 4, generator=g),
        actions=torch.randint(0, 2, (2, 7), generator=g),
        rewards=torch.randn(2, 7, generator=g),
        next_obs=torch.randn(2, 7, 4, generator=g),
        terminated=(torch.rand(2, 7, generator=g) < 0.3).float(),
        truncated=torch.zeros(2, 7),
    )
    losses = per_seed(dqn_loss)(q_batch, target_batch, batch, 0.99)  # (S,)
    losses.sum().backward()
    for k in range(2):
        one = Transitions(*(x[k] for x in batch))
        want = dqn_loss(q_nets[k], targets[k], one, 0.99)
        want.backward()
        torch.testing.assert_close(losses[k], want)
        torch.testing.assert_close(q_batch.seed(k)[1].weight, q_nets[k][1].weight)
        torch.testing.assert_close(getattr(q_batch, "1__weight").grad[k], q_nets[k][1].weight.grad)
    assert getattr(target_batch, "1__weight").grad is None  # the target is never trained
    with pytest.raises(TypeError, match="SeedBatch"):
        per_seed(dqn_loss)(q_nets[0], targets[0], batch, 0.99)


def test_freeze_adam_seed_stops_one_seed_and_leaves_the_others():
    from rldebug.seedbatch import freeze_adam_seed

    batch = SeedBatch(seeded(lambda: nn.Linear(3, 2), range(3)))
    optimizer = torch.optim.Adam(batch.parameters(), lr=0.1)
    x = torch.randn(3, 5, 3)
    for _ in range(2):  # moments are nonzero for every seed
        optimizer.zero_grad()
        batch(x).pow(2).mean(dim=(1, 2)).sum().backward()
        optimizer.step()
    freeze_adam_seed(optimizer, 1)
    before = [p.detach().clone() for p in batch.parameters()]
    losses = batch(x).pow(2).mean(dim=(1, 2))  # (S,)
    optimizer.zero_grad()
    losses[torch.tensor([True, False, True])].sum().backward()  # seed 1 left out
    optimizer.step()
    for p, b in zip(batch.parameters(), before):
        assert torch.equal(p[1], b[1])  # exactly still
        assert not torch.equal(p[0], b[0]) and not torch.equal(p[2], b[2])
    with pytest.raises(ValueError, match="weight decay"):
        freeze_adam_seed(torch.optim.Adam(batch.parameters(), weight_decay=0.1), 0)


def test_per_seed_with_one_seed_is_the_plain_call_with_a_seed_axis():
    net = nn.Linear(3, 2)
    batch = SeedBatch([net])
    x = torch.randn(1, 5, 3)

    def loss(model, inputs, scale):
        return scale * model(inputs).pow(2).mean(), model(inputs)

    lifted, out = per_seed(loss)(batch, x, 2.0)
    plain, plain_out = loss(net, x[0], 2.0)
    assert lifted.shape == (1,) and out.shape == (1, 5, 2)
    torch.testing.assert_close(lifted[0], plain)
    torch.testing.assert_close(out[0], plain_out)
    lifted.sum().backward()
    assert all(p.grad is not None and p.grad.shape[0] == 1 for p in batch.parameters())


def test_a_feed_forward_stack_runs_layer_by_layer_with_the_same_values():
    from rldebug.nets import q_network

    for make, shape in (
        (lambda: q_network((3, 4), 2, (16, 8)), (3, 5, 3, 4)),  # Flatten(start_dim=1) first
        (
            lambda: nn.Sequential(nn.Linear(4, 8, bias=False), nn.Tanh(), nn.Linear(8, 2)),
            (3, 2, 5, 4),
        ),
    ):
        nets, batch = seeded(make, [0, 1, 2]), SeedBatch(seeded(make, [0, 1, 2]))
        assert batch._layer_by_layer
        x = torch.randn(*shape)
        fast = batch(x)
        torch.testing.assert_close(fast, batch.call("forward", x))  # the vmapped call
        for k, net in enumerate(nets):
            torch.testing.assert_close(fast[k], net(x[k]))
        fast.square().sum().backward()  # gradients reach every seed's weights
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in batch.parameters())
    with pytest.raises(ValueError, match="seed axis first"):
        batch(torch.zeros(2, 5, 4))
    assert not SeedBatch(seeded(lambda: _Net(), [0, 1]))._layer_by_layer  # recurrent: vmap


def test_a_selection_of_seeds_shares_the_weights_and_leaves_the_others_gradient_zero():
    from rldebug.nets import q_network

    for make, layer_by_layer in ((lambda: q_network((4,), 2, (8, 8)), True), (_Net, False)):
        batch = SeedBatch(seeded(make, [0, 1, 2]))
        assert batch._layer_by_layer == layer_by_layer
        chosen = batch.select([2, 0])
        assert chosen.num_seeds == 2 and batch.num_seeds == 3
        if layer_by_layer:
            x = torch.randn(2, 5, 4)  # (S', B, 4)
            args, full_args = (x,), (torch.stack([x[1], x[1], x[0]]),)  # seed 2 reads x[0]
        else:
            x, h = torch.randn(2, 4, 3, 3), torch.zeros(2, 3, 5)  # (S', T, B, 3), (S', B, H)
            args, full_args = (x, h), (torch.stack([x[1], x[1], x[0]]), torch.zeros(3, 3, 5))
        out, full = chosen(*args), batch(*full_args)
        if not layer_by_layer:
            out, full = out[0], full[0]  # the Q-values, not the state
        torch.testing.assert_close(out[0], full[2])
        torch.testing.assert_close(out[1], full[0])
        out.square().sum().backward()
        for p in batch.parameters():  # seed 1 was left out: its gradient slices are zero
            assert p.grad[1].abs().sum() == 0 and p.grad[[0, 2]].abs().sum() > 0
        with torch.no_grad():  # the selection reads the weights at every call
            for p in batch.parameters():
                p[2].add_(1.0)
        again = chosen(*args) if layer_by_layer else chosen(*args)[0]
        assert not torch.equal(again[0], out[0]) and torch.equal(again[1], out[1])
    with pytest.raises(IndexError, match="out of range"):
        batch.select([3])
    with pytest.raises(ValueError, match="full SeedBatch"):
        chosen.select([0])
    with pytest.raises(ValueError, match="full SeedBatch"):
        chosen.seed(0)


class _StepNet(nn.Module):
    """A method written for any leading axes, so SeedBatch runs it without vmap."""

    seed_first_methods = ("step",)

    def __init__(self, cell="gru"):
        super().__init__()
        self.cell = make_cell(cell, 3, 5)
        self.head = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))

    def step(self, x, state):  # x (B, 3), state h (B, 5) or (h, c)
        state = self.cell(x, state)
        h = state[0] if isinstance(state, tuple) else state
        return self.head(h), state


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seed_first_methods_run_on_the_stacked_weights_with_vmaps_values_and_gradients(cell):
    nets = seeded(lambda: _StepNet(cell), [0, 1, 2])
    batch = SeedBatch(nets)
    x = torch.randn(3, 4, 3)  # (S, B, 3)
    h = torch.randn(3, 4, 5)
    state = (h, torch.randn(3, 4, 5)) if cell == "lstm" else h
    out, new_state = batch.call("step", x, state)  # the stacked path
    out.square().sum().backward()
    stacked_grads = [p.grad.clone() for p in batch.parameters()]
    batch.zero_grad()
    vmapped, _ = per_seed(lambda net, a, s: net.step(a, s))(batch, x, state)  # under vmap
    vmapped.square().sum().backward()
    torch.testing.assert_close(out, vmapped)
    for a, b in zip(stacked_grads, batch.parameters()):
        torch.testing.assert_close(a, b.grad)
    for k, net in enumerate(nets):
        plain_state = tuple(s[k] for s in state) if cell == "lstm" else state[k]
        plain_out, plain_new = net.step(x[k], plain_state)
        torch.testing.assert_close(out[k], plain_out)
        for a, b in zip(_as_tuple(new_state), _as_tuple(plain_new)):
            torch.testing.assert_close(a[k], b)
    chosen = batch.select([2, 0])  # a selection reads its seeds' weights the same way
    part, _ = chosen.call("step", x[[2, 0]], tuple(s[[2, 0]] for s in _as_tuple(state))
                          if cell == "lstm" else state[[2, 0]])  # fmt: skip
    torch.testing.assert_close(part, out[[2, 0]])
    with pytest.raises(ValueError, match="seed axis first"):
        batch.call("step", x[:2], state)


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def test_linear_takes_one_seeds_weight_or_stacked_weights():
    from rldebug.seedbatch import linear

    x, w, b = torch.randn(3, 2, 7, 4), torch.randn(3, 5, 4), torch.randn(3, 5)  # (S, T, B, in)
    stacked = linear(x, w, b)
    assert stacked.shape == (3, 2, 7, 5)
    for k in range(3):
        torch.testing.assert_close(stacked[k], torch.nn.functional.linear(x[k], w[k], b[k]))
        torch.testing.assert_close(linear(x[k], w[k], None), x[k] @ w[k].T)
