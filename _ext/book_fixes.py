"""Small Sphinx fixes for the book's HTML (loaded from _config.yml: sphinx.local_extensions).

* Inline scripts added after the builder starts (sphinx-thebe's ``const THEBE_JS_URL = ...``)
  are written twice by Sphinx 7.4, and the second copy throws "Identifier 'THEBE_JS_URL' has
  already been declared" in every page's console. Each script is kept once.
* Solution cells (nbgrader's ``### BEGIN SOLUTION`` / ``### END SOLUTION`` markers) are shown
  without their marker lines, behind a toggle that says "Show the solution".
* A heading inside a cell's output (``display(Markdown(...))``) stays a rubric, not an H1.
* A code cell tagged ``quiz-check`` (the executed check of a quiz answer) moves into the
  answer dropdown just before it, so that no answer is printed before its toggle is opened.
* The bibliography labels its entries as the text cites them ("Mnih et al., 2015"), not
  with pybtex's alpha labels ("MKS+15"): ``bibtex_default_style: authoryear``.
* MathJax is served from the book itself (sphinx-mathjax-offline ships it), so that a book
  opened without a network still renders its formulas.
"""

from __future__ import annotations

import re
from pathlib import Path

from docutils import nodes
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

SOLUTION_MARKER = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)
QUIZ_CHECK_TAG = "quiz-check"
MATHJAX_PACKAGE = "sphinx-mathjax-offline"  # a distribution whose import name has hyphens
MATHJAX_FILE = "mathjax/tex-chtml.js"


def _ancestors(node):
    while node.parent is not None:
        node = node.parent
        yield node


def _is_code_cell(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "cell_code"


class SolutionsAndQuizChecks(SphinxPostTransform):
    """Runs before myst-nb wraps hidden cells in their toggles (its priority is 199)."""

    default_priority = 190
    formats = ("html",)

    def run(self, **kwargs):
        # A heading printed by a cell (a benchmark table's title) is a rubric: shown as a
        # plain bold line, not as an <h1> to <h6> that competes with the chapter's own.
        for rubric in self.document.findall(nodes.rubric):
            if any(_is_code_cell(parent) for parent in _ancestors(rubric)):
                rubric.attributes.pop("level", None)  # myst-parser renders a level as <hN>
        for cell in list(self.document.findall(_is_code_cell)):
            metadata = cell.get("cell_metadata", {}) or {}
            if metadata.get("nbgrader", {}).get("solution") and cell.get("hide_mode"):
                self._strip_markers(cell)
                cell["prompt_show"] = "Show the solution"
                cell["prompt_hide"] = "Hide the solution"
            if QUIZ_CHECK_TAG in (metadata.get("tags") or []):
                self._into_answer(cell)

    @staticmethod
    def _strip_markers(cell) -> None:
        for block in cell.findall(nodes.literal_block):
            if block.parent.get("nb_element") != "cell_code_source":
                continue
            text = block.astext()
            cleaned = SOLUTION_MARKER.sub("", text)
            if cleaned != text:
                block.children = [nodes.Text(cleaned)]
                block.rawsource = cleaned

    def _into_answer(self, cell) -> None:
        parent = cell.parent
        index = parent.index(cell)
        for sibling in reversed(parent.children[:index]):
            dropdowns = [
                node
                for node in sibling.findall(nodes.admonition)
                if "dropdown" in node.get("classes", [])
            ]
            if dropdowns:
                parent.remove(cell)
                dropdowns[-1].append(cell)
                return
            if _is_code_cell(sibling):
                break
        logger.warning(
            f"a cell tagged {QUIZ_CHECK_TAG!r} must follow an answer dropdown "
            "(':class: dropdown') with no code cell between them; it stays in plain view",
            location=cell,
        )


def _unique_scripts(app, pagename, templatename, context, doctree):
    seen = set()
    unique = []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (
            getattr(script, "filename", None) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def _mathjax_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.origin:
        raise RuntimeError(
            f"{MATHJAX_PACKAGE} is not installed: `pip install -r requirements.txt` "
            "(it ships the MathJax that the book serves itself)"
        )
    return Path(spec.origin).parent / "static" / "mathjax"


def _local_mathjax(app, config) -> None:
    _mathjax_folder()  # fail early, with the fix, when the package is missing
    config.mathjax_path = MATHJAX_FILE


def _copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        from sphinx.util.fileutil import copy_asset

        copy_asset(str(_mathjax_folder()), str(Path(app.outdir) / "_static" / "mathjax"))


def _surname(person) -> str:
    return " ".join(person.prelast_names + person.last_names)


def _author_year_style():
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [_surname(person) for person in people]
                if len(names) > 2:
                    who = f"{names[0]} et al."
                else:
                    who = " and ".join(names) or entry.key
                yield f"{who}, {entry.fields.get('year', 'n.d.')}"

    class AuthorYearStyle(UnsrtStyle):
        default_label_style = AuthorYearLabels
        default_sorting_style = "author_year_title"

    return AuthorYearStyle


def setup(app):
    from pybtex.plugin import register_plugin

    register_plugin("pybtex.style.formatting", "authoryear", _author_year_style())
    app.connect("html-page-context", _unique_scripts)
    app.add_post_transform(SolutionsAndQuizChecks)
    app.connect("config-inited", _local_mathjax)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
