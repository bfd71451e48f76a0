"""Sine-road car environments for "Why Isn't My Agent Learning?".

``import sineroad`` registers :data:`ENV_IDS` with gymnasium, and
``gymnasium.make("sineroad:SineRoad-v0")`` works without importing it first.
"""

from sineroad.core import DEFAULTS, RoadConfig, road_centre, road_reward, wall_clamp
from sineroad.env import SineRoadEnv
from sineroad.registration import ENV_IDS, make_vec, register_envs
from sineroad.vector import SineRoadVectorEnv
from sineroad.wrappers import (
    FlickerObservation,
    MaskObservation,
    MaskVectorObservation,
    OneHotObservation,
    PixelObservation,
    PrevActionRewardObservation,
)

register_envs()

__all__ = [
    "DEFAULTS",
    "ENV_IDS",
    "FlickerObservation",
    "MaskObservation",
    "MaskVectorObservation",
    "OneHotObservation",
    "PixelObservation",
    "PrevActionRewardObservation",
    "RoadConfig",
    "make_vec",
    "SineRoadEnv",
    "SineRoadVectorEnv",
    "road_centre",
    "road_reward",
    "wall_clamp",
]
