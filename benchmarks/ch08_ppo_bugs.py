"""Chapter 8 benchmark: what a hidden state that is not reset costs recurrent PPO.

Trains chapter 8's GRU PPO three ways, on the same held-out seeds (1000 onwards, seeds no
setting was tuned on), with chapter 8's settings:

- correct: the state is zeroed at every episode start, in the rollout and in the training
  unroll;
- no reset anywhere: ``ppo.Config(reset_in_rollout=False, reset_in_unroll=False)``: acting
  and training agree, so the first-epoch ratio check passes;
- resets only in the rollout: ``ppo.Config(reset_in_unroll=False)``: the training unroll
  carries the state across episode starts, so the ratio check fails.

Tasks: CartPoleNoVel-v1 with chapter 8's default ``ppo.Config`` (30 000 steps per seed), and
SineRoadFlicker-v0 with chapter 8's road setting (20 000 steps, two minibatches). Each run
trains its seeds as chapter 8 does (two processes). "Kept 475" is ``ppo.Result.kept(475)``:
>= 475 at every greedy evaluation in the last 20% of training. "Ratio check" is the largest
|ratio - 1| on the first minibatch of any update (``ppo.Result.first_check``); it passes
below 1e-5. Writes ``benchmarks/results/ch08_ppo_bugs.md`` and ``.csv``.

    python benchmarks/ch08_ppo_bugs.py --seeds 10 --road-seeds 30

Every agent is evaluated as chapter 8 evaluates it: 20 greedy episodes, each in its own
environment and from a zero state, so the evaluation itself carries no state across episodes.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
from pathlib import Path

import rldebug
from rldebug.agents import ppo

RESULTS = Path(__file__).resolve().parent / "results"
FIRST_SEED = 1000  # held out: no setting of chapter 8 was tuned on these seeds

VARIANTS = {
    "correct": {},
    "no reset anywhere": {"reset_in_rollout": False, "reset_in_unroll": False},
    "resets only in the rollout": {"reset_in_unroll": False},
}
TASKS = {
    "CartPoleNoVel-v1": {"env_id": "CartPoleNoVel-v1"},
    "SineRoadFlicker-v0": {
        "env_id": "SineRoadFlicker-v0",
        "total_steps": 20_000,
        "eval_every": 5_000,
        "num_minibatches": 2,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10, help="CartPoleNoVel seeds, from 1000")
    parser.add_argument("--road-seeds", type=int, default=30, help="road seeds, from 1000")
    args = parser.parse_args()
    rldebug.configure_torch(1)
    seeds_of = {
        "CartPoleNoVel-v1": list(range(FIRST_SEED, FIRST_SEED + args.seeds)),
        "SineRoadFlicker-v0": list(range(FIRST_SEED, FIRST_SEED + args.road_seeds)),
    }
    runs = ", ".join(f"{t} {s[0]}-{s[-1]}" for t, s in seeds_of.items())

    lines = [
        "# Chapter 8: recurrent PPO with a hidden state that is not reset",
        "",
        f"Seeds (held out from tuning, the same for every row of a task): {runs}. Chapter 8's "
        "settings: CartPoleNoVel-v1 30 000 steps per seed, SineRoadFlicker-v0 20 000 steps. "
        "Kept 475: >= 475 at every greedy evaluation in the last 20% of training. Final: the "
        "last greedy evaluation (20 episodes). Ratio check: largest |ratio - 1| on the first "
        "minibatch of any update (passes below 1e-5). Every evaluation episode runs in its own "
        "environment from a zero state, as in chapter 8, so no state is carried across "
        "evaluation episodes. Produced by `python benchmarks/ch08_ppo_bugs.py --seeds "
        f"{args.seeds} --road-seeds {args.road_seeds}` on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, one torch thread.",
        "",
        "| task | PPO | ratio check | kept 475 | mean final | per seed (final) |",
        "|---|---|---:|---:|---:|---|",
    ]
    csv_rows = []
    for task, task_kwargs in TASKS.items():
        seeds = seeds_of[task]
        for variant, switches in VARIANTS.items():
            cfg = ppo.Config(**task_kwargs, **switches)
            result = ppo.train(cfg, seeds, processes=2, progress=False)
            final = result.eval_returns[-1]
            kept = result.kept(475)
            worst = float(result.first_check.max())
            check = f"{'passes' if worst <= 1e-5 else 'fails'} ({worst:.2g})"
            kept_text = f"{int(kept.sum())} of {len(seeds)}" if task.startswith("CartPole") else "-"
            per_seed = " ".join(f"{v:.0f}" for v in final)
            lines.append(
                f"| {task} | {variant} | {check} | {kept_text} | {final.mean():.1f} | {per_seed} |"
            )
            for seed, value, k in zip(seeds, final, kept):
                csv_rows.append(
                    [
                        task,
                        variant,
                        seed,
                        f"{value:.2f}",
                        bool(k),
                        f"{worst:.3g}",
                        f"{result.seconds:.1f}",
                    ]
                )
            print(lines[-1], flush=True)
    (RESULTS / "ch08_ppo_bugs.md").write_text("\n".join(lines) + "\n")
    with open(RESULTS / "ch08_ppo_bugs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["task", "ppo", "seed", "final_return", "kept_475", "max_ratio_dev", "wall_clock_s"]
        )
        writer.writerows(csv_rows)


if __name__ == "__main__":
    main()
