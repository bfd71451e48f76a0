"""The DQN diagnostics dashboard: six panels that show what a learning curve hides.

* **episode return**: training episodes (epsilon-greedy) and greedy evaluations;
* **loss**: low loss only means Q agrees with its own targets, not that Q is right;
* **value vs observed return**: mean max_a Q(s, a) against the discounted return the agent
  actually collected; a predicted value far above the observed one is overestimation, a
  value stuck far below it means the targets do not propagate;
* **TD error**, **gradient norm** (before clipping) and **epsilon**.

``Dashboard`` is a ``callback`` for :func:`rldebug.agents.dqn.train` that redraws one figure
in place while it trains (Jupyter: an ``IPython.display`` handle); :func:`plot_dashboard`
draws the same figure once, for finished runs (several runs overlay, labelled). A DQN
``Result`` of several seeds draws one line per seed (its curves carry a seed axis).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from rldebug.integrations import is_sb3_model

__all__ = ["Dashboard", "plot_dashboard", "PANELS"]

PANELS = ("episode return", "loss", "value vs observed return", "TD error", "grad norm", "epsilon")
# Three rows of two panels fill the book's text column (rldebug.plots.COLUMN_INCHES) with
# readable labels; the panels are read left to right, top to bottom.
GRID = (3, 2)
FIGSIZE = (6.8, 7.6)


def _smooth(y: Sequence[float], k: int = 10) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if len(y) < 2 or k <= 1:
        return y
    k = min(k, len(y))
    c = np.cumsum(np.insert(y, 0, 0.0))
    head = c[1:k] / np.arange(1, k)  # growing window at the start
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def _draw(axes, runs: Mapping[str, Any]) -> None:
    for ax in axes.flat:
        ax.clear()
    ax_ret, ax_loss, ax_q, ax_td, ax_grad, ax_eps = axes.flat
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, r) in enumerate(runs.items()):
        c = colors[i % len(colors)]
        tag = f"{label}: " if label else ""
        if len(r.episode_returns):
            ax_ret.plot(r.episode_steps, r.episode_returns, color=c, alpha=0.15, lw=0.8)
            ax_ret.plot(r.episode_steps, _smooth(r.episode_returns), color=c, lw=1,
                        label=f"{tag}training (smoothed)")  # fmt: skip
        if len(r.eval_returns):
            ax_ret.plot(r.eval_steps, r.eval_returns, "o--", color=c, ms=3, lw=1,
                        label=f"{tag}greedy eval")  # fmt: skip
        ax_loss.plot(r.steps, r.losses, color=c, label=label or None)
        ax_q.plot(r.steps, r.mean_max_q, color=c, label=f"{tag}mean max Q (replay)")
        if len(r.episode_discounted_returns):
            ax_q.plot(r.episode_steps, _smooth(r.episode_discounted_returns, 20), ":", color=c,
                      label=f"{tag}observed discounted return")  # fmt: skip
        if len(r.eval_q0):
            ax_q.plot(r.eval_steps, r.eval_q0, "^", color=c, ms=4, label=f"{tag}Q(s0), greedy")
            ax_q.plot(r.eval_steps, r.eval_g0, "v", color=c, ms=4, mfc="none",
                      label=f"{tag}observed G0, greedy")  # fmt: skip
        ax_td.plot(r.steps, r.td_errors, color=c)
        ax_grad.plot(r.steps, r.grad_norms, color=c)
        ax_eps.plot(r.steps, r.epsilons, color=c)
        clip = getattr(r.config, "max_grad_norm", None)
        if clip is not None and i == 0:
            ax_grad.axhline(clip, ls="--", lw=0.8, color="0.4")
    for ax, title in zip(axes.flat, PANELS):
        ax.set_title(title)
        ax.set_xlabel("environment steps")
    ax_loss.set_yscale("symlog", linthresh=1e-3)
    ax_grad.set_yscale("symlog", linthresh=1e-2)
    ax_ret.legend(loc="upper left")
    ax_q.legend(loc="upper left")
    if len(runs) > 1:
        ax_loss.legend()


def _seed_runs(result: Any, label: str = "") -> dict[str, Any]:
    """{label: curves} for each seed of a DQN Result (curves with a seed axis); other
    histories (an SB3 ``DQNDashboard``'s) are one run already."""
    if not hasattr(result, "run"):
        return {label: result}
    if len(result.seeds) == 1:
        return {label: result.run(result.seeds[0])}
    tag = f"{label}, " if label else ""
    return {f"{tag}seed {s}": result.run(s) for s in result.seeds}


def plot_dashboard(results: Any, title: str = "", figsize=FIGSIZE):
    """Draw the dashboard of one finished run, or overlay several.

    ``results`` is a :class:`~rldebug.agents.dqn.Result` (one line per seed), a list of
    them, a dict ``{label: result}``, or the ``history`` of an SB3 ``DQNDashboard``.
    Returns the matplotlib Figure.
    """
    if is_sb3_model(results):
        raise TypeError(
            f"a stable-baselines3 {type(results).__name__} keeps no training history: train it "
            "with callback=rldebug.integrations.sb3.DQNDashboard() and pass the callback's "
            ".history to plot_dashboard"
        )
    if isinstance(results, Mapping):
        runs = {}
        for label, r in results.items():
            runs.update(_seed_runs(r, label))
    elif isinstance(results, (list, tuple)):
        runs = {}
        for i, r in enumerate(results):
            runs.update(_seed_runs(r, f"run {i}"))
    else:
        runs = _seed_runs(results)
    fig, axes = plt.subplots(*GRID, figsize=figsize)
    _draw(axes, runs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class Dashboard:
    """A live dashboard: pass it as ``train(..., callback=Dashboard())``.

    In Jupyter the figure is shown once and redrawn in place every ``every`` calls (the
    trainer calls it at each logged point); elsewhere it only keeps the latest figure,
    available as ``dashboard.figure``.
    """

    def __init__(self, title: str = "", every: int = 4, figsize=FIGSIZE, label: str = ""):
        self.title = title
        self.every = max(1, int(every))
        self.label = label
        self.figure, self.axes = plt.subplots(*GRID, figsize=figsize)
        plt.close(self.figure)  # drawn through the display handle, not by pyplot
        self._handle = None
        self._calls = 0

    def __call__(self, result: Any, *sb3_globals: Any) -> None:
        if sb3_globals or isinstance(result, dict):  # called as an SB3 callback(locals, globals)
            raise TypeError(
                "Dashboard is a callback for rldebug's own dqn.train; for a stable-baselines3 "
                "model use model.learn(..., callback=rldebug.integrations.sb3.DQNDashboard())"
            )
        self._calls += 1
        if hasattr(result, "run"):  # a DQN Result: finished once it has final returns
            finished = len(result.final_return) > 0
        else:
            finished = result.final_eval is not None
        if self._calls % self.every and not finished:
            return
        _draw(self.axes, _seed_runs(result, self.label))
        if self.title:
            self.figure.suptitle(self.title)
        self.figure.tight_layout()
        self._show()

    def _show(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # plain Python: nothing to show
            return
        if get_ipython() is None:
            return
        if self._handle is None:
            self._handle = display(self.figure, display_id=True)
        else:
            self._handle.update(self.figure)
