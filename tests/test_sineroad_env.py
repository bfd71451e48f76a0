"""Tests of the single sine-road environment, its registration, wrappers and rendering."""

import math
import subprocess
import sys
import warnings

import gymnasium as gym
import matplotlib
import numpy as np
import pytest
import sineroad
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from sineroad import (
    ENV_IDS,
    FlickerObservation,
    MaskObservation,
    PixelObservation,
    PrevActionRewardObservation,
    SineRoadEnv,
    road_reward,
    wall_clamp,
)

matplotlib.use("Agg")

SINE_IDS = ENV_IDS[:3]
WRAPPED_WARNING = "is different from the unwrapped version"


def play(env, seed, n_steps, action_seed=0):
    """Observations and rewards of ``n_steps`` random actions (resetting when done)."""
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    out_obs, out_rew = [obs], []
    for _ in range(n_steps):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(3)))
        out_obs.append(obs)
        out_rew.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
            out_obs.append(obs)
    return np.array(out_obs), np.array(out_rew)


# ---------------------------------------------------------------- gymnasium citizenship
@pytest.mark.parametrize("env_id", SINE_IDS)
def test_check_env_unwrapped(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_made(env_id):
    env = gym.make(env_id, disable_env_checker=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    others = [str(w.message) for w in caught if WRAPPED_WARNING not in str(w.message)]
    assert others == []


def test_make_without_importing_first():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'sineroad' not in sys.modules\n"
        "env = gym.make('sineroad:SineRoad-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(env.spec.id, env.spec.max_episode_steps, obs.shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SineRoad-v0", "200", "(2,)"]


def test_registration_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sineroad.register_envs()
        import importlib

        importlib.reload(sineroad)
    for env_id in ENV_IDS:
        assert env_id in gym.registry


def test_public_api():
    for name in sineroad.__all__:
        assert hasattr(sineroad, name)
    assert set(ENV_IDS) == {
        "SineRoad-v0",
        "SineRoadPartial-v0",
        "SineRoadFlicker-v0",
        "CartPoleNoVel-v1",
    }


@pytest.mark.parametrize(
    "env_id, shape, low, high",
    [
        ("SineRoad-v0", (2,), [-1, 0], [1, 1]),
        ("SineRoadPartial-v0", (1,), [-1], [1]),
        ("SineRoadFlicker-v0", (1,), [-1], [1]),
        ("CartPoleNoVel-v1", (2,), [-4.8, -0.41887903], [4.8, 0.41887903]),
    ],
)
def test_spaces(env_id, shape, low, high):
    env = gym.make(env_id)
    space = env.observation_space
    assert space.shape == shape and space.dtype == np.float32
    np.testing.assert_allclose(space.low, low, rtol=1e-6)
    np.testing.assert_allclose(space.high, high, rtol=1e-6)
    obs, _ = env.reset(seed=3)
    for _ in range(300):
        assert space.contains(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("env_id", SINE_IDS)
def test_same_seed_same_episode(env_id):
    obs_a, rew_a = play(gym.make(env_id, max_episode_steps=40), seed=11, n_steps=130)
    obs_b, rew_b = play(gym.make(env_id, max_episode_steps=40), seed=11, n_steps=130)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, rew_b)
    obs_c, _ = play(gym.make(env_id, max_episode_steps=40), seed=12, n_steps=130)
    assert not np.array_equal(obs_a, obs_c)


def test_random_road_and_flicker_are_seeded():
    env = gym.make("SineRoadFlicker-v0")
    roads, blanks = [], []
    for _ in range(2):
        env.reset(seed=5)
        roads.append((env.unwrapped.road_phase, env.unwrapped.road_period))
        blanks.append([not env.step(1)[0].any() for _ in range(50)])
    assert roads[0] == roads[1]
    assert blanks[0] == blanks[1]
    assert 5 < sum(blanks[0]) < 45
    # Flicker draws from its own generator: same seed, same road as without flicker.
    partial = gym.make("SineRoadPartial-v0")
    partial.reset(seed=5)
    assert (partial.unwrapped.road_phase, partial.unwrapped.road_period) == roads[0]
    assert 32.0 <= roads[0][1] <= 64.0 and 0.0 <= roads[0][0] < 2 * math.pi


def test_fixed_road_and_start():
    env = SineRoadEnv()
    env.reset(seed=0)
    assert env.road_phase == 0.0 and env.road_period == 50.0
    for seed in range(20):
        env.reset(seed=seed)
        assert abs(env.y - env.centre(0)) <= 0.5 * env.config.band_half_width


# ---------------------------------------------------------------- dynamics and rewards
def test_reward_in_band_out_of_band_and_wall():
    env = SineRoadEnv(observe="offset", max_episode_steps=None)
    step_c = math.sin(2 * math.pi / 50)  # road centre at t=1 (A=1, P=50, phase 0)

    obs, _ = env.reset(seed=0, options={"start_offset": 0.0})
    assert obs[0] == 0.0
    obs, reward, terminated, truncated, _ = env.step(2)  # up by 0.2, road rises by 0.125
    assert reward == 1.0 and not terminated and not truncated
    assert obs[0] == pytest.approx((0.2 - step_c) / 0.6, abs=1e-6)

    env.reset(seed=0, options={"start_offset": 0.3})
    obs, reward, *_ = env.step(1)  # offset 0.3 - 0.125 = 0.175 > w = 0.15
    assert reward == -1.0
    assert obs[0] == pytest.approx((0.3 - step_c) / 0.6, abs=1e-6)

    env.reset(seed=0, options={"start_offset": 0.55})
    obs, reward, *_ = env.step(2)  # offset 0.75 - 0.125 = 0.625 > W = 0.6: clamped
    assert reward == -3.0
    assert obs[0] == 1.0
    assert env.y == pytest.approx(step_c + 0.6)
    assert env.crashes == 1

    env.reset(seed=0, options={"start_offset": -0.6})
    _, reward, *_ = env.step(0)
    assert reward == -3.0 and env.y == pytest.approx(step_c - 0.6)


def test_car_never_leaves_the_road():
    env = SineRoadEnv(max_episode_steps=None)
    env.reset(seed=1)
    for k in range(300):
        env.step(2 if (k // 40) % 2 else 0)
        assert abs(env.y - env.centre(env.t)) <= 0.6 + 1e-12


def test_road_reward_matches_env_on_random_states():
    env = SineRoadEnv(observe="offset", random_road=True, max_episode_steps=None)
    rng = np.random.default_rng(0)
    env.reset(seed=2)
    offsets, hits, rewards = [], [], []
    for _ in range(500):
        before = env.crashes
        obs, reward, *_ = env.step(int(rng.integers(3)))
        offsets.append(env.y - env.centre(env.t))
        hits.append(env.crashes > before)
        rewards.append(reward)
    params = env.reward_params
    assert set(rewards) == {1.0, -1.0, -3.0}
    vector = road_reward(np.array(offsets), np.array(hits), **params)
    np.testing.assert_array_equal(vector, rewards)
    assert [road_reward(o, h, **params) for o, h in zip(offsets, hits)] == rewards


def test_pure_functions():
    assert road_reward(0.15, False) == 1.0
    assert road_reward(-0.1501, False) == -1.0
    assert road_reward(0.0, True) == -3.0
    assert road_reward(0.0, False, band_reward=2.0) == 2.0
    out = road_reward(np.array([0.0, 0.3, 0.6]), np.array([False, False, True]))
    np.testing.assert_array_equal(out, [1.0, -1.0, -3.0])
    assert wall_clamp(0.7, 0.6) == (0.6, True)
    assert wall_clamp(-0.5, 0.6) == (-0.5, False)
    clamped, hit = wall_clamp(np.array([-0.9, 0.1, 0.61]), 0.6)
    np.testing.assert_array_equal(clamped, [-0.6, 0.1, 0.6])
    np.testing.assert_array_equal(hit, [True, False, True])
    c = sineroad.road_centre(np.arange(3), 1.0, 2 * math.pi / 4, 0.0)
    np.testing.assert_allclose(c, [0.0, 1.0, 0.0], atol=1e-12)


# ---------------------------------------------------------------- episode end
def test_truncation_inside_env():
    env = SineRoadEnv(max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(1)[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]


@pytest.mark.parametrize("env_id", SINE_IDS)
def test_truncation_through_make(env_id):
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == 200
    assert env.unwrapped.max_episode_steps is None  # one limit: gymnasium's TimeLimit
    env.reset(seed=0)
    for k in range(1, 201):
        _, _, terminated, truncated, _ = env.step(1)
        assert not terminated
        assert truncated == (k == 200)
    # make's max_episode_steps changes the one limit, shorter or longer.
    for limit in (20, 300):
        env = gym.make(env_id, max_episode_steps=limit)
        env.reset(seed=0)
        steps = 1
        while not env.step(1)[3]:
            steps += 1
        assert steps == limit


def test_crash_limit_terminates():
    env = SineRoadEnv(crash_limit=3, max_episode_steps=100)
    env.reset(seed=0)
    k, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, reward, terminated, truncated, _ = env.step(2)  # drive into the upper wall
        k += 1
    assert terminated and not truncated
    assert env.crashes == 3 and reward == -3.0 and k < 100


def test_both_flags_on_the_same_step():
    env = SineRoadEnv(crash_limit=1, max_episode_steps=1)
    env.reset(seed=0, options={"start_offset": 0.6})
    _, _, terminated, truncated, _ = env.step(2)
    assert terminated and truncated


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "action, error",
    [
        (1.5, TypeError),
        (1.0, TypeError),
        ("1", TypeError),
        (None, TypeError),
        (-1, ValueError),
        (3, ValueError),
        (np.array([1, 1]), ValueError),
        (np.array([[1]]), ValueError),
        (np.array([0.5]), TypeError),
    ],
)
def test_invalid_actions(action, error):
    env = SineRoadEnv()
    env.reset(seed=0)
    with pytest.raises(error, match=r"\{0, 1, 2\}"):
        env.step(action)


@pytest.mark.parametrize("action", [0, 2, np.int64(1), np.int32(2), np.array(1), np.array([0])])
def test_valid_action_types(action):
    env = SineRoadEnv()
    env.reset(seed=0)
    env.step(action)


def test_step_before_reset():
    env = SineRoadEnv()
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(1)


def test_step_after_end_warns():
    env = SineRoadEnv(max_episode_steps=2)
    env.reset(seed=0)
    env.step(1)
    env.step(1)
    with pytest.warns(UserWarning, match="reset"):
        env.step(1)
    env.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.step(1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"amplitude": 0.0}, "amplitude"),
        ({"amplitude": -1.0}, "amplitude"),
        ({"period": 0}, "period"),
        ({"period": -50.0}, "period"),
        ({"band_half_width": 0.0}, "band_half_width"),
        ({"band_half_width": 0.6}, "band_half_width"),
        ({"band_half_width": 0.7}, "band_half_width"),
        ({"wall_half_width": -0.6}, "wall_half_width"),
        ({"dy": 0.0}, "dy"),
        ({"dy": 0.1}, "maximum slope"),
        ({"period": 20.0}, "maximum slope"),
        ({"random_road": True, "period_range": (20.0, 80.0)}, "maximum slope"),
        ({"period_range": (80.0, 40.0)}, "period_range"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"crash_limit": 0}, "crash_limit"),
        ({"observe": "pixels"}, "observe"),
        ({"render_mode": "human"}, "render_mode"),
        ({"wall_reward": float("nan")}, "wall_reward"),
    ],
)
def test_invalid_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SineRoadEnv(**kwargs)


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_invalid_flicker_probability(p):
    with pytest.raises(ValueError, match="flicker_prob|p must"):
        gym.make("SineRoadFlicker-v0", flicker_prob=p)
    with pytest.raises(ValueError, match="flicker_prob"):
        gym.make_vec("SineRoadFlicker-v0", num_envs=2, flicker_prob=p)


