"""Chapter 3's probe environment: the checker accepts any correct ConstantRewardEnv and
rejects the usual mistakes by name; the probe's measured Q tells a bootstrapping TD target
from one that treats the time limit as an end."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rldebug.agents import dqn
from rldebug.checkers import ch03
from rldebug.checkers.ch03_probe import ConstantRewardEnv
from rldebug.checking import CheckFailed, not_implemented_stub
from rldebug.replay import Transitions


def _message(env_class, seed=0) -> str:
    with pytest.raises(CheckFailed) as caught:
        ch03.check_probe_env(env_class, seed=seed)
    return str(caught.value)


class OneActionProbe(gym.Env):
    """A correct probe in another style: one action, observation 0.5, gymnasium's TimeLimit
    counting the steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.5], dtype=np.float32), {}

    def step(self, action):
        return np.array([0.5], dtype=np.float32), 1, False, False, {}


def _time_limited(max_steps):
    return gym.wrappers.TimeLimit(OneActionProbe(), max_episode_steps=max_steps)


@pytest.mark.parametrize("env_class", [ConstantRewardEnv, _time_limited])
def test_accepts_correct_environments(env_class, capsys):
    for seed in range(3):
        ch03.check_probe_env(env_class, seed=seed)
    assert capsys.readouterr().out.count("✓") == 3


def test_rejects_the_blank_stub_and_a_stub_class():
    class Stub(gym.Env):
        def __init__(self, max_steps=20):
            raise NotImplementedError()

    assert "not implemented yet" in _message(not_implemented_stub)
    assert "not implemented yet" in _message(Stub)


class _Terminates(ConstantRewardEnv):
    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, truncated, False, info


class _CostPerStep(ConstantRewardEnv):
    def step(self, action):
        obs, _, terminated, truncated, info = super().step(action)
        return obs, -1.0, terminated, truncated, info


class _TwoNumbers(ConstantRewardEnv):
    def __init__(self, max_steps=20):
        super().__init__(max_steps)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)


class _OldApi(ConstantRewardEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or truncated, info


@pytest.mark.parametrize(
    ("env_class", "words"),
    [
        (_Terminates, ["the time limit is reported as termination", "terminated=True"]),
        (_CostPerStep, ["paid the rewards", "every step pays 1.0"]),
        (_TwoNumbers, ["observation space", "a Box of shape (1,)"]),
        (_OldApi, ["step() must return five things"]),
    ],
)
def test_rejects_wrong_environments_with_a_reason(env_class, words):
    for seed in range(3):
        message = _message(env_class, seed)
        assert all(w in message for w in words), message


def test_rejects_something_that_is_not_an_env():
    assert "not a gymnasium Env" in _message(lambda max_steps: object())
    with pytest.raises(TypeError, match="expects your environment class"):
        ch03.check_probe_env(ConstantRewardEnv(5))


def test_fallback_to_the_reference(capsys):
    assert ch03.probe_env_or_reference(_Terminates) is ConstantRewardEnv
    assert "note:" in capsys.readouterr().out
    assert ch03.probe_env_or_reference(_time_limited) is _time_limited


def _probe_q(env, bootstrap_on_truncation, gamma=0.95, episodes=5):
    """The chapter's measurement: whole episodes with action 0, then semi-gradient TD."""
    rows, obs = [], env.reset(seed=0)[0]
    for _ in range(episodes):
        done = False
        while not done:
            next_obs, reward, terminated, truncated, _ = env.step(0)
            rows.append((obs, 0, reward, next_obs, terminated, truncated))
            obs, done = next_obs, terminated or truncated
        obs = env.reset()[0]
    cols = list(zip(*rows))
    batch = Transitions(
        *(torch.as_tensor(np.array(c), dtype=torch.int64 if i == 1 else torch.float32)
          for i, c in enumerate(cols))
    )  # fmt: skip
    q_net = torch.nn.Linear(1, env.action_space.n)
    torch.nn.init.zeros_(q_net.weight), torch.nn.init.zeros_(q_net.bias)
    target_net = torch.nn.Linear(1, env.action_space.n)
    for _ in range(600):
        dqn.update_target(target_net, q_net)
        loss = dqn.dqn_loss(
            q_net, target_net, batch, gamma, huber=False,
            bootstrap_on_truncation=bootstrap_on_truncation,
        )  # fmt: skip
        grads = torch.autograd.grad(loss, [q_net.bias])
        with torch.no_grad():
            q_net.bias -= 0.5 * grads[0]
    return float(q_net.bias[0].detach())


def test_the_probe_measures_the_right_q():
    gamma, horizon = 0.95, 20
    bootstrap = _probe_q(ConstantRewardEnv(horizon), True)
    cut_as_end = _probe_q(ConstantRewardEnv(horizon), False)
    assert abs(bootstrap - 1 / (1 - gamma)) < 1e-3
    assert abs(cut_as_end - 1 / (1 - gamma * (1 - 1 / horizon))) < 1e-3
