"""Checkers for chapter 4, "The sine-road car".

The reader writes the last part of the environment's step: given where the car ended up
after its move and where the road's centre is now, put a car that went through a wall
back onto the wall and return the reward. The reference is the environment's own
arithmetic, :func:`sineroad.wall_clamp` followed by :func:`sineroad.road_reward`.
"""

from __future__ import annotations

import numpy as np
from sineroad import road_reward, wall_clamp

from rldebug.checking import Exercise, PlantedBug, type_phrase

__all__ = ["EXERCISES", "ROAD_STEP", "check_road_step", "road_step_reference"]

BAND_REWARD, OFF_BAND_REWARD, WALL_REWARD = 1.0, -1.0, -3.0


def road_step_reference(y, centre, band_half_width=0.15, wall_half_width=0.6):
    """``(reward, y)`` after a move, exactly as :class:`sineroad.SineRoadEnv` computes them.

    ``y`` is the car's lateral position after its move, ``centre`` the road's centre at the
    new time step. A car farther than ``wall_half_width`` from the centre hit a wall: it is
    put back onto that wall and gets the wall reward.
    """
    offset, hit = wall_clamp(float(y) - float(centre), wall_half_width)
    reward = road_reward(offset, hit, band_half_width, BAND_REWARD, OFF_BAND_REWARD, WALL_REWARD)
    return reward, float(centre) + offset


def _make_case(rng: np.random.Generator) -> dict:
    band = float(rng.uniform(0.1, 0.3))
    wall = float(band + rng.uniform(0.2, 0.7))
    centre = float(rng.uniform(-1.0, 1.0))
    # A third of the cases in the band, a third between band and wall, a third past a wall.
    kind = int(rng.integers(3))
    low, high = [(0.0, band), (band, wall), (wall, wall + 0.4)][kind]
    magnitude = float(rng.uniform(low, high))
    if magnitude in (band, wall):  # keep away from the exact edges, which real states never hit
        magnitude += 1e-6
    offset = magnitude * float(rng.choice([-1.0, 1.0]))
    if kind == 2:  # past the wall on the side away from y = 0, so that |y| > W too
        centre = float(np.copysign(rng.uniform(0.2, 1.0), offset))
    return {
        "y": round(centre + offset, 6),
        "centre": round(centre, 6),
        "band_half_width": round(band, 4),
        "wall_half_width": round(wall, 4),
    }


def _no_wall_penalty(y, centre, band_half_width=0.15, wall_half_width=0.6):
    offset = float(y) - float(centre)
    offset = min(max(offset, -wall_half_width), wall_half_width)
    reward = BAND_REWARD if abs(offset) <= band_half_width else OFF_BAND_REWARD
    return reward, float(centre) + offset


def _wall_penalty_on_top(y, centre, band_half_width=0.15, wall_half_width=0.6):
    offset = float(y) - float(centre)
    reward = BAND_REWARD if abs(offset) <= band_half_width else OFF_BAND_REWARD
    if abs(offset) > wall_half_width:
        reward += WALL_REWARD  # -1 and -3: -4
        offset = min(max(offset, -wall_half_width), wall_half_width)
    return reward, float(centre) + offset


def _signed_offset(y, centre, band_half_width=0.15, wall_half_width=0.6):
    offset = float(y) - float(centre)
    if abs(offset) > wall_half_width:
        offset = min(max(offset, -wall_half_width), wall_half_width)
        return WALL_REWARD, float(centre) + offset
    reward = BAND_REWARD if offset <= band_half_width else OFF_BAND_REWARD
    return reward, float(centre) + offset


def _not_clamped(y, centre, band_half_width=0.15, wall_half_width=0.6):
    offset = float(y) - float(centre)
    if abs(offset) > wall_half_width:
        return WALL_REWARD, float(y)
    reward = BAND_REWARD if abs(offset) <= band_half_width else OFF_BAND_REWARD
    return reward, float(y)


def _walls_around_zero(y, centre, band_half_width=0.15, wall_half_width=0.6):
    offset = float(y) - float(centre)
    if abs(offset) > wall_half_width:
        return WALL_REWARD, min(max(float(y), -wall_half_width), wall_half_width)
    reward = BAND_REWARD if abs(offset) <= band_half_width else OFF_BAND_REWARD
    return reward, float(y)


def _compare(got, expected) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"road_step should return a pair (reward, y), got {type(got).__name__}" + (
            f" of length {len(got)}" if isinstance(got, (tuple, list)) else f": {got!r:.60}"
        )
    for name, g, e in zip(("reward", "y"), got, expected):
        try:
            g = float(np.asarray(g, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            return f"your {name} is {type_phrase(g)}, not a number"
        if not np.isclose(g, e, rtol=1e-6, atol=1e-6):
            return f"your {name} is {g:.6g}, the environment's is {e:.6g}"
    return None


def _explain(case, got, expected) -> str:
    offset = case["y"] - case["centre"]
    if abs(offset) > case["wall_half_width"]:
        where = "past a wall"
    elif abs(offset) > case["band_half_width"]:
        where = "between the band and a wall"
    else:
        where = "inside the middle band"
    return (
        f"The car ended {where} (offset y - centre = {offset:+.4f}). Compute the offset "
        "from the road's centre, clamp it to [-W, W], then pick the reward."
    )


ROAD_STEP = Exercise(
    name="road_step",
    reference=road_step_reference,
    make_case=_make_case,
    compare=_compare,
    explain=_explain,
    n_cases=30,
    reference_path="sineroad.wall_clamp + sineroad.road_reward",
    bugs=[
        PlantedBug(
            "the wall penalty is never given",
            _no_wall_penalty,
            "A car that went past a wall gets the wall reward (-3), not the off-band -1.",
        ),
        PlantedBug(
            "the wall penalty is added on top of the off-band reward",
            _wall_penalty_on_top,
            "Hitting the wall gives -3 instead of the other rewards, not -1 + -3 = -4.",
        ),
        PlantedBug(
            "the band test uses the signed offset instead of |offset|",
            _signed_offset,
            "A car far below the centre has offset < -w <= w: test abs(offset) <= w.",
        ),
        PlantedBug(
            "the car is not clamped onto the wall",
            _not_clamped,
            "After a hit, put the car back at centre +- W, or it drives through the wall.",
        ),
        PlantedBug(
            "the walls are placed around y = 0 instead of around the road's centre",
            _walls_around_zero,
            "Clamp the offset y - centre to [-W, W], then return centre + offset.",
        ),
    ],
)

EXERCISES = [ROAD_STEP]


def check_road_step(fn, *, seed=None):
    """Check a reader's ``road_step(y, centre, band_half_width, wall_half_width)``."""
    ROAD_STEP.check(fn, seed=seed)
