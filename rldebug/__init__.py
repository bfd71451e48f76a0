"""rldebug: the course library of *Why Isn't My Agent Learning?*

The book's code is the library: every chapter shows the code it teaches, and the
later chapters import it from here instead of copying it.

Floors (lower floors never import higher ones):

* ground: ``utils`` (seeding, threads, progress), ``returns``, ``nets``, ``replay``,
  ``plots``, ``numpy_mlp`` (stands apart, numpy only), and the ``sineroad`` environments;
* middle: ``agents``, ``diagnostics``, ``widgets``;
* top: ``checkers`` (one module per chapter) and the benchmarks.
"""

from rldebug.show import show_source
from rldebug.utils import configure_torch, in_colab, set_seed, show_benchmark

__version__ = "0.1.0"
__all__ = [
    "configure_torch",
    "in_colab",
    "set_seed",
    "show_benchmark",
    "show_source",
    "__version__",
]
