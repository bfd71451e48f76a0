"""Recurrent PPO as one plain agent lifted to many seeds: seed k of a batched run is the run
on seed k alone; the LSTM's (h, c) is reset, stored, restored and detached like the GRU's h;
bad input raises clearly."""

from __future__ import annotations

import numpy as np
import pytest
import sineroad
import torch
import torch.nn.functional as F

import rldebug
from rldebug.agents import ppo
from rldebug.cells import unroll as cell_unroll
from rldebug.seedbatch import SeedBatch, per_seed

rldebug.configure_torch(1)

TINY = dict(total_steps=640, num_envs=4, num_steps=32, epochs=2, eval_every=128, eval_episodes=2)


@pytest.mark.parametrize("kind", [dict(), dict(cell="lstm"), dict(recurrent=False)])
def test_seed_k_of_a_batched_run_is_the_run_on_seed_k_alone(kind):
    cfg = ppo.Config(**TINY, **kind)
    batched = ppo.train(cfg, seeds=[0, 1, 2], progress=False)
    assert batched.eval_returns.shape == (6, 3) and batched.first_check.shape == (5, 3)
    for k, seed in enumerate([0, 1, 2]):
        alone = ppo.train(cfg, seeds=[seed], progress=False)
        np.testing.assert_array_equal(batched.eval_returns[:, k], alone.eval_returns[:, 0])
        np.testing.assert_allclose(batched.approx_kl[:, k], alone.approx_kl[:, 0], atol=1e-6)
        np.testing.assert_allclose(batched.first_check[:, k], alone.first_check[:, 0], atol=1e-6)
        for a, b in zip(batched.agent.seed(k).parameters(), alone.agent.seed(0).parameters()):
            torch.testing.assert_close(
                a, b, rtol=1e-4, atol=1e-5
            )  # the same weights after training
    assert batched.first_check.max() < 1e-5


def _rollout(cell="gru", reset=True, envs=4, steps=40):
    """Two rollouts of one small agent; the second starts from a state that is not zero."""
    torch.manual_seed(0)
    agent = ppo.ActorCritic(2, 2, hidden=8, cell=cell)
    batch = SeedBatch([agent])
    env = sineroad.make_vec("CartPoleNoVel-v1", envs)
    carry = ppo.start_envs(batch, [env], seeds=[0])
    rngs = [np.random.default_rng(0)]
    first, carry, _ = ppo.collect_rollout(batch, [env], carry, steps, rngs, reset=reset)
    second, carry, _ = ppo.collect_rollout(batch, [env], carry, steps, rngs, reset=reset)
    env.close()
    return agent, ppo.seed_of(first, 0), ppo.seed_of(second, 0), carry


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_fast_unroll_is_the_cells_unroll_with_resets_and_gradients(cell):
    torch.manual_seed(0)
    agent = ppo.ActorCritic(2, 3, hidden=8, cell=cell)
    x, starts = torch.randn(7, 5, 2), torch.rand(7, 5) < 0.2
    state = tuple(p + torch.randn_like(p) for p in _parts(agent.initial_state(5)))
    state = state if cell == "lstm" else state[0]
    logits, values, last = agent.unroll(x, state, starts)
    half = lambda s, i: s.chunk(2, -1)[i]  # noqa: E731  (B, 2H) -> the actor's or critic's (B, H)
    actor_state = tuple(half(p, 0) for p in _parts(state))
    critic_state = tuple(half(p, 1) for p in _parts(state))
    pick = (lambda s: s) if cell == "lstm" else (lambda s: s[0])
    a_out, a_last = cell_unroll(agent.actor_core, x, pick(actor_state), starts)
    c_out, _ = cell_unroll(agent.critic_core, x, pick(critic_state), starts)
    torch.testing.assert_close(logits, agent.actor_head(a_out))
    torch.testing.assert_close(values, agent.critic_head(c_out).squeeze(-1))
    for got, want in zip(_parts(last), _parts(a_last)):
        torch.testing.assert_close(half(got, 0), want)
    w = torch.randn_like(logits)
    fast = torch.autograd.grad((logits * w).sum(), list(agent.actor_core.parameters()))
    plain = torch.autograd.grad(
        (agent.actor_head(a_out) * w).sum(), list(agent.actor_core.parameters())
    )
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b)
    # an episode start zeroes h and c alike: from there the unroll is a fresh one
    env = int(starts[3:].any(0).float().argmax()) if starts[3:].any() else 0
    starts[3, env] = True
    logits, _, _ = agent.unroll(x, state, starts)
    fresh, _, _ = agent.unroll(
        x[3:, env : env + 1], agent.initial_state(1), starts[3:, env : env + 1]
    )
    torch.testing.assert_close(logits[3:, env : env + 1], fresh)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rollout_resets_at_episode_starts_and_stores_its_initial_state(cell):
    agent, first, second, carry = _rollout(cell)
    assert second.starts[1:].any() and (~second.mask).any()  # episodes end inside
    assert isinstance(second.h0, tuple) == (cell == "lstm")
    # stored at the start: the second rollout begins where the first ended, not from zeros
    with torch.no_grad():
        _, _, end_of_first = agent.unroll(first.obs, first.h0, first.starts)
    for stored, carried in zip(_parts(second.h0), _parts(end_of_first)):
        torch.testing.assert_close(stored, carried)
        assert stored.abs().sum() > 0
        assert not stored.requires_grad and stored.grad_fn is None  # detached between rollouts
    for part in _parts(carry.state):
        assert part.grad_fn is None
    # the training pass from the stored state, with resets, recomputes every log-prob
    with torch.no_grad():
        logits, _, _ = agent.unroll(second.obs, second.h0, second.starts)
        no_reset, _, _ = agent.unroll(second.obs, second.h0, torch.zeros_like(second.starts))
    logp = F.log_softmax(logits, -1).gather(-1, second.actions[..., None])[..., 0]
    torch.testing.assert_close(logp, second.logprobs, rtol=0, atol=1e-5)
    leaky = F.log_softmax(no_reset, -1).gather(-1, second.actions[..., None])[..., 0]
    assert (leaky - second.logprobs).abs().max() > 1e-4  # so the rollout did reset


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_minibatches_restore_each_environments_stored_state(cell):
    agent, _, rollout, _ = _rollout(cell)
    zeros = torch.zeros_like(rollout.rewards)
    order = torch.tensor([2, 0, 3, 1])
    batches = ppo.sequence_minibatches(rollout, zeros, zeros, order, 2)
    for idx, mb in zip(order.chunk(2), batches):
        for got, full in zip(_parts(mb.h0), _parts(rollout.h0)):
            torch.testing.assert_close(got, full[idx])  # the same environments' (h, c)
        torch.testing.assert_close(mb.obs, rollout.obs[:, idx])
    # and the lifted loss, on a batch of one seed, sees a ratio of exactly 1
    cfg = ppo.Config(cell=cell)
    stacked = ppo.Minibatch(*(_stack(f) for f in batches[0]))  # a seed axis of 1
    _, stats = per_seed(ppo.ppo_loss)(SeedBatch([agent]), stacked, 0.2, cfg)
    assert stats["ratio_dev"].item() < 1e-5


