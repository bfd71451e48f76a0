"""Benchmark of chapter 7 on the question's own road: does a recurrent DQN need memory there?

``SineRoad-v0`` observes the car's position and the time on the loop: a Markov observation.
Every agent reads that observation alone (the question's inputs). Rows:

* chapter 4's DQN (``dqn.SINE_ROAD_RECIPE``, 10,000 steps);
* the DRQN of ``drqn_experiments.SINE_ROAD_RECIPE`` (16,000 steps), with a GRU and an LSTM;
* the same DRQN without its encoder (the GRU reads the observation straight), and with
  chapter 7's flickering-road settings (``drqn.Config()`` on this road, 48,000 steps):
  the agent as it was before the fix;
* the question's loop, one switch each: one whole episode per update, the last transition
  of every episode skipped; and a control with as many trained steps per update as one
  episode, drawn from many episodes (20 sequences of 10 steps);
* the two switches on the flickering road too, with chapter 7's DRQN.

Sample cost: the first evaluation (greedy, 16 roads, the same roads for every agent) at
which the mean return reaches 180, 90% of the oracle's 200. Writes
``benchmarks/results/ch07_sine_road.md`` and ``.csv`` (every evaluation of every seed).

    OMP_NUM_THREADS=1 python benchmarks/ch07_sine_road.py [--seeds 5]
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
import sineroad  # noqa: F401  (registers the sine-road ids for dqn.train)

import rldebug
from rldebug.agents import dqn, drqn
from rldebug.agents.drqn_experiments import SINE_ROAD_RECIPE

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLD = 180.0  # 90% of the oracle's 200


def runs() -> dict[str, tuple[str, object]]:
    """Section -> {agent name: config}; a dqn.Config or a drqn.Config."""
    recipe = drqn.Config(**SINE_ROAD_RECIPE)
    flicker = drqn.Config()  # chapter 7's DRQN
    question = (  # the switches of the question's loop, each on its own
        ("one episode per update", dict(one_episode_per_update=True)),
        ("last transition skipped", dict(skip_last_transition=True)),
    )
    sine = {
        "DQN (chapter 4's recipe)": dqn.Config(
            **{
                **dqn.SINE_ROAD_RECIPE,
                "eval_every": 1_000,
                "eval_episodes": 16,
                "final_eval_episodes": 16,
                "eval_seed": recipe.eval_seed,
            }  # fmt: skip
        ),
        "DRQN, GRU (the recipe)": recipe,
        "DRQN, LSTM (the recipe)": replace(recipe, cell="lstm"),
        "DRQN, GRU, no encoder": replace(recipe, encoder=None),
        "DRQN, the flickering road's settings": replace(
            flicker, env_id="SineRoad-v0", prev_action=False, eval_every=2_000
        ),
    }
    sine.update({f"DRQN, GRU, {name}": replace(recipe, **change) for name, change in question})
    sine["DRQN, GRU, 20 sequences of 10 steps per update"] = replace(recipe, batch_size=20)
    flickering = {"DRQN (chapter 7's)": replace(flicker, eval_every=4_000)}
    flickering.update({f"DRQN, {name}": replace(flicker, **change) for name, change in question})
    return {"SineRoad-v0": sine, "SineRoadFlicker-v0": flickering}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    rldebug.configure_torch(1)
    seeds = list(range(args.seeds))
    lines = [
        "# Chapter 7: the question's own road",
        "",
        f"Seeds {seeds[0]}-{seeds[-1]} (tuning seeds), the seeds of a row trained side by "
        "side. Every agent reads the observation alone (no previous action). Final: the "
        "mean greedy return on 16 evaluation roads (the same roads for every agent) at the "
        f"end of training. Reached {THRESHOLD:.0f}: the seeds whose evaluation mean reached "
        f"{THRESHOLD:.0f} (90% of the oracle's 200) at some evaluation, and the median of the "
        "first step at which they did (the sample cost). Produced by "
        "`python benchmarks/ch07_sine_road.py` on "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        "one torch thread; wall-clock seconds on a shared machine.",
        "",
    ]
    csv_rows = []
    for section, agents in runs().items():
        lines += [f"## {section}", ""]
        lines += [
            f"| agent | steps | final mean | min | max | reached {THRESHOLD:.0f} | "
            "median steps to it | wall-clock (s) | final per seed |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for name, cfg in agents.items():
            start = time.perf_counter()
            result = (dqn if isinstance(cfg, dqn.Config) else drqn).train(cfg, seeds)
            seconds = time.perf_counter() - start
            final, reached = result.final_return, result.steps_to(THRESHOLD)
            hit = ~np.isnan(reached)
            median = f"{np.median(reached[hit]):,.0f}" if hit.any() else "-"
            lines.append(
                f"| {name} | {cfg.total_steps:,} | {final.mean():.1f} | {final.min():.1f} | "
                f"{final.max():.1f} | {hit.sum()}/{len(seeds)} | {median} | {seconds:.0f} | "
                + " ".join(f"{x:.0f}" for x in final)
                + " |"
            )
            for step, row in zip(result.eval_steps, result.eval_returns):
                for seed, value in zip(seeds, row):
                    csv_rows.append([section, name, seed, int(step), f"{value:.2f}"])
            print(lines[-1], flush=True)
        lines.append("")
    (RESULTS / "ch07_sine_road.md").write_text("\n".join(lines) + "\n")
    with open(RESULTS / "ch07_sine_road.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_id", "agent", "seed", "step", "greedy_return"])
        writer.writerows(csv_rows)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