def test_invalid_reset_option():
    env = SineRoadEnv()
    with pytest.raises(ValueError, match="start_offset"):
        env.reset(options={"start": 0.0})
    with pytest.raises(ValueError, match="start_offset"):
        env.reset(options={"start_offset": 0.9})


# ---------------------------------------------------------------- wrappers
def test_flicker_wrapper_extremes():
    never = FlickerObservation(SineRoadEnv(observe="offset"), p=0.0)
    always = FlickerObservation(SineRoadEnv(observe="offset"), p=1.0)
    obs_never, _ = play(never, seed=0, n_steps=50)
    obs_always, _ = play(always, seed=0, n_steps=50)
    assert np.all(obs_never != 0.0)
    assert np.all(obs_always == 0.0)
    shifted = gym.wrappers.TransformObservation(
        SineRoadEnv(), lambda o: o + 2.0, gym.spaces.Box(1.0, 3.0, (2,), np.float32)
    )
    with pytest.raises(ValueError, match="zeros"):
        FlickerObservation(shifted, p=0.5)


def test_mask_observation_cartpole_novel():
    env = gym.make("CartPoleNoVel-v1")
    full = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=4)
    full_obs, _ = full.reset(seed=4)
    np.testing.assert_array_equal(obs, full_obs[[0, 2]])
    assert env.spec.max_episode_steps == 500
    with pytest.raises(ValueError, match="out of range"):
        MaskObservation(gym.make("CartPole-v1"), [0, 4])
    with pytest.raises(ValueError, match="indices"):
        MaskObservation(gym.make("CartPole-v1"), [])


