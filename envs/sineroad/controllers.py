"""Hand-written controllers: proof that memory matters, before any learning.

Four controllers per environment, from worst to best:

1. :class:`RandomController` picks actions uniformly at random.
2. :class:`ReactiveController` is the best rule we found that uses only the current
   observation. On the offset observation it moves toward the centre when
   ``|offset| > threshold`` (a blank flicker reading reads as "centred", so it stays).
   On ``SineRoad-v0`` the observation ``(y, tau)`` is Markov and the reactive rule, which
   knows the fixed road, is optimal.
3. :class:`MemoryController` remembers what it has seen. It dead-reckons its own lateral
   position from its actions, so every reading gives a point of the road's centre,
   ``c_t = y_t - offset_t``; it fits a sine to those points (least squares over a grid of
   periods), predicts the centre now and one step ahead, and dead-reckons through blank
   readings.
4. :class:`OracleController` reads the hidden state (the true road) and is an upper bound.

Every controller has ``reset(seed=None)`` and ``act(obs) -> int``; they are built from the
environment they will drive (for its parameters, and for the oracle its hidden state):

```python
>>> from sineroad.controllers import evaluate_controllers
>>> results = evaluate_controllers("SineRoadFlicker-v0", n_episodes=5)
>>> sorted(results)
['memory', 'oracle', 'random', 'reactive']

```
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from sineroad.core import TWO_PI
from sineroad.env import SineRoadEnv

__all__ = [
    "Controller",
    "MemoryController",
    "OracleController",
    "RandomController",
    "ReactiveController",
    "evaluate_controllers",
    "make_controllers",
    "run_episode",
]

#: Best threshold of the reactive rule on the offset observation, as a fraction of ``W``
#: (tuned by ``benchmarks/env_baselines.py`` on seeds apart from the evaluation seeds).
REACTIVE_THRESHOLD = 0.1

# CartPole: a linear rule on the full state balances the pole for 500 steps.
_CARTPOLE_GAINS = np.array([0.1, 0.5, 1.0, 1.0])  # x, x_dot, theta, theta_dot
_CARTPOLE_DT = 0.02


def _kind(env: gym.Env) -> str:
    base = env.unwrapped
    if isinstance(base, SineRoadEnv):
        return base.config.observe
    if type(base).__name__ == "CartPoleEnv" and env.observation_space.shape == (2,):
        return "cartpole_novel"
    raise ValueError(f"no controllers for {env}: expected a sine-road env or CartPoleNoVel-v1")


class Controller:
    """Interface of the controllers: ``reset(seed)`` at each episode, ``act(obs)`` each step."""

    name = "controller"

    def reset(self, seed: int | None = None) -> None:
        """Forget the previous episode."""

    def act(self, obs: np.ndarray) -> int:
        raise NotImplementedError


class RandomController(Controller):
    """Uniformly random actions (seeded by ``reset(seed)``)."""

    name = "random"

    def __init__(self, env: gym.Env):
        self.n = int(env.action_space.n)
        self.rng = np.random.default_rng()

    def reset(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray) -> int:
        return int(self.rng.integers(self.n))


def _best_move(offset: float, drift: float, dy: float) -> int:
    """Action whose move brings ``offset + move - drift`` closest to zero."""
    target = drift - offset  # the move that would land exactly on the centre
    if target > 0.5 * dy:
        return 2
    if target < -0.5 * dy:
        return 0
    return 1


class OracleController(Controller):
    """Sees the hidden state: the true road ahead (sine road) or the velocities (CartPole)."""

    name = "oracle"

    def __init__(self, env: gym.Env):
        self.env = env
        self.kind = _kind(env)

    def act(self, obs: np.ndarray) -> int:
        base = self.env.unwrapped
        if self.kind == "cartpole_novel":
            return int(np.dot(_CARTPOLE_GAINS, base.state) > 0.0)
        centre_now = base.centre(base.t)
        drift = base.centre(base.t + 1) - centre_now
        return _best_move(base.y - centre_now, drift, base.config.dy)


class ReactiveController(Controller):
    """The best rule we found that uses the current observation only (no memory).

    - offset observation: move toward the centre when ``|offset| > threshold`` (in units of
      ``W``, default :data:`REACTIVE_THRESHOLD`), otherwise stay;
    - ``(y, tau)`` observation of the fixed road: compute the road's centre now and one step
      ahead from ``tau`` and the road's (fixed, known) shape, and move to the closest;
    - CartPoleNoVel: push toward the side the pole leans to.
    """

    name = "reactive"

    def __init__(self, env: gym.Env, threshold: float = REACTIVE_THRESHOLD):
        self.kind = _kind(env)
        self.threshold = float(threshold)
        if self.kind != "cartpole_novel":
            cfg = env.unwrapped.config
            self.cfg = cfg

    def act(self, obs: np.ndarray) -> int:
        if self.kind == "cartpole_novel":
            return int(obs[1] > 0.0)
        if self.kind == "offset":
            value = float(obs[0])
            if value > self.threshold:
                return 0
            if value < -self.threshold:
                return 2
            return 1
        cfg = self.cfg
        y = float(obs[0]) * cfg.position_scale
        angle = TWO_PI * float(obs[1]) + cfg.phase
        centre_now = cfg.amplitude * math.sin(angle)
        drift = cfg.amplitude * math.sin(angle + TWO_PI / cfg.period) - centre_now
        return _best_move(y - centre_now, drift, cfg.dy)


class _SineFit:
    """Incremental least-squares fit of ``c(t) = a sin(w t) + b cos(w t) + d`` on a grid of ``w``."""

    def __init__(self, periods: np.ndarray):
        self.omegas = TWO_PI / periods
        self.clear()

    def clear(self):
        g = self.omegas.size
        self.m = np.zeros((g, 3, 3))
        self.b = np.zeros((g, 3))
        self.n = 0
        self.theta = None

    def _basis(self, t: float) -> np.ndarray:
        angle = self.omegas * t
        return np.stack([np.sin(angle), np.cos(angle), np.ones_like(angle)], axis=1)

    def add(self, t: float, c: float):
        f = self._basis(t)
        self.m += f[:, :, None] * f[:, None, :]
        self.b += f * c
        self.n += 1
        self.theta = None

    def predict(self, times: tuple[float, ...]) -> list[float]:
        if self.theta is None:
            ridge = 1e-9 * np.eye(3)
            theta = np.linalg.solve(self.m + ridge, self.b[:, :, None])[:, :, 0]
            # Residual sum of squares up to a constant: sum c^2 - theta . b.
            best = int(np.argmin(-np.einsum("gi,gi->g", theta, self.b)))
            self.theta = (best, theta[best])
        best, theta = self.theta
        return [float(self._basis(t)[best] @ theta) for t in times]


class MemoryController(Controller):
    """A hand-written controller with memory (see the module docstring).

    On the offset observation it keeps ``y_hat``, its lateral position dead-reckoned from its
    own moves (exact except after wall clamps, which it detects from a reading at the wall
    and then forgets the history), turns each reading into a road point
    ``c_t = y_hat_t - offset_t``, fits ``c(t)`` by a least-squares sine over a grid of
    periods spanning the env's ``period_range`` (a straight line through the last two points
    while it has fewer than ``min_fit`` points), and moves to be closest to the predicted
    centre one step ahead. An all-zeros reading counts as blank (flicker); the offset is then
    dead-reckoned as ``y_hat_t - c_hat(t)``.

    On ``(y, tau)`` the observation is Markov and it acts as :class:`ReactiveController`.
    On CartPoleNoVel it estimates both velocities by finite differences of the last two
    observations and applies the oracle's linear rule.
    """

    name = "memory"

    def __init__(self, env: gym.Env, grid_size: int = 121, min_fit: int = 5):
        self.kind = _kind(env)
        self.min_fit = int(min_fit)
        if self.kind == "position_time":
            self._reactive = ReactiveController(env)
        elif self.kind == "offset":
            cfg = env.unwrapped.config
            self.cfg = cfg
            p_min, p_max = cfg.period_range if cfg.random_road else (cfg.period, cfg.period)
            periods = np.unique(np.linspace(0.95 * p_min, 1.05 * p_max, grid_size))
            self._fit = _SineFit(periods)
        self.reset()

    def reset(self, seed: int | None = None) -> None:
        self.t = 0
        self.y_hat = 0.0
        self.points: list[tuple[int, float]] = []
        self.prev_obs = None
        if self.kind == "offset":
            self._fit.clear()

    def _centre_estimates(self, t: int) -> tuple[float, float]:
        """Estimated road centre at ``t`` and ``t + 1``."""
        points = self.points
        if not points:
            return self.y_hat, self.y_hat
        if len(points) < self.min_fit:
            t1, c1 = points[-1]
            slope = 0.0
            if len(points) >= 2:
                t0, c0 = points[-2]
                slope = (c1 - c0) / (t1 - t0)
            return c1 + slope * (t - t1), c1 + slope * (t + 1 - t1)
        now, ahead = self._fit.predict((t, t + 1))
        return now, ahead

    def act(self, obs: np.ndarray) -> int:
        if self.kind == "position_time":
            return self._reactive.act(obs)
        if self.kind == "cartpole_novel":
            return self._act_cartpole(obs)
        cfg = self.cfg
        value = float(obs[0])
        blank = value == 0.0
        if not blank:
            offset = value * cfg.wall_half_width
            if abs(value) >= 0.999:  # at the wall: maybe clamped, dead reckoning is broken
                self.points.clear()
                self._fit.clear()
            centre = self.y_hat - offset
            self.points.append((self.t, centre))
            self._fit.add(self.t, centre)
        centre_now, centre_next = self._centre_estimates(self.t)
        if blank:
            offset = self.y_hat - centre_now
        action = _best_move(offset, centre_next - centre_now, cfg.dy)
        self.y_hat += cfg.dy * (action - 1)
        self.t += 1
        return action

    def _act_cartpole(self, obs: np.ndarray) -> int:
        x, theta = float(obs[0]), float(obs[1])
        if self.prev_obs is None:
            x_dot = theta_dot = 0.0
        else:
            x_dot = (x - self.prev_obs[0]) / _CARTPOLE_DT
            theta_dot = (theta - self.prev_obs[1]) / _CARTPOLE_DT
        self.prev_obs = (x, theta)
        return int(np.dot(_CARTPOLE_GAINS, (x, x_dot, theta, theta_dot)) > 0.0)


CONTROLLERS = {
    "random": RandomController,
    "reactive": ReactiveController,
    "memory": MemoryController,
    "oracle": OracleController,
}


def make_controllers(env: gym.Env) -> dict[str, Controller]:
    """The four controllers for ``env``, from worst to best."""
    return {name: cls(env) for name, cls in CONTROLLERS.items()}


def run_episode(env: gym.Env, controller: Controller, seed: int | None = None) -> float:
    """Play one episode of ``env`` with ``controller``; return the undiscounted return."""
    obs, _ = env.reset(seed=seed)
    controller.reset(seed=seed)
    total = 0.0
    while True:
        obs, reward, terminated, truncated, _ = env.step(controller.act(obs))
        total += float(reward)
        if terminated or truncated:
            return total


def evaluate_controllers(
    env_id: str,
    n_episodes: int = 100,
    seed: int = 0,
    controllers: tuple[str, ...] | None = None,
    **make_kwargs,
) -> dict[str, dict]:
    """Mean and std of the returns of each controller over ``n_episodes`` seeded episodes.

    Episode ``k`` is reset with ``seed + k`` for every controller, so all controllers drive
    the same roads. Returns ``{name: {"mean": float, "std": float, "returns": ndarray}}``.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes!r}")
    names = tuple(CONTROLLERS) if controllers is None else tuple(controllers)
    unknown = set(names) - set(CONTROLLERS)
    if unknown:
        raise ValueError(f"unknown controllers {sorted(unknown)}; choose from {list(CONTROLLERS)}")
    results = {}
    for name in names:
        env = gym.make(env_id, **make_kwargs)
        controller = CONTROLLERS[name](env)
        returns = np.array([run_episode(env, controller, seed=seed + k) for k in range(n_episodes)])
        env.close()
        results[name] = {
            "mean": float(returns.mean()),
            "std": float(returns.std()),
            "returns": returns,
        }
    return results
