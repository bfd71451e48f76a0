"""Chapter 3's probe environment: a task whose right Q-values are known in closed form.

``ConstantRewardEnv(max_steps)`` has one observation, one or two actions, reward 1 at
every step, and episodes that never end but are cut (``truncated``) after ``max_steps``
steps. Since the task itself never ends, every action is worth 1 / (1 - gamma); a TD target
that treats the cut as an end learns less. The checker builds the reader's environment,
plays two episodes from a seeded reset, and compares what it saw with the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np

from rldebug.checking import CheckFailed, Exercise, PlantedBug, forced_edge

__all__ = ["PROBE_ENV", "ConstantRewardEnv", "check_probe_env", "probe_env_or_reference"]


class ConstantRewardEnv(gym.Env):
    """One observation, reward 1 at every step, never terminated; truncated after max_steps."""

    def __init__(self, max_steps: int = 20, n_actions: int = 2):
        self.max_steps = max_steps
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(n_actions)
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)  # seeds self.np_random (unused: nothing here is random)
        self._steps = 0
        return np.zeros(1, dtype=np.float32), {}

    def step(self, action):
        self._steps += 1
        truncated = self._steps >= self.max_steps  # a time limit, not an end of the task
        return np.zeros(1, dtype=np.float32), 1.0, False, truncated, {}


class ProbeTrace(NamedTuple):
    """What two seeded episodes of an environment showed, in comparable form."""

    observation_space: str  # "a Box of shape (1,)" or what it is instead
    action_space: str  # "Discrete(1 or 2)" or what it is instead
    observations: str  # "one constant observation, inside the space" or what went wrong
    rewards: tuple  # per episode, the reward of every step
    terminated: tuple  # per episode, the step numbers (1, 2, ...) with terminated=True
    truncated: tuple  # per episode, the step numbers with truncated=True


def _describe_space(space: Any, wanted: str) -> str:
    if wanted == "obs":
        if isinstance(space, gym.spaces.Box) and space.shape == (1,):
            return "a Box of shape (1,)"
        shape = getattr(space, "shape", None)
        return f"{type(space).__name__} of shape {shape}"
    if isinstance(space, gym.spaces.Discrete) and int(space.n) in (1, 2):
        return "Discrete(1 or 2)"
    return repr(space)


def _play(make_env: Callable[..., Any], max_steps: int, seed: int, episodes: int) -> ProbeTrace:
    env = make_env(max_steps)
    if not isinstance(env, gym.Env):
        raise CheckFailed(
            f"ConstantRewardEnv({max_steps}) made {type(env).__name__}, not a gymnasium "
            "Env: subclass gym.Env (class ConstantRewardEnv(gym.Env): ...)."
        )
    space = env.observation_space
    seen, rewards, terminated, truncated = [], [], [], []
    for episode in range(episodes):
        start = env.reset(seed=seed + episode)
        if not (isinstance(start, tuple) and len(start) == 2):
            raise CheckFailed("reset() must return a pair (observation, info), info a dict.")
        seen.append(start[0])
        ep_rewards, ep_term, ep_trunc = [], [], []
        for step in range(1, max_steps + 4):  # a few steps past the limit, if it is missed
            out = env.step(step % int(getattr(env.action_space, "n", 1) or 1))
            if not (isinstance(out, tuple) and len(out) == 5):
                raise CheckFailed(
                    "step() must return five things: observation, reward, terminated, "
                    "truncated, info (gymnasium's API; `done` is split in two)."
                )
            obs, reward, term, trunc, _ = out
            seen.append(obs)
            ep_rewards.append(round(float(reward), 6))
            if term:
                ep_term.append(step)
            if trunc:
                ep_trunc.append(step)
            if term or trunc:
                break
        rewards.append(tuple(ep_rewards))
        terminated.append(tuple(ep_term))
        truncated.append(tuple(ep_trunc))
    if not all(space.contains(np.asarray(o, dtype=np.float32)) for o in seen):
        first = np.asarray(seen[0])
        observations = f"outside its observation space (shape {first.shape}, value {first})"
    elif any(not np.array_equal(np.asarray(o), np.asarray(seen[0])) for o in seen):
        observations = "changing from step to step"
    else:
        observations = "one constant observation, inside the space"
    return ProbeTrace(
        _describe_space(space, "obs"),
        _describe_space(env.action_space, "act"),
        observations,
        tuple(rewards),
        tuple(terminated),
        tuple(truncated),
    )


def _played(env_class: Any) -> Callable[..., Any]:
    """The exercise's function: build ``env_class(max_steps)`` and play it."""
    if not callable(env_class):
        return env_class  # Exercise.check names the problem

    def play(max_steps, seed, episodes):
        return _play(env_class, max_steps, seed, episodes)

    return play


def _probe_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, ("max_steps = 1",))
    max_steps = 1 if edge else int(rng.integers(2, 31))
    return {"max_steps": max_steps, "seed": int(rng.integers(10_000)), "episodes": 2}