def test_prev_action_reward_observation():
    env = PrevActionRewardObservation(SineRoadEnv(observe="offset"))
    assert env.observation_space.shape == (5,)
    obs, _ = env.reset(seed=0, options={"start_offset": 0.0})
    np.testing.assert_array_equal(obs[1:], [0, 0, 0, 0])
    obs, reward, *_ = env.step(2)
    np.testing.assert_array_equal(obs[1:], [0, 0, 1, reward])
    obs, reward, *_ = env.step(0)
    np.testing.assert_array_equal(obs[1:], [1, 0, 0, reward])
    assert env.observation_space.contains(obs)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs[1:], [0, 0, 0, 0])
    with pytest.raises(TypeError, match="Discrete"):
        PrevActionRewardObservation(gym.make("Pendulum-v1"))


def test_prev_action_observation_without_reward():
    """reward=False: the DRQN's own extra input (the previous action one-hot, zeros at a reset)."""
    env = PrevActionRewardObservation(SineRoadEnv(observe="offset"), reward=False)
    assert env.observation_space.shape == (4,)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs[1:], [0, 0, 0])
    obs, *_ = env.step(1)
    np.testing.assert_array_equal(obs[1:], [0, 1, 0])
    assert env.observation_space.contains(obs)
    with pytest.raises(TypeError, match="reward must be True or False"):
        PrevActionRewardObservation(SineRoadEnv(), reward="no")


