"""Entry points of the registered ids and their registration with gymnasium."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from sineroad.core import DEFAULTS
from sineroad.env import SineRoadEnv
from sineroad.vector import SineRoadVectorEnv
from sineroad.wrappers import FlickerObservation, MaskObservation, MaskVectorObservation

__all__ = ["ENV_IDS", "make_vec", "register_envs"]

#: Every id registered by ``import sineroad``.
ENV_IDS = ("SineRoad-v0", "SineRoadPartial-v0", "SineRoadFlicker-v0", "CartPoleNoVel-v1")

_PARTIAL = {"observe": "offset", "random_road": True}
_MAX_STEPS = DEFAULTS["max_episode_steps"]


# ``gymnasium.make`` adds a TimeLimit wrapper from the spec's ``max_episode_steps`` and never
# passes that argument on, so the single environments it builds switch their own limit off:
# one limit, which ``gymnasium.make(id, max_episode_steps=n)`` changes.
def make_sineroad(**kwargs: Any) -> SineRoadEnv:
    """Entry point of ``SineRoad-v0`` (used by ``gymnasium.make``)."""
    return SineRoadEnv(**{**kwargs, "max_episode_steps": None})


def make_sineroad_partial(**kwargs: Any) -> SineRoadEnv:
    """Entry point of ``SineRoadPartial-v0`` (used by ``gymnasium.make``)."""
    return SineRoadEnv(**{**_PARTIAL, **kwargs, "max_episode_steps": None})


def make_sineroad_flicker(flicker_prob: float = 0.5, **kwargs: Any) -> FlickerObservation:
    """Entry point of ``SineRoadFlicker-v0`` (used by ``gymnasium.make``)."""
    return FlickerObservation(make_sineroad_partial(**kwargs), p=flicker_prob)


def make_sineroad_vec(num_envs: int = 1, **kwargs: Any) -> SineRoadVectorEnv:
    """Vector entry point of ``SineRoad-v0`` (used by ``gymnasium.make_vec``)."""
    return SineRoadVectorEnv(num_envs=num_envs, **kwargs)


def make_sineroad_partial_vec(num_envs: int = 1, **kwargs: Any) -> SineRoadVectorEnv:
    """Vector entry point of ``SineRoadPartial-v0`` (used by ``gymnasium.make_vec``)."""
    return SineRoadVectorEnv(num_envs=num_envs, **{**_PARTIAL, **kwargs})


def make_sineroad_flicker_vec(
    num_envs: int = 1, flicker_prob: float = 0.5, **kwargs: Any
) -> SineRoadVectorEnv:
    """Vector entry point of ``SineRoadFlicker-v0`` (used by ``gymnasium.make_vec``)."""
    return SineRoadVectorEnv(num_envs=num_envs, flicker_prob=flicker_prob, **{**_PARTIAL, **kwargs})


def make_cartpole_novel(**kwargs: Any) -> MaskObservation:
    """Entry point of ``CartPoleNoVel-v1``: CartPole-v1 observing only position and angle."""
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    return MaskObservation(CartPoleEnv(**kwargs), indices=[0, 2])


def make_cartpole_novel_vec(num_envs: int = 1, **kwargs: Any) -> MaskVectorObservation:
    """Vector entry point of ``CartPoleNoVel-v1``: gymnasium's numpy CartPole vector env,
    observing position and angle (next-step autoreset, truncation at 500 steps kept apart)."""
    from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv

    return MaskVectorObservation(CartPoleVectorEnv(num_envs=num_envs, **kwargs), indices=[0, 2])


for _fn in (make_sineroad, make_sineroad_partial, make_sineroad_flicker):
    _fn.metadata = SineRoadEnv.metadata


def make_vec(env_id: str, num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``env_id`` stepped together: the env's own numpy vector env
    where it has one (every id of :data:`ENV_IDS`, CartPole-v1), else ``SyncVectorEnv``.

    Agents build their environments here, never themselves. Autoreset is on the next step;
    ``terminated`` and ``truncated`` come back apart, as gymnasium returns them.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    spec = gym.spec(env_id)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)


def register_envs() -> None:
    """Register :data:`ENV_IDS` with gymnasium (does nothing for ids already registered)."""
    module = __name__
    specs = {
        "SineRoad-v0": dict(
            entry_point=f"{module}:make_sineroad",
            vector_entry_point=f"{module}:make_sineroad_vec",
            max_episode_steps=_MAX_STEPS,
            reward_threshold=0.9 * _MAX_STEPS,
        ),
        "SineRoadPartial-v0": dict(
            entry_point=f"{module}:make_sineroad_partial",
            vector_entry_point=f"{module}:make_sineroad_partial_vec",
            max_episode_steps=_MAX_STEPS,
        ),
        "SineRoadFlicker-v0": dict(
            entry_point=f"{module}:make_sineroad_flicker",
            vector_entry_point=f"{module}:make_sineroad_flicker_vec",
            max_episode_steps=_MAX_STEPS,
        ),
        "CartPoleNoVel-v1": dict(
            entry_point=f"{module}:make_cartpole_novel",
            vector_entry_point=f"{module}:make_cartpole_novel_vec",
            max_episode_steps=500,
            reward_threshold=475.0,
        ),
    }
    for env_id, spec in specs.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, **spec)
