"""_ext/book_fixes.py: the Sphinx fixes the HTML book is built with (the browser tests see the
result; these check the pieces without a build)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "_ext"))
import book_fixes  # noqa: E402


def test_solution_markers_are_removed_with_their_lines():
    code = "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n"
    assert book_fixes.SOLUTION_MARKER.sub("", code) == "def f(x):\n    return x\n"


def test_bibliography_labels_read_like_the_citations():
    from pybtex.database import parse_file
    from pybtex.plugin import register_plugin

    register_plugin("pybtex.style.formatting", "authoryear", book_fixes._author_year_style())
    entries = parse_file(Path(__file__).resolve().parents[1] / "book" / "references.bib")
    style = book_fixes._author_year_style()()
    labels = {entry.key: entry.label for entry in style.format_entries(entries.entries.values())}
    assert labels["mnih2015human"] == "Mnih et al., 2015"
    assert labels["kingma2015adam"] == "Kingma and Ba, 2015"
    assert labels["williams1992simple"] == "Williams, 1992"


def test_mathjax_is_shipped_by_a_package():
    folder = book_fixes._mathjax_folder()
    assert (folder / book_fixes.MATHJAX_FILE.split("/", 1)[1]).exists()


def test_missing_mathjax_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(book_fixes, "MATHJAX_PACKAGE", "no-such-package-here")
    with pytest.raises(RuntimeError, match="pip install -r requirements.txt"):
        book_fixes._mathjax_folder()
