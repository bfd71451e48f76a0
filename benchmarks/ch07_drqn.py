"""Benchmark of chapter 7: DRQN against memoryless DQN on the partially observed sine roads.

For each environment: DRQN (``rldebug.agents.drqn``, all seeds side by side), chapter 3's
DQN, and DQN with gymnasium's ``FrameStackObservation`` (4 frames), with the same
environment steps, discount, evaluation roads and inputs (each agent reads the observation
and its previous action), plus the ablation the comparison needs (DRQN without the previous
action, the question's inputs) and the hand-written controllers on the same roads.
``SineRoad-v0`` is the question's own road (position and time observed: no memory needed). Writes per-seed final greedy returns and wall-clock seconds to
``benchmarks/results/ch07_drqn.md`` and ``.csv``.

    OMP_NUM_THREADS=1 python benchmarks/ch07_drqn.py [--seeds 10] [--envs SineRoadFlicker-v0 ...]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from sineroad.controllers import evaluate_controllers

import rldebug
from rldebug.agents import drqn, drqn_experiments

RESULTS = Path(__file__).resolve().parent / "results"


def run_env(env_id: str, seeds: list[int], cfg: drqn.Config) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    cfg = replace(cfg, env_id=env_id)
    start = time.perf_counter()
    result = drqn.train(cfg, seeds=seeds)
    rows["DRQN"] = {"returns": result.final_return, "seconds": time.perf_counter() - start}
    start = time.perf_counter()
    ablation = drqn_experiments.final_returns(replace(cfg, prev_action=False), seeds=seeds)
    rows["DRQN without the previous action"] = {
        "returns": ablation,
        "seconds": time.perf_counter() - start,
    }
    for name, stack in (("DQN", 0), ("DQN + 4 stacked frames", 4)):  # with their actions
        start = time.perf_counter()
        baseline = drqn_experiments.memoryless_dqn(env_id, seeds, frame_stack=stack, like=cfg)
        rows[name] = {"returns": baseline.final_return, "seconds": time.perf_counter() - start}
    controllers = evaluate_controllers(
        env_id,
        n_episodes=cfg.eval_episodes,
        seed=cfg.eval_seed,
        controllers=("reactive", "memory", "oracle"),
    )
    for name, res in controllers.items():
        rows[f"{name} controller"] = {"returns": np.full(len(seeds), res["mean"]), "seconds": 0.0}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument(
        "--envs",
        nargs="+",
        default=["SineRoadFlicker-v0", "SineRoadPartial-v0", "SineRoad-v0"],
    )
    args = parser.parse_args()
    rldebug.configure_torch(1)
    seeds = list(range(args.seeds))
    cfg = drqn.Config()
    RESULTS.mkdir(exist_ok=True)
    lines = [
        "# Chapter 7: DRQN against memoryless DQN",
        "",
        f"Final greedy return (mean over {cfg.eval_episodes} evaluation roads) per seed, after "
        f"{cfg.total_steps} environment steps per agent. Produced by "
        "`python benchmarks/ch07_drqn.py` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        "one torch thread. Every agent reads the observation and its previous action "
        "(one-hot), except the ablation row. Controllers: the same roads (no training).",
        "",
    ]
    csv_rows = []
    for env_id in args.envs:
        rows = run_env(env_id, seeds, cfg)
        drqn_returns = rows["DRQN"]["returns"]
        lines += [f"## {env_id}", "", "| agent | mean | min | max | wall-clock (s) | per seed |"]
        lines += ["|---|---:|---:|---:|---:|---|"]
        for name, row in rows.items():
            r = row["returns"]
            per_seed = " ".join(f"{x:.0f}" for x in r)
            lines.append(
                f"| {name} | {r.mean():.1f} | {r.min():.1f} | {r.max():.1f} | "
                f"{row['seconds']:.1f} | {per_seed} |"
            )
            for seed, value in zip(seeds, r):
                csv_rows.append([env_id, name, seed, f"{value:.2f}", f"{row['seconds']:.1f}"])
        for name in ("DQN", "DQN + 4 stacked frames"):
            wins = int(np.sum(drqn_returns > rows[name]["returns"]))
            lines.append(f"\nDRQN beats {name} on {wins} of {len(seeds)} seeds.")
        lines.append("")
    (RESULTS / "ch07_drqn.md").write_text("\n".join(lines) + "\n")
    with open(RESULTS / "ch07_drqn.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_id", "agent", "seed", "final_return", "wall_clock_s"])
        writer.writerows(csv_rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
