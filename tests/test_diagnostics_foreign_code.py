"""The diagnostics on code written in other styles: no false alarm on correct code, and the
planted bug caught (sequence-first RNNs, cells, step functions, target-first losses,
single-file DQN losses, method-style backward passes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rldebug
from rldebug import qlearning as ql
from rldebug.checkers import ch01
from rldebug.diagnostics.adapters import LayoutError
from rldebug.diagnostics.gradcheck import check_layer
from rldebug.diagnostics.gradients import gradient_mask_report
from rldebug.diagnostics.ppo import first_epoch_check
from rldebug.diagnostics.recurrent import hidden_state_leak_test, memory_probe
from rldebug.numpy_mlp import dense_relu_backward, dense_relu_forward

rldebug.configure_torch(1)
B = 16

# --------------------------------------------------------------------------------------
# memory probe
# --------------------------------------------------------------------------------------


def _rnn(kind):
    torch.manual_seed(0)
    return {
        "lstm sequence-first": lambda: nn.LSTM(4, 32),
        "gru sequence-first, 2 layers": lambda: nn.GRU(4, 32, 2),
        "lstm batch-first": lambda: nn.LSTM(4, 32, batch_first=True),
        "gru cell": lambda: nn.GRUCell(4, 32),
        "lstm cell": lambda: nn.LSTMCell(4, 16),
    }[kind]()


@pytest.mark.parametrize(
    "kind",
    ["lstm sequence-first", "gru sequence-first, 2 layers", "lstm batch-first", "gru cell",
     "lstm cell"],
)  # fmt: skip
@pytest.mark.parametrize("method", ["gradient", "perturbation"])
def test_memory_probe_sees_the_memory_of_every_torch_rnn(kind, method):
    probe = memory_probe(_rnn(kind), 4, seq_len=16, max_lag=8, batch_size=16, method=method)
    assert probe.has_memory, str(probe)


def test_memory_probe_on_step_functions_and_lstm_state_pairs():
    torch.manual_seed(0)
    cell = nn.LSTMCell(4, 8)
    head = nn.Linear(8, 2)

    def step(obs, state):  # (B, D), (h, c) -> (B, K), (h, c)
        h, c = cell(obs, state)
        return head(h), (h, c)

    assert memory_probe(step, 4, seq_len=12, max_lag=6, batch_size=8).has_memory

    def zeroed(obs, state):  # the bug: the state never reaches the next step
        h, c = cell(obs, None)
        return head(h), (h, c)

    flat = memory_probe(zeroed, 4, seq_len=12, max_lag=6, batch_size=8)
    assert not flat.has_memory and "no memory" in str(flat)

    lin_in, lin_h = nn.Linear(4, 8), nn.Linear(8, 8)

    def linear_step(obs, h):  # accepts (B, T, D) too: must not be read as a sequence
        h = torch.tanh(lin_in(obs) + (0 if h is None else lin_h(h)))
        return h, h

    assert memory_probe(linear_step, 4, seq_len=12, max_lag=6, batch_size=8).has_memory


def test_memory_probe_refuses_a_layout_it_cannot_trust():
    lstm = nn.LSTM(4, 32)  # sequence-first, called as if batch-first
    with pytest.raises(LayoutError, match="batch_first"):
        memory_probe(lambda x, h: lstm(x, h), 4, seq_len=12, max_lag=6)
    probe = memory_probe(lambda x, h: lstm(x, h), 4, seq_len=12, max_lag=6, batch_first=False)
    assert probe.has_memory
    with pytest.raises(ValueError, match="size of one observation"):
        memory_probe(nn.LSTM(5, 8), 4)
    with pytest.raises(TypeError, match="recurrent model"):
        memory_probe(42, 4)


def test_leak_test_is_not_fooled_by_sampling_and_names_a_bad_size():
    torch.manual_seed(0)
    cell = nn.GRUCell(3, 8)

    class Sampler:  # resets correctly, but returns a sampled action
        state = None

        def __call__(self, obs, start):
            if start:
                self.state = None
            self.state = cell(obs[None], self.state)
            return torch.distributions.Categorical(logits=self.state[0, :2]).sample()

    assert not hidden_state_leak_test(Sampler(), 3).leaks
    with pytest.raises(ValueError, match="size of one observation"):
        hidden_state_leak_test(Sampler(), 5)


# --------------------------------------------------------------------------------------
# gradient mask
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def q_setup():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    target = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    batch = ql.QBatch(
        torch.randn(B, 4), torch.randint(3, (B,)), torch.randn(B), torch.randn(B, 4),
        (torch.rand(B) < 0.2).float(), torch.zeros(B),
    )  # fmt: skip
    return net, target, batch


def _target_first(model, b):
    with torch.no_grad():  # the target is computed before Q(s, .)
        y = b.rewards + 0.9 * (1 - b.terminated) * model(b.next_obs).max(1).values
    q_sa = model(b.obs).gather(1, b.actions[:, None]).squeeze(1)
    return F.mse_loss(q_sa, y)


def test_target_first_loss_is_ok(q_setup):
    net, _, batch = q_setup
    report = gradient_mask_report(net, _target_first, batch)
    assert report.ok, report.summary
    assert report.relative_to_gather == pytest.approx(1.0)


def _copy_loss(clone):
    def loss(model, b):
        q = model(b.obs)
        with torch.no_grad():
            y = b.rewards + 0.9 * model(b.next_obs).max(1).values
        wanted = q.detach().clone() if clone else q.detach()
        wanted[torch.arange(len(y)), b.actions] = y
        return ((q - wanted) ** 2).mean()

    return loss


def test_copy_trick_scale_and_aliasing_are_named(q_setup):
    net, _, batch = q_setup
    right = gradient_mask_report(net, _copy_loss(clone=True), batch)
    assert right.ok and right.relative_to_gather == pytest.approx(1 / 3)
    assert "0.33x gather's" in right.summary
    aliased = gradient_mask_report(net, _copy_loss(clone=False), batch)
    assert not aliased.ok and aliased.aliased
    assert "detach() without clone()" in aliased.summary
    assert "is the loss detached" not in aliased.summary


def test_an_undetached_target_network_is_caught(q_setup):
    net, target, batch = q_setup

    def loss(model, b):
        y = b.rewards + 0.9 * target(b.next_obs).max(1).values  # no torch.no_grad()
        return F.mse_loss(model(b.obs).gather(1, b.actions[:, None]).squeeze(1), y)

    report = gradient_mask_report(net, loss, batch, target=target)
    assert not report.ok and "the target network also received gradient" in report.summary
    assert gradient_mask_report(net, loss, batch).ok  # unhooked, it cannot be seen


def _single_file_loss(q_network, target_network, squeeze):
    """A loss as written in a single-file DQN script, over SB3-style replay samples."""

    def loss(data):
        with torch.no_grad():
            target_max, _ = target_network(data["next_observations"]).max(dim=1)
            td_target = data["rewards"].flatten() + 0.99 * target_max * (
                1 - data["dones"].flatten()
            )
        old_val = q_network(data["observations"]).gather(1, data["actions"])
        return F.mse_loss(td_target, old_val.squeeze() if squeeze else old_val)

    return loss


def test_single_file_dqn_loss(q_setup, recwarn):
    net, target, batch = q_setup
    data = {
        "observations": batch.obs,
        "actions": batch.actions[:, None],
        "rewards": batch.rewards[:, None],
        "next_observations": batch.next_obs,
        "dones": batch.terminated[:, None],
    }
    good = gradient_mask_report(net, _single_file_loss(net, target, True), data, target=target)
    assert good.ok and not good.warnings, good.summary
    assert not [w for w in recwarn if "target size" in str(w.message)]  # nothing leaks out
    bad = gradient_mask_report(net, _single_file_loss(net, target, False), data, target=target)
    assert not bad.ok and bad.rows_independent is False
    assert len(bad.warnings) == 1 and "target size" in bad.warnings[0]


# --------------------------------------------------------------------------------------
# gradient check, chapter 1 checker, first-epoch check
# --------------------------------------------------------------------------------------


def test_gradient_check_gives_a_verdict_and_validates_shapes():
    rng = np.random.default_rng(0)
    inputs = dict(x=rng.normal(size=(4, 3)), W=rng.normal(size=(3, 5)), b=rng.normal(size=5))
    good = check_layer(dense_relu_forward, dense_relu_backward, inputs)
    assert good.ok and "OK" in str(good) and good["finite differences"]["W"] < 1e-6

    def scalar_bias(x, W, b, grad_out):
        dx, dW, db = dense_relu_backward(x, W, b, grad_out)
        return dx, dW, db.sum()

    with pytest.raises(ValueError, match=r"shape \(\) for b"):
        check_layer(dense_relu_forward, scalar_bias, inputs)

    def no_relu_derivative(x, W, b, grad_out):
        return grad_out @ W.T, x.T @ grad_out, grad_out.sum(axis=0)

    bad = check_layer(dense_relu_forward, no_relu_derivative, inputs)
    assert not bad.ok and "WRONG" in str(bad) and bad.worst[2] > 1e-2


def test_gradient_check_accepts_a_method_style_backward():
    class Tanh:
        def __init__(self, wrong=False):
            self.wrong = wrong

        def forward(self, x):
            self.y = np.tanh(x)
            return self.y

        def backward(self, grad):
            return grad * (1 - self.y) if self.wrong else grad * (1 - self.y**2)

    x = {"x": np.random.default_rng(1).normal(size=(3, 4))}
    layer, wrong = Tanh(), Tanh(wrong=True)
    assert check_layer(layer.forward, layer.backward, x).ok
    assert not check_layer(wrong.forward, wrong.backward, x).ok


def test_chapter_1_checkers_call_by_position(capsys):
    ch01.check_td_target(lambda r, q, te, tr, g: (r + g * (1 - te) * q.max(1).values).detach())
    ch01.check_copy_trick_loss(
        lambda q, a, y: (
            (q - q.detach().clone().index_put((torch.arange(len(a)), a), y)) ** 2
        ).mean()
    )
    assert capsys.readouterr().out.count("✓") == 2


def test_first_epoch_check_names_env_and_step():
    old = np.zeros((6, 3))
    new = old.copy()
    new[4, 2] = 0.3
    report = first_epoch_check(new, old, dims=("step", "env"))
    assert not report.ok and "(env 2, step 4)" in str(report)
    assert "index (4, 2)" in str(first_epoch_check(new, old))
