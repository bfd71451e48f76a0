"""Exercise checkers, one module per chapter.

Each chapter module defines ``EXERCISES``, a list of :class:`rldebug.checking.Exercise`,
and one ``check_<name>`` function per exercise for the notebooks.
"""

from __future__ import annotations

import importlib
import pkgutil

from rldebug.checking import Exercise


def all_exercises() -> list[Exercise]:
    """Every exercise of every chapter, for the checker test harness."""
    found: list[Exercise] = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        found.extend(getattr(module, "EXERCISES", []))
    return found
