"""Tests of the native vector environment: gymnasium API, autoreset, equivalence."""

import gymnasium as gym
import numpy as np
import pytest
import sineroad  # registers the ids
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode
from sineroad import FlickerObservation, SineRoadEnv, SineRoadVectorEnv

SINE_IDS = ("SineRoad-v0", "SineRoadPartial-v0", "SineRoadFlicker-v0")


def make_vec(env_id, num_envs, **kwargs):
    return gym.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs
    )


@pytest.mark.parametrize("env_id", SINE_IDS)
def test_make_vec_vector_entry_point(env_id):
    envs = make_vec(env_id, 4)
    assert isinstance(envs, SineRoadVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.max_episode_steps == 200
    single = gym.make(env_id)
    assert envs.single_observation_space == single.observation_space
    assert envs.single_action_space == single.action_space
    obs, info = envs.reset(seed=0)
    assert obs.shape == (4,) + single.observation_space.shape and obs.dtype == np.float32
    assert envs.observation_space.contains(obs) and info == {}
    obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert envs.observation_space.contains(obs)
    assert rewards.shape == terminated.shape == truncated.shape == (4,)
    assert terminated.dtype == truncated.dtype == np.bool_
    assert repr(envs) == f"SineRoadVectorEnv({env_id}, num_envs=4)"


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("SineRoad-v0", {}),
        ("SineRoadPartial-v0", {}),
        ("SineRoadFlicker-v0", {}),
        ("SineRoadFlicker-v0", {"crash_limit": 2, "flicker_prob": 0.3}),
    ],
)
def test_vector_equals_single_envs(env_id, kwargs):
    """Same seeds and actions: exactly the trajectories of N single environments."""
    n, limit = 4, 23
    envs = make_vec(env_id, n, max_episode_steps=limit, **kwargs)
    singles = [gym.make(env_id, max_episode_steps=limit, **kwargs) for _ in range(n)]
    obs, _ = envs.reset(seed=100)
    np.testing.assert_array_equal(obs, [e.reset(seed=100 + i)[0] for i, e in enumerate(singles)])
    rng = np.random.default_rng(1)
    done = np.zeros(n, dtype=bool)
    n_episodes_ended = 0
    for _ in range(100):
        # Biased toward one wall so that crash_limit terminations happen too.
        actions = rng.choice(3, size=n, p=[0.2, 0.3, 0.5])
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        for i, env in enumerate(singles):
            if done[i]:  # next-step autoreset: the action is ignored
                expected = (env.reset()[0], 0.0, False, False)
            else:
                expected = env.step(int(actions[i]))[:4]
            assert np.array_equal(obs[i], expected[0])
            assert (rewards[i], terminated[i], truncated[i]) == expected[1:]
        done = terminated | truncated
        n_episodes_ended += int(done.sum())
    assert n_episodes_ended >= 3 * n


def test_vector_equals_sync_vector_env():
    kwargs = {"max_episode_steps": 17}
    native = make_vec("SineRoadFlicker-v0", 3, **kwargs)
    sync = gym.make_vec("SineRoadFlicker-v0", num_envs=3, vectorization_mode="sync", **kwargs)
    np.testing.assert_array_equal(native.reset(seed=9)[0], sync.reset(seed=9)[0])
    rng = np.random.default_rng(2)
    for _ in range(60):
        actions = rng.integers(0, 3, size=3)
        for a, b in zip(native.step(actions)[:4], sync.step(actions)[:4]):
            np.testing.assert_array_equal(a, b)


def test_seed_list_and_unseeded_reset():
    envs = SineRoadVectorEnv(3, observe="offset", random_road=True)
    by_list, _ = envs.reset(seed=[5, 6, 7])
    by_int, _ = envs.reset(seed=5)
    np.testing.assert_array_equal(by_list, by_int)
    envs.reset()  # continues the generators
    with pytest.raises(ValueError, match="3 seeds"):
        envs.reset(seed=[1, 2])


def test_autoreset_next_step_and_final_observation():
    envs = SineRoadVectorEnv(2, max_episode_steps=7)
    envs.reset(seed=0)
    for _ in range(6):
        _, _, _, truncated, _ = envs.step(np.array([1, 1]))
        assert not truncated.any()
    obs, rewards, terminated, truncated, _ = envs.step(np.array([1, 1]))
    assert truncated.all() and not terminated.any()
    # The final observation is the one returned with truncated=True: t = 7 on the loop.
    np.testing.assert_allclose(obs[:, 1], 7 / 50, rtol=1e-6)
    # Next step: reset, action ignored, reward 0, flags False, first observation (t = 0).
    obs_a, rewards, terminated, truncated, info = envs.step(np.array([0, 2]))
    assert (rewards == 0).all() and not terminated.any() and not truncated.any()
    assert (obs_a[:, 1] == 0.0).all() and info == {}
    fresh = SineRoadVectorEnv(2, max_episode_steps=7)
    fresh.reset(seed=0)
    for _ in range(7):
        fresh.step(np.array([1, 1]))
    obs_b, *_ = fresh.step(np.array([2, 0]))  # other actions, same result
    np.testing.assert_array_equal(obs_a, obs_b)


