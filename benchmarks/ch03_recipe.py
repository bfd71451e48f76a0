"""Benchmark: chapter 3's DQN recipe, and the recipe with one ingredient taken out per row.

Chapter 3 proves ``dqn.Config(**CARTPOLE_RECIPE)`` on CartPole-v1. This ablation asks what
each of its ingredients does, on held-out seeds (1000 and up, never tuned on): every row is
the recipe with ONE change, trained in blocks of ten seeds as the notebook trains seeds 0-9
(``dqn.train(config, block, processes=2)``). It writes ``benchmarks/results/ch03_recipe.md``::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ch03_recipe.py [--blocks 3] [--rows recipe,no_stop]

(``--rows ""`` rewrites the table from the stored rows without training.)

Each row's per-seed results are kept in ``benchmarks/results/ch03_recipe.json``, so rows can
be measured in separate runs; the table shows every stored row measured on the same seeds.

"Reached": some greedy evaluation (10 episodes, every 2,500 steps) averaged at least 475.
"Kept": the final greedy evaluation (20 episodes, after the last step) averaged at least
475. "Stopped": the seed stopped updating because its last 10 training episodes all
returned at least 475 (``stop_when_solved``); its final network is the one it stopped with.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import rldebug
from rldebug.agents.dqn import Config, train
from rldebug.agents.dqn_recipes import CARTPOLE_RECIPE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ch03_recipe.md"
RUNS = ROOT / "benchmarks" / "results" / "ch03_recipe.json"
SOLVED = 475.0
FIRST_SEED = 1000  # held-out seeds: the recipe was tuned on seeds below 1000
DEFAULTS = Config()

# name: (label, the one change to the recipe). The order is the table's.
ROWS: dict[str, tuple[str, dict]] = {
    "recipe": ("the recipe", {}),
    "no_stop": ("no stop once solved (`stop_when_solved=None`)", {"stop_when_solved": None}),
    "n_step_1": ("one-step targets (`n_step=1`)", {"n_step": 1}),
    "constant_lr": ("constant learning rate (`lr_end=None`)", {"lr_end": None}),
    "default_batch": (
        f"default batch size (`batch_size={DEFAULTS.batch_size}`)",
        {"batch_size": DEFAULTS.batch_size},
    ),
    "default_eps": (
        f"default epsilon decay (`eps_fraction={DEFAULTS.eps_fraction}`)",
        {"eps_fraction": DEFAULTS.eps_fraction},
    ),
    "default_width": (
        f"default width (`hidden={tuple(DEFAULTS.hidden)}`)",
        {"hidden": tuple(DEFAULTS.hidden)},
    ),
}


def run_row(overrides: dict, seeds: list[int]) -> dict:
    """Train the recipe with ``overrides`` on ``seeds``, ten at a time; per-seed results."""
    config = Config(**{**CARTPOLE_RECIPE, **overrides})
    row = {"seeds": [], "first_reached": [], "final_return": [], "stopped_at": [], "seconds": 0.0}
    for start in range(0, len(seeds), 10):
        block = seeds[start : start + 10]
        began = time.perf_counter()
        runs = train(config, block, processes=2)  # as the notebook trains seeds 0-9
        row["seconds"] += time.perf_counter() - began
        row["seeds"] += list(runs.seeds)
        row["first_reached"] += [float(x) for x in runs.steps_to(SOLVED)]  # nan: never
        row["final_return"] += [float(x) for x in runs.final_return]
        row["stopped_at"] += [float(x) for x in runs.stopped_at]  # nan: never stopped
        print(f"  block {block[0]}-{block[-1]}: {time.perf_counter() - began:.0f} s", flush=True)
    return row


def summarize(row: dict) -> dict:
    reached = np.array(row["first_reached"])
    finals = np.array(row["final_return"])
    stopped_at = np.array(row["stopped_at"])
    kept, stopped = finals >= SOLVED, np.isfinite(stopped_at)
    return {
        "n": len(finals),
        "reached": int(np.isfinite(reached).sum()),
        "kept": int(kept.sum()),
        "per_block": [int(kept[i : i + 10].sum()) for i in range(0, len(finals), 10)],
        "median_steps": np.nanmedian(reached) if np.isfinite(reached).any() else np.nan,
        "stopped": int(stopped.sum()),
        "stop_median": np.median(stopped_at[stopped]) if stopped.any() else np.nan,
        "stop_latest": stopped_at[stopped].max() if stopped.any() else np.nan,
        "stopped_below": int((stopped & ~kept).sum()),
        "median_final": float(np.median(finals)),
        "below": [(s, round(f)) for s, f in zip(row["seeds"], finals) if f < SOLVED],
    }


def steps(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:,.0f}"


def write_table(stored: dict, seeds: list[int]) -> str:
    rows = {name: stored[name] for name in ROWS if stored.get(name, {}).get("seeds") == seeds}
    lines = [
        "# Chapter 3: what each ingredient of the DQN recipe does",
        "",
        f"CartPole-v1, {CARTPOLE_RECIPE.get('total_steps', DEFAULTS.total_steps):,} "
        f"environment steps per seed, held-out seeds {seeds[0]}-{seeds[-1]} (the recipe was tuned "
        "on seeds below 1000), each block of ten trained as the chapter trains seeds 0-9 "
        "(`dqn.train(config, block, processes=2)`). Each row is the recipe "
        f"`dqn.Config(**CARTPOLE_RECIPE)` = `{CARTPOLE_RECIPE}` with one change; the recipe "
        f"keeps the library's other defaults, among them a learning rate decaying linearly from "
        f"{DEFAULTS.lr:g} to {DEFAULTS.lr_end:g} over the run. "
        f"**Reached**: some greedy evaluation (10 episodes, every {DEFAULTS.eval_every:,} steps) "
        f"averaged at least {SOLVED:g}. **Kept**: the final greedy evaluation "
        f"({DEFAULTS.final_eval_episodes} episodes, after the last step) averaged at least "
        f"{SOLVED:g}. **Stopped**: the seed made no more updates once its last "
        f"{DEFAULTS.solved_episodes} training episodes all returned at least {SOLVED:g}; its "
        "final network is the one it stopped with. torch "
        f"{torch.__version__}, 1 thread per process, {os.cpu_count()} CPUs, "
        f"{platform.processor() or platform.machine()}; seconds are wall-clock for the {len(seeds)} "
        "seeds on a machine shared with other work. One set of CPU kernels: the claims table "
        "(`benchmarks/claims.py`) measures the recipe itself under three.",
        "",
        "| recipe, with | reached 475 | kept | kept per block of 10 | median steps to 475 "
        "| stopped: seeds, median step, latest | stopped, ended below 475 | median final return "
        "| seconds |",
        "|---|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    for name, row in rows.items():
        r = summarize(row)
        n = r["n"]
        lines.append(
            f"| {ROWS[name][0]} | {r['reached']}/{n} | **{r['kept']}/{n}** "
            f"| {', '.join(map(str, r['per_block']))} | {steps(r['median_steps'])} "
            f"| {r['stopped']}/{n}, {steps(r['stop_median'])}, {steps(r['stop_latest'])} "
            f"| {r['stopped_below']} | {r['median_final']:.1f} | {row['seconds']:.0f} |"
        )
    lines += ["", "Seeds that ended below 475 (seed: final return):", ""]
    for name, row in rows.items():
        below = ", ".join(f"{s}: {f}" for s, f in summarize(row)["below"]) or "none"
        lines.append(f"- {ROWS[name][0]}: {below}.")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=3, help="blocks of ten held-out seeds")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}"
    )
    args = parser.parse_args()
    names = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = [name for name in names if name not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    if args.blocks < 1:
        parser.error("--blocks must be >= 1")
    rldebug.configure_torch(1)
    seeds = list(range(FIRST_SEED, FIRST_SEED + 10 * args.blocks))
    stored = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    for name in names:
        print(ROWS[name][0], flush=True)
        stored[name] = run_row(ROWS[name][1], seeds)
        RUNS.write_text(json.dumps(stored, indent=1) + "\n")  # each row kept as soon as done
        OUT.write_text(write_table(stored, seeds))
    OUT.write_text(write_table(stored, seeds))  # --rows "": only rewrite the table
    print(write_table(stored, seeds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
