"""A small numpy rasteriser for the sine road (no pygame, no matplotlib).

It draws a window of time around the car: the road (grey), its middle band (lighter grey),
the walls (white), the centre line (dashed yellow), the car's recent path (pink) and the
car (red). Time runs from left to right, the lateral position from bottom to top.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sineroad.core import road_centre

__all__ = ["render_road", "resize_nearest"]

STEPS_BEHIND = 40
STEPS_AHEAD = 80

GRASS = (46, 110, 52)
ROAD = (88, 88, 92)
BAND = (128, 128, 134)
WALL = (240, 240, 240)
CENTRE = (235, 200, 60)
TRAIL = (240, 150, 150)
CAR = (220, 30, 40)


def render_road(
    width: int,
    height: int,
    t: int,
    y: float,
    amplitude: float,
    omega: float,
    phase: float,
    band_half_width: float,
    wall_half_width: float,
    trail: Sequence[tuple[int, float]] = (),
) -> np.ndarray:
    """Draw the road around time ``t`` with the car at lateral position ``y``.

    Returns a ``uint8`` array of shape ``(height, width, 3)``. ``trail`` holds earlier
    ``(time, y)`` positions of the car.
    """
    span = STEPS_BEHIND + STEPS_AHEAD
    times = t - STEPS_BEHIND + (np.arange(width) + 0.5) * (span / width)
    centre = road_centre(times, amplitude, omega, phase)[None, :]
    top = amplitude + wall_half_width + 0.25
    row_height = 2.0 * top / height
    values = (top - (np.arange(height) + 0.5) * row_height)[:, None]
    distance = np.abs(values - centre)

    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = GRASS
    image[distance <= wall_half_width] = ROAD
    image[distance <= band_half_width] = BAND
    image[np.abs(distance - wall_half_width) <= 1.0 * row_height] = WALL
    dashes = (np.floor(times / 2.0) % 2 == 0)[None, :]
    image[(distance <= 0.6 * row_height) & dashes] = CENTRE

    def to_col(time: float) -> int:
        return int((time - t + STEPS_BEHIND) * width / span)

    def to_row(value: float) -> int:
        return int((top - value) / row_height)

    for time, value in trail:
        col, row = to_col(time), to_row(value)
        image[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = TRAIL
    col, row = to_col(t), to_row(y)
    half_w, half_h = max(width // 60, 2), max(height // 40, 2)
    image[max(row - half_h, 0) : row + half_h + 1, max(col - half_w, 0) : col + half_w + 1] = CAR
    return image


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W, C)`` image to ``(height, width, C)``."""
    rows = (np.arange(height) * image.shape[0]) // height
    cols = (np.arange(width) * image.shape[1]) // width
    return image[rows[:, None], cols[None, :]]
