"""The DQN recipes of the chapters, shared with their benchmarks so that a chapter and its
benchmark train the same agent: ``dqn.Config(**CARTPOLE_RECIPE)``."""

from __future__ import annotations

from typing import Any

__all__ = ["CARTPOLE_RECIPE", "SINE_ROAD_RECIPE"]

# Chapter 3's CartPole-v1 recipe: the defaults with these changes (each one measured over
# many seeds, see the chapter and benchmarks/ch03_recipe.py): a narrower net, larger
# batches, a faster epsilon decay, three-step returns, and no more updates once the
# training episodes show the task solved.
CARTPOLE_RECIPE: dict[str, Any] = dict(
    hidden=(128, 128), batch_size=128, eps_fraction=0.1, n_step=3, stop_when_solved=475.0
)


# Chapter 4's sine-road configuration, shared with benchmarks/ch04_sine_road_dqn.py so
# that the chapter and its benchmark train the same agent (only logging may differ).
SINE_ROAD_RECIPE: dict[str, Any] = dict(
    env_id="SineRoad-v0",
    num_envs=8,
    total_steps=10_000,
    hidden=(128, 128),
    gamma=0.8,  # a step's reward matters for about 1 / (1 - gamma) = 5 steps
    lr=5e-3,
    lr_end=None,  # a constant learning rate
    batch_size=128,
    buffer_size=20_000,
    learning_starts=1_000,
    train_every=4,
    target_update_every=100,
    eps_fraction=0.3,
    eps_end=0.02,
    final_eval_episodes=20,
)
