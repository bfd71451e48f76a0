"""Benchmark: the book's DQN against Stable-Baselines3's DQN on CartPole-v1, same seeds.

SB3 uses the RL-Zoo tuned hyperparameters for CartPole-v1 (50k steps); ours uses the
chapter 3 defaults (30k steps). Both are evaluated greedily on 20 episodes every 2,500
steps and at the end, with the same evaluation function and seeds. Needs the ``bench``
extra (``pip install -e .[bench]``). Run with one torch thread::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ch03_dqn_vs_sb3.py [n_seeds]

Writes ``benchmarks/results/ch03_dqn_vs_sb3.md``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

import rldebug
from rldebug.agents.dqn import DQNConfig, train
from rldebug.training import evaluate, make_vec_env

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "ch03_dqn_vs_sb3.md"
SOLVED = 475.0
EVAL_EVERY = 2_500
EVAL_EPISODES = 20
EVAL_SEED = 10_000

# rl-baselines3-zoo, hyperparams/dqn.yml, CartPole-v1
ZOO = dict(
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1_000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    exploration_fraction=0.16,
    exploration_final_eps=0.04,
    policy_kwargs=dict(net_arch=[256, 256]),
)
ZOO_STEPS = 50_000


def run_sb3(seed: int) -> dict:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    eval_env = make_vec_env("CartPole-v1", EVAL_EPISODES)
    curve: list[tuple[int, float]] = []

    def policy(model):
        return lambda obs: model.predict(obs, deterministic=True)[0]

    class Every(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % EVAL_EVERY == 0:
                result = evaluate(policy(self.model), eval_env, EVAL_EPISODES, seed=EVAL_SEED)
                curve.append((self.num_timesteps, result.mean))
            return True

    start = time.perf_counter()
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", verbose=0, **ZOO)
    model.learn(ZOO_STEPS, callback=Every())
    final = evaluate(policy(model), eval_env, EVAL_EPISODES, seed=EVAL_SEED).mean
    wall = time.perf_counter() - start
    solved_at = next((s for s, v in curve if v >= SOLVED), None)
    return {"steps": ZOO_STEPS, "solved_at": solved_at, "final": final, "wall": wall}


def run_ours(seed: int) -> dict:
    r = train(DQNConfig(seed=seed, eval_every=EVAL_EVERY, eval_seed=EVAL_SEED))
    return {
        "steps": r.config.total_steps,
        "solved_at": r.steps_to_reach(SOLVED),
        "final": r.final_return,
        "wall": r.wall_time,
    }


def main() -> int:
    rldebug.configure_torch(1)
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    rows = []
    for seed in range(n_seeds):
        ours = run_ours(seed)
        sb3 = run_sb3(seed)
        rows.append((seed, ours, sb3))
        print(f"seed {seed}: ours {ours}  sb3 {sb3}", flush=True)

    def fmt_steps(v):
        return "never" if v is None else f"{v:,}"

    lines = [
        "# Chapter 3: our DQN vs Stable-Baselines3 DQN on CartPole-v1",
        "",
        f"Greedy evaluation: mean return over {EVAL_EPISODES} episodes every {EVAL_EVERY:,} "
        f"steps and at the end; solved means mean >= {SOLVED:g}. SB3 {_sb3_version()} with "
        f"the RL-Zoo hyperparameters ({ZOO_STEPS:,} steps); ours with `DQNConfig()` defaults "
        f"({DQNConfig().total_steps:,} steps). Wall-clock includes the periodic evaluations. "
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}.",
        "",
        "| seed | ours: first solved at | ours: final return | ours: wall s "
        "| SB3: first solved at | SB3: final return | SB3: wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for seed, o, s in rows:
        lines.append(
            f"| {seed} | {fmt_steps(o['solved_at'])} | {o['final']:.1f} | {o['wall']:.1f} "
            f"| {fmt_steps(s['solved_at'])} | {s['final']:.1f} | {s['wall']:.1f} |"
        )
    ours_ok = sum(o["final"] >= SOLVED for _, o, _ in rows)
    sb3_ok = sum(s["final"] >= SOLVED for _, _, s in rows)
    ours_wall = np.mean([o["wall"] for _, o, _ in rows])
    sb3_wall = np.mean([s["wall"] for _, _, s in rows])
    lines += [
        "",
        f"Seeds ending solved: ours {ours_ok}/{len(rows)}, SB3 {sb3_ok}/{len(rows)}. "
        f"Mean wall-clock per seed: ours {ours_wall:.1f} s, SB3 {sb3_wall:.1f} s "
        f"(ratio SB3/ours {sb3_wall / ours_wall:.1f}x).",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def _sb3_version() -> str:
    import stable_baselines3

    return stable_baselines3.__version__


if __name__ == "__main__":
    sys.exit(main())
