"""Episode animations for notebooks and static strips for the online book.

matplotlib and IPython are imported only when these functions are called.

```python
import gymnasium as gym
import sineroad
from sineroad.animation import animate_episode, episode_frames, episode_strip
from sineroad.controllers import MemoryController

env = gym.make("SineRoadFlicker-v0", render_mode="rgb_array")
frames = episode_frames(env, MemoryController(env), seed=0, max_steps=100)
animate_episode(frames, fps=20)      # an IPython HTML player, in a notebook
episode_strip(frames, n=6)           # a matplotlib Figure
```
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["animate_episode", "episode_frames", "episode_strip"]


def episode_frames(
    env: gym.Env,
    policy: Callable[[Any], Any] | Any,
    seed: int | None = None,
    max_steps: int = 200,
) -> list[np.ndarray]:
    """Play one episode and return its rendered frames (the first one after ``reset``).

    ``env`` must have ``render_mode="rgb_array"``. ``policy`` is either a callable
    ``obs -> action`` or an object with ``act(obs)`` (and optionally ``reset(seed)``), such as
    the controllers of :mod:`sineroad.controllers`. Stops at the end of the episode or after
    ``max_steps`` steps.
    """
    if env.render_mode != "rgb_array":
        raise ValueError(
            f"episode_frames needs render_mode='rgb_array', got render_mode={env.render_mode!r}"
        )
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps!r}")
    if hasattr(policy, "act"):
        act = policy.act
        if hasattr(policy, "reset"):
            policy.reset(seed=seed)
    elif callable(policy):
        act = policy
    else:
        raise TypeError(f"policy must be callable or have an act(obs) method, got {policy!r}")
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for _ in range(max_steps):
        obs, _, terminated, truncated, _ = env.step(act(obs))
        frames.append(env.render())
        if terminated or truncated:
            break
    return frames


def _check_frames(frames: Sequence[np.ndarray]) -> None:
    if len(frames) == 0:
        raise ValueError("frames is empty: nothing to show")


def animate_episode(
    frames: Sequence[np.ndarray],
    fps: int = 20,
    alt: str = "The car driving along the sine road, one frame per step.",
):
    """An ``IPython.display.HTML`` player of ``frames`` (matplotlib's ``to_jshtml``).

    ``alt`` describes the animation for readers who cannot see it (screen readers, a
    page that failed to load its images).
    """
    _check_frames(frames)
    if not isinstance(alt, str) or not alt.strip():
        raise ValueError("alt must be a non-empty description of the animation")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    height, width = frames[0].shape[:2]
    fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
    fig.subplots_adjust(0, 0, 1, 1)
    ax.set_axis_off()
    image = ax.imshow(frames[0])

    def update(k):
        image.set_data(frames[k])
        return (image,)

    animation = FuncAnimation(fig, update, frames=len(frames), interval=1000 / fps, blit=True)
    html = HTML(_offline_player(animation.to_jshtml(fps=fps), alt))
    plt.close(fig)
    return html


# matplotlib's player loads Font Awesome from a CDN for its button icons; the book must
# work offline, so the icons become plain characters and the stylesheet link goes.
_ICONS = {
    "fast-backward": "⏮",
    "step-backward": "◀|",
    "play": "▶",
    "pause": "❚❚",
    "stop": "■",
    "step-forward": "|▶",
    "fast-forward": "⏭",
    "minus": "−",
    "plus": "+",
}


def _offline_player(html: str, alt: str) -> str:
    # The player's <img> gets a description (html.escape: the text may hold quotes).
    html = re.sub(r"<img id=", lambda m: f'<img alt="{escape(alt)}" id=', html, count=1)
    html = re.sub(r'<link rel="stylesheet"[^>]*font-awesome[^>]*>', "", html)
    html = html.replace('<i class="fa fa-play fa-flip-horizontal"></i>', "◀")
    return re.sub(
        r'<i class="fa fa-([a-z-]+)"></i>',
        lambda m: _ICONS.get(m.group(1), m.group(1)),
        html,
    )


def episode_strip(frames: Sequence[np.ndarray], n: int = 6):
    """A matplotlib ``Figure`` of ``n`` frames evenly spaced over the episode, side by side."""
    _check_frames(frames)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    import matplotlib.pyplot as plt

    n = min(n, len(frames))
    picks = np.linspace(0, len(frames) - 1, n).round().astype(int)
    height, width = frames[0].shape[:2]
    fig, axes = plt.subplots(1, n, figsize=(2.5 * n, 2.5 * n * height / width / n + 0.4))
    axes = np.atleast_1d(axes)
    for ax, k in zip(axes, picks):
        ax.imshow(frames[k])
        ax.set_title(f"step {k}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig
