"""A native batched numpy implementation of the sine-road environments."""

from __future__ import annotations

from typing import Any

import numpy as np

from gymnasium import logger, spaces
from gymnasium.error import ResetNeeded
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from sineroad.core import DEFAULTS, TWO_PI, RoadConfig, flicker_rng, road_reward

__all__ = ["SineRoadVectorEnv"]

_FLICKER_CHUNK = 256


class SineRoadVectorEnv(VectorEnv):
    """``num_envs`` sine roads stepped together with numpy arithmetic.

    Serves ``gymnasium.make_vec(id, num_envs=N, vectorization_mode="vector_entry_point")``
    for ``SineRoad-v0``, ``SineRoadPartial-v0`` and ``SineRoadFlicker-v0`` and takes the same
    arguments as :class:`~sineroad.SineRoadEnv`, plus ``flicker_prob`` (``0.0``: no flicker).

    **Same trajectories as single environments.** ``reset(seed=s)`` seeds sub-environment
    ``i`` with ``s + i`` (a list of ``num_envs`` seeds is accepted too), as gymnasium's
    ``SyncVectorEnv`` does. Every sub-environment keeps its own generators and draws from
    them in the same order as a single environment, so that ``N`` single environments (with
    :class:`~sineroad.FlickerObservation` for flicker) reset with the same seeds and given the
    same actions produce exactly the same observations, rewards and flags, across autoresets.
    Only the draws (at resets, and flicker's coin flips, taken in chunks per sub-environment)
    loop over sub-environments; the dynamics are vectorised.

    **Autoreset (next step).** ``metadata["autoreset_mode"]`` is
    ``AutoresetMode.NEXT_STEP``: when a sub-environment returns ``terminated`` or
    ``truncated``, the *next* call to ``step()`` resets it, ignores its action, and returns the
    first observation of the new episode with reward ``0`` and both flags ``False``.

    **Final observation.** The last observation of an episode (for instance the one to
    bootstrap from after ``truncated=True``) is the observation returned by the very step
    that returned ``terminated`` or ``truncated``. There is no ``final_obs`` in ``info``
    (``info`` is always ``{}``).

    Actions must be an integer array of shape ``(num_envs,)`` with values in ``{0, 1, 2}``.
    """

    metadata = {
        "render_modes": [],
        "render_fps": 20,
        "autoreset_mode": AutoresetMode.NEXT_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        amplitude: float = DEFAULTS["amplitude"],
        period: float = DEFAULTS["period"],
        phase: float = DEFAULTS["phase"],
        period_range: tuple[float, float] = DEFAULTS["period_range"],
        band_half_width: float = DEFAULTS["band_half_width"],
        wall_half_width: float = DEFAULTS["wall_half_width"],
        dy: float = DEFAULTS["dy"],
        max_episode_steps: int | None = DEFAULTS["max_episode_steps"],
        crash_limit: int | None = DEFAULTS["crash_limit"],
        band_reward: float = DEFAULTS["band_reward"],
        off_band_reward: float = DEFAULTS["off_band_reward"],
        wall_reward: float = DEFAULTS["wall_reward"],
        observe: str = DEFAULTS["observe"],
        random_road: bool = DEFAULTS["random_road"],
        flicker_prob: float = 0.0,
        render_mode: str | None = None,
    ):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)):
            raise TypeError(f"num_envs must be a positive int, got {num_envs!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        if render_mode is not None:
            raise ValueError(
                "SineRoadVectorEnv does not render; use SineRoadEnv(render_mode='rgb_array'), "
                f"got render_mode={render_mode!r}"
            )
        if isinstance(flicker_prob, bool) or not isinstance(
            flicker_prob, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"flicker_prob must be a float in [0, 1], got {flicker_prob!r}")
        if not 0.0 <= float(flicker_prob) <= 1.0:
            raise ValueError(
                f"flicker_prob must be a probability in [0, 1], got flicker_prob={flicker_prob!r}"
            )
        self.config = cfg = RoadConfig(
            amplitude=amplitude,
            period=period,
            phase=phase,
            period_range=tuple(period_range),
            band_half_width=band_half_width,
            wall_half_width=wall_half_width,
            dy=dy,
            max_episode_steps=max_episode_steps,
            crash_limit=crash_limit,
            band_reward=band_reward,
            off_band_reward=off_band_reward,
            wall_reward=wall_reward,
            observe=observe,
            random_road=random_road,
        )
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.max_episode_steps = cfg.max_episode_steps
        self.crash_limit = cfg.crash_limit
        self.flicker_prob = float(flicker_prob)

        self.single_action_space = spaces.Discrete(3)
        self.action_space = batch_space(self.single_action_space, n)
        low, high = cfg.observation_bounds()
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, n)

        self._moves = np.array([-cfg.dy, 0.0, cfg.dy])
        self._reward_params = cfg.reward_params
        self._observe_offset = cfg.observe == "offset"

        self._rngs: list[np.random.Generator | None] = [None] * n
        self._flicker_rngs: list[np.random.Generator | None] = [None] * n
        self._coins = np.zeros((n, _FLICKER_CHUNK))
        self._coin_pos = np.full(n, _FLICKER_CHUNK)
        self._arange = np.arange(n)

        self._y = np.zeros(n)
        self._t = np.zeros(n, dtype=np.int64)
        self._phase = np.full(n, cfg.phase)
        self._period = np.full(n, cfg.period)
        self._omega = np.full(n, TWO_PI / cfg.period)
        self._crashes = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._was_reset = False

    def __repr__(self) -> str:
        name = self.spec.id if self.spec is not None else "SineRoad"
        return f"{type(self).__name__}({name}, num_envs={self.num_envs})"

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self,
        *,
        seed: int | list[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ):
        if options:
            raise ValueError(f"SineRoadVectorEnv.reset() takes no options, got {options!r}")
        n = self.num_envs
        if seed is None:
            seeds = [None] * n
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)
            if len(seeds) != n:
                raise ValueError(
                    f"seed must be None, an int or a list of {n} seeds, got {len(seeds)} seeds"
                )
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(s)
            if s is not None or self._flicker_rngs[i] is None:
                self._flicker_rngs[i] = flicker_rng(s)
                self._coin_pos[i] = _FLICKER_CHUNK
            self._reset_one(i)
        self._autoreset[:] = False
        self._was_reset = True
        return self._observe(), {}

    def step(self, actions):
        a = self._check_actions(actions)
        if not self._was_reset:
            raise ResetNeeded("Cannot call SineRoadVectorEnv.step() before reset(): call reset() first.")
        cfg = self.config
        t = self._t + 1
        y = self._y + self._moves[a]
        centre = cfg.amplitude * np.sin(self._omega * t + self._phase)
        low = centre - cfg.wall_half_width
        high = centre + cfg.wall_half_width
        hit = (y < low) | (y > high)
        y = np.minimum(np.maximum(y, low), high)
        rewards = road_reward(y - centre, hit, **self._reward_params)
        self._crashes += hit
        if self.crash_limit is not None:
            terminated = self._crashes >= self.crash_limit
        else:
            terminated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is not None:
            truncated = t >= self.max_episode_steps
        else:
            truncated = np.zeros(self.num_envs, dtype=bool)
        self._t = t
        self._y = y
        autoreset = self._autoreset
        if autoreset.any():
            for i in np.flatnonzero(autoreset):
                self._reset_one(i)
            rewards[autoreset] = 0.0
            terminated[autoreset] = False
            truncated[autoreset] = False
        self._autoreset = terminated | truncated
        return self._observe(), rewards, terminated, truncated, {}

    def close_extras(self, **kwargs: Any):
        pass

    # ------------------------------------------------------------------ helpers
    def _reset_one(self, i: int):
        phase, period, y0 = self.config.draw_episode(self._rngs[i])
        self._phase[i] = phase
        self._period[i] = period
        self._omega[i] = TWO_PI / period
        self._y[i] = y0
        self._t[i] = 0
        self._crashes[i] = 0

    def _observe(self) -> np.ndarray:
        cfg = self.config
        if self._observe_offset:
            centre = cfg.amplitude * np.sin(self._omega * self._t + self._phase)
            obs = np.clip((self._y - centre) / cfg.wall_half_width, -1.0, 1.0)[:, None]
        else:
            obs = np.empty((self.num_envs, 2))
            obs[:, 0] = np.clip(self._y / cfg.position_scale, -1.0, 1.0)
            obs[:, 1] = np.remainder(self._t, self._period) / self._period
        obs = obs.astype(np.float32)
        if self.flicker_prob > 0.0:
            obs[self._flip_coins() < self.flicker_prob] = 0.0
        return obs

    def _flip_coins(self) -> np.ndarray:
        """One uniform draw per sub-environment from its own flicker generator."""
        pos = self._coin_pos
        for i in np.flatnonzero(pos >= _FLICKER_CHUNK):
            self._coins[i] = self._flicker_rngs[i].random(_FLICKER_CHUNK)
            pos[i] = 0
        coins = self._coins[self._arange, pos]
        pos += 1
        return coins

    def _check_actions(self, actions) -> np.ndarray:
        a = np.asarray(actions)
        if a.shape != (self.num_envs,):
            raise ValueError(
                f"actions must have shape ({self.num_envs},) (one action in {{0, 1, 2}} per "
                f"sub-environment), got shape {a.shape}: {actions!r}"
            )
        if a.dtype.kind not in "iu":
            raise TypeError(
                f"actions must be integers in {{0, 1, 2}} (0 = down, 1 = stay, 2 = up), "
                f"got dtype {a.dtype}: {actions!r}"
            )
        if a.min() < 0 or a.max() > 2:
            bad = a[(a < 0) | (a > 2)]
            raise ValueError(
                f"actions must be in {{0, 1, 2}} (0 = down, 1 = stay, 2 = up), got {bad.tolist()}"
            )
        return a


def _warn_unused(name: str):  # pragma: no cover - kept for symmetry with gymnasium's envs
    logger.warn(f"{name} is not used by SineRoadVectorEnv")
