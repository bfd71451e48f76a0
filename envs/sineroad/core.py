"""Pure building blocks of the sine-road environments.

Everything here is free of environment state, so that :class:`~sineroad.SineRoadEnv` and
:class:`~sineroad.SineRoadVectorEnv` share exactly the same arithmetic (bit for bit), and so
that readers can call the reward function on their own states:

```python
>>> import numpy as np
>>> from sineroad import road_reward
>>> road_reward(0.1, False)
1.0
>>> road_reward(np.array([0.0, 0.3, 0.6]), np.array([False, False, True]))
array([ 1., -1., -3.])

```
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULTS",
    "RoadConfig",
    "road_centre",
    "road_reward",
    "wall_clamp",
]

TWO_PI = 2.0 * math.pi

#: Default value of every constructor argument of the sine-road environments.
DEFAULTS: dict[str, Any] = {
    "amplitude": 1.0,
    "period": 50.0,
    "phase": 0.0,
    "period_range": (32.0, 64.0),
    "band_half_width": 0.15,
    "wall_half_width": 0.6,
    "dy": 0.2,
    "max_episode_steps": 200,
    "crash_limit": None,
    "band_reward": 1.0,
    "off_band_reward": -1.0,
    "wall_reward": -3.0,
    "observe": "position_time",
    "random_road": False,
}

OBSERVE_CHOICES = ("position_time", "offset")


def road_centre(t, amplitude: float, omega, phase):
    """Centre of the road at time ``t``: ``amplitude * sin(omega * t + phase)``.

    ``omega`` is ``2 * pi / period``. Works on scalars and on numpy arrays (broadcasting).
    Scalars go through ``np.sin`` as well, so that a single environment and the vector
    environment compute identical values.
    """
    return amplitude * np.sin(omega * t + phase)


def wall_clamp(offset, wall_half_width: float):
    """Keep the car on the road: ``(offset_clamped, hit_wall)``.

    ``offset`` is ``y - centre`` after the move. The car hits a wall when ``|offset| > W``;
    it is then put back onto that wall (``offset = +-W``). Works on scalars and on numpy
    arrays.
    """
    if isinstance(offset, np.ndarray):
        hit = np.abs(offset) > wall_half_width
        return np.minimum(np.maximum(offset, -wall_half_width), wall_half_width), hit
    hit = bool(abs(offset) > wall_half_width)
    return min(max(offset, -wall_half_width), wall_half_width), hit


def road_reward(
    offset,
    hit_wall,
    band_half_width: float = DEFAULTS["band_half_width"],
    band_reward: float = DEFAULTS["band_reward"],
    off_band_reward: float = DEFAULTS["off_band_reward"],
    wall_reward: float = DEFAULTS["wall_reward"],
):
    """Reward of one step, a pure function of the car's offset from the road centre.

    Args:
        offset: ``y - centre`` after the move (and after wall clamping); scalar or array.
        hit_wall: whether the move hit a wall; scalar or array of bools.
        band_half_width: half-width ``w`` of the middle band.
        band_reward: reward while ``|offset| <= w``.
        off_band_reward: reward when outside the band but on the road.
        wall_reward: reward when the car hit a wall (takes precedence over the other two).

    Returns:
        A ``float`` for scalar inputs, otherwise a ``float64`` array of the broadcast shape.

    An environment's own values are in ``env.unwrapped.reward_params``, so that
    ``road_reward(offset, hit, **env.unwrapped.reward_params)`` is the reward it gives.
    """
    if isinstance(offset, np.ndarray) or isinstance(hit_wall, np.ndarray):
        in_band = np.abs(offset) <= band_half_width
        return np.where(hit_wall, wall_reward, np.where(in_band, band_reward, off_band_reward))
    if hit_wall:
        return float(wall_reward)
    if abs(offset) <= band_half_width:
        return float(band_reward)
    return float(off_band_reward)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _check_count(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int or None, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class RoadConfig:
    """Validated parameters shared by :class:`SineRoadEnv` and :class:`SineRoadVectorEnv`.

    Raises ``ValueError`` (or ``TypeError`` for a value of the wrong type) naming the
    parameter and the value, see :class:`~sineroad.SineRoadEnv` for their meaning.
    """

    amplitude: float = DEFAULTS["amplitude"]
    period: float = DEFAULTS["period"]
    phase: float = DEFAULTS["phase"]
    period_range: tuple[float, float] = DEFAULTS["period_range"]
    band_half_width: float = DEFAULTS["band_half_width"]
    wall_half_width: float = DEFAULTS["wall_half_width"]
    dy: float = DEFAULTS["dy"]
    max_episode_steps: int | None = DEFAULTS["max_episode_steps"]
    crash_limit: int | None = DEFAULTS["crash_limit"]
    band_reward: float = DEFAULTS["band_reward"]
    off_band_reward: float = DEFAULTS["off_band_reward"]
    wall_reward: float = DEFAULTS["wall_reward"]
    observe: str = DEFAULTS["observe"]
    random_road: bool = DEFAULTS["random_road"]

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "amplitude", _check_positive("amplitude", self.amplitude))
        set_(self, "period", _check_positive("period", self.period))
        set_(self, "phase", _check_finite("phase", self.phase))
        try:
            p_min, p_max = self.period_range
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"period_range must be a pair (min_period, max_period), got {self.period_range!r}"
            ) from e
        p_min = _check_positive("period_range[0]", p_min)
        p_max = _check_positive("period_range[1]", p_max)
        if p_min > p_max:
            raise ValueError(f"period_range must satisfy min <= max, got {self.period_range!r}")
        set_(self, "period_range", (p_min, p_max))
        w = _check_positive("band_half_width", self.band_half_width)
        big_w = _check_positive("wall_half_width", self.wall_half_width)
        if w >= big_w:
            raise ValueError(
                f"band_half_width must be smaller than wall_half_width, got "
                f"band_half_width={w!r} >= wall_half_width={big_w!r}"
            )
        set_(self, "band_half_width", w)
        set_(self, "wall_half_width", big_w)
        dy = _check_positive("dy", self.dy)
        set_(self, "dy", dy)
        for name in ("band_reward", "off_band_reward", "wall_reward"):
            set_(self, name, _check_finite(name, getattr(self, name)))
        set_(self, "max_episode_steps", _check_count("max_episode_steps", self.max_episode_steps))
        set_(self, "crash_limit", _check_count("crash_limit", self.crash_limit))
        if self.observe not in OBSERVE_CHOICES:
            raise ValueError(f"observe must be one of {OBSERVE_CHOICES}, got {self.observe!r}")
        if not isinstance(self.random_road, (bool, np.bool_)):
            raise TypeError(f"random_road must be a bool, got {self.random_road!r}")
        set_(self, "random_road", bool(self.random_road))
        # The car must be able to outrun the road: its speed dy must exceed the road's
        # steepest slope, otherwise no policy can stay in the middle band.
        shortest = p_min if self.random_road else self.period
        slope = TWO_PI * self.amplitude / shortest
        if dy <= slope:
            raise ValueError(
                f"dy={dy!r} must exceed the road's maximum slope 2*pi*amplitude/period = "
                f"{slope:.4f} (amplitude={self.amplitude!r}, "
                f"{'smallest period' if self.random_road else 'period'}={shortest!r}): "
                "otherwise the car cannot keep up with the road where it is steepest"
            )

    @property
    def max_slope(self) -> float:
        """Steepest change of the road centre per step, ``2 * pi * A / P`` (smallest P)."""
        shortest = self.period_range[0] if self.random_road else self.period
        return TWO_PI * self.amplitude / shortest

    @property
    def obs_dim(self) -> int:
        return 2 if self.observe == "position_time" else 1

    @property
    def position_scale(self) -> float:
        """Normaliser of ``y`` in the ``position_time`` observation, ``A + W``."""
        return self.amplitude + self.wall_half_width

    @property
    def reward_params(self) -> dict[str, float]:
        """Keyword arguments of :func:`road_reward` for this configuration."""
        return {
            "band_half_width": self.band_half_width,
            "band_reward": self.band_reward,
            "off_band_reward": self.off_band_reward,
            "wall_reward": self.wall_reward,
        }

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self.observe == "position_time":
            return (
                np.array([-1.0, 0.0], dtype=np.float32),
                np.array([1.0, 1.0], dtype=np.float32),
            )
        return np.array([-1.0], dtype=np.float32), np.array([1.0], dtype=np.float32)

    def draw_episode(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """Draw one episode's road and start: ``(phase, period, y0)``.

        The order of the draws is part of the environment's definition (it makes the
        vector environment reproduce single environments): with a random road the
        phase ``U[0, 2 pi)`` then the period ``U[P_min, P_max)``; always, last, the
        start offset ``U[-w/2, w/2)`` from the road centre at ``t = 0``.
        """
        if self.random_road:
            phase = float(rng.uniform(0.0, TWO_PI))
            period = float(rng.uniform(self.period_range[0], self.period_range[1]))
        else:
            phase, period = self.phase, self.period
        half = 0.5 * self.band_half_width
        start_offset = float(rng.uniform(-half, half))
        y0 = float(road_centre(0, self.amplitude, TWO_PI / period, phase)) + start_offset
        return phase, period, y0


def flicker_rng(seed: int | None) -> np.random.Generator:
    """Generator of the flicker coin flips, derived from (but independent of) ``seed``.

    The flicker stream never touches the environment's own ``np_random``, so a seed gives
    the same roads with and without flicker.
    """
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0xF11C,))))
