"""Steps per second of the sine-road environments.

Compares one ``SineRoad-v0`` (through ``gymnasium.make``, random actions) with gymnasium's
``CartPole-v1`` in the same run, and the native ``SineRoadVectorEnv`` at several sizes with
gymnasium's ``SyncVectorEnv`` at 16 environments. Actions are drawn in advance so that only
the environments are timed. Writes ``benchmarks/results/env_speed.md`` and ``.csv``.

    python benchmarks/env_speed.py [--seconds 3.0] [--rounds 10]
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
import sineroad  # noqa: F401  (registers the ids)

RESULTS = Path(__file__).resolve().parent / "results"


def single_stepper(env_id: str):
    env = gym.make(env_id)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, size=2_000).tolist()

    def run() -> int:
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            if terminated or truncated:
                env.reset()
        return len(actions)

    return run


def vector_stepper(env_id: str, num_envs: int, mode: str):
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)
    envs.reset(seed=0)
    n_actions = envs.single_action_space.n
    actions = np.random.default_rng(0).integers(0, n_actions, size=(16, num_envs))

    def run() -> int:
        for a in actions:
            envs.step(a)
        return actions.size

    return run


def measure(steppers: dict, seconds: float, rounds: int) -> dict:
    """Best steps/s of each stepper over ``rounds`` interleaved rounds.

    Interleaving and keeping the best round make the comparison robust to other processes
    sharing the machine.
    """
    best = dict.fromkeys(steppers, 0.0)
    for _ in range(rounds):
        for key, run in steppers.items():
            steps, start = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - start) < seconds / rounds:
                steps += run()
            best[key] = max(best[key], steps / elapsed)
    return best


def machine_info() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores "
        f"(load average {load} at the end of the run), "
        f"Python {platform.python_version()}, numpy {np.__version__}, "
        f"gymnasium {gym.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds, best kept")
    args = parser.parse_args()
    s = args.seconds

    configs = [
        ("SineRoad-v0", "gymnasium.make", 1),
        ("CartPole-v1", "gymnasium.make", 1),
    ]
    for env_id in ("SineRoad-v0", "SineRoadFlicker-v0"):
        configs += [(env_id, "SineRoadVectorEnv", n) for n in (1, 16, 256, 4096)]
        configs.append((env_id, "SyncVectorEnv", 16))
    configs.append(("CartPole-v1", "SyncVectorEnv", 16))
    steppers = {}
    for env_id, impl, n in configs:
        if impl == "gymnasium.make":
            steppers[env_id, impl, n] = single_stepper(env_id)
        else:
            mode = "sync" if impl == "SyncVectorEnv" else "vector_entry_point"
            steppers[env_id, impl, n] = vector_stepper(env_id, n, mode)
    rates = measure(steppers, s, args.rounds)
    rows = [(*key, rate) for key, rate in rates.items()]

    for row in rows:
        print(f"{row[0]:<20} {row[1]:<18} N={row[2]:<5} {row[3]:>14,.0f} steps/s")

    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "env_speed.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_id", "implementation", "num_envs", "steps_per_second"])
        writer.writerows([(a, b, n, f"{r:.0f}") for a, b, n, r in rows])
    lines = [
        "# Environment speed",
        "",
        f"Machine: {machine_info()}.",
        "",
        f"One process, {s:g} s per measurement split into {args.rounds} interleaved rounds",
        "(best round kept), random actions drawn in advance; a step of N environments counts",
        "as N steps.",
        "Produced by `python benchmarks/env_speed.py`.",
        "",
        "The last column divides by the same environment's `SyncVectorEnv` at N = 16 (by",
        "CartPole-v1 through `gymnasium.make` for the single environments). On a shared",
        "machine the ratios are more stable than the absolute rates.",
        "",
        "| environment | implementation | N | steps / s | relative |",
        "|---|---|---:|---:|---:|",
    ]
    for env_id, impl, n, rate in rows:
        if impl == "gymnasium.make":
            ref = rates["CartPole-v1", "gymnasium.make", 1]
        else:
            ref = rates[env_id, "SyncVectorEnv", 16]
        lines.append(f"| {env_id} | {impl} | {n} | {rate:,.0f} | {rate / ref:.1f}x |")
    (RESULTS / "env_speed.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'env_speed.md'}")


if __name__ == "__main__":
    main()
