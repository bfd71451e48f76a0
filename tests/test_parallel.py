"""rldebug.parallel: jobs in worker processes, and the populations split across them."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from rldebug.agents import ppo
from rldebug.agents.dqn import Config, train
from rldebug.parallel import (
    progress_bar,
    queue_in_background,
    run_in_background,
    run_parallel,
    split_seeds,
)


def _fail():
    raise KeyError("planted failure")


def test_results_come_back_in_order_from_other_processes():
    jobs = [lambda k=k: (k, os.getpid()) for k in range(4)]  # lambdas: the workers are forked
    results = run_parallel(jobs, processes=2, progress=False)
    assert [k for k, _ in results] == [0, 1, 2, 3]
    assert os.getpid() not in {pid for _, pid in results}


def test_one_process_runs_here():
    assert run_parallel([os.getpid], processes=1, progress=False) == [os.getpid()]


def test_a_failing_job_raises_its_error():
    with pytest.raises(KeyError, match="planted failure"):
        run_parallel([lambda: 1, _fail], processes=2, progress=False)


def test_a_background_job_runs_in_another_process_while_this_one_goes_on():
    job = run_in_background(lambda: (os.getpid(), time.sleep(0.5))[0], desc="sleeper")
    assert not job.done()  # returned at once
    assert job.result(progress=False) not in (None, os.getpid())
    assert job.done() and job.result() == job.result()  # the value is kept


def test_queued_jobs_run_in_order_in_one_worker_and_come_back_one_by_one():
    jobs = queue_in_background(
        {"first": os.getpid, "second": lambda: (time.sleep(1.0), os.getpid())[1]}
    )
    first = jobs["first"].result(progress=False)
    assert not jobs["second"].done()  # the first came back before the second ended
    assert jobs["second"].result(progress=False) == first != os.getpid()  # same worker


def test_a_background_job_reports_progress_and_can_train():
    cfg = Config(total_steps=300, learning_starts=100, eval_every=0, final_eval_episodes=2,
                 hidden=(8,), batch_size=8)  # fmt: skip
    job = run_in_background(lambda: train(cfg, [0], progress=True))
    result = job.result(progress=False)
    alone = train(cfg, [0])
    np.testing.assert_array_equal(result.final_return, alone.final_return)


def test_a_failing_background_job_raises_its_error():
    job = run_in_background(_fail)
    with pytest.raises(KeyError, match="planted failure"):
        job.result(progress=False)
    with pytest.raises(TypeError, match="no arguments"):
        run_in_background(42)


def test_inside_a_worker_a_background_job_runs_at_once():
    (pid,) = run_parallel([lambda: run_in_background(os.getpid).result(), lambda: 0],
                          processes=2, progress=False)[:1]  # fmt: skip
    assert pid != os.getpid()


def test_split_seeds_cuts_consecutive_runs():
    assert split_seeds(range(10), 2) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert split_seeds([3, 4, 5, 6, 7], 2) == [[3, 4, 5], [6, 7]]
    assert split_seeds([1, 2], 4) == [[1], [2]]


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="functions of no arguments"):
        run_parallel([1, 2], progress=False)
    with pytest.raises(ValueError, match="processes"):
        run_parallel([int], processes=0, progress=False)


def test_progress_bar_in_a_worker_reports_a_fraction():
    def job():
        return sum(progress_bar(range(10), desc="inner"))

    assert run_parallel([job, job], processes=2, progress=False) == [45, 45]


def test_dqn_seeds_split_over_processes_equal_the_groups_trained_alone():
    small = dict(total_steps=400, learning_starts=100, log_every=100, eval_every=200,
                 eval_episodes=2, final_eval_episodes=3, hidden=(16,), batch_size=16)  # fmt: skip
    cfg = Config(**small)
    split = train(cfg, [3, 4, 5, 6], processes=2)
    first, second = train(cfg, [3, 4]), train(cfg, [5, 6])
    assert split.seeds == [3, 4, 5, 6]
    for name in ("losses", "eval_returns", "eval_q0", "mean_max_q"):
        joined = np.concatenate([getattr(first, name), getattr(second, name)], axis=1)
        np.testing.assert_array_equal(getattr(split, name), joined)
    finals = np.r_[first.final_return, second.final_return]
    np.testing.assert_array_equal(split.final_return, finals)
    for a, b in zip(split.q_nets, first.q_nets + second.q_nets):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.parametrize("recurrent", [True, False])
def test_ppo_split_equals_each_seed_trained_alone(recurrent):
    cfg = ppo.Config(total_steps=256, num_envs=4, num_steps=32, eval_every=128,
                     eval_episodes=2, recurrent=recurrent)  # fmt: skip
    split = ppo.train(cfg, [0, 1, 2], processes=2, progress=False)
    first, second = ppo.train(cfg, [0, 1], progress=False), ppo.train(cfg, [2], progress=False)
    assert split.seeds == [0, 1, 2] and split.eval_returns.shape == (3, 3)
    np.testing.assert_array_equal(
        split.eval_returns, np.concatenate([first.eval_returns, second.eval_returns], axis=1)
    )
    assert split.first_check.shape[1] == 3 and split.normalizer.mean.shape[0] == 3
    # the joined agent holds each group's networks, in order
    for k, (group, j) in enumerate([(first, 0), (first, 1), (second, 0)]):
        for p, q in zip(split.agent.seed(k).parameters(), group.agent.seed(j).parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)
