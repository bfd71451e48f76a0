"""The numpy DQN of chapter 2: the vector CartPole equals gymnasium's, and training runs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rldebug.numpy_dqn import (
    DQNConfig,
    VectorCartPole,
    dqn_loss_grad,
    evaluate,
    sample_n_step,
    train,
)
from rldebug.numpy_mlp import MLP, Bugs


def test_vector_cartpole_matches_gymnasium_step_for_step():
    env = gym.make("CartPole-v1")
    vec = VectorCartPole(1, seed=0, autoreset=False)
    rng = np.random.default_rng(0)
    for episode in range(20):
        obs_gym, _ = env.reset(seed=episode)
        vec.reset()
        vec.state[0] = env.unwrapped.state  # same start, float64
        done = False
        while not done:
            a = int(rng.integers(0, 2)) if episode % 2 else int(obs_gym[2] + obs_gym[3] > 0)
            obs_gym, r, term, trunc, _ = env.step(a)
            obs_vec, r_vec, term_vec, trunc_vec, final = vec.step(np.array([a]))
            np.testing.assert_array_equal(final[0], obs_gym)
            assert (r, term, trunc) == (r_vec[0], term_vec[0], trunc_vec[0])
            done = term or trunc


def test_vector_cartpole_autoreset_and_errors():
    vec = VectorCartPole(4, seed=1)
    with pytest.raises(RuntimeError, match="reset"):
        vec.step(np.zeros(4, dtype=int))
    vec.reset()
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.array([0, 1, 2, 0]))
    for _ in range(60):  # always pushing right: every cart falls within 60 steps
        obs, _, term, trunc, final = vec.step(np.ones(4, dtype=int))
        if term.any():
            assert (np.abs(obs[term]) <= 0.05).all()  # already the next episode's start
            assert (np.abs(final[term][:, 2]) > vec.theta_threshold).all() | (
                np.abs(final[term][:, 0]) > vec.x_threshold
            ).all()
            return
    raise AssertionError("no cart fell")


def test_loss_gradient_reaches_only_the_taken_action():
    q = np.array([[[1.0, 2.0], [3.0, 4.0]]])  # (E=1, B=2, A=2)
    a, y, mask = np.array([[0, 1]]), np.array([[0.0, 0.0]]), np.ones((1, 2))
    _, g = dqn_loss_grad(q, a, y, mask)
    np.testing.assert_allclose(g, [[[0.5, 0.0], [0.0, 0.5]]])
    _, g_bug = dqn_loss_grad(q, a, y, mask, Bugs.only("scalar_loss_gradient"))
    np.testing.assert_allclose(g_bug, [[[0.5, 0.5], [0.5, 0.5]]])


def test_train_runs_on_two_seeds():
    cfg = DQNConfig(total_steps=1_000, learning_starts=200, eval_every=500, eval_episodes=2)
    result = train(cfg, [0, 1])
    assert result.eval_returns.shape == (2, 2)
    assert result.losses.shape[1] == 2 and np.isfinite(result.losses).all()
    assert len(result.episode_returns) == 2 and result.steps == 1_000
    # a member's initial weights depend on its own seed only
    alone = MLP([4, 64, 64, 2], rng=np.random.default_rng(1), dtype=np.float32)
    fresh = train(DQNConfig(total_steps=1, learning_starts=10), [0, 1])
    np.testing.assert_array_equal(fresh.net.W[0][1], alone.W[0])


def test_evaluate_shape():
    net = MLP([4, 8, 2], n_members=3, rng=np.random.default_rng(0), dtype=np.float32)
    returns = evaluate(net, n_episodes=4, seed=0)
    assert returns.shape == (3, 4) and (returns >= 8).all() and (returns <= 500).all()


def _random_buffer(rng, n_members, cap):
    """Consecutive steps of one cart per member, with random ends (terminated or truncated)."""
    terminated = rng.random((n_members, cap)) < 0.15
    truncated = (rng.random((n_members, cap)) < 0.1) & ~terminated
    return {
        "obs": rng.normal(size=(n_members, cap, 4)).astype(np.float32),
        "action": rng.integers(0, 2, (n_members, cap)),
        "reward": rng.integers(-2, 3, (n_members, cap)).astype(np.float32),
        "next_obs": rng.normal(size=(n_members, cap, 4)).astype(np.float32),
        "terminated": terminated.astype(np.float32),
        "done": terminated | truncated,
    }


@pytest.mark.parametrize("n_step", [1, 2, 3, 5])
def test_n_step_batch_matches_a_step_by_step_sum(n_step):
    rng, gamma, cap = np.random.default_rng(n_step), 0.9, 40
    buffer = _random_buffer(rng, 3, cap)
    idx = rng.integers(0, cap, (3, 16))  # (E, B); positions near the end wrap around
    batch = sample_n_step(buffer, idx, n_step, gamma)
    for e in range(3):
        for b in range(16):
            ret, discount, j = 0.0, 1.0, idx[e, b]
            for k in range(n_step):  # walk forward until n steps or the episode's end
                j = (idx[e, b] + k) % cap
                ret += discount * buffer["reward"][e, j]
                discount *= gamma
                if buffer["done"][e, j]:
                    break
            assert batch.reward[e, b] == pytest.approx(ret, rel=1e-5)
            assert batch.discount[e, b] == pytest.approx(discount, rel=1e-6)
            assert batch.terminated[e, b] == buffer["terminated"][e, j]
            np.testing.assert_array_equal(batch.next_obs[e, b], buffer["next_obs"][e, j])
            np.testing.assert_array_equal(batch.obs[e, b], buffer["obs"][e, idx[e, b]])


def test_one_step_batch_is_the_plain_transition():
    rng = np.random.default_rng(0)
    buffer = _random_buffer(rng, 2, 30)
    idx = rng.integers(0, 30, (2, 8))
    batch = sample_n_step(buffer, idx, 1, 0.99)
    members = np.arange(2)[:, None]
    np.testing.assert_array_equal(batch.reward, buffer["reward"][members, idx])
    np.testing.assert_array_equal(batch.next_obs, buffer["next_obs"][members, idx])
    np.testing.assert_allclose(batch.discount, 0.99)


def test_truncated_window_bootstraps_with_the_steps_it_summed():
    buffer = _random_buffer(np.random.default_rng(1), 1, 10)
    buffer["reward"][:] = 1.0
    buffer["done"][:] = False
    buffer["terminated"][:] = 0.0
    buffer["done"][0, 4] = True  # a time limit after position 4: not terminated
    batch = sample_n_step(buffer, np.array([[3]]), 3, 0.5)
    assert batch.reward[0, 0] == pytest.approx(1.5)  # positions 3 and 4 only
    assert batch.discount[0, 0] == pytest.approx(0.25)  # bootstraps two steps ahead
    assert batch.terminated[0, 0] == 0.0
    np.testing.assert_array_equal(batch.next_obs[0, 0], buffer["next_obs"][0, 4])


@pytest.mark.parametrize(
    "bug",
    ["aliased_target", "single_sample_updates", "extra_input_layer", "stale_weights_backprop"],
)
def test_each_dqn_bug_trains(bug):
    cfg = DQNConfig(
        total_steps=600, learning_starts=256, train_every=256, updates_per_train=2,
        batch_size=4, eval_every=300, eval_episodes=2, bugs=Bugs.only(bug),
    )  # fmt: skip
    result = train(cfg, [0, 1])
    n_updates = 2 * 2 * (4 if bug == "single_sample_updates" else 1)  # two bursts
    assert result.losses.shape == result.signed_grads.shape == (n_updates, 2)
    assert np.isfinite(result.losses).all()
    if bug == "extra_input_layer":
        assert result.net.sizes == [4, 4, 64, 64, 2]


def test_aliased_target_is_the_online_network():
    """With the bug the TD targets move with every update; with a copy they wait."""
    cfg = dict(total_steps=300, learning_starts=256, train_every=256, updates_per_train=64,
               target_every=1000, eval_every=300, eval_episodes=1, stop_when_solved=False)  # fmt: skip
    right = train(DQNConfig(**cfg), [0])
    aliased = train(DQNConfig(**cfg, bugs=Bugs.only("aliased_target")), [0])
    assert right.signed_grads.shape == aliased.signed_grads.shape == (64, 1)
    np.testing.assert_array_equal(right.signed_grads[0], aliased.signed_grads[0])  # same start
    assert not np.array_equal(right.signed_grads, aliased.signed_grads)


def test_signed_gradient_is_the_mean_of_dl_dq():
    q = np.array([[[0.0, 5.0], [0.0, 5.0]]])  # errors +5 and -5: the signs cancel
    a, y, mask = np.array([[1, 1]]), np.array([[0.0, 10.0]]), np.ones((1, 2))
    loss, g = dqn_loss_grad(q, a, y, mask)
    assert loss[0] == pytest.approx(4.5) and g[..., 1].sum() == pytest.approx(0.0)


def test_a_candidate_is_saved_only_once_confirmed(monkeypatch):
    """Two evaluations >= 475 in a row make a candidate; the save waits for the confirmation."""
    import rldebug.numpy_dqn as numpy_dqn

    def fake_evaluate(net, n_episodes=20, seed=0):
        # every evaluation passes; the confirmation (100 episodes) passes from step 2000 on
        score = 500.0 if n_episodes == 20 or seed >= 1_000_000 + 2_000 else 490.0
        return np.full((net.lead[0], n_episodes), score)

    monkeypatch.setattr(numpy_dqn, "evaluate", fake_evaluate)
    cfg = DQNConfig(total_steps=3_000, learning_starts=5_000, eval_every=500)
    result = train(cfg, [0, 1])
    # candidates at 1000 and 1500 are turned down, the one at 2000 is saved and ends training
    assert result.solved_step.tolist() == [2_000, 2_000] and result.steps == 2_000
    assert result.rejected.tolist() == [2, 2]
    no_confirmation = train(DQNConfig(**{**vars(cfg), "confirm_episodes": 0}), [0, 1])
    assert no_confirmation.solved_step.tolist() == [1_000, 1_000]


def test_mean_return_of_yardstick_policies():
    from rldebug import numpy_dqn

    left = numpy_dqn.mean_return(lambda obs: np.zeros(len(obs), dtype=int))
    rng = np.random.default_rng(2)
    random = numpy_dqn.mean_return(lambda obs: rng.integers(0, 2, size=len(obs)))
    assert 8 <= left <= 11  # always pushing left ends within about 10 steps
    assert left < random < 40
    assert numpy_dqn.mean_return(lambda obs: np.zeros(len(obs), dtype=int)) == left  # seeded
