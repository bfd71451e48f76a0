"""Drive the sine-road car yourself: a small ipywidgets game and the logic behind it.

:class:`RoadDriver` holds the game (an environment, the running reward) and needs no widget
library, so it can be tested and scripted; :func:`drive_widget` puts buttons on top of it.
The online book cannot run Python: show an episode with :mod:`sineroad.animation` there.

```python
from rldebug.widgets_road import drive_widget

drive_widget("SineRoad-v0", seed=0)   # in Jupyter or Colab: click up / stay / down
```
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import sineroad  # noqa: F401  (registers the sine-road ids with gymnasium)

__all__ = ["RoadDriver", "drive_widget", "frame_png"]

#: Button labels in action order: 0 = down, 1 = stay, 2 = up.
ACTION_LABELS = ("▼ down", "■ stay", "▲ up")


def frame_png(frame: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` ``uint8`` frame as PNG bytes (for an ``ipywidgets.Image``)."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(
            f"frame must be an (H, W, 3) uint8 array, got shape {frame.shape} and dtype "
            f"{frame.dtype}"
        )
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, frame, format="png")
    return buffer.getvalue()


@dataclass
class RoadDriver:
    """One player's game on a sine road: ``reset()``, then ``press(action)`` per step.

    Keeps the rewards of the current episode. After the episode ends (200 steps by
    default), ``press`` raises until ``reset()`` starts a new one.
    """

    env_id: str = "SineRoad-v0"
    seed: int | None = 0
    env_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.env = gym.make(self.env_id, render_mode="rgb_array", **self.env_kwargs)
        self.episode = -1
        self.reset()

    def reset(self) -> np.ndarray:
        """Start a new episode (seed ``seed + episode number``); return its first frame."""
        self.episode += 1
        seed = None if self.seed is None else self.seed + self.episode
        self.obs, _ = self.env.reset(seed=seed)
        self.rewards: list[float] = []
        self.done = False
        return self.frame()

    def frame(self) -> np.ndarray:
        return self.env.render()

    @property
    def total(self) -> float:
        """Return of the current episode so far."""
        return float(sum(self.rewards))

    def press(self, action: int) -> tuple[np.ndarray, float]:
        """Take ``action`` (0 = down, 1 = stay, 2 = up); return the new frame and the reward."""
        if self.done:
            raise RuntimeError("the episode is over: call reset() to drive again")
        if action not in (0, 1, 2):
            raise ValueError(f"action must be 0 (down), 1 (stay) or 2 (up), got {action!r}")
        self.obs, reward, terminated, truncated, _ = self.env.step(int(action))
        self.rewards.append(float(reward))
        self.done = bool(terminated or truncated)
        return self.frame(), float(reward)

    def status(self) -> str:
        """One line for the player: step, last reward, return so far."""
        last = f"{self.rewards[-1]:+.0f}" if self.rewards else "-"
        text = (
            f"step {len(self.rewards)}  |  last reward {last}  |  return {self.total:+.0f}"
            f"  |  observation {np.array2string(np.asarray(self.obs), precision=2)}"
        )
        return text + ("  |  episode over: press reset" if self.done else "")


def drive_widget(env_id: str = "SineRoad-v0", seed: int | None = 0, **env_kwargs):
    """An ipywidgets game: the road, the car, up / stay / down buttons and the running reward.

    Returns the widget (display it as the last expression of a cell). ``widget.driver`` is
    the :class:`RoadDriver` behind it.
    """
    import ipywidgets as widgets

    driver = RoadDriver(env_id, seed, env_kwargs)
    image = widgets.Image(value=frame_png(driver.frame()), format="png", width=400)
    label = widgets.Label(value=driver.status())

    def refresh(frame):
        image.value = frame_png(frame)
        label.value = driver.status()

    def on_action(action):
        def handler(_button):
            if not driver.done:
                frame, _ = driver.press(action)
                refresh(frame)

        return handler

    buttons = []
    for action, text in enumerate(ACTION_LABELS):
        button = widgets.Button(description=text, layout=widgets.Layout(width="90px"))
        button.on_click(on_action(action))
        buttons.append(button)
    reset = widgets.Button(description="reset", button_style="warning")
    reset.on_click(lambda _button: refresh(driver.reset()))
    # Up on top, down at the bottom, as on the screen.
    pad = widgets.VBox([buttons[2], buttons[1], buttons[0]])
    box = widgets.VBox([widgets.HBox([image, pad]), widgets.HBox([reset, label])])
    box.driver = driver
    box.buttons = dict(zip(("down", "stay", "up"), buttons), reset=reset)
    box.label = label
    return box
