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
import torch

import rldebug
from rldebug.agents import reinforce as rf

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ch06_recurrent_pg.md"
SEEDS = list(range(10))


def run(name: str, config: rf.Config) -> tuple[str, str, rf.History]:
    policy = rf.SeedBatchedGRUPolicy.create(SEEDS, obs_dim=2, n_actions=2, hidden=32)
    history = rf.train(policy, config, seed=0)
    final = rf.evaluate(policy, config.env_id, 20, carry_state=config.carry_state, seed=12345)
    rows = []
    for i in SEEDS:
        solved = history.solved_step[i]
        rows.append(
            f"| {name} | {i} | {'yes' if history.solved[i] else 'no'} | "
            f"{'' if np.isnan(solved) else f'{solved:,.0f}'} | "
            f"{history.eval_return[:, i].max():.0f} | {final[i]:.0f} |"
        )
    summary = (
        f"| {name} | {history.solved.sum()} / {len(SEEDS)} | "
        f"{np.nanmedian(history.solved_step) if history.solved.any() else float('nan'):,.0f} | "
        f"{int(history.steps[-1].sum()):,} | {len(history.train_return)} | "
        f"{history.seconds:.1f} |"
    )
    return "\n".join(rows), summary, history


def time_split(config: rf.Config, length: int = 500) -> str:
    """Seconds for one update with every episode `length` steps long: rollout vs training."""
    policy = rf.SeedBatchedGRUPolicy.create(SEEDS, obs_dim=2, n_actions=2, hidden=32)
    env = rf.CartPoleVec(len(SEEDS) * config.episodes, config.env_id)
    start = time.perf_counter()
    rf.collect_episodes(policy, env, seed=0, max_steps=length)  # early episodes end sooner
    rollout_per_step = time.perf_counter() - start
    n = len(SEEDS) * config.episodes
    obs = torch.randn(n, length, 2)
    actions = torch.randint(0, 2, (n, length))
    mask = torch.ones(n, length)
    start = time.perf_counter()
    log_probs = rf.episode_log_probs(policy, obs, actions, mask)
    split = lambda x: x.reshape(len(SEEDS), config.episodes, -1)  # noqa: E731
    loss = rf.reinforce_loss(split(log_probs), split(torch.ones(n, length)), split(mask), 0.99)
    loss.backward()
    train_s = time.perf_counter() - start
    return (
        f"One update with all {n} episodes {length} steps long: training pass "
        f"(forward + backward, {len(SEEDS)} seeds together) {train_s:.2f} s; a random-policy "
        f"rollout of {n} environments took {rollout_per_step:.2f} s."
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
        f"{rf.NOVEL_CONFIG.eval_every} updates; a seed stops once it reaches "
        f"{rf.NOVEL_CONFIG.solved_at:.0f}; the memoryless agent gets 40 updates). All seeds train "
        "together (SeedBatchedGRUPolicy).",
        "",
        "| agent | seeds solved | median steps to solve | steps played, all seeds (frozen ones too) "
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
