"""Reusable observation wrappers: flicker, masking, previous action and reward, pixels, one-hot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sineroad.core import flicker_rng
from sineroad.rendering import resize_nearest

__all__ = [
    "FlickerObservation",
    "MaskObservation",
    "OneHotObservation",
    "PixelObservation",
    "PrevActionRewardObservation",
]


def _check_box(env: gym.Env, wrapper: str) -> spaces.Box:
    space = env.observation_space
    if not isinstance(space, spaces.Box):
        raise TypeError(f"{wrapper} needs a Box observation space, got {space}")
    return space


class FlickerObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace each observation by zeros with probability ``p`` (flickering screen).

    As in Hausknecht & Stone's flickering Atari, every observation, the one returned by
    ``reset()`` included, is blanked independently. The coin flips come from the wrapper's
    own generator, seeded from the ``seed`` given to ``reset()``: the same seed gives the same
    blanks, and the wrapped environment's ``np_random`` is left untouched (the same seed gives
    the same episodes with and without flicker). ``reset()`` without a seed continues the
    stream. Zero must be a valid observation.
    """

    def __init__(self, env: gym.Env, p: float = 0.5):
        gym.utils.RecordConstructorArgs.__init__(self, p=p)
        gym.ObservationWrapper.__init__(self, env)
        space = _check_box(env, "FlickerObservation")
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise TypeError(f"p must be a probability (a float in [0, 1]), got {p!r}")
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got p={p!r}")
        zeros = np.zeros(space.shape, dtype=space.dtype)
        if not space.contains(zeros):
            raise ValueError(
                "FlickerObservation blanks observations to zeros, which lie outside the "
                f"observation space {space}"
            )
        self.p = float(p)
        self._zeros = zeros
        self._rng: np.random.Generator | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None or self._rng is None:
            self._rng = flicker_rng(seed)
        return self.observation(obs), info

    def observation(self, observation):
        if self._rng is None:
            raise gym.error.ResetNeeded("Cannot step FlickerObservation before reset().")
        if self._rng.random() < self.p:
            return self._zeros.copy()
        return observation


def _mask_indices(space: spaces.Box, indices: Sequence[int], wrapper: str) -> np.ndarray:
    """``indices`` as an int array, checked against a 1-D Box observation."""
    if len(space.shape) != 1:
        raise ValueError(f"{wrapper} needs a 1-D Box, got shape {space.shape}")
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be a non-empty sequence of ints, got {indices!r}")
    if idx.min() < -space.shape[0] or idx.max() >= space.shape[0]:
        raise ValueError(
            f"indices {list(indices)} out of range for an observation of shape {space.shape}"
        )
    return idx


class MaskObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keep only the entries ``indices`` of a 1-D Box observation.

    ``MaskObservation(gym.make("CartPole-v1"), [0, 2])`` keeps the cart position and the pole
    angle and hides both velocities (this is ``CartPoleNoVel-v1``).
    """

    def __init__(self, env: gym.Env, indices: Sequence[int]):
        gym.utils.RecordConstructorArgs.__init__(self, indices=indices)
        gym.ObservationWrapper.__init__(self, env)
        space = _check_box(env, "MaskObservation")
        self.indices = _mask_indices(space, indices, "MaskObservation")
        self.observation_space = spaces.Box(
            space.low[self.indices], space.high[self.indices], dtype=space.dtype, seed=None
        )

    def observation(self, observation):
        return observation[self.indices]


class MaskVectorObservation(gym.vector.VectorObservationWrapper):
    """:class:`MaskObservation` for a vector env: keep entries ``indices`` of (N, D).

    ``gymnasium.make_vec("CartPoleNoVel-v1", num_envs=N, vectorization_mode=
    "vector_entry_point")`` is gymnasium's numpy ``CartPoleVectorEnv`` under this wrapper.
    """

    def __init__(self, env: gym.vector.VectorEnv, indices: Sequence[int]):
        super().__init__(env)
        space = env.single_observation_space
        if not isinstance(space, spaces.Box):
            raise ValueError(f"MaskVectorObservation needs Box observations, got {space}")
        self.indices = _mask_indices(space, indices, "MaskVectorObservation")
        self.single_observation_space = spaces.Box(
            space.low[self.indices], space.high[self.indices], dtype=space.dtype
        )
        self.observation_space = gym.vector.utils.batch_space(
            self.single_observation_space, env.num_envs
        )

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return observations[:, self.indices]  # (N, D) -> (N, len(indices))


class OneHotObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """A Discrete observation ``s`` becomes the float32 vector ``one_hot(s)`` of length n.

    ``OneHotObservation(gym.make("Taxi-v4"))`` observes 500 numbers, one of them 1: a
    linear Q-network on it is a Q-table (chapter 1).
    """

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Discrete):
            raise TypeError(f"OneHotObservation needs a Discrete observation space, got {space}")
        self.n, self.start = int(space.n), int(space.start)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n,), dtype=np.float32)

    def observation(self, observation):
        vector = np.zeros(self.n, dtype=np.float32)
        vector[int(observation) - self.start] = 1.0
        return vector


class PrevActionRewardObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Append the one-hot previous action and the previous reward to the observation.

    As in R2D2 and POPGym, a recurrent agent then sees what it did and what it got. Both are
    zeros after ``reset()``. ``reward=False`` appends the action alone (what chapter 7's DRQN
    reads, so a memoryless baseline can be given the same inputs). Needs a 1-D Box
    observation and a Discrete action space.
    """

    def __init__(self, env: gym.Env, reward: bool = True):
        if not isinstance(reward, bool):
            raise TypeError(f"reward must be True or False, got {reward!r}")
        gym.utils.RecordConstructorArgs.__init__(self, reward=reward)
        self._with_reward = reward
        gym.ObservationWrapper.__init__(self, env)
        space = _check_box(env, "PrevActionRewardObservation")
        if len(space.shape) != 1:
            raise ValueError(
                f"PrevActionRewardObservation needs a 1-D Box, got shape {space.shape}"
            )
        if not isinstance(env.action_space, spaces.Discrete):
            raise TypeError(
                f"PrevActionRewardObservation needs a Discrete action space, got {env.action_space}"
            )
        self._n = int(env.action_space.n)
        self._start = int(env.action_space.start)
        self._size = self._n + int(reward)  # the one-hot action, then the reward if kept
        reward_low, reward_high = ([-np.inf], [np.inf]) if reward else ([], [])
        low = np.concatenate(
            [space.low.astype(np.float32), np.zeros(self._n, np.float32), reward_low]
        ).astype(np.float32)
        high = np.concatenate(
            [space.high.astype(np.float32), np.ones(self._n, np.float32), reward_high]
        ).astype(np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self._extra = np.zeros(self._size, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._extra = np.zeros(self._size, dtype=np.float32)
        return self.observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        extra = np.zeros(self._size, dtype=np.float32)
        extra[int(action) - self._start] = 1.0
        if self._with_reward:
            extra[-1] = reward
        self._extra = extra
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation):
        return np.concatenate([np.asarray(observation, dtype=np.float32), self._extra])


class PixelObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Observe the rendered frame, resized to ``size = (height, width)``, instead of the state.

    The environment must be created with ``render_mode="rgb_array"``. The observation is a
    ``uint8`` array of shape ``(height, width, 3)``. For the sine road, draws the frame at
    that size directly (no resizing).
    """

    def __init__(self, env: gym.Env, size: tuple[int, int] = (64, 64)):
        gym.utils.RecordConstructorArgs.__init__(self, size=size)
        gym.ObservationWrapper.__init__(self, env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                "PixelObservation needs an environment made with render_mode='rgb_array', "
                f"got render_mode={env.render_mode!r}"
            )
        try:
            height, width = (int(v) for v in size)
        except (TypeError, ValueError) as e:
            raise ValueError(f"size must be (height, width), got {size!r}") from e
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive, got {size!r}")
        self.size = (height, width)
        self.observation_space = spaces.Box(0, 255, (height, width, 3), dtype=np.uint8)

    def observation(self, observation):
        height, width = self.size
        frame_fn = getattr(self.env.unwrapped, "render_frame", None)
        if frame_fn is not None:
            return frame_fn(width, height)
        return resize_nearest(np.asarray(self.env.render()), height, width)
