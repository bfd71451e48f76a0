"""The statistics the chapter 8 benchmark prints (the script itself needs the bench extra)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "ch08_ppo_vs_sb3contrib.py"
_spec = importlib.util.spec_from_file_location("ch08_bench", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize(
    ("wins", "losses", "p"),
    [(0, 0, 1.0), (5, 5, 1.0), (18, 17, 1.0), (10, 0, 2 / 2**10), (9, 1, 2 * 11 / 2**10)],
)
def test_sign_test_matches_the_binomial_tail(wins, losses, p):
    assert bench._sign_test(wins, losses) == pytest.approx(p)


def test_bootstrap_interval_covers_a_known_shift_and_not_zero():
    rng = np.random.default_rng(1)
    ours = rng.normal(10_000, 1_000, 40)
    theirs = ours + 5_000  # ours always 5,000 steps earlier
    low, high = bench._bootstrap(ours, theirs, np.median, np.random.default_rng(0), draws=2_000)
    assert low < -5_000 < high and high < 0


def test_inf_makes_never_the_slowest():
    steps = bench._inf(np.array([1_536.0, np.nan]))
    assert steps[0] < steps[1] == np.inf
