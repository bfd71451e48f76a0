"""The three recurrent diagnostics: memory probe, leak test, rollout consistency."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import rldebug
from rldebug.diagnostics.recurrent import (
    HiddenStateLeakError,
    RolloutConsistencyError,
    check_rollout_consistency,
    hidden_state_leak_test,
    memory_probe,
    rollout_consistency,
)
from rldebug.recurrent import RecurrentNet

rldebug.configure_torch(1)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return RecurrentNet(3, 2, 16)


@pytest.mark.parametrize("method", ["gradient", "perturbation"])
def test_memory_probe_sees_memory_and_its_absence(net, method):
    probe = memory_probe(lambda x, h: net(x, h), 3, seq_len=20, max_lag=10, method=method)
    assert probe.lags.tolist() == list(range(11)) and probe.has_memory
    assert "steps back" in str(probe)

    def zero_state_every_step(x, h):
        batch, steps, dim = x.shape
        out, _ = net(x.reshape(batch * steps, 1, dim))  # (B, T, D) -> (B*T, 1, D)
        return out.reshape(batch, steps, -1), None

    flat = memory_probe(zero_state_every_step, 3, seq_len=20, max_lag=10, method=method)
    assert flat.horizon == 0 and np.all(flat.sensitivity[1:] == 0)
    assert "no memory" in str(flat)
    fig = flat.plot()
    assert fig is not None


def test_memory_probe_rejects_bad_arguments(net):
    with pytest.raises(ValueError, match="max_lag"):
        memory_probe(lambda x, h: net(x, h), 3, seq_len=5, max_lag=5)
    with pytest.raises(ValueError, match="batch_first"):
        memory_probe(lambda x, h: (net(x, h)[0].transpose(0, 1), None), 3, seq_len=6, max_lag=3)
    with pytest.raises(TypeError, match="outputs, final_state"):
        memory_probe(lambda x, h: net(x, h)[0], 3, seq_len=6, max_lag=3)


class Agent:
    def __init__(self, net, reset):
        self.net, self.reset, self.state = net, reset, None

    def __call__(self, obs, episode_start):
        out, self.state = self.net.step(
            obs, self.state, episode_start=[episode_start] if self.reset else None
        )
        return out


def test_leak_test_catches_leak_and_is_silent_on_fix(net):
    leaky = hidden_state_leak_test(Agent(net, reset=False), 3)
    assert leaky.leaks and leaky.max_abs_diff > 1e-3 and "LEAKS" in str(leaky)
    with pytest.raises(HiddenStateLeakError):
        leaky.raise_if_leaks()
    fixed = hidden_state_leak_test(Agent(net, reset=True), 3, batch_dim=True)
    assert not fixed.leaks and fixed.max_abs_diff == 0.0 and "no leak" in str(fixed)


def test_leak_test_rejects_sampled_actions():
    with pytest.raises(TypeError, match="not a sampled action"):
        hidden_state_leak_test(lambda obs, start: object(), 3)


def test_rollout_consistency_reports_worst_index():
    a = torch.randn(4, 50)
    ok = rollout_consistency(a, a.numpy() + 1e-8)
    assert ok.ok and "OK" in str(ok) and ok.worst_index is None
    b = a.clone()
    b[3, 41] += 0.5
    bad = rollout_consistency(a, b)
    assert not bad.ok and bad.worst_index == (3, 41)
    assert "first mismatch at (env 3, step 41), worst at (env 3, step 41)" in str(bad)
    c = b.clone()
    c[1, 7] += 0.1  # an earlier, smaller mismatch: the first is not the worst
    two = rollout_consistency(a, c)
    assert two.first_mismatch == (1, 7) and two.worst_index == (3, 41)
    assert "first mismatch at (env 1, step 7), worst at (env 3, step 41)" in str(two)
    assert "2 of 200 entries" in str(two)
    mask = torch.ones(4, 50)
    mask[3, 41] = 0
    assert rollout_consistency(a, b, mask=mask).ok
    assert rollout_consistency(a[..., None], b[..., None], mask=mask).ok  # leading-dims mask
    time_major = rollout_consistency(a.T, b.T, dims=("step", "env"))
    assert "first mismatch at (step 41, env 3)" in str(time_major)
    with pytest.raises(RolloutConsistencyError, match="MISMATCH"):
        check_rollout_consistency(a, b)
    assert check_rollout_consistency(a, a).ok


def test_rollout_consistency_shape_and_nan():
    with pytest.raises(ValueError, match="must match"):
        rollout_consistency(torch.zeros(4, 5), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="mask"):
        rollout_consistency(torch.zeros(4, 5), torch.zeros(4, 5), mask=torch.ones(5))
    nan = torch.zeros(2, 2)
    nan[1, 1] = float("nan")
    assert not rollout_consistency(torch.zeros(2, 2), nan).ok
    assert rollout_consistency(nan, nan.clone()).ok
