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
    HARD_CASES,
    SUSPECTS,
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


@pytest.mark.parametrize("name", HARD_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_no_diagnostic_flags_the_hard_cases(name, seed):
    found = run_all_diagnostics(make_agent(name, seed=seed))
    assert not flagged(found), [str(f) for f in found.values() if f.flagged]
    assert not flagged(run_all_diagnostics(make_agent(name, fixed=True, seed=seed)))


def test_hard_case_twins_differ_from_their_suspects_in_one_method():
    from rldebug.bughunt import drqn

    assert drqn.Agent9(0).net.rnn.num_layers == 2 == drqn.TwoLayerDQN(0).net.rnn.num_layers
    # The same weights act differently: the suspect reads the bottom layer.
    suspect, twin = drqn.Agent9(0), drqn.TwoLayerDQN(0)
    twin.net.load_state_dict(suspect.net.state_dict())
    obs, start = torch.randn(4, 2), torch.ones(4, dtype=torch.bool)
    h = suspect.net.initial_state(4)
    q_suspect, h_suspect = suspect.act_step(obs, h, start)
    q_twin, h_twin = twin.act_step(obs, h, start)
    torch.testing.assert_close(h_suspect, h_twin)
    assert not torch.allclose(q_suspect, q_twin)
    # The padded batch: real steps are a prefix; padding is zeros and carries no loss.
    agent = drqn.EpisodeDQN(0)
    batch = agent.sample_sequence_batch()
    assert bool(batch.episode_start[:, 0].all()) and bool(batch.mask[:, 0].all())
    real = batch.mask.sum(1)
    assert int(real.min()) >= 6 and int(real.max()) <= 12
    after = ~batch.mask
    assert float(batch.obs[:, : agent.train_len][after].abs().sum()) == 0.0
    suspect = drqn.Agent10(0)
    suspect.net.load_state_dict(agent.net.state_dict())
    suspect.target_net.load_state_dict(agent.target_net.state_dict())
    assert not torch.isclose(agent.sequence_loss(batch), suspect.sequence_loss(batch))


def test_reader_fixes_plug_into_the_suspects():
    from rldebug.bughunt import drqn

    agent = make_agent("agent_9")
    agent.act_step = lambda obs, h, start: ch09.act_step(agent.net, obs, h, start)
    twin = drqn.TwoLayerDQN(0)
    obs, start = torch.randn(3, 2), torch.tensor([True, False, True])
    h = torch.randn(2, 3, agent.net.rnn.hidden_size)
    torch.testing.assert_close(agent.act_step(obs, h, start)[0], twin.act_step(obs, h, start)[0])
    suspect = make_agent("agent_10")
    suspect.td_loss = ch09.td_loss
    batch = suspect.sample_sequence_batch()
    torch.testing.assert_close(
        suspect.sequence_loss(batch), drqn.EpisodeDQN.sequence_loss(suspect, batch)
    )


@pytest.mark.parametrize("name", SUSPECTS)
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
    answers = {ch09._answer(name) for name in SUSPECTS}
    assert len(answers) == len(SUSPECTS) and answers <= set(BUG_NAMES)
    assert len(BUG_NAMES) > len(answers)  # there are distractors


def test_checker_hint_names_a_diagnostic():
    with pytest.raises(Exception, match="leak test"):
        ch09.check_agent_2(lambda: "not a bug name")
    with pytest.raises(ValueError, match="unknown suspect"):
        ch09.check_agent("agent_99", lambda: "x")
    with pytest.raises(Exception, match="No diagnostic flags it"):
        ch09.check_agent_9(lambda: "hidden state leaks across episodes")


def test_fix_checkers_accept_other_correct_forms():
    from rldebug.recurrent import reset_state

    def top_of_h_n(net, obs, h, episode_start):
        h = reset_state(h, episode_start)
        _, h = net.rnn(obs[:, None], h)
        return net.head(h[0][-1] if isinstance(h, tuple) else h[-1]), h

    ch09.check_act_step(top_of_h_n, seed=1)
    ch09.check_td_loss(lambda q_sa, target, mask: ((q_sa - target) ** 2)[mask].mean(), seed=1)


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
