"""Show the library's own code in a notebook: highlighted, never wrapped, folded when long.

``show_source(obj)`` displays a function, method or class as the book prints code: Python
highlighting, one source line per screen line (long lines scroll sideways inside the box
instead of wrapping back to column 0), and a fold that says what is inside. It looks the same
in the online book, in Jupyter and in Colab, because the HTML carries its own colours.

A part of a long function is marked in the library with comment lines::

    # region target
    ...
    # endregion

and shown with ``show_source(obj, region="target")``. Marker lines never appear in the view.
"""

from __future__ import annotations

import ast
import html
import inspect
import re
import textwrap
from dataclasses import dataclass

# Longer listings start folded: the summary line says how many lines are inside.
FOLD_AFTER_LINES = 40

_REGION = re.compile(r"^\s*#\s*region\b\s*(?P<name>.*?)\s*$")
_ENDREGION = re.compile(r"^\s*#\s*endregion\b")


@dataclass(frozen=True)
class SourceView:
    """What ``show_source`` displays: the code, where it comes from, and how to render it."""

    code: str
    title: str
    folded: bool

    def _repr_html_(self) -> str:
        lines = self.code.count("\n") + 1
        body = _highlight(self.code)
        state = "" if self.folded else " open"
        return (
            f'<details class="rldebug-source"{state}>'
            f'<summary style="cursor:pointer">{html.escape(self.title)} '
            f'<span style="opacity:0.7">({lines} lines)</span></summary>'
            '<pre style="white-space:pre;overflow-x:auto;margin:0.3em 0;padding:0.6em 0.8em;'
            "background:#f8f8f8;color:#1f1f1f;border:1px solid #ddd;border-radius:4px;"
            f'font-size:0.85em;line-height:1.45">{body}</pre></details>'
        )

    def __repr__(self) -> str:
        return f"# {self.title}\n{self.code}"


def source_view(
    obj,
    region: str | None = None,
    *,
    docstring: bool = True,
    body: bool = True,
    title: str | None = None,
    folded: bool | None = None,
):
    """The ``SourceView`` that ``show_source`` displays (see there for the arguments)."""
    if isinstance(obj, str):
        code, name = textwrap.dedent(obj), title or "code"
    else:
        try:
            source = inspect.getsource(obj)
        except (TypeError, OSError) as error:
            raise TypeError(
                f"show_source needs a function, method or class written in Python, or a "
                f"string of code; got {obj!r} ({error})"
            ) from None
        code, name = textwrap.dedent(source), title or _name(obj)
    if region is not None:
        code = _region(code, region, name)
    elif not isinstance(obj, str):
        if not docstring:
            code = _without_docstring(code)
        if not body:
            code = _header(code, keep_docstring=docstring)
    code = "\n".join(
        line for line in code.splitlines() if not (_REGION.match(line) or _ENDREGION.match(line))
    )
    code = textwrap.dedent(code).strip("\n")
    if region and title is None:
        name += f", region {region!r}"
    if folded is None:
        folded = code.count("\n") + 1 > FOLD_AFTER_LINES
    return SourceView(code, name, folded=folded)


def show_source(
    obj,
    region: str | None = None,
    *,
    docstring: bool = True,
    body: bool = True,
    title: str | None = None,
    folded: bool | None = None,
):
    """Display the source of ``obj`` (a function, method or class, or a string of code).

    region: the name of a ``# region NAME`` ... ``# endregion`` block inside it, to show
        only that part.
    docstring: False leaves the docstring out (the prose around the cell explains it).
    body: False shows only the signature (and the docstring, unless docstring=False).
    title: the line above the code (default: the object's module and name).
    folded: start folded (True) or open (False); by default listings longer than
        ``FOLD_AFTER_LINES`` start folded.
    """
    from IPython.display import display

    display(source_view(obj, region, docstring=docstring, body=body, title=title, folded=folded))


def _name(obj) -> str:
    module = getattr(obj, "__module__", None) or ""
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
    return f"{module}.{qualname}" if module else qualname


def _region(code: str, region: str, name: str) -> str:
    lines = code.splitlines()
    found = [match.group("name") for line in lines if (match := _REGION.match(line))]
    starts = [
        i for i, line in enumerate(lines) if (m := _REGION.match(line)) and m["name"] == region
    ]
    if not starts:
        raise ValueError(
            f"{name} has no '# region {region}' marker; its regions are: {found or 'none'}"
        )
    depth, taken = 0, []
    for line in lines[starts[0] + 1 :]:
        if _REGION.match(line):
            depth += 1
        elif _ENDREGION.match(line):
            if depth == 0:
                return "\n".join(taken)
            depth -= 1
        taken.append(line)
    raise ValueError(f"{name}: '# region {region}' has no '# endregion' after it")


def _definition(code: str):
    tree = ast.parse(code)
    if not tree.body or not isinstance(
        tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    ):
        return None
    return tree.body[0]


def _docstring_lines(node) -> tuple[int, int] | None:
    """(first, last) line numbers (1-based) of the docstring of ``node``, if it has one."""
    first = node.body[0] if node.body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first.lineno, first.end_lineno
    return None


def _without_docstring(code: str) -> str:
    node = _definition(code)
    span = _docstring_lines(node) if node is not None else None
    if span is None:
        return code
    lines = code.splitlines()
    return "\n".join(lines[: span[0] - 1] + lines[span[1] :])


def _header(code: str, keep_docstring: bool) -> str:
    node = _definition(code)
    if node is None:
        return code
    lines = code.splitlines()
    span = _docstring_lines(node)
    if keep_docstring and span is not None:
        end = span[1]
    else:
        end = node.body[0].lineno - 1
    indent = re.match(r"\s*", lines[node.body[0].lineno - 1]).group(0)
    return "\n".join(lines[:end] + [f"{indent}..."])


def _highlight(code: str) -> str:
    """HTML spans with inline colours (no stylesheet needed: Colab, Jupyter and the book)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:  # pygments comes with IPython; plain text if it is missing
        return html.escape(code)
    formatter = HtmlFormatter(nowrap=True, noclasses=True, style="default")
    return highlight(code, PythonLexer(), formatter).rstrip("\n")
