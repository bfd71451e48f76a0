"""The road-driving game of chapter 4: the driver's logic and the widget's buttons."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import sineroad  # noqa: F401

from rldebug.widgets_road import RoadDriver, drive_widget, frame_png


def test_driver_matches_the_environment():
    driver = RoadDriver("SineRoad-v0", seed=3)
    env = gym.make("SineRoad-v0")
    env.reset(seed=3)
    actions = [2, 1, 0, 0, 1, 2, 2, 1]
    for a in actions:
        frame, reward = driver.press(a)
        _, expected, *_ = env.step(a)
        assert reward == expected
        assert frame.shape == (200, 400, 3) and frame.dtype == np.uint8
    assert len(driver.rewards) == len(actions)
    assert "step 8" in driver.status()


def test_driver_episode_end_and_reset():
    driver = RoadDriver("SineRoadPartial-v0", seed=0, env_kwargs={"max_episode_steps": 3})
    for _ in range(3):
        driver.press(1)
    assert driver.done and "episode over" in driver.status()
    with pytest.raises(RuntimeError, match="reset"):
        driver.press(1)
    driver.reset()
    assert driver.rewards == [] and not driver.done and driver.episode == 1


def test_driver_rejects_bad_action():
    with pytest.raises(ValueError, match="0 \\(down\\)"):
        RoadDriver().press(3)


def test_frame_png():
    png = frame_png(np.zeros((4, 5, 3), dtype=np.uint8))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="uint8"):
        frame_png(np.zeros((4, 5, 3)))


def test_widget_buttons_step_the_game():
    pytest.importorskip("ipywidgets")
    widget = drive_widget("SineRoad-v0", seed=0)
    first = widget.children[0].children[0].value
    widget.buttons["up"].click()
    widget.buttons["down"].click()
    assert len(widget.driver.rewards) == 2
    assert widget.label.value.startswith("step 2")
    assert widget.children[0].children[0].value != first
    widget.buttons["reset"].click()
    assert widget.label.value.startswith("step 0")
