"""The sine-road car environment, the book's running example."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import logger, spaces
from gymnasium.error import ResetNeeded

from sineroad.core import DEFAULTS, TWO_PI, RoadConfig
from sineroad.rendering import STEPS_BEHIND, render_road

__all__ = ["SineRoadEnv", "check_action"]

ACTION_MEANINGS = ("down", "stay", "up")


def check_action(action) -> int:
    """Return ``action`` as an ``int`` in ``{0, 1, 2}`` or raise a clear error.

    Accepts Python and numpy integers and integer arrays of shape ``()`` or ``(1,)``.
    """
    if type(action) is int:
        value = action
    elif isinstance(action, np.integer):
        value = int(action)
    elif isinstance(action, np.ndarray) and action.dtype.kind in "iu" and action.size == 1:
        if action.ndim > 1:
            raise ValueError(
                f"invalid action {action!r}: expected a scalar integer in {{0, 1, 2}} "
                f"(0 = down, 1 = stay, 2 = up), got an array of shape {action.shape}"
            )
        value = int(action.reshape(()))
    elif isinstance(action, np.ndarray):
        raise (TypeError if action.dtype.kind not in "iu" else ValueError)(
            f"invalid action {action!r}: expected a scalar integer in {{0, 1, 2}} "
            f"(0 = down, 1 = stay, 2 = up), got an array of shape {action.shape} "
            f"and dtype {action.dtype}"
        )
    else:
        raise TypeError(
            f"invalid action {action!r} ({type(action).__name__}): expected an integer in "
            "{0, 1, 2} (0 = down, 1 = stay, 2 = up)"
        )
    if not 0 <= value <= 2:
        raise ValueError(
            f"invalid action {action!r}: expected an integer in {{0, 1, 2}} "
            "(0 = down, 1 = stay, 2 = up)"
        )
    return value


class SineRoadEnv(gym.Env[np.ndarray, int]):
    """
    ## Description

    A car drives along a road shaped as a sine wave and must stay in the middle of it. The
    car moves forward by one unit of time per step and controls only its lateral position
    `y`. The centre of the road at time `t` is

        c(t) = A * sin(2 * pi * t / P + phi)

    with amplitude `A`, period `P` and phase `phi`. A middle band of half-width `w` runs
    along the centre, and walls at `c(t) +- W` bound the road: a car that would leave the
    road is put back onto the wall it hit.

    The class has two observation modes (`observe`) and an optional random road
    (`random_road`). The registered ids combine them:

    | id                   | `observe`         | `random_road` | flicker | Markov? |
    |----------------------|-------------------|---------------|---------|---------|
    | `SineRoad-v0`        | `"position_time"` | `False`       | no      | yes     |
    | `SineRoadPartial-v0` | `"offset"`        | `True`        | no      | no      |
    | `SineRoadFlicker-v0` | `"offset"`        | `True`        | p = 0.5 | no      |

    `SineRoadFlicker-v0` is `SineRoadPartial-v0` wrapped in
    :class:`~sineroad.FlickerObservation`. The same module also registers
    `CartPoleNoVel-v1`, CartPole-v1 without its velocities.

    ## Action Space

    The action is an `int` in `{0, 1, 2}` (numpy integers are accepted too):

    - 0: move down by `dy`
    - 1: stay
    - 2: move up by `dy`

    ## Observation Space

    `observe="position_time"` (`SineRoad-v0`): a `float32` array of shape `(2,)`. The road has a
    fixed phase and period, so `(y, tau)` is a Markov state.

    | Num | Observation                                      | Min  | Max |
    |-----|--------------------------------------------------|------|-----|
    | 0   | lateral position `y / (A + W)`                   | -1.0 | 1.0 |
    | 1   | time on the loop `tau = (t mod P) / P`           | 0.0  | 1.0 |

    `observe="offset"` (`SineRoadPartial-v0`, `SineRoadFlicker-v0`): a `float32` array of
    shape `(1,)`, the car's offset from the road centre only. The road ahead is not seen, and
    with `random_road=True` its phase and period change every episode.

    | Num | Observation                                      | Min  | Max |
    |-----|--------------------------------------------------|------|-----|
    | 0   | offset from the road centre `(y - c(t)) / W`     | -1.0 | 1.0 |

    In `SineRoadFlicker-v0` each observation (the first one included) is replaced by zeros
    with probability `p = 0.5`.

    Neither mode shows the time left in the episode.

    ## Rewards

    After each move (and wall clamping), with `offset = y - c(t)`:

    - `band_reward` (+1) while `|offset| <= w`, the car is in the middle band;
    - `off_band_reward` (-1) when it is outside the band but did not hit a wall;
    - `wall_reward` (-3) when the move hit a wall (the car is clamped onto the wall).

    The reward is the pure function :func:`sineroad.road_reward`; with the defaults an
    episode's return lies in `[-600, 200]`.

    Mean return (+- std) of hand-written controllers over the same 100 seeded episodes
    (`benchmarks/env_baselines.py`, see :mod:`sineroad.controllers`):

    | controller                  | SineRoad-v0    | SineRoadPartial-v0 | SineRoadFlicker-v0 |
    |-----------------------------|----------------|--------------------|--------------------|
    | random                      | -280.0 +- 26.5 | -284.3 +- 30.3     | -284.3 +- 30.3     |
    | reactive (current obs only) | 200.0 +- 0.0   | 157.0 +- 25.9      | -65.1 +- 72.2      |
    | memory (hand-written)       | 200.0 +- 0.0   | 199.7 +- 0.8       | 193.6 +- 9.0       |
    | oracle (sees the road)      | 200.0 +- 0.0   | 200.0 +- 0.0       | 200.0 +- 0.0       |

    On `SineRoad-v0` a memoryless policy of `(y, tau)` is optimal. Without the road ahead
    (`SineRoadPartial-v0`) the best reactive rule lags behind the road's slope; with flicker
    it loses most of the return, while a controller with memory stays close to the oracle.

    ## Starting State

    `t = 0` and the car starts at `y = c(0) + u` with `u ~ U[-w/2, w/2)`, inside the middle
    band. With `random_road=True` the phase is drawn from `U[0, 2 pi)` and the period from
    `U[period_range)` at every reset, before `u`.
    `reset(options={"start_offset": u})` sets `u` instead (the draw still happens, so the
    random stream is unchanged); `|u| <= W` is required.

    ## Episode End

    By design nothing ends an episode by default: the road goes on for ever.

    1. Termination: only if `crash_limit` is set, after the car has hit a wall
       `crash_limit` times (the step of the last hit returns `terminated=True`).
    2. Truncation: the step that reaches `max_episode_steps` (200) returns `truncated=True`.

    Truncation is not a terminal state: the time limit is not in the observation, so the
    value of the last state must be bootstrapped. Treating `truncated` as `terminated` is one
    of the bugs the book has readers find. Both flags can be `True` on the same step.

    The limit is enforced once. A `SineRoadEnv(...)` built directly enforces its own
    `max_episode_steps`. The registered ids carry `max_episode_steps=200` in their spec, and
    `gymnasium.make` then wraps the environment in gymnasium's `TimeLimit` and builds it with
    its own limit switched off (`max_episode_steps=None`), so that
    `gymnasium.make(id, max_episode_steps=n)` changes the one limit (`-1`: no limit at all).
    `gymnasium.make_vec` passes the spec's limit to :class:`~sineroad.SineRoadVectorEnv`,
    which enforces it.

    Stepping after the episode has ended logs a warning; call `reset()`.

    ## Arguments

    ```python
    >>> import gymnasium as gym
    >>> import sineroad
    >>> env = gym.make("SineRoad-v0", render_mode="rgb_array")
    >>> env
    <TimeLimit<OrderEnforcing<PassiveEnvChecker<SineRoadEnv<SineRoad-v0>>>>>
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, obs.dtype
    ((2,), dtype('float32'))

    ```

    | Parameter           | Type               | Default             | Description                                                  |
    |---------------------|--------------------|---------------------|--------------------------------------------------------------|
    | `amplitude`         | **float**          | `1.0`               | `A`, amplitude of the road                                   |
    | `period`            | **float**          | `50.0`              | `P`, period of the fixed road (`random_road=False`)          |
    | `phase`             | **float**          | `0.0`               | `phi`, phase of the fixed road                               |
    | `period_range`      | **(float, float)** | `(32.0, 64.0)`      | range of `P` for a random road                               |
    | `band_half_width`   | **float**          | `0.15`              | `w`, half-width of the middle band, `0 < w < W`              |
    | `wall_half_width`   | **float**          | `0.6`               | `W`, the walls are at `c(t) +- W`                            |
    | `dy`                | **float**          | `0.2`               | lateral move per step, must exceed the max slope `2 pi A / P` |
    | `max_episode_steps` | **int or None**    | `200`               | steps before truncation, `None` for no limit                 |
    | `crash_limit`       | **int or None**    | `None`              | wall hits before termination, `None` never terminates        |
    | `band_reward`       | **float**          | `1.0`               | reward in the middle band                                    |
    | `off_band_reward`   | **float**          | `-1.0`              | reward outside the band                                      |
    | `wall_reward`       | **float**          | `-3.0`              | reward when hitting a wall                                   |
    | `observe`           | **str**            | `"position_time"`   | `"position_time"` or `"offset"`                              |
    | `random_road`       | **bool**           | `False`             | draw phase and period at every reset                         |
    | `render_mode`       | **str or None**    | `None`              | `"rgb_array"` (400x200 frames) or `None`                     |

    Invalid values raise `ValueError` naming the parameter. `SineRoadFlicker-v0` also takes
    `flicker_prob` (default `0.5`).

    ## Vectorized environment

    ```python
    >>> envs = gym.make_vec("SineRoad-v0", num_envs=3, vectorization_mode="vector_entry_point")
    >>> envs
    SineRoadVectorEnv(SineRoad-v0, num_envs=3)

    ```

    ## Version History

    * v0: Initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
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
        render_mode: str | None = None,
    ):
        self.config = RoadConfig(
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
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.render_mode = render_mode
        cfg = self.config
        self.max_episode_steps = cfg.max_episode_steps
        self.crash_limit = cfg.crash_limit

        self.action_space = spaces.Discrete(3)
        low, high = cfg.observation_bounds()
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

        # Constants of the step function.
        self._amplitude = cfg.amplitude
        self._wall = cfg.wall_half_width
        self._band = cfg.band_half_width
        self._moves = (-cfg.dy, 0.0, cfg.dy)
        self._rewards = (cfg.band_reward, cfg.off_band_reward, cfg.wall_reward)
        self._position_scale = cfg.position_scale
        self._observe_offset = cfg.observe == "offset"

        # Episode state, set by reset().
        self._y: float | None = None
        self._t = 0
        self._phase = cfg.phase
        self._period = cfg.period
        self._omega = TWO_PI / cfg.period
        self._crashes = 0
        self._episode_over = False
        self._trail: deque[tuple[int, float]] = deque(maxlen=STEPS_BEHIND + 1)

    # ------------------------------------------------------------------ public state
    @property
    def reward_params(self) -> dict[str, float]:
        """Keyword arguments of :func:`sineroad.road_reward` that reproduce this env's reward."""
        return self.config.reward_params

    @property
    def y(self) -> float:
        """Lateral position of the car (hidden state, for oracles and debugging)."""
        self._require_reset()
        return self._y

    @property
    def t(self) -> int:
        """Steps taken in the current episode."""
        return self._t

    @property
    def road_phase(self) -> float:
        """Phase of the current episode's road."""
        return self._phase

    @property
    def road_period(self) -> float:
        """Period of the current episode's road."""
        return self._period

    @property
    def crashes(self) -> int:
        """Wall hits in the current episode."""
        return self._crashes

    def centre(self, t) -> float:
        """Centre of the current episode's road at time ``t`` (hidden state)."""
        return float(self._amplitude * np.sin(self._omega * t + self._phase))

    # ------------------------------------------------------------------ gymnasium API
    def step(self, action):
        a = check_action(action)
        if self._y is None:
            self._require_reset()
        if self._episode_over:
            logger.warn(
                "You are calling 'step()' even though this environment has already returned "
                "terminated = True or truncated = True. You should always call 'reset()' once "
                "you receive 'terminated = True' or 'truncated = True'."
            )
        t = self._t + 1
        # Same arithmetic as sineroad.core.road_centre, wall_clamp and road_reward, inlined.
        centre = self._amplitude * float(np.sin(self._omega * t + self._phase))
        offset = (self._y + self._moves[a]) - centre
        if abs(offset) > self._wall:
            offset = min(max(offset, -self._wall), self._wall)
            reward = self._rewards[2]
            self._crashes += 1
        else:
            reward = self._rewards[0] if abs(offset) <= self._band else self._rewards[1]
        y = centre + offset
        self._t = t
        self._y = y
        terminated = self.crash_limit is not None and self._crashes >= self.crash_limit
        truncated = self.max_episode_steps is not None and t >= self.max_episode_steps
        if terminated or truncated:
            self._episode_over = True
        if self.render_mode is not None:
            self._trail.append((t, y))
        return self._observation(y, offset, t), reward, terminated, truncated, {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        phase, period, y = self.config.draw_episode(self.np_random)
        self._phase = phase
        self._period = period
        self._omega = TWO_PI / period
        centre = self._amplitude * float(np.sin(self._omega * 0 + phase))
        if options:
            unknown = set(options) - {"start_offset"}
            if unknown:
                raise ValueError(
                    f"unknown reset options {sorted(unknown)}; the only option is 'start_offset'"
                )
            start_offset = float(options["start_offset"])
            if not abs(start_offset) <= self._wall:
                raise ValueError(
                    f"start_offset must lie within [-W, W] = [{-self._wall}, {self._wall}], "
                    f"got {start_offset!r}"
                )
            y = centre + start_offset
        self._y = y
        self._t = 0
        self._crashes = 0
        self._episode_over = False
        self._trail.clear()
        if self.render_mode is not None:
            self._trail.append((0, y))
        return self._observation(y, y - centre, 0), {}

    def render(self):
        if self.render_mode is None:
            name = self.spec.id if self.spec is not None else "SineRoad-v0"
            logger.warn(
                "You are calling render method without specifying any render mode. "
                "You can specify the render_mode at initialization, "
                f'e.g. gym.make("{name}", render_mode="rgb_array")'
            )
            return None
        self._require_reset()
        return self.render_frame(400, 200)

    def render_frame(self, width: int, height: int) -> np.ndarray:
        """Draw the current state into a ``(height, width, 3)`` ``uint8`` array."""
        self._require_reset()
        return render_road(
            width,
            height,
            self._t,
            self._y,
            self._amplitude,
            self._omega,
            self._phase,
            self._band,
            self._wall,
            trail=tuple(self._trail)[:-1],
        )

    # ------------------------------------------------------------------ helpers
    def _observation(self, y: float, offset: float, t: int) -> np.ndarray:
        if self._observe_offset:
            return np.array([offset / self._wall], dtype=np.float32)
        value = y / self._position_scale
        return np.array(
            [min(max(value, -1.0), 1.0), (t % self._period) / self._period], dtype=np.float32
        )

    def _require_reset(self):
        if self._y is None:
            raise ResetNeeded(
                f"Cannot call {type(self).__name__}.step() or render() before reset(): "
                "call reset() first."
            )
