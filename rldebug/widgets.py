"""Interactive widgets. Each has a static twin in ``rldebug.plots`` for the online book."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt

from rldebug.plots import returns_figure


def returns_explorer(rewards: Sequence[float], dones: Sequence[bool] | None = None):
    """A slider for gamma and a checkbox for episode boundaries, redrawing G_t."""
    import ipywidgets as widgets

    def draw(gamma: float = 0.9, use_boundaries: bool = True):
        fig = returns_figure(
            rewards,
            dones if use_boundaries else None,
            gammas=(gamma,),
            title=f"γ = {gamma:.2f}, boundaries {'on' if use_boundaries else 'off'}",
        )
        plt.show()
        plt.close(fig)

    return widgets.interactive(
        draw,
        gamma=widgets.FloatSlider(value=0.9, min=0.0, max=1.0, step=0.01, description="γ"),
        use_boundaries=widgets.Checkbox(value=True, description="episode boundaries"),
    )
