"""Benchmark: the numpy DQN of chapter 2 on CartPole-v1, fixed and with each bug alone.

Run it on a quiet machine::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ch02_numpy_dqn.py [--part fixed|bugs|all]

(about 20 minutes for the bugs on two cores: the one-sample updates take most of it)

``--part fixed`` writes ``benchmarks/results/ch02_numpy_dqn.md``:

* the fixed DQN on 10 seeds with the chapter's early stopping (each seed's network saved
  the first time its greedy return is >= 475 on two evaluations in a row and then averages
  >= 499 on 100 new episodes);
* the same with the older save rule (two evaluations in a row, no confirmation);
* the same without early stopping: the last network after the full 50,000 steps;
* the same with one-step targets (the RL-Zoo recipe as it is), with early stopping.

``--part bugs`` writes ``benchmarks/results/ch02_numpy_dqn_bugs.md`` and ``.csv`` (the
table chapter 2 shows): the fixed DQN, each bug of ``rldebug.numpy_mlp.Bugs`` alone, the
question's discount (gamma 0.999) alone, and every bug together, each trained for
``--bug-steps`` steps on ``--bug-seeds`` seeds with no early stopping, and measured on the
network as it is at the end.

"Solved" means the mean greedy return over 20 fresh evaluation episodes is >= 475.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from pathlib import Path

import numpy as np

from rldebug.numpy_dqn import DQNConfig, evaluate, train
from rldebug.numpy_mlp import Bugs

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run(label: str, config: DQNConfig, seeds: list[int]) -> dict:
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(config, seeds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    final = evaluate(result.net, n_episodes=20, seed=2024).mean(axis=1)
    at_stop = evaluate(result.last_net, n_episodes=20, seed=2024).mean(axis=1)
    row = {
        "run": label,
        "seeds": len(seeds),
        "steps": result.steps,
        "solved": f"{int((final >= 475).sum())}/{len(seeds)}",
        "mean return": f"{final.mean():.1f}",
        "per seed": " ".join(str(int(round(r))) for r in final),
        "solved at the stop": f"{int((at_stop >= 475).sum())}/{len(seeds)}",
        "saved at": " ".join(str(int(s)) if s >= 0 else "-" for s in result.solved_step),
        "candidates turned down": int(result.rejected.sum()),
        "wall s": f"{wall:.1f}",
        "cpu s": f"{cpu:.1f}",
    }
    print(row, flush=True)
    return row


def run_bug(label: str, config: DQNConfig, seeds: list[int]) -> dict:
    """One bug row: solved as in the chapter (saved when first solved), and the last network."""
    wall = time.perf_counter()
    result = train(config, seeds)
    wall = time.perf_counter() - wall
    saved = evaluate(result.net, n_episodes=20, seed=2024).mean(axis=1)
    last = evaluate(result.last_net, n_episodes=20, seed=2024).mean(axis=1)
    first = result.solved_step[result.solved_step >= 0]
    row = {
        "run": label,
        "seeds": len(seeds),
        "steps": result.steps,
        "saved solved": f"{int((saved >= 475).sum())}/{len(seeds)}",
        "saved return": round(float(saved.mean()), 1),
        "median first solved": int(np.median(first)) if len(first) else "-",
        "last return": round(float(last.mean()), 1),
        "last per seed": " ".join(str(int(round(r))) for r in last),
        "best evaluation": round(float(result.eval_returns.max()), 1),
        "last Huber loss": round(float(result.losses[-1000:].mean()), 4),
        "last signed gradient": round(float(result.signed_grads[-1000:].mean()), 5),
        "wall s": round(wall, 1),
    }
    print(row, flush=True)
    return row


def bug_rows(steps: int, seeds: list[int]) -> list[dict]:
    rows = []
    runs = [("no bug", DQNConfig())]
    runs += [(name, DQNConfig(bugs=Bugs.only(name))) for name in Bugs.names()]
    runs += [("gamma_0999", DQNConfig(gamma=0.999))]
    runs += [("every bug", DQNConfig(gamma=0.999, bugs=Bugs.every()))]
    for label, config in runs:
        config.total_steps, config.stop_when_solved = steps, False
        rows.append(run_bug(label, config, seeds))
    return rows


def machine_line() -> str:
    return (
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"numpy {np.__version__}, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}. "
    )


def write_bugs(rows: list[dict], steps: int) -> None:
    header = list(rows[0])
    with open(RESULTS / "ch02_numpy_dqn_bugs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Chapter 2: each bug of the numpy DQN alone, on CartPole-v1",
        "",
        machine_line() + f"Every run: {steps} steps, no early stopping. Saved: each seed's "
        "network as it was when saved (>= 475 on two evaluations in a row, then a mean >= 499 "
        "on 100 new episodes), else its last network, as in the chapter's proof; last: the network after all the steps. "
        "Returns: mean greedy return over 20 fresh episodes, averaged over the seeds. Best "
        "evaluation: the highest mean greedy return of any seed at any evaluation during "
        "training. Last Huber loss and signed gradient: means over the last 1000 updates "
        "(the signed gradient is the mean of dL/dQ(s, a), what the question printed as its "
        "loss). Generated by `benchmarks/ch02_numpy_dqn.py --part bugs`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    (RESULTS / "ch02_numpy_dqn_bugs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--bug-seeds", type=int, default=10)
    parser.add_argument("--bug-steps", type=int, default=50_000)
    parser.add_argument("--part", choices=["fixed", "bugs", "all"], default="all")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part in ("bugs", "all"):
        write_bugs(bug_rows(args.bug_steps, list(range(args.bug_seeds))), args.bug_steps)
    if args.part == "bugs":
        return
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    rows = [
        run("fixed, early stopping (the chapter's run)", DQNConfig(), seeds),
        run(
            "saved on two evaluations in a row, no confirmation",
            DQNConfig(confirm_episodes=0),
            seeds,
        ),
        run(
            "fixed, last network after 50k steps",
            DQNConfig(stop_when_solved=False, keep_solved_checkpoint=False),
            seeds,
        ),
        run("one-step targets (n_step=1), early stopping", DQNConfig(n_step=1), seeds),
    ]
    header = list(rows[0])
    lines = [
        "# Chapter 2: the numpy DQN on CartPole-v1",
        "",
        machine_line() + "Solved: mean greedy return over 20 fresh episodes >= 475. "
        "Generated by `benchmarks/ch02_numpy_dqn.py`.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    (RESULTS / "ch02_numpy_dqn.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
