"""The claims table (benchmarks/claims.py): its statistics, and that every learning assert in
the notebooks is the one the table measured, with a chance of failing of at most 1%."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("claims_bench", ROOT / "benchmarks" / "claims.py")
claims = importlib.util.module_from_spec(_spec)
sys.modules["claims_bench"] = claims  # dataclasses look their module up there
_spec.loader.exec_module(claims)


def _notebook_code(chapter: str) -> str:
    (path,) = ROOT.glob(f"solutions/{chapter}_*.ipynb")
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


@pytest.mark.parametrize(("k", "n", "p"), [(0, 10, 0.3), (8, 10, 0.95), (10, 10, 0.9), (3, 5, 0.5)])
def test_binomial_tail_matches_a_direct_sum(k, n, p):
    rng = np.random.default_rng(0)
    draws = rng.binomial(n, p, size=200_000)
    assert claims.binomial_at_least(k, n, p) == pytest.approx((draws >= k).mean(), abs=4e-3)


def test_clopper_pearson_lower_bound():
    assert claims.clopper_pearson_lower(60, 60) == pytest.approx(0.05 ** (1 / 60))
    assert claims.clopper_pearson_lower(0, 10) == 0.0
    lower = claims.clopper_pearson_lower(55, 60)
    # at the bound, seeing 55 or more successes has probability 5%
    assert claims.binomial_at_least(55, 60, lower) == pytest.approx(0.05, abs=1e-6)
    assert lower < 55 / 60


def test_normal_tail():
    values = np.array([-1.0, 0.0, 1.0])  # mean 0, sd 1
    assert claims.normal_tail(values, -1.0, above=True) == pytest.approx(
        0.5 * math.erfc(1 / math.sqrt(2))
    )
    assert claims.normal_tail(values, 10.0, above=False) < 1e-10


def test_failure_chance_of_a_k_of_n_claim():
    claim = claims.Claim("chX", "ok", "text", "k_of_n", 7, "ok >= {k}")
    rows = [{"outcome": {"ok": [True] * 10}} for _ in range(6)]
    f = claims.failure_chance(claim, rows)
    lower = 0.05 ** (1 / 60)
    assert f["chance"] == pytest.approx(1 - claims.binomial_at_least(7, 10, lower))
    assert f["passed"] == 6 and f["best"] == "7 of 10"


RUNS = claims.load_runs()


@pytest.mark.parametrize("claim", claims.CLAIMS, ids=lambda c: f"{c.chapter}-{c.key}")
def test_each_notebook_asserts_the_measured_claim(claim):
    rows = [r for r in RUNS if r["chapter"] == claim.chapter and claim.key in r["outcome"]]
    variants = {r["variant"] for r in rows}
    blocks = {r["first_seed"] for r in rows}
    assert variants == set(claims.VARIANTS), f"{claim.chapter} {claim.key}: variants {variants}"
    assert len(blocks) >= 2 and min(blocks) >= claims.FIRST_HELD_OUT_SEED
    chance = claims.failure_chance(claim, rows)["chance"]
    assert chance <= 0.01, f"{claim.chapter} {claim.key}: {chance:.2%} chance of failing"
    assert claim.notebook_code() in _notebook_code(claim.chapter), claim.notebook_code()


def test_the_table_on_disk_is_the_table_of_the_runs():
    assert (ROOT / "benchmarks" / "results" / "claims.md").read_text() == claims.table()
