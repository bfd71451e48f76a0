"""rldebug.show: the library's code as the book shows it, and the figure house style."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from rldebug.plots import COLUMN_INCHES, MIN_FONT_POINTS, fit_to_column  # noqa: E402
from rldebug.show import source_view  # noqa: E402


def sample(x, y=1):
    """Add two numbers.

    A second line of docstring.
    """
    total = x + y
    # region check
    if total < 0:
        raise ValueError("negative")
    # endregion
    return total


def test_whole_function_highlighted_without_markers():
    view = source_view(sample)
    assert view.code.startswith("def sample(x, y=1):")
    assert "# region" not in view.code and "# endregion" not in view.code
    html = view._repr_html_()
    assert "white-space:pre;" in html and "overflow-x:auto" in html  # never wraps
    assert "<details" in html and " open" in html  # short: shown unfolded
    assert "<span" in html  # highlighted
    assert view.title.endswith("test_show.sample")


def test_region_only():
    view = source_view(sample, region="check")
    assert view.code.splitlines() == [
        "if total < 0:",
        '    raise ValueError("negative")',
    ]


def test_unknown_region_names_the_regions_there_are():
    with pytest.raises(ValueError, match=r"no '# region nope'.*\['check'\]"):
        source_view(sample, region="nope")


def test_without_docstring_and_signature_only():
    assert '"""' not in source_view(sample, docstring=False).code
    header = source_view(sample, body=False).code
    assert header.splitlines()[0] == "def sample(x, y=1):"
    assert "A second line of docstring." in header and "total = x + y" not in header
    assert header.rstrip().endswith("...")


def test_long_sources_start_folded(monkeypatch):
    from rldebug import show

    monkeypatch.setattr(show, "FOLD_AFTER_LINES", 5)
    view = source_view(sample)
    assert view.folded and " open" not in view._repr_html_().split(">")[0]


def test_not_python_source_is_a_clear_error():
    with pytest.raises(TypeError, match="function, method or class"):
        source_view(len)


def test_fit_to_column_shrinks_wide_figures_and_raises_small_text():
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    axes[0].set_title("tiny", fontsize=6)
    axes[1].legend(handles=axes[1].plot([0, 1], label="a"), fontsize=7)
    axes[1].tick_params(labelsize=6)
    fit_to_column(fig)
    width, height = fig.get_size_inches()
    assert width == pytest.approx(COLUMN_INCHES) and 2.5 < height < 4
    assert axes[0].title.get_fontsize() >= MIN_FONT_POINTS
    assert axes[1].get_legend().get_texts()[0].get_fontsize() >= MIN_FONT_POINTS
    assert axes[1].xaxis.get_ticklabels()[0].get_fontsize() >= MIN_FONT_POINTS
    plt.close(fig)


def test_a_string_of_code_with_title_and_fold_choice():
    view = source_view("x = 1\n# region r\ny = 2\n# endregion\n", title="snippet", folded=True)
    assert view.code == "x = 1\ny = 2" and view.title == "snippet" and view.folded
    assert source_view("a = 1\n# region r\nb = 2\n# endregion", region="r").code == "b = 2"
