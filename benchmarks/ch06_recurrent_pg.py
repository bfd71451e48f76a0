"""Benchmark: recurrent vs memoryless REINFORCE on CartPoleNoVel-v1, 10 seeds, and where the
time goes. Writes ``benchmarks/results/ch06_recurrent_pg.md``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ch06_recurrent_pg.py

The settings are ``rldebug.agents.reinforce.NOVEL_CONFIG``, the ones chapter 6 asserts on.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import sineroad
import torch

import rldebug
from rldebug.agents import reinforce as rf
from rldebug.seedbatch import SeedBatch, per_seed, seeded

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ch06_recurrent_pg.md"
SEEDS = list(range(10))


def run(name: str, config: rf.Config) -> tuple[str, str, rf.Result]:
    result = rf.train(config, SEEDS)
    final = rf.evaluate(
        result.policy, config.env_id, 20, carry_state=config.carry_state, seed=12345
    )
    rows = []
    for i in range(len(SEEDS)):
        solved = result.solved_steps[i]
        rows.append(
            f"| {name} | {SEEDS[i]} | {'yes' if result.solved[i] else 'no'} | "
            f"{'' if np.isnan(solved) else f'{solved:,.0f}'} | "
            f"{result.eval_returns[:, i].max():.0f} | {final[i]:.0f} |"
        )
    summary = (
        f"| {name} | {result.solved.sum()} / {len(SEEDS)} | "
        f"{np.nanmedian(result.solved_steps) if result.solved.any() else float('nan'):,.0f} | "
        f"{int(result.steps[-1].sum()):,} | {len(result.train_returns)} | "
        f"{result.seconds:.1f} |"
    )
    return "\n".join(rows), summary, result


def time_split(config: rf.Config, length: int = 500) -> str:
    """Seconds for one update with every episode `length` steps long: rollout vs training."""
    policy = SeedBatch(seeded(lambda: rf.make_policy(config), SEEDS))
    envs = [sineroad.make_vec(config.env_id, config.episodes) for _ in SEEDS]
    generators = [torch.Generator().manual_seed(seed) for seed in SEEDS]
    start = time.perf_counter()
    rf.collect_episodes(policy, envs, SEEDS, generators=generators, max_steps=length)
    rollout_s = time.perf_counter() - start  # a random policy: early episodes end sooner
    shape = (len(SEEDS), config.episodes, length)  # (S, B, T)
    batch = rf.EpisodeBatch(
        obs=torch.randn(*shape, 2),
        actions=torch.randint(0, 2, shape),
        rewards=torch.ones(shape),
        mask=torch.ones(shape),
        log_probs=torch.zeros(shape),
    )
    start = time.perf_counter()
    per_seed(rf.update_loss)(policy, batch, 0.99, rf.episode_log_probs).sum().backward()
    train_s = time.perf_counter() - start
    n = len(SEEDS) * config.episodes
    return (
        f"One update with all {n} episodes {length} steps long: training pass "
        f"(forward + backward, {len(SEEDS)} seeds together) {train_s:.2f} s; a random-policy "
        f"rollout of {n} environments took {rollout_s:.2f} s."
    )


def main() -> None:
    rldebug.configure_torch(1)
    recurrent_rows, recurrent_sum, _ = run("recurrent", rf.NOVEL_CONFIG)
    memoryless = dataclasses.replace(
        rf.NOVEL_CONFIG, carry_state=False, unroll="per_step", updates=40
    )
    memoryless_rows, memoryless_sum, _ = run("memoryless", memoryless)
    lines = [
        "# Chapter 6: REINFORCE on CartPoleNoVel-v1, 10 seeds",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, 1 thread. Settings: `rf.NOVEL_CONFIG` "
        f"({rf.NOVEL_CONFIG.episodes} episodes per update and seed, lr {rf.NOVEL_CONFIG.lr}, "
        f"at most {rf.NOVEL_CONFIG.updates} updates, greedy evaluation of 10 episodes every "
        f"{rf.NOVEL_CONFIG.eval_every} updates; a seed stops (and plays no more episodes) once it "
        f"reaches {rf.NOVEL_CONFIG.solved_at:.0f}; the memoryless agent gets 40 updates). All "
        "seeds train together (`rf.train(config, seeds)`: one policy per seed, stacked by "
        "`rldebug.seedbatch.SeedBatch`; each seed with its own environments and random numbers).",
        "",
        "| agent | seeds solved | median steps to solve | steps played, all seeds "
        "| updates "
        "| wall-clock (s) |",
        "|---|---|---|---|---|---|",
        recurrent_sum,
        memoryless_sum,
        "",
        "| agent | seed | solved | steps to solve | best greedy eval | final greedy eval (20 ep.) |",
        "|---|---|---|---|---|---|",
        recurrent_rows,
        memoryless_rows,
        "",
        time_split(rf.NOVEL_CONFIG),
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
