"""Plots shared by the chapters, and the book's figure style.

Every plotting function returns the matplotlib Figure. ``use_book_style()`` (called once at
the top of each chapter) makes every figure, the chapter's own and the library's, fit the
book's text column with text that stays readable there.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import matplotlib as mpl
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
    ax.legend(loc="upper left", ncol=2)
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
    # Reference lines are named in the legend: a label written on the plot gets clipped when
    # the line lies near the edge of the axes.
    for (label, value), style in zip((hlines or {}).items(), _REFERENCE_STYLES):
        ax.axhline(value, ls=style, lw=1, color="0.3", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


_REFERENCE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))

# The book's text column is 688 px wide on a laptop; figures are drawn for it at 100 dpi,
# so that they are shown at their natural size and 10 pt of text is 10 pt on the page.
COLUMN_INCHES = 6.8
MIN_FONT_POINTS = 10.0

BOOK_STYLE = {
    "figure.figsize": (COLUMN_INCHES, 3.4),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10.5,
    "axes.titlesize": 11,
    "axes.labelsize": 10.5,
    "xtick.labelsize": MIN_FONT_POINTS,
    "ytick.labelsize": MIN_FONT_POINTS,
    "legend.fontsize": MIN_FONT_POINTS,
    "figure.titlesize": 11.5,
    "legend.framealpha": 0.85,
}


def fit_to_column(fig, width: float = COLUMN_INCHES, min_font: float = MIN_FONT_POINTS):
    """Make ``fig`` at most ``width`` inches wide, with no text smaller than ``min_font``.

    A wider figure is scaled to the column (its height by the square root of the same
    factor, so that it keeps room for its labels) and laid out again. Returns ``fig``.
    """
    for text in fig.findobj(mpl.text.Text):
        if text.get_text() and text.get_fontsize() < min_font:
            text.set_fontsize(min_font)
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            labels = axis.get_ticklabels()
            if labels and labels[0].get_fontsize() < min_font:
                ax.tick_params(axis=name, which="both", labelsize=min_font)
    fig_width, fig_height = fig.get_size_inches()
    if fig_width > width:
        fig.set_size_inches(width, fig_height * math.sqrt(width / fig_width))
    if fig.get_layout_engine() is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "not compatible with tight_layout": keep as is
            fig.tight_layout()
    return fig


def use_book_style() -> None:
    """Draw every figure from here on in the book's style: column width, text >= 10 pt.

    Sets matplotlib's defaults (``BOOK_STYLE``) and, in Jupyter or Colab, passes each figure
    through ``fit_to_column`` before it is shown, so that a figure made wider or with smaller
    text (by a chapter or by you) still reads well in the book's column.
    """
    mpl.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    # matplotlib loads its backend at the first figure, and the inline backend registers its
    # figure formatters as it loads: load it now, so that there is something to wrap.
    plt.close(plt.figure())
    _wrap_figure_formatters(shell)
    # The inline backend registers its figure formatters after the cell that loaded it (and
    # again on `%matplotlib inline`), replacing ours: wrap them again after each cell.
    if not getattr(shell, "_rldebug_book_style", False):
        shell.events.register("post_run_cell", lambda *args: _wrap_figure_formatters(shell))
        shell._rldebug_book_style = True


def _wrap_figure_formatters(shell) -> None:
    from matplotlib.figure import Figure

    for mime in ("image/png", "image/svg+xml", "image/jpeg"):
        formatter = shell.display_formatter.formatters[mime]
        try:
            draw = formatter.lookup_by_type(Figure)
        except KeyError:
            continue
        if getattr(draw, "fits_column", False):
            continue

        def fitted(fig, _draw=draw):
            return _draw(fit_to_column(fig))

        fitted.fits_column = True
        formatter.for_type(Figure, fitted)
