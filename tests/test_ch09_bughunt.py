"""Chapter 9's bug hunt: every planted bug is caught, every fixed twin passes, the suspects
train without crashing, and the answer key agrees with what the diagnostics see."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import rldebug
from rldebug.bughunt import (
    AGENT_NAMES,
    BUG_NAMES,
    DIAGNOSTICS,
    RecallEnv,
    findings_matrix,
    flagged,
    make_agent,
    plot_findings,
    run_all_diagnostics,
    suspect_source,
    truncation_probe,
)
from rldebug.checkers import ch09
from rldebug.qlearning import td_target

rldebug.configure_torch(1)

# Which diagnostics must flag each suspect (the evidence, not the bug's name).
EXPECTED_FLAGS = {
    "agent_1": {"td shapes", "gradient mask"},
    "agent_2": {"leak test", "rollout consistency", "first-epoch check"},
    "agent_3": {"truncation probe"},
    "agent_4": {"memory probe", "rollout consistency", "first-epoch check"},
    "agent_5": {"burn-in gradient"},
    "agent_6": {"gradient mask"},
    "agent_7": {"rollout consistency", "first-epoch check"},
    "agent_8": {"first-epoch check"},
}


def test_at_least_eight_suspects():
    assert len(AGENT_NAMES) >= 8 and set(EXPECTED_FLAGS) == set(AGENT_NAMES)


@pytest.mark.parametrize("name", AGENT_NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_planted_bug_is_caught(name, seed):
    found = flagged(run_all_diagnostics(make_agent(name, seed=seed)))
    assert found, f"{name}: no diagnostic flags its bug"
    assert set(found) == EXPECTED_FLAGS[name], (name, found)


@pytest.mark.parametrize("name", AGENT_NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_every_fixed_twin_passes_every_diagnostic(name, seed):
    findings = run_all_diagnostics(make_agent(name, fixed=True, seed=seed))
    assert not flagged(findings), [str(f) for f in findings.values() if f.flagged]
    assert sum(f.applicable for f in findings.values()) >= 2


@pytest.mark.parametrize("name", AGENT_NAMES)
def test_suspects_train_without_crashing(name):
    agent = make_agent(name)
    if hasattr(agent, "collect") and hasattr(agent, "update"):  # PPO: one update
        agent.update(agent.collect())
    elif hasattr(agent, "sequence_loss"):  # DRQN: a few updates
        agent.train(n_updates=5, eval_every=5)
    else:
        agent.train(n_updates=5, eval_every=5)
    assert "def " in suspect_source(name) and "def " in suspect_source(name, fixed=True)


def test_bug_names_cover_the_answer_key_and_the_checker_knows_it():
    answers = {exercise.reference() for exercise in ch09.EXERCISES}
    assert len(answers) == len(AGENT_NAMES) and answers <= set(BUG_NAMES)
    assert len(BUG_NAMES) > len(answers)  # there are distractors


def test_checker_hint_names_a_diagnostic():
    with pytest.raises(Exception, match="leak test"):
        ch09.check_agent_2(lambda: "not a bug name")
    with pytest.raises(ValueError, match="unknown suspect"):
        ch09.check_agent("agent_99", lambda: "x")


def test_truncation_probe_on_the_library_target():
    assert truncation_probe(lambda r, q, te, tr: td_target(r, q, te, tr, 0.9), 0.9).ok
    wrong = truncation_probe(
        lambda r, q, te, tr: td_target(r, q, (te + tr).clamp(max=1), tr, 0.9), 0.9
    )
    assert not wrong.ok and "NOT bootstrap" in str(wrong)


def test_heat_map_matrix():
    findings = {n: run_all_diagnostics(make_agent(n)) for n in ("agent_3", "agent_8")}
    matrix = findings_matrix(findings)
    assert matrix.shape == (2, len(DIAGNOSTICS))
    assert np.nansum(matrix) == 2 and np.isnan(matrix).any()
    plot_findings(findings)


def test_recall_env_rewards_memory():
    env = RecallEnv(4, seed=0)
    obs, start = env.reset()
    assert obs.shape == (4, 2) and bool(start.all())
    with pytest.raises(ValueError, match="actions must be"):
        env.step(torch.tensor([0, 1, 2, 0]))
    with pytest.raises(RuntimeError, match="reset"):
        RecallEnv(2).step(torch.zeros(2))
    # A policy that remembers the last cue earns 1 at every step.
    memory = obs[:, 0].clone()
    for _ in range(30):
        memory = torch.where(obs[:, 1] > 0, obs[:, 0], memory)
        obs, reward, _, _ = env.step((memory > 0).long())
        assert bool((reward == 1).all())


def test_make_agent_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown suspect"):
        make_agent("agent_0")
