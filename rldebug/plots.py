"""Plots shared by the chapters. Every function returns the matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from rldebug.returns import discounted_returns


def returns_figure(
    rewards: Sequence[float],
    dones: Sequence[bool] | None = None,
    gammas: Sequence[float] = (0.0, 0.5, 0.9, 0.99),
    title: str = "Discounted returns",
):
    """Rewards as bars, the discounted return G_t for several gammas as lines."""
    rewards = np.asarray(rewards, dtype=float)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    steps = np.arange(len(rewards))
    ax.bar(steps, rewards, color="0.8", label="reward $r_t$")
    for gamma in gammas:
        ax.plot(
            steps, discounted_returns(rewards, gamma, dones), marker=".", label=f"$G_t$, γ={gamma}"
        )
    if dones is not None:
        for t in np.flatnonzero(np.asarray(dones)):
            ax.axvline(t + 0.5, color="k", ls="--", lw=1)
    ax.set_xlabel("step t (dashed line: episode boundary)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def band_plot(
    curves: Mapping[str, np.ndarray | tuple[np.ndarray, np.ndarray]],
    x: np.ndarray | None = None,
    *,
    xlabel: str = "environment steps",
    ylabel: str = "return",
    title: str = "",
    hlines: Mapping[str, float] | None = None,
    ax=None,
):
    """Mean curve with a min-max band over seeds, one entry per label.

    ``curves[label]`` has shape (n_seeds, n_points), drawn against ``x``; or it is a pair
    ``(x_label, values)`` for curves evaluated at their own steps (two libraries compared).
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.6))
    else:
        fig = ax.figure
    for label, values in curves.items():
        xs = x
        if isinstance(values, tuple):
            xs, values = values
        values = np.asarray(values, dtype=float)
        if values.ndim != 2:
            raise ValueError(f"curves[{label!r}] must be (n_seeds, n_points), got {values.shape}")
        xs = np.arange(values.shape[1]) if xs is None else np.asarray(xs)
        mean = values.mean(axis=0)
        (line,) = ax.plot(xs, mean, label=f"{label} (n={values.shape[0]})")
        ax.fill_between(
            xs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2
        )
    for label, value in (hlines or {}).items():
        ax.axhline(value, ls="--", lw=1, color="0.3")
        ax.annotate(label, (ax.get_xlim()[0], value), fontsize=8, va="bottom")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
