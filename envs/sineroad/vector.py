"""A native batched numpy implementation of the sine-road environments."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
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

    **Speed.** A step is about twenty numpy calls whatever ``num_envs``, so Python overhead
    dominates below a few hundred environments (see ``benchmarks/results/env_speed.md``).
    Flicker's coin flips keep one generator per sub-environment for exact equivalence with
    single environments; they are drawn 256 at a time per sub-environment (a generator's
    stream does not depend on how many numbers are drawn per call), so the per-environment
    loop runs once every 256 steps; flicker costs about a quarter of the throughput at large
    ``num_envs``.
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

        # Constants of the step function.
        self._moves = np.array([-cfg.dy, 0.0, cfg.dy])
        # 0-d arrays: numpy combines them with arrays faster than Python floats.
        self._amplitude = np.array(cfg.amplitude)
        self._wall = np.array(cfg.wall_half_width)
        self._neg_wall = np.array(-cfg.wall_half_width)
        self._one = np.array(1, dtype=np.int64)
        self._position_scale = cfg.position_scale
        self._reward_args = tuple(cfg.reward_params.values())
        self._observe_offset = cfg.observe == "offset"
        self._flicker = self.flicker_prob > 0.0

        self._rngs: list[np.random.Generator | None] = [None] * n
        self._flicker_rngs: list[np.random.Generator | None] = [None] * n
        self._coins = np.zeros((_FLICKER_CHUNK, n))
        self._coin_pos = np.full(n, _FLICKER_CHUNK)
        self._coin_pos_max = _FLICKER_CHUNK
        self._coin_pos_equal = True
        self._arange = np.arange(n)

        self._y = np.zeros(n)
        self._t = np.zeros(n, dtype=np.int64)
        self._phase = np.full(n, cfg.phase)
        self._period = np.full(n, cfg.period)
        self._omega = np.full(n, TWO_PI / cfg.period)
        self._crashes = np.zeros(n, dtype=np.int64)
        self._autoreset = np.zeros(n, dtype=bool)
        self._n_autoreset = 0
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
        offset = np.empty(n)
        for i, s in enumerate(seeds):
            if s is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(s)
            if s is not None or self._flicker_rngs[i] is None:
                self._flicker_rngs[i] = flicker_rng(s)
                self._coin_pos[i] = _FLICKER_CHUNK
                self._coin_pos_max = _FLICKER_CHUNK
            offset[i] = self._reset_one(i)
        self._coin_pos_equal = bool((self._coin_pos == self._coin_pos[0]).all())
        self._autoreset = np.zeros(n, dtype=bool)
        self._n_autoreset = 0
        self._was_reset = True
        return self._observe(offset), {}

    def step(self, actions):
        a = self._check_actions(actions)
        if not self._was_reset:
            raise ResetNeeded(
                "Cannot call SineRoadVectorEnv.step() before reset(): call reset() first."
            )
        t = self._t + self._one
        centre = self._amplitude * np.sin(self._omega * t + self._phase)
        offset = (self._y + self._moves[a]) - centre
        hit = np.abs(offset) > self._wall
        np.maximum(offset, self._neg_wall, out=offset)
        np.minimum(offset, self._wall, out=offset)
        rewards = road_reward(offset, hit, *self._reward_args)
        y = centre + offset
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
        if self._n_autoreset:
            autoreset = self._autoreset
            for i in np.flatnonzero(autoreset):
                offset[i] = self._reset_one(i)
            rewards[autoreset] = 0.0
            terminated[autoreset] = False
            truncated[autoreset] = False
        done = terminated | truncated
        self._autoreset = done
        self._n_autoreset = np.count_nonzero(done)
        return self._observe(offset), rewards, terminated, truncated, {}

    def close_extras(self, **kwargs: Any):
        pass

    # ------------------------------------------------------------------ helpers
    def _reset_one(self, i: int) -> float:
        """Start a new episode in sub-environment ``i``; return its offset at ``t = 0``."""
        phase, period, y0 = self.config.draw_episode(self._rngs[i])
        omega = TWO_PI / period
        self._phase[i] = phase
        self._period[i] = period
        self._omega[i] = omega
        self._y[i] = y0
        self._t[i] = 0
        self._crashes[i] = 0
        return y0 - self._amplitude * float(np.sin(omega * 0 + phase))

    def _observe(self, offset: np.ndarray) -> np.ndarray:
        if self._observe_offset:
            # |offset| <= W after clamping, so offset / W needs no clipping.
            obs = (offset / self._wall).astype(np.float32)[:, None]
        else:
            value = self._y / self._position_scale
            np.maximum(value, -1.0, out=value)
            np.minimum(value, 1.0, out=value)
            obs = np.empty((self.num_envs, 2), dtype=np.float32)
            obs[:, 0] = value
            obs[:, 1] = np.remainder(self._t, self._period) / self._period
        if self._flicker:
            obs[self._flip_coins() < self.flicker_prob] = 0.0
        return obs

    def _flip_coins(self) -> np.ndarray:
        """One uniform draw per sub-environment from its own flicker generator.

        ``self._coins[k, i]`` is sub-environment ``i``'s ``k``-th draw of its current chunk and
        ``self._coin_pos[i]`` the next one to use. All positions move together, so they are
        equal unless ``reset()`` reseeded only some sub-environments; then one row is used.
        """
        pos = self._coin_pos
        if self._coin_pos_max >= _FLICKER_CHUNK:
            for i in np.flatnonzero(pos >= _FLICKER_CHUNK):
                self._coins[:, i] = self._flicker_rngs[i].random(_FLICKER_CHUNK)
                pos[i] = 0
            self._coin_pos_max = int(pos.max())
            self._coin_pos_equal = bool((pos == pos[0]).all())
        if self._coin_pos_equal:
            coins = self._coins[pos[0]]
        else:
            coins = self._coins[pos, self._arange]
        pos += 1
        self._coin_pos_max += 1
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
        # One pass: negative integers wrap to huge unsigned values.
        if a.astype(np.uint64).max() > 2:
            bad = a[(a < 0) | (a > 2)]
            raise ValueError(
                f"actions must be in {{0, 1, 2}} (0 = down, 1 = stay, 2 = up), got {bad.tolist()}"
            )
        return a
