"""Benchmark: the book's DQN against Stable-Baselines3's DQN on CartPole-v1, same seeds.

SB3 uses the RL-Zoo tuned hyperparameters for CartPole-v1 (50k steps); ours uses the
chapter 3 recipe (30k steps), all seeds side by side as in the notebook. Both are evaluated greedily on 20 episodes every 2,500
steps and at the end, with the same evaluation function and seeds. Needs the ``bench``
extra (``pip install -e .[bench]``). Run with one torch thread::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ch03_dqn_vs_sb3.py [n_seeds] [n_seeds_ours]

SB3 runs on the first ``n_seeds`` (default 10); ours on ``n_seeds_ours`` (default 40).

Writes ``benchmarks/results/ch03_dqn_vs_sb3.md`` and a plot of the curves beside it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

import rldebug
from rldebug.agents.dqn import CARTPOLE_RECIPE, Config, train
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
    if not curve or curve[-1][0] < ZOO_STEPS:
        curve.append((ZOO_STEPS, final))
    steps, returns = (np.array(col) for col in zip(*curve))
    return {
        "steps": ZOO_STEPS,
        "solved_at": solved_at,
        "final": final,
        "wall": wall,
        "curve": (steps, returns),
    }


# the chapter 3 notebook's recipe: the library defaults with these changes
OURS = CARTPOLE_RECIPE


def run_ours(seeds: list[int]) -> tuple[list[dict], float]:
    """The seeds as in the notebook (two groups, one per process); also one seed trained
    alone (seconds)."""
    config = Config(eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES, eval_seed=EVAL_SEED)
    config = replace(config, **OURS)
    runs = train(config, seeds, processes=2)
    alone = train(config, seeds[:1]).seconds
    solved_at = runs.steps_to(SOLVED)
    rows = [
        {
            "steps": config.total_steps,
            "solved_at": None if np.isnan(solved_at[k]) else int(solved_at[k]),
            "final": float(runs.final_return[k]),
            "wall": runs.seconds / len(seeds),  # the joint run's seconds / number of seeds
            "curve": (runs.eval_steps, runs.eval_returns[:, k]),
        }
        for k in range(len(seeds))
    ]
    return rows, alone


def main() -> int:
    rldebug.configure_torch(1)
    n_seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    n_ours = int(sys.argv[2]) if len(sys.argv) > 2 else 40  # ours is cheap: more seeds
    seeds = list(range(n_seeds))
    all_ours, alone = run_ours(list(range(max(n_ours, n_seeds))))
    ours_rows = all_ours[:n_seeds]
    print(
        f"ours: {[round(o['final']) for o in ours_rows]}, one seed alone {alone:.1f} s", flush=True
    )
    rows = []
    for seed, ours in zip(seeds, ours_rows):
        sb3 = run_sb3(seed)
        rows.append((seed, ours, sb3))
        print(f"seed {seed}: sb3 {sb3}", flush=True)

    def fmt_steps(v):
        return "never" if v is None else f"{v:,}"

    recipe = ", ".join(f"{k}={v}" for k, v in OURS.items())
    lines = [
        "# Chapter 3: our DQN vs Stable-Baselines3 DQN on CartPole-v1",
        "",
        f"Greedy evaluation: mean return over {EVAL_EPISODES} episodes every {EVAL_EVERY:,} "
        f"steps and at the end; solved means mean >= {SOLVED:g}. SB3 {_sb3_version()} with "
        f"the RL-Zoo hyperparameters ({ZOO_STEPS:,} steps), one run per seed. Ours: the "
        f"chapter 3 recipe (`Config({recipe})`, {Config().total_steps:,} steps), the "
        f"{n_seeds} seeds trained as in the notebook (`train(config, seeds, processes=2)`: "
        f"two groups, one per core); its wall-clock per seed is the run's divided by "
        f"{n_seeds} (seed 0 trained "
        f"alone: {alone:.1f} s). Wall-clock includes the periodic evaluations. "
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs.",
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
    ours_reached = sum(o["solved_at"] is not None for _, o, _ in rows)
    sb3_reached = sum(s["solved_at"] is not None for _, _, s in rows)
    many_kept = sum(o["final"] >= SOLVED for o in all_ours)
    many_reached = sum(o["solved_at"] is not None for o in all_ours)
    ours_wall = np.mean([o["wall"] for _, o, _ in rows])
    sb3_wall = np.mean([s["wall"] for _, _, s in rows])
    lines += [
        "",
        f"- Reached {SOLVED:g}: ours {ours_reached}/{n_seeds}, SB3 {sb3_reached}/{n_seeds}. "
        f"Still solved at the end: ours {ours_ok}/{n_seeds}, SB3 {sb3_ok}/{n_seeds}.",
        f"- Median first solved at (seeds that got there): ours "
        f"{_median([o['solved_at'] for _, o, _ in rows])}, "
        f"SB3 {_median([s['solved_at'] for _, _, s in rows])} steps.",
        f"- Mean wall-clock per seed: ours {ours_wall:.1f} s, SB3 {sb3_wall:.1f} s "
        f"(SB3 / ours: {sb3_wall / ours_wall:.1f}x; SB3 / ours alone: {sb3_wall / alone:.1f}x).",
        f"- Ours on seeds 0-{len(all_ours) - 1}, each block of 10 trained as the notebook "
        f"trains seeds 0-9: reached {SOLVED:g} on "
        f"{many_reached}/{len(all_ours)}, still solved at the end on {many_kept}/{len(all_ours)}.",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))
    plot(rows)
    return 0


def _median(values) -> str:
    values = [v for v in values if v is not None]
    return f"{np.median(values):,.0f}" if values else "never"


def plot(rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import rldebug.plots

    ours = np.stack([o["curve"][1] for _, o, _ in rows])  # (seeds, evaluations)
    sb3 = np.stack([s["curve"][1] for _, _, s in rows])
    fig = rldebug.plots.band_plot(
        {
            "ours": (rows[0][1]["curve"][0], ours),
            "SB3 DQN (RL-Zoo)": (rows[0][2]["curve"][0], sb3),
        },
        ylabel=f"greedy return ({EVAL_EPISODES} episodes)",
        title="CartPole-v1: mean and min-max over seeds",
        hlines={"475": SOLVED},
    )
    fig.savefig(OUT.with_suffix(".png"), dpi=110)


def _sb3_version() -> str:
    import stable_baselines3

    return stable_baselines3.__version__


if __name__ == "__main__":
    sys.exit(main())
