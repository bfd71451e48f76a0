"""The benchmark scripts: the statistics the chapter 8 benchmark prints (the script itself
needs the bench extra), and the configurations the benchmarks train."""

import ast
import dataclasses
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_PATH = ROOT / "benchmarks" / "ch08_ppo_vs_sb3contrib.py"
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


def test_seed_by_seed_counts_never_as_last():
    ours = np.array([1_536.0, 3_072.0, np.nan, np.nan, 4_608.0])
    sb3 = np.array([3_072.0, 3_072.0, 1_536.0, np.nan, np.nan])
    assert bench._seed_by_seed(ours, sb3) == (2, 2, 1)  # never vs never is the same


def test_show_benchmark_displays_the_table_or_names_what_is_missing(tmp_path, monkeypatch):
    import IPython.display

    import rldebug

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    rldebug.show_benchmark("t.md", results=str(tmp_path))
    rldebug.show_benchmark("gone.md", results=str(tmp_path))
    assert shown[0].data == "| a |\n|---|\n| 1 |\n"
    assert "gone.md" in shown[1].data and "is missing" in shown[1].data


def _notebook_assignment(notebook: str, name: str, namespace: dict):
    """Run the statement ``name = ...`` of a solution notebook; return the value."""
    nb = json.loads((ROOT / "solutions" / notebook).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.parse("".join(cell["source"])).body:
            targets = getattr(node, "targets", [])
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in targets] == [name]:
                exec(ast.unparse(node), namespace)
                return namespace[name]
    raise AssertionError(f"{notebook} has no statement {name} = ...")


def test_the_chapter_4_benchmark_trains_the_chapter_s_configuration():
    from rldebug.agents import dqn

    spec = importlib.util.spec_from_file_location(
        "ch04_bench", ROOT / "benchmarks" / "ch04_sine_road_dqn.py"
    )
    ch04_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ch04_bench)
    chapter = _notebook_assignment("ch04_sine_road.ipynb", "CONFIG", {"dqn": dqn})
    logging_only = {"log_every", "eval_every", "eval_episodes"}  # they change no update
    differ = {
        f.name
        for f in dataclasses.fields(chapter)
        if f.name not in logging_only
        and getattr(chapter, f.name) != getattr(ch04_bench.CONFIG, f.name)
    }
    assert not differ, f"benchmarks/ch04_sine_road_dqn.py trains another configuration: {differ}"
