"""Chapter 7's experiments: the final-return shortcut and the memoryless baselines."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rldebug.agents import drqn
from rldebug.agents import drqn_experiments as experiments


def test_final_returns_skips_the_curve_but_not_the_result():
    """final_returns evaluates only at the end; the training and the final score are the same."""
    small = drqn.Config(total_steps=1_200, num_envs=4, learning_starts=400, train_every=16,
                        eval_every=400, eval_episodes=2)  # fmt: skip
    full = drqn.train(small, seeds=[0, 1])
    assert len(full.eval_steps) == 3
    np.testing.assert_array_equal(experiments.final_returns(small, seeds=[0, 1]), full.final_return)


def test_memoryless_baseline_reads_what_the_drqn_reads():
    """The frame-stacked DQN gets the previous action too when the DRQN does (a fair comparison)."""
    small = dict(total_steps=400, num_envs=2, learning_starts=200, eval_every=400,
                 eval_episodes=1)  # fmt: skip

    def inputs(result):  # the width of the first Linear layer
        net = result.q_nets[0]
        return next(m for m in net.modules() if isinstance(m, drqn.nn.Linear)).in_features

    with_action = experiments.memoryless_dqn(seeds=[0], frame_stack=4, **small)
    assert inputs(with_action) == 4 * (1 + 3)  # 4 x (offset + one-hot action)
    alone = experiments.memoryless_dqn(seeds=[0], frame_stack=4, prev_action=False, **small)
    assert inputs(alone) == 4
    like = replace(drqn.Config(), prev_action=False)
    assert inputs(experiments.memoryless_dqn(seeds=[0], like=like, **small)) == 1
