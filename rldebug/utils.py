"""Seeding, thread settings and small helpers shared by every chapter."""

from __future__ import annotations

import os
import random
import sys

import numpy as np


def set_seed(seed: int) -> np.random.Generator:
    """Seed Python, numpy and torch (when installed); return a fresh numpy Generator."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    try:
        import torch
    except ImportError:  # the numpy-only chapter runs without torch
        pass
    else:
        torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


def agent_rng(seed: int | list[int]) -> np.random.Generator:
    """A generator for an agent's own draws (exploration, replay sampling) of the run ``seed``.

    gymnasium seeds an env reset with ``seed`` from ``SeedSequence(seed)``, exactly as
    ``np.random.default_rng(seed)`` seeds itself: an agent seeded that way draws the very
    numbers the env drew for its start states. This is a child of that sequence instead,
    as reproducible and independent of the env.
    """
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def configure_torch(threads: int = 1) -> None:
    """Use few intra-op threads.

    The networks in this book are small. On a 2-core machine PyTorch's default thread
    pool spends more time synchronising than computing: one thread was measured
    2x to 90x faster for these models.
    """
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def in_colab() -> bool:
    """True when running inside Google Colab."""
    return "google.colab" in sys.modules


def show_benchmark(name: str, results: str = "../benchmarks/results") -> None:
    """Display the benchmark table ``results/name`` (Markdown) in a notebook.

    The tables are written by the scripts in ``benchmarks/`` of the book's repository; where
    the file is missing (in Colab, say), a line names the script that writes it.
    """
    from pathlib import Path

    from IPython.display import Markdown, display

    table = Path(results) / name
    if table.exists():
        display(Markdown(table.read_text()))
    else:
        display(Markdown(f"(`{table}` is missing: the scripts in `benchmarks/` write it)"))


def show_claims(chapter: str, results: str = "../benchmarks/results") -> None:
    """Display the rows of the claims table (``claims.md``) that belong to ``chapter``.

    The table, written by ``benchmarks/claims.py``, gives each learning claim's threshold,
    its rate on held-out seeds under three sets of CPU kernels, and the chance that a
    reader's run fails it.
    """
    from pathlib import Path

    from IPython.display import Markdown, display

    table = Path(results) / "claims.md"
    if not table.exists():
        display(Markdown(f"(`{table}` is missing: `benchmarks/claims.py` writes it)"))
        return
    lines = table.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| chapter"))
    rows = [line for line in lines[header + 2 :] if line.startswith(f"| {chapter} |")]
    if not rows:
        raise ValueError(f"the claims table has no row for {chapter!r}")
    display(Markdown("\n".join(lines[header : header + 2] + rows)))
