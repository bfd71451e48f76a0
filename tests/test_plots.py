"""rldebug.plots.band_plot: one shared x, or curves at their own steps."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rldebug.plots import band_plot  # noqa: E402


def test_band_plot_draws_mean_and_band_per_label():
    values = np.array([[0.0, 2.0, 4.0], [2.0, 4.0, 6.0]])  # (seeds, points)
    fig = band_plot({"a": values}, np.array([0, 10, 20]))
    (line,) = fig.axes[0].lines
    np.testing.assert_array_equal(line.get_xdata(), [0, 10, 20])
    np.testing.assert_array_equal(line.get_ydata(), [1.0, 3.0, 5.0])
    assert line.get_label() == "a (n=2)"
    plt.close(fig)


def test_band_plot_pairs_keep_their_own_steps():
    fig = band_plot(
        {
            "ours": (np.array([0, 5]), np.ones((3, 2))),
            "theirs": (np.array([0, 4, 8]), np.zeros((2, 3))),
        }
    )
    xs = [list(line.get_xdata()) for line in fig.axes[0].lines]
    assert xs == [[0, 5], [0, 4, 8]]
    plt.close(fig)


def test_band_plot_rejects_one_dimensional_curves():
    with pytest.raises(ValueError, match="n_seeds, n_points"):
        band_plot({"a": np.arange(3.0)})