def _compare(got: Any, expected: ProbeTrace) -> str | None:
    if got == expected:  # the traces are canonical: every correct environment gives this one
        return None
    if not isinstance(got, ProbeTrace):
        return f"the check could not play your environment (got {type(got).__name__})"
    for field in ("observation_space", "action_space", "observations"):
        mine, wanted = getattr(got, field), getattr(expected, field)
        if mine != wanted:
            return f"{field.replace('_', ' ')}: yours {mine}; wanted {wanted}"
    for episode, (r, term, trunc) in enumerate(zip(got.rewards, got.terminated, got.truncated)):
        steps = len(expected.rewards[episode])
        if term:
            return (
                f"episode {episode + 1} returned terminated=True at step {term[0]}: this task "
                f"never ends; the cut after {steps} steps is truncated=True"
            )
        if trunc != expected.truncated[episode]:
            when = f"at step {trunc[0]}" if trunc else f"never (in {steps + 3} steps)"
            return (
                f"episode {episode + 1} was truncated {when}; with max_steps={steps} it must "
                f"be truncated at step {steps}, counted from reset"
            )
        if r != expected.rewards[episode]:
            return f"episode {episode + 1} paid the rewards {list(r)}; every step pays 1.0"
    return "what your environment showed differs from the reference's"


# ------------------------------------------------------------------------ planted bugs


class _TerminatesAtLimit(ConstantRewardEnv):
    def step(self, action):
        obs, reward, _, cut, info = super().step(action)
        return obs, reward, cut, False, info  # the time limit reported as an end


class _BothFlagsAtLimit(ConstantRewardEnv):
    def step(self, action):
        obs, reward, _, cut, info = super().step(action)
        return obs, reward, cut, cut, info


class _LastStepPaysNothing(ConstantRewardEnv):
    def step(self, action):
        obs, reward, term, cut, info = super().step(action)
        return obs, 0.0 if cut else reward, term, cut, info


class _TimeInObservation(ConstantRewardEnv):
    def step(self, action):
        obs, reward, term, cut, info = super().step(action)
        return np.full(1, self._steps / self.max_steps, np.float32), reward, term, cut, info


class _DiscreteObservations(ConstantRewardEnv):
    def __init__(self, max_steps: int = 20, n_actions: int = 2):
        super().__init__(max_steps, n_actions)
        self.observation_space = gym.spaces.Discrete(1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        _, reward, term, cut, info = super().step(action)
        return 0, reward, term, cut, info


class _OneStepLate(ConstantRewardEnv):
    def step(self, action):
        obs, reward, term, _, info = super().step(action)
        return obs, reward, term, self._steps > self.max_steps, info


class _CountNotReset(ConstantRewardEnv):
    def reset(self, *, seed=None, options=None):
        steps = self._steps
        out = super().reset(seed=seed)
        self._steps = steps  # the step count carries over into the next episode
        return out


PROBE_ENV = Exercise(
    name="probe_env",
    reference=_played(ConstantRewardEnv),
    make_case=_probe_case,
    compare=_compare,
    answer_name="environment",
    reference_path="rldebug.checkers.ch03_probe.ConstantRewardEnv",
    bugs=[
        PlantedBug(
            "the time limit is reported as termination",
            _played(_TerminatesAtLimit),
            "The task never ends: terminated stays False; the cut is truncated=True.",
        ),
        PlantedBug(
            "both flags are set at the time limit",
            _played(_BothFlagsAtLimit),
            "terminated=True says 'no future': a time limit leaves the future intact.",
        ),
        PlantedBug("the last step pays no reward", _played(_LastStepPaysNothing), ""),
        PlantedBug(
            "the observation shows the time",
            _played(_TimeInObservation),
            "With the time in the observation the probe no longer tests the time limit: "
            "return the same observation at every step.",
        ),
        PlantedBug(
            "the observation space is not a Box of shape (1,)",
            _played(_DiscreteObservations),
            "A network takes a vector: gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32).",
        ),
        PlantedBug(
            "the episode is cut one step late",
            _played(_OneStepLate),
            "Count the steps and truncate on step max_steps itself (steps >= max_steps).",
        ),
        PlantedBug(
            "reset() does not restart the step count",
            _played(_CountNotReset),
            "reset() starts a new episode: set the step counter back to 0.",
        ),
    ],
)


def check_probe_env(env_class: Any, *, seed: int | None = None) -> None:
    """Check a reader's ``ConstantRewardEnv`` (the class, or any ``f(max_steps)`` -> Env)."""
    if not callable(env_class):
        raise TypeError(
            "check_probe_env expects your environment class itself (for example "
            f"`check_probe_env(ConstantRewardEnv)`), got {env_class!r:.80}"
        )
    PROBE_ENV.check(_played(env_class), seed=seed)


def probe_env_or_reference(env_class: Any) -> Any:
    """``env_class`` if it passes the check, else the reference class with a visible note."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check_probe_env(env_class)
    except (CheckFailed, TypeError) as err:
        print(
            f"note: {str(err).splitlines()[0]}\n      The rest of this chapter uses "
            f"{PROBE_ENV.reference_path} instead."
        )
        return ConstantRewardEnv
    print("Using your ConstantRewardEnv for the rest of this chapter.")
    return env_class
