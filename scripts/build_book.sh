#!/usr/bin/env bash
# Build the HTML book into _build/html. Notebooks in solutions/ are executed (and cached
# by content in _build/.jupyter_cache), so every figure comes from the code as it is.
# Warnings are errors: a notebook that fails makes the build fail.
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
python scripts/make_chapters.py --check
jupyter-book build . --builder html -W -n --keep-going
echo
echo "The book is built. Open: file://$ROOT/_build/html/index.html"
