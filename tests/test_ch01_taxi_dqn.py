"""Chapter 1's proof: the library DQN on one-hot Taxi-v4 (sineroad.OneHotObservation)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from sineroad import OneHotObservation

import rldebug
from rldebug import qlearning as ql
from rldebug.training import make_vec_env

rldebug.configure_torch(1)


def test_one_hot_observation_marks_the_state():
    env = OneHotObservation(gym.make("Taxi-v4"))
    obs, _ = env.reset(seed=3)
    assert obs.shape == (500,) and obs.dtype == np.float32 and obs.sum() == 1.0
    assert int(obs.argmax()) == int(env.unwrapped.s)
    assert env.observation_space.contains(obs)


def test_one_hot_observation_refuses_a_box_space():
    with pytest.raises(TypeError, match="needs a Discrete observation space"):
        OneHotObservation(gym.make("CartPole-v1"))


def test_the_config_builds_envs_that_keep_truncation_apart():
    config = ql.taxi_dqn_config()
    envs = make_vec_env(config.env_id, 2, wrappers=config.wrappers)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 500)
    for _ in range(200):  # "north" forever: never a drop-off, so only the time limit ends it
        obs, reward, terminated, truncated, _ = envs.step(np.array([1, 1]))
    assert truncated.all() and not terminated.any()


def test_q_table_of_a_linear_network_is_its_weights():
    net = torch.nn.Linear(500, 6)
    table = ql.q_table_of(net)
    assert table.shape == (500, 6)
    torch.testing.assert_close(table.float(), (net.weight.T + net.bias).detach())


def test_one_seed_reaches_the_optimum():
    from rldebug.agents import dqn

    tables = ql.taxi_tables()
    optimum = float(ql.greedy_returns(ql.q_value_iteration(tables, 0.99), tables)[0])
    result = dqn.train(ql.taxi_dqn_config(final_eval_episodes=0), seeds=[0])
    table = ql.q_table_of(result.q_nets[0])[None]  # (1, 500, 6)
    assert float(ql.greedy_returns(table, tables)[0]) >= optimum - 0.5