def _stack(field):
    return tuple(p[None] for p in field) if isinstance(field, tuple) else field[None]


def test_bad_input_raises_clearly():
    with pytest.raises(ValueError, match="cell"):
        ppo.Config(cell="rnn")
    with pytest.raises(ValueError, match="num_minibatches"):
        ppo.Config(num_envs=3)
    with pytest.raises(ValueError, match="seeds is empty"):
        ppo.train(ppo.Config(**TINY), seeds=[], progress=False)
    with pytest.raises(ValueError, match="one more row"):
        ppo.gae(torch.zeros(4, 2), torch.zeros(4, 2), *[torch.zeros(4, 2)] * 3, 0.9, 0.9)
    with pytest.raises(ValueError, match="one vector env per seed"):
        ppo.evaluate(ppo.ActorCritic(2, 2, hidden=4), [])


@pytest.mark.parametrize("kind", [dict(), dict(cell="lstm"), dict(recurrent=False)])
def test_the_loss_on_stacked_weights_is_the_per_seed_loss_values_and_gradients(kind):
    """train() runs ppo_loss once on SeedBatch.stacked_module(): every mean is per seed."""
    from rldebug.seedbatch import seeded

    s, t, b, d = 3, 12, 4, 2
    cfg = ppo.Config(**kind)
    agent = SeedBatch(seeded(lambda: ppo.ActorCritic(d, 2, 8, **kind), range(s)))
    g = torch.Generator().manual_seed(0)
    h0 = agent.call("initial_state", b)
    batch = ppo.Minibatch(
        obs=torch.randn(s, t, b, d, generator=g),
        starts=torch.rand(s, t, b, generator=g) < 0.1,
        actions=torch.randint(0, 2, (s, t, b), generator=g),
        logprobs=-torch.rand(s, t, b, generator=g),
        advantages=30 * torch.randn(s, t, b, generator=g),
        returns=40 + 30 * torch.randn(s, t, b, generator=g),
        mask=torch.rand(s, t, b, generator=g) < 0.9,
        h0=h0,
    )
    losses, stats = ppo.ppo_loss(agent.stacked_module(), batch, 0.2, cfg)
    losses.sum().backward()
    grads = [p.grad.clone() for p in agent.parameters()]
    agent.zero_grad()
    expected, expected_stats = per_seed(ppo.ppo_loss)(agent, batch, 0.2, cfg)  # under vmap
    expected.sum().backward()
    assert losses.shape == (s,)
    torch.testing.assert_close(losses, expected)
    for key in stats:
        torch.testing.assert_close(stats[key], expected_stats[key])
    for a, p in zip(grads, agent.parameters()):
        torch.testing.assert_close(a, p.grad)