def test_pixel_observation():
    env = PixelObservation(SineRoadEnv(render_mode="rgb_array"), size=(64, 48))
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 48, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    obs2, *_ = env.step(2)
    assert env.observation_space.contains(obs2) and not np.array_equal(obs, obs2)
    with pytest.raises(ValueError, match="render_mode"):
        PixelObservation(SineRoadEnv())


# ---------------------------------------------------------------- rendering and animation
def test_render_rgb_array():
    env = gym.make("SineRoadPartial-v0", render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(5):
        env.step(1)
    frame = env.render()
    assert frame.shape == (200, 400, 3) and frame.dtype == np.uint8
    colours = {tuple(c) for c in frame.reshape(-1, 3)[::7]}
    assert len(colours) >= 4  # grass, road, band, walls, car...
    assert env.metadata["render_modes"] == ["rgb_array"]


def test_render_without_mode_warns():
    env = SineRoadEnv()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None


def test_animation_helpers():
    from sineroad.animation import animate_episode, episode_frames, episode_strip
    from sineroad.controllers import MemoryController

    env = gym.make("SineRoadFlicker-v0", render_mode="rgb_array")
    frames = episode_frames(env, MemoryController(env), seed=0, max_steps=8)
    assert len(frames) == 9 and frames[0].shape == (200, 400, 3)
    frames_fn = episode_frames(env, lambda obs: 1, seed=0, max_steps=3)
    assert len(frames_fn) == 4
    fig = episode_strip(frames, n=3)
    assert len(fig.axes) == 3
    html = animate_episode(frames[:3], fps=10)
    assert "<script" in html.data
    assert (
        '<img alt="The car driving along the sine road' in html.data
    )  # described for screen readers
    quoted = animate_episode(frames[:3], fps=10, alt='a "quoted" car').data
    assert 'alt="a &quot;quoted&quot; car"' in quoted
    with pytest.raises(ValueError, match="alt"):
        animate_episode(frames[:3], alt=" ")
    with pytest.raises(ValueError, match="render_mode"):
        episode_frames(gym.make("SineRoad-v0"), lambda obs: 1)
