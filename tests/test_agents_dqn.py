"""rldebug.agents.dqn: one loop for a list of seeds, each seed the run it would be alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rldebug
from rldebug.agents.dqn import Config, train

rldebug.configure_torch(1)

# 300 updates per seed (1,200 steps, 4 envs, one update per 2 steps after 600), three-step
# targets, evaluations on the way, and a low bar so that seeds stop updating at different
# times while the others go on.
TINY = dict(
    total_steps=1_200, learning_starts=600, log_every=100, eval_every=300, eval_episodes=3,
    final_eval_episodes=3, hidden=(32, 32), batch_size=32, buffer_size=2_000, n_step=3,
    stop_when_solved=25.0, solved_episodes=3,
)  # fmt: skip


def test_seed_k_of_a_batched_run_equals_the_run_on_seed_k_alone():
    seeds = [0, 1, 2]
    batched = train(Config(**TINY), seeds)
    assert np.isfinite(batched.stopped_at).any()  # some seed stopped: freezing is exercised
    assert batched.losses.shape == (12, 3) and batched.eval_returns.shape == (4, 3)
    for k, seed in enumerate(seeds):
        alone = train(Config(**TINY), [seed])
        for name in ("losses", "mean_max_q", "td_errors", "grad_norms"):
            np.testing.assert_allclose(
                getattr(batched, name)[:, k], getattr(alone, name)[:, 0], rtol=1e-5, atol=1e-6,
                err_msg=f"{name} of seed {seed}",
            )  # fmt: skip
        np.testing.assert_array_equal(batched.eval_returns[:, k], alone.eval_returns[:, 0])
        np.testing.assert_array_equal(batched.final_return[k], alone.final_return[0])
        np.testing.assert_array_equal(batched.stopped_at[k], alone.stopped_at[0])
        np.testing.assert_array_equal(batched.episode_returns[k], alone.episode_returns[0])
        for p, q in zip(batched.q_nets[k].parameters(), alone.q_nets[0].parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_a_seed_that_stopped_keeps_its_weights_and_logs_no_updates():
    r = train(Config(**TINY), [0, 1, 2])
    k = int(np.flatnonzero(np.isfinite(r.stopped_at))[0])
    after = r.steps > r.stopped_at[k] + TINY["log_every"]
    assert after.any() and np.isnan(r.losses[after, k]).all()


def test_bad_input_raises_clearly():
    with pytest.raises(TypeError, match=r"seeds=\[3\]"):
        train(Config(**TINY), 3)
    with pytest.raises(ValueError, match="at least one seed"):
        train(Config(**TINY), [])
    with pytest.raises(ValueError, match="different"):
        train(Config(**TINY), [1, 1])
    with pytest.raises(ValueError, match="Discrete"):
        train(Config(**{**TINY, "env_id": "Pendulum-v1"}))
    with pytest.raises(TypeError, match="dqn.Config"):
        train(dict(TINY))
    with pytest.raises(ValueError, match="gamma"):
        Config(gamma=1.5)
