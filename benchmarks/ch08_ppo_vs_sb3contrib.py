"""Chapter 8 benchmark: our recurrent PPO vs sb3-contrib's RecurrentPPO on CartPoleNoVel-v1.

Both run on the same seeds with one torch thread; sb3-contrib uses RL-Zoo's tuned settings
(8 envs, 100k steps, VecNormalize). Both are evaluated greedily on the same 20 episodes
(seeds 10 000 ...) at the same steps (ours: ``PPOConfig().eval_every``). "Kept" means what
``PPOResult.kept`` means: >= 475 at every evaluation in the last 20% of training.
Writes benchmarks/results/ch08_ppo_vs_sb3contrib.md. Needs the `bench` extra.

    python benchmarks/ch08_ppo_vs_sb3contrib.py --seeds 10
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import rldebug
from rldebug.agents import ppo

OUT = Path(__file__).resolve().parent / "results" / "ch08_ppo_vs_sb3contrib.md"


EVAL_EPISODES = 20


def run_sb3(seed: int, steps: int, eval_every: int) -> dict:
    import gymnasium as gym
    import sineroad  # noqa: F401
    import torch.nn as nn
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    env = VecNormalize(make_vec_env("CartPoleNoVel-v1", n_envs=8, seed=seed), gamma=0.98)
    model = RecurrentPPO(
        "MlpLstmPolicy",
        env,
        n_steps=32,
        batch_size=256,
        gae_lambda=0.8,
        gamma=0.98,
        n_epochs=20,
        ent_coef=0.0,
        learning_rate=lambda f: 1e-3 * f,
        clip_range=lambda f: 0.2 * f,
        policy_kwargs=dict(
            ortho_init=False,
            activation_fn=nn.ReLU,
            lstm_hidden_size=64,
            enable_critic_lstm=True,
            net_arch=dict(pi=[64], vf=[64]),
        ),
        seed=seed,
        verbose=0,
    )
    curve: list[tuple[int, float]] = []

    def evaluate() -> float:
        eval_env = gym.make("CartPoleNoVel-v1")
        total = 0.0
        for ep in range(EVAL_EPISODES):
            obs, _ = eval_env.reset(seed=10_000 + ep)
            state, start, done = None, np.ones(1, dtype=bool), False
            while not done:
                o = env.normalize_obs(obs[None])
                a, state = model.predict(o, state=state, episode_start=start, deterministic=True)
                obs, r, term, trunc, _ = eval_env.step(int(a[0]))
                total += r
                start, done = np.zeros(1, dtype=bool), term or trunc
        eval_env.close()
        return total / EVAL_EPISODES

    class Eval(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % eval_every < 8:  # 8 environment steps per call
                # (one evaluation per multiple of eval_every, at most 7 steps after it)
                curve.append((self.num_timesteps, evaluate()))
            return True

    started = time.perf_counter()
    model.learn(total_timesteps=steps, callback=Eval())
    seconds = time.perf_counter() - started
    if not curve or curve[-1][0] < model.num_timesteps:
        curve.append((model.num_timesteps, evaluate()))
    return {"curve": curve, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sb3-steps", type=int, default=100_000)
    args = parser.parse_args()
    rldebug.configure_torch(1)
    seeds = list(range(args.seeds))
    cfg = ppo.PPOConfig()
    ours = ppo.train_ppo(cfg, seeds, progress=False)
    ours_kept = ours.kept(475)
    rows = []
    for i, seed in enumerate(seeds):
        sb3 = run_sb3(seed, args.sb3_steps, cfg.eval_every)
        steps = np.array([s for s, _ in sb3["curve"]])
        rets = np.array([r for _, r in sb3["curve"]])
        hit = np.flatnonzero(rets >= 475)
        late = steps >= 0.8 * steps[-1]
        rows.append(
            (
                seed,
                ours.steps_to(475)[i],
                "yes" if ours_kept[i] else "no",
                ours.eval_returns[-1, i],
                steps[hit[0]] if len(hit) else np.nan,
                "yes" if (rets[late] >= 475).all() else "no",
                rets[-1],
                sb3["seconds"],
            )
        )
        print(rows[-1], flush=True)
    lines = [
        "# Chapter 8: recurrent PPO vs sb3-contrib RecurrentPPO (CartPoleNoVel-v1)",
        "",
        f"Ours: {len(seeds)} seeds trained together in {ours.seconds:.0f} s "
        f"({cfg.total_steps} steps each). sb3-contrib: one run per seed "
        f"({args.sb3_steps} steps).",
        "Steps: environment steps summed over the environments of one seed (both).",
        f"Greedy evaluation: mean of {EVAL_EPISODES} episodes every {cfg.eval_every} steps. "
        "Kept: >= 475 at every evaluation in the last 20% of training.",
        "",
        "| seed | ours: steps to 475 | ours: kept | ours: final "
        "| sb3: steps to 475 | sb3: kept | sb3: final | sb3: s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {s} | {a:.0f} | {k} | {b:.0f} | {c:.0f} | {k2} | {d:.0f} | {e:.0f} |"
        for s, a, k, b, c, k2, d, e in rows
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
