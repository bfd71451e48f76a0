"""A notebook that errors makes the book build fail, with the book's own settings."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_failing_notebook_fails_the_build(tmp_path):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    shutil.copy(ROOT / "book" / "references.bib", tmp_path / "references.bib")
    config["bibtex_bibfiles"] = ["references.bib"]
    config["exclude_patterns"] = ["_build/*"]
    config["sphinx"].pop("local_extensions", None)
    config["sphinx"]["config"].pop("html_static_path", None)
    config["sphinx"]["config"].pop("html_css_files", None)
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: broken\n"
    )
    (tmp_path / "intro.md").write_text("# Intro\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Broken"),
        nbformat.v4.new_code_cell("raise ValueError('this cell is broken on purpose')"),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, tmp_path / "broken.ipynb")
    jupyter_book = shutil.which("jupyter-book") or str(Path(sys.executable).parent / "jupyter-book")
    result = subprocess.run(
        [jupyter_book, "build", str(tmp_path), "-W", "-n", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "this cell is broken on purpose" in output