def test_crash_limit_terminates_and_resets():
    envs = SineRoadVectorEnv(2, crash_limit=1, max_episode_steps=None)
    envs.reset(seed=0)
    seen = False
    for _ in range(20):
        _, rewards, terminated, truncated, _ = envs.step(np.array([2, 1]))
        assert not truncated.any()
        if terminated[0]:
            assert rewards[0] == -3.0
            _, rewards, terminated, _, _ = envs.step(np.array([2, 1]))
            assert rewards[0] == 0.0 and not terminated[0]
            seen = True
            break
    assert seen


def test_flicker_rate():
    envs = make_vec("SineRoadFlicker-v0", 64)
    envs.reset(seed=0)
    blanks = [
        (envs.step(np.ones(64, dtype=np.int64))[0] == 0.0).mean() for _ in range(300)
    ]  # 300 steps > one chunk of coin flips, and crosses autoresets
    assert 0.47 < np.mean(blanks) < 0.53


@pytest.mark.parametrize(
    "actions, error, match",
    [
        (np.array([1, 1]), ValueError, "shape"),
        (np.array([[1, 1, 1]]), ValueError, "shape"),
        (np.array([1.0, 1.0, 1.0]), TypeError, "dtype"),
        (np.array([0, 1, 3]), ValueError, r"\[3\]"),
        (np.array([-1, 1, 2]), ValueError, r"\[-1\]"),
        ([0, 1, 2.5], TypeError, "integers"),
    ],
)
def test_invalid_actions(actions, error, match):
    envs = SineRoadVectorEnv(3)
    envs.reset(seed=0)
    with pytest.raises(error, match=match):
        envs.step(actions)


def test_valid_action_containers():
    envs = SineRoadVectorEnv(3)
    envs.reset(seed=0)
    envs.step([0, 1, 2])
    envs.step(np.array([0, 1, 2], dtype=np.int8))
    envs.step(np.array([0, 1, 2], dtype=np.uint32))


def test_step_before_reset_and_bad_arguments():
    with pytest.raises(ResetNeeded, match="reset"):
        SineRoadVectorEnv(2).step(np.array([1, 1]))
    with pytest.raises(ValueError, match="num_envs"):
        SineRoadVectorEnv(0)
    with pytest.raises(ValueError, match="dy"):
        SineRoadVectorEnv(2, dy=0.05)
    with pytest.raises(ValueError, match="options"):
        SineRoadVectorEnv(2).reset(options={"start_offset": 0.0})


def test_matches_direct_single_env_construction():
    """Same as SineRoadEnv + FlickerObservation built by hand (no gymnasium.make)."""
    kwargs = {"observe": "offset", "random_road": True, "max_episode_steps": 11}
    envs = SineRoadVectorEnv(2, flicker_prob=0.5, **kwargs)
    singles = [FlickerObservation(SineRoadEnv(**kwargs), p=0.5) for _ in range(2)]
    obs, _ = envs.reset(seed=3)
    np.testing.assert_array_equal(obs, [e.reset(seed=3 + i)[0] for i, e in enumerate(singles)])
    for _ in range(11):
        obs, *_ = envs.step(np.array([1, 1]))
        np.testing.assert_array_equal(obs, [e.step(1)[0] for e in singles])


def test_reseeding_some_sub_envs_matches_singles():
    """reset(seed=[s, None, s']) reseeds two sub-envs and continues the third."""
    kwargs = {"observe": "offset", "random_road": True, "max_episode_steps": 300}
    envs = SineRoadVectorEnv(3, flicker_prob=0.5, **kwargs)
    singles = [FlickerObservation(SineRoadEnv(**kwargs), p=0.5) for _ in range(3)]
    envs.reset(seed=0)
    for i, env in enumerate(singles):
        env.reset(seed=i)
    for _ in range(100):
        envs.step(np.array([1, 1, 1]))
        for env in singles:
            env.step(1)
    obs, _ = envs.reset(seed=[7, None, 8])
    expected = [singles[0].reset(seed=7)[0], singles[1].reset()[0], singles[2].reset(seed=8)[0]]
    np.testing.assert_array_equal(obs, expected)
    for _ in range(300):  # crosses chunk refills at different positions
        obs, rewards, *_ = envs.step(np.array([1, 2, 0]))
        steps = [env.step(a) for env, a in zip(singles, (1, 2, 0))]
        np.testing.assert_array_equal(obs, [s[0] for s in steps])
        np.testing.assert_array_equal(rewards, [s[1] for s in steps])


def test_cartpole_novel_has_a_vector_entry_point_and_make_vec_picks_it():
    envs = gym.make_vec("CartPoleNoVel-v1", num_envs=3, vectorization_mode="vector_entry_point")
    assert isinstance(envs, sineroad.MaskVectorObservation)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 2) and envs.single_observation_space.shape == (2,)
    full = gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="vector_entry_point")
    np.testing.assert_array_equal(obs, full.reset(seed=0)[0][:, [0, 2]])
    _, _, terminated, truncated, _ = envs.step(np.ones(3, dtype=np.int64))
    assert terminated.shape == truncated.shape == (3,)  # kept apart, never folded
    assert isinstance(sineroad.make_vec("CartPoleNoVel-v1", 2), sineroad.MaskVectorObservation)
    assert type(sineroad.make_vec("Taxi-v4", 2)).__name__ == "SyncVectorEnv"
    with pytest.raises(ValueError, match="out of range"):
        sineroad.MaskVectorObservation(full, [5])
    with pytest.raises(ValueError, match="num_envs"):
        sineroad.make_vec("CartPoleNoVel-v1", 0)
