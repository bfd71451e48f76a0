"""Benchmark: the chapter-4 DQN on the three sine roads, with and without frame stacking.

Trains the chapter-3 DQN with chapter 4's configuration on more seeds than the notebook
does, and compares the final greedy returns with the hand-written controllers::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ch04_sine_road_dqn.py [--seeds 5]

Writes ``benchmarks/results/ch04_sine_road_dqn.md`` (and ``.csv``, one row per run).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np
import sineroad  # noqa: F401
from gymnasium.wrappers import FrameStackObservation
from sineroad.controllers import evaluate_controllers

import rldebug
from rldebug.agents import dqn

RESULTS = Path(__file__).resolve().parent / "results"

#: The notebook's configuration (solutions/ch04_sine_road.ipynb, section 5).
CONFIG = dqn.Config(**dqn.SINE_ROAD_RECIPE, log_every=1_000, eval_every=0)

ENV_IDS = ("SineRoad-v0", "SineRoadPartial-v0", "SineRoadFlicker-v0")


def conditions(n_seeds: int):
    """(env_id, frames, seeds): the fully observed road on 10 seeds, the others on n_seeds."""
    yield "SineRoad-v0", 1, range(10)
    for env_id in ENV_IDS[1:]:
        for frames in (1, 4, 8):
            yield env_id, frames, range(n_seeds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per partial condition")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rldebug.configure_torch(1)
    RESULTS.mkdir(parents=True, exist_ok=True)

    baselines = {e: evaluate_controllers(e, n_episodes=100) for e in ENV_IDS}
    rows = []
    for env_id, frames, seeds in conditions(args.seeds):
        wrappers = [partial(FrameStackObservation, stack_size=frames)] if frames > 1 else []
        cpu, wall = time.process_time(), time.perf_counter()
        config = dataclasses.replace(CONFIG, env_id=env_id, wrappers=wrappers)
        result = dqn.train(config, list(seeds))  # every seed its own run, all at once
        for seed, final_return in zip(result.seeds, result.final_return):
            rows.append(
                {
                    "env_id": env_id,
                    "frames": frames,
                    "seed": seed,
                    "final_return": float(final_return),
                    "cpu_s": (time.process_time() - cpu) / len(result.seeds),
                    "wall_s": (time.perf_counter() - wall) / len(result.seeds),
                }
            )
            print(rows[-1], flush=True)

    with (RESULTS / "ch04_sine_road_dqn.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# Chapter 4: DQN on the sine roads",
        "",
        f"Produced by `python benchmarks/ch04_sine_road_dqn.py --seeds {args.seeds}` on "
        f"{platform.machine()}, {os.cpu_count()} cores (load average {load} at the end), "
        f"Python {platform.python_version()}, one torch thread.",
        "",
        f"The chapter-3 DQN with chapter 4's configuration ({CONFIG.total_steps} steps, "
        f"{CONFIG.num_envs} envs, hidden {CONFIG.hidden}, gamma {CONFIG.gamma}, lr {CONFIG.lr}); "
        "final greedy return over 20 evaluation episodes per seed. Frame stacking uses "
        "gymnasium's `FrameStackObservation` on each sub-environment (sync vector env); "
        "without it the native `SineRoadVectorEnv` is used. Controllers: 100 episodes.",
        "",
        "| environment | frames | seeds | DQN mean ± std | min | ≥ 90% of oracle | % of oracle "
        "| reactive | memory | oracle | gap to memory closed | CPU s / run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    plain_means = {}
    for env_id, frames, _seeds in conditions(args.seeds):
        sel = [r for r in rows if r["env_id"] == env_id and r["frames"] == frames]
        returns = np.array([r["final_return"] for r in sel])
        b = {k: baselines[env_id][k]["mean"] for k in ("reactive", "memory", "oracle")}
        if frames == 1:
            plain_means[env_id] = returns.mean()
            closed = "-"
        else:
            plain = plain_means[env_id]
            closed = f"{(returns.mean() - plain) / (b['memory'] - plain):.0%}"
        solved = int((returns >= 0.9 * b["oracle"]).sum())
        lines.append(
            f"| {env_id} | {frames} | {len(sel)} | {returns.mean():.1f} ± {returns.std():.1f} "
            f"| {returns.min():.1f} | {solved}/{len(sel)} | {returns.mean() / b['oracle']:.0%} "
            f"| {b['reactive']:.1f} | {b['memory']:.1f} | {b['oracle']:.1f} | {closed} "
            f"| {np.mean([r['cpu_s'] for r in sel]):.1f} |"
        )
    full = [r for r in rows if r["env_id"] == "SineRoad-v0"]
    lines += [
        "",
        "Per-seed final returns on SineRoad-v0 (oracle 200): "
        + ", ".join(f"{r['final_return']:.1f}" for r in full),
        "",
        "CPU seconds approximate the time on an idle machine; wall-clock time on a shared one "
        "is longer.",
    ]
    (RESULTS / "ch04_sine_road_dqn.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
