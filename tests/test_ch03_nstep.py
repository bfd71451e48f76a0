"""n-step returns: NStepWindow against a brute-force reference, and the agents that use it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rldebug
from rldebug.agents.dqn import Config, train
from rldebug.replay import NStepWindow

rldebug.configure_torch(1)


def _episodes(rng, batch_shape, n_steps):
    """Random steps of fake envs with NEXT_STEP autoreset: (keep, obs, a, r, next, term, trunc).

    An observation is a unique id, 1000 * env + t, so the next observation is obs + 1.
    """
    env_ids = 1000.0 * np.arange(np.prod(batch_shape)).reshape(*batch_shape, 1)  # (..., 1)
    crossing = np.zeros(batch_shape, dtype=bool)
    steps = []
    for t in range(n_steps):
        ends = rng.random(batch_shape) < 0.2
        terminated = ends & (rng.random(batch_shape) < 0.5)
        actions, rewards = rng.integers(0, 2, batch_shape), rng.normal(size=batch_shape)
        obs = env_ids + t
        steps.append((~crossing, obs, actions, rewards, obs + 1, terminated, ends & ~terminated))
        crossing = ends
    return steps


def _reference(steps, n, gamma):
    """Brute force: split each env's kept steps into episodes and build every n-step window."""
    n_envs = steps[0][0].size
    # every array (..., *rest) -> (n_envs, *rest)
    flat = [tuple(np.reshape(x, (n_envs, *np.shape(x)[np.ndim(s[0]) :])) for x in s) for s in steps]
    expected = []
    for e in range(n_envs):
        episode = []
        for keep, obs, a, r, nxt, term, trunc in flat:
            if not keep[e]:
                continue
            episode.append((obs[e, 0], a[e], r[e], nxt[e, 0], term[e], trunc[e]))
            if not (term[e] or trunc[e]):
                continue
            for t in range(len(episode)):
                k = min(n, len(episode) - t)
                last = episode[t + k - 1]
                ends_here = t + k == len(episode)
                if k < n and not last[4]:  # cut short by a time limit: dropped
                    continue
                ret = sum(gamma**j * episode[t + j][2] for j in range(k))
                expected.append((episode[t][0], episode[t][1], round(ret, 9), last[3],
                                 float(last[4] and ends_here), float(last[5] and ends_here)))  # fmt: skip
            episode = []
        # an unfinished episode: only the full windows are out
        for t in range(len(episode) - n + 1):
            ret = sum(gamma**j * episode[t + j][2] for j in range(n))
            expected.append((episode[t][0], episode[t][1], round(ret, 9), episode[t + n - 1][3],
                             0.0, 0.0))  # fmt: skip
    return sorted(expected)


def _stored(steps, n, gamma, batch_shape):
    window = NStepWindow(n, gamma, batch_shape, (1,))
    got = []
    for step in steps:
        for rows, t in window.push(*step):
            for idx in zip(*np.nonzero(rows)):
                got.append((float(t.obs[idx][0]), int(t.actions[idx]), round(float(t.rewards[idx]), 9),
                            float(t.next_obs[idx][0]), float(t.terminated[idx]),
                            float(t.truncated[idx])))  # fmt: skip
    return sorted(got)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_shape", [(4,), (2, 3)])
def test_window_matches_a_brute_force_reference(n, batch_shape):
    rng = np.random.default_rng(n)
    steps = _episodes(rng, batch_shape, 60)
    assert _stored(steps, n, 0.9, batch_shape) == _reference(steps, n, 0.9)


def test_a_five_step_episode_by_hand():
    for how, expected in [
        ("terminated", [(0, 1.75, 3, 0), (1, 1.75, 4, 0), (2, 1.75, 5, 1), (3, 1.5, 5, 1), (4, 1.0, 5, 1)]),
        ("truncated", [(0, 1.75, 3, 0), (1, 1.75, 4, 0), (2, 1.75, 5, 0)]),
    ]:  # fmt: skip
        window, stored = NStepWindow(3, 0.5, (1,), (1,)), []
        for t in range(5):
            end = np.array([t == 4])
            for rows, tr in window.push(np.ones(1, bool), np.array([[t]]), np.zeros(1), np.ones(1),
                                        np.array([[t + 1]]), end & (how == "terminated"),
                                        end & (how == "truncated")):  # fmt: skip
                if rows[0]:
                    stored.append((int(tr.obs[0, 0]), float(tr.rewards[0]), int(tr.next_obs[0, 0]),
                                   int(tr.terminated[0])))  # fmt: skip
        assert stored == expected, how


def test_one_step_passes_through_unchanged():
    window = NStepWindow(1, 0.99, (2,), (3,))
    obs = np.ones((2, 3))
    ((rows, t),) = list(window.push(np.array([True, False]), obs, [0, 1], [1.0, 2.0], obs,
                                    [False, True], [False, False]))  # fmt: skip
    assert rows.tolist() == [True, False] and t.obs is obs


def test_window_errors_are_clear():
    with pytest.raises(ValueError, match="n must be >= 1"):
        NStepWindow(0, 0.99, (1,), (1,))
    window = NStepWindow(3, 0.99, (2,), (1,))
    with pytest.raises(ValueError, match=r"keep must have shape \(2,\)"):
        list(window.push(np.ones(3, bool), *([np.zeros((3, 1))] * 6)))
    with pytest.raises(ValueError, match="n_step"):
        Config(n_step=0)


SMALL = dict(total_steps=600, learning_starts=200, log_every=200, eval_every=0,
             final_eval_episodes=2, hidden=(16,), batch_size=16, n_step=3)  # fmt: skip


def test_train_runs_with_n_step():
    r = train(Config(**SMALL), seeds=[0, 1])
    assert r.steps[-1] == 600 and np.isfinite(r.losses[-1]).all()


def test_n_step_targets_bootstrap_with_gamma_to_the_n(monkeypatch):
    """The loss is called with gamma ** n_step, for one seed and for several."""
    import rldebug.agents.dqn as dqn

    seen = []
    original = dqn.td_targets

    def spy(q_net, target_net, batch, gamma, **kwargs):
        seen.append(gamma)
        return original(q_net, target_net, batch, gamma, **kwargs)

    monkeypatch.setattr(dqn, "td_targets", spy)
    train(Config(**{**SMALL, "gamma": 0.9}))
    train(Config(**{**SMALL, "gamma": 0.9}), seeds=[0, 1])
    assert seen and all(g == pytest.approx(0.9**3) for g in seen)
    assert torch.is_grad_enabled()
