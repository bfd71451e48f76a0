"""rldebug.diagnose: one call on modules, functions, losses and hooks objects; a clear
error for what it does not understand; and ``import rldebug`` stays light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rldebug
from rldebug import qlearning as ql
from rldebug.numpy_mlp import dense_relu_backward, dense_relu_forward

rldebug.configure_torch(1)


def _quiet(obj, *args, **kwargs):
    return rldebug.diagnose(obj, *args, show=False, **kwargs)


class InsideState(nn.Module):
    """An LSTM policy written the naive way: the state lives in the module."""

    def __init__(self, with_reset: bool = False):
        super().__init__()
        self.lstm, self.head, self.hidden = nn.LSTM(4, 16), nn.Linear(16, 2), None
        if with_reset:
            self.reset_state = lambda: setattr(self, "hidden", None)

    def forward(self, obs):  # obs (B, D): one step
        out, self.hidden = self.lstm(obs[None], self.hidden)
        return self.head(out[0])


class ExplicitState(nn.Module):
    """The same policy with the state passed in and out."""

    def __init__(self):
        super().__init__()
        self.lstm, self.head = nn.LSTM(4, 16), nn.Linear(16, 2)

    def forward(self, obs, state=None):  # obs (B, D) -> (B, 2), state
        out, state = self.lstm(obs[None], state)
        return self.head(out[0]), state


@pytest.mark.parametrize(
    "model",
    [lambda: nn.LSTM(4, 16), lambda: nn.GRU(4, 16, 2), lambda: nn.GRUCell(4, 16),
     lambda: nn.LSTMCell(4, 16), ExplicitState, lambda: InsideState(with_reset=True)],
    ids=["lstm", "gru-2-layers", "gru-cell", "lstm-cell", "explicit-state", "state-with-reset"],
)  # fmt: skip
def test_no_false_alarm_on_correct_recurrent_modules(model):
    torch.manual_seed(0)
    diagnosis = _quiet(model())
    assert diagnosis.ok, str(diagnosis)
    assert diagnosis.passed == ["memory probe", "leak test"]
    assert "needs" in diagnosis["gradient mask"].summary


def test_the_naive_module_leaks_and_says_why():
    torch.manual_seed(0)
    diagnosis = _quiet(InsideState())
    assert diagnosis.failed == ["leak test"]
    assert "lives inside InsideState" in diagnosis["leak test"].summary
    assert "forward(obs, state)" in diagnosis["leak test"].details
    assert "FAIL" in str(diagnosis) and "Diagnosis(" in repr(diagnosis)


def test_feed_forward_module_says_what_it_would_need(capsys):
    rldebug.diagnose(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    table = capsys.readouterr().out
    assert "feed-forward" in table and table.count("not run") == 4


def test_step_functions():
    torch.manual_seed(0)
    cell = nn.GRUCell(4, 8)

    def model_fn(obs, state):
        h = cell(obs, state)
        return h, h

    assert _quiet(model_fn, obs_dim=4).ok

    class Agent:
        state = None

        def __call__(self, obs, episode_start):  # forgets the reset: the planted bug
            self.state = cell(obs[None], self.state)
            return self.state

    assert _quiet(Agent().__call__, obs_dim=4).failed == ["leak test"]


def _batch():
    torch.manual_seed(0)
    return ql.QBatch(
        torch.randn(16, 4), torch.randint(3, (16,)), torch.randn(16), torch.randn(16, 4),
        torch.zeros(16), torch.zeros(16),
    )  # fmt: skip


def test_loss_with_a_batch_target_first_and_broadcast():
    q_net, target = nn.Linear(4, 3), nn.Linear(4, 3)

    def loss(model, b, squeeze=True):
        with torch.no_grad():
            y = b.rewards + 0.9 * target(b.next_obs).max(1).values
        q_sa = model(b.obs).gather(1, b.actions[:, None])
        return F.mse_loss(q_sa.squeeze(1) if squeeze else q_sa, y)

    good = _quiet(loss, _batch(), model=q_net, target=target)
    assert good.ok and good["gradient mask"].passed, str(good)
    assert good["one action"].status != "FAIL" and "16 of the agent's states" in str(good)
    bad = _quiet(lambda m, b: loss(m, b, squeeze=False), _batch(), model=q_net, target=target)
    assert bad.failed == ["gradient mask"] and "broadcast" in bad["gradient mask"].summary


def test_a_layer_with_a_hand_written_backward():
    rng = np.random.default_rng(0)
    inputs = dict(x=rng.normal(size=(4, 3)), W=rng.normal(size=(3, 5)), b=rng.normal(size=5))
    good = _quiet((dense_relu_forward, dense_relu_backward), inputs=inputs)
    assert good.passed == ["gradient check"]

    def no_relu_derivative(x, W, b, grad_out):
        return grad_out @ W.T, x.T @ grad_out, grad_out.sum(axis=0)

    bad = _quiet((dense_relu_forward, no_relu_derivative), inputs=inputs)
    assert bad.failed == ["gradient check"]


def test_hooks_objects_name_the_missing_hooks():
    class Partial:
        obs_dim = 4

    diagnosis = _quiet(Partial())
    assert "missing the hooks policy_step" in diagnosis["leak test"].summary


def test_clear_errors_for_bad_input():
    with pytest.raises(TypeError, match="does not know what to do with a int"):
        rldebug.diagnose(42)
    with pytest.raises(ValueError, match="obs_dim"):
        rldebug.diagnose(nn.Sequential(nn.Linear(4, 8)), obs_dim=5)
    with pytest.raises(ValueError, match="size of one observation"):
        rldebug.diagnose(ExplicitState(), obs_dim=5)
    with pytest.raises(ValueError, match="samples"):
        rldebug.diagnose(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5)))
    with pytest.raises(TypeError, match="needs the Q-network"):
        rldebug.diagnose(lambda m, b: 0, _batch())
    with pytest.raises(TypeError, match="cannot tell what"):
        rldebug.diagnose(lambda obs: obs, obs_dim=4)
    with pytest.raises(ValueError, match="obs_dim"):
        rldebug.diagnose(lambda obs, state: (obs, state))


def test_import_rldebug_stays_light():
    code = (
        "import sys, rldebug; heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('matplotlib', 'ipywidgets', 'stable_baselines3', 'sb3_contrib')]; "
        "assert not heavy, heavy; assert callable(rldebug.diagnose); "
        "assert 'stable_baselines3' not in sys.modules; print('light')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "light" in result.stdout, result.stderr
