"""Returns of the hand-written controllers: proof that memory matters, before any learning.

Rows: random, reactive (current observation only), memory (hand-written), oracle (sees
the hidden state). Columns: the three sine-road ids and CartPoleNoVel-v1. Each entry is the
mean +- std of the return over 100 episodes reset with seeds 0..99 (the same episodes for
every controller). The reactive threshold is first tuned on seeds 1000..1199.
Writes ``benchmarks/results/env_baselines.md`` and ``.csv``.

    python benchmarks/env_baselines.py [--episodes 100]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import sineroad
from sineroad.controllers import (
    CONTROLLERS,
    REACTIVE_THRESHOLD,
    ReactiveController,
    evaluate_controllers,
    run_episode,
)

RESULTS = Path(__file__).resolve().parent / "results"
IDS = sineroad.ENV_IDS
THRESHOLDS = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2)


def sweep_threshold(env_id: str, n_episodes: int = 200, seed: int = 1000) -> dict[float, float]:
    """Mean return of the reactive rule for each threshold, on tuning seeds."""
    env = gym.make(env_id)
    out = {}
    for threshold in THRESHOLDS:
        controller = ReactiveController(env, threshold=threshold)
        out[threshold] = float(
            np.mean([run_episode(env, controller, seed=seed + k) for k in range(n_episodes)])
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    start = time.perf_counter()

    sweeps = {env_id: sweep_threshold(env_id) for env_id in IDS[1:3]}
    for env_id, sweep in sweeps.items():
        print(env_id, "reactive threshold sweep:", {k: round(v, 1) for k, v in sweep.items()})

    results = {env_id: evaluate_controllers(env_id, n_episodes=args.episodes) for env_id in IDS}
    for env_id, res in results.items():
        print(env_id, {k: (round(v["mean"], 1), round(v["std"], 1)) for k, v in res.items()})

    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "env_baselines.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["controller", "env_id", "mean_return", "std_return", "episodes"])
        for env_id, res in results.items():
            for name, r in res.items():
                writer.writerow(
                    [name, env_id, f"{r['mean']:.2f}", f"{r['std']:.2f}", args.episodes]
                )

    defaults = sineroad.DEFAULTS
    lines = [
        "# Baselines: hand-written controllers",
        "",
        f"Mean ± std of the return over {args.episodes} episodes (seeds 0..{args.episodes - 1},",
        "the same episodes for every controller). Produced by `python benchmarks/env_baselines.py`",
        f"on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},",
        f"numpy {np.__version__}, gymnasium {gym.__version__}.",
        "",
        "Sine-road defaults: "
        + ", ".join(
            f"{k}={defaults[k]}"
            for k in (
                "amplitude",
                "period",
                "period_range",
                "band_half_width",
                "wall_half_width",
                "dy",
            )
        )
        + f", max_episode_steps={defaults['max_episode_steps']}, rewards "
        f"{defaults['band_reward']:+g} / {defaults['off_band_reward']:+g} / {defaults['wall_reward']:+g}.",
        "",
        "| controller | " + " | ".join(IDS) + " |",
        "|---|" + "---:|" * len(IDS),
    ]
    for name in CONTROLLERS:
        cells = [f"{results[i][name]['mean']:.1f} ± {results[i][name]['std']:.1f}" for i in IDS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Gap of memory over reactive, as a share of the oracle - random range:",
        "",
    ]
    for env_id in IDS:
        r = {k: v["mean"] for k, v in results[env_id].items()}
        share = (r["memory"] - r["reactive"]) / (r["oracle"] - r["random"])
        lines.append(f"- {env_id}: {share:.0%}")
    lines += [
        "",
        f"Reactive threshold (in units of the wall half-width W): {REACTIVE_THRESHOLD}, the best",
        "of this sweep on seeds 1000..1199 (mean return):",
        "",
        "| threshold | " + " | ".join(sweeps) + " |",
        "|---:|" + "---:|" * len(sweeps),
    ]
    for threshold in THRESHOLDS:
        lines.append(
            f"| {threshold} | " + " | ".join(f"{sweeps[i][threshold]:.1f}" for i in sweeps) + " |"
        )
    (RESULTS / "env_baselines.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'env_baselines.md'} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
