"""rldebug: the course library of *Why Isn't My Agent Learning?*

The book's code is the library: every chapter shows the code it teaches, and the
later chapters import it from here instead of copying it.

Floors (lower floors never import higher ones):

* ground: ``utils`` (seeding, threads, progress), ``returns``, ``nets``, ``replay``,
  ``plots``, ``numpy_mlp`` (stands apart, numpy only), and the ``sineroad`` environments;
* middle: ``agents``, ``diagnostics``, ``widgets``;
* top: ``checkers`` (one module per chapter) and the benchmarks.

``rldebug.diagnose(obj)`` runs every diagnostic that applies to your own model, loss or
agent (stable-baselines3 and sb3-contrib models included, through
``rldebug.integrations.sb3``).
"""

from rldebug.show import show_source
from rldebug.utils import configure_torch, in_colab, set_seed, show_benchmark, show_claims

__version__ = "0.1.0"
__all__ = [
    "configure_torch",
    "diagnose",
    "in_colab",
    "set_seed",
    "show_benchmark",
    "show_claims",
    "show_source",
    "__version__",
]


def __getattr__(name: str):
    # ``rldebug.diagnose`` is imported on first use: ``import rldebug`` stays light (no
    # matplotlib, no stable-baselines3).
    if name == "diagnose":
        from rldebug.diagnostics.diagnose import diagnose

        return diagnose
    raise AttributeError(f"module 'rldebug' has no attribute {name!r}")
