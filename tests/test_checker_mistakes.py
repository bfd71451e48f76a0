"""Mistakes that give the right numbers, edges of the case generators, correct alternatives.

For every exercise: an answer that changes an argument in place is rejected with the
argument's name; for every exercise whose answer feeds a backward pass, a detached (or
``.item()``-built) answer is rejected with a sentence that says so; each edge a generator
promises occurs within the checker's default number of cases, and a mistake that only
shows on that edge is rejected. Correct alternatives, written in other styles, pass, and
the reference passes on many seeds.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rldebug.agents import ppo
from rldebug.checkers import all_exercises, ch00, ch01, ch02, ch03, ch05, ch06, ch07, ch08
from rldebug.checking import CheckFailed

EXERCISES = {exercise.name: exercise for exercise in all_exercises()}
WITH_ARGUMENTS = [name for name in EXERCISES if not name.startswith("bug_in_")]


def _rejects(exercise, fn, seeds=(0, 1, 2)) -> list[str]:
    """The checker's message on each seed (every one must reject ``fn``)."""
    messages = []
    for seed in seeds:
        with pytest.raises(CheckFailed) as caught:
            exercise.check(fn, seed=seed)
        messages.append(str(caught.value))
    return messages


def _accepts(exercise, fn, seeds=(0, 1, 2, 3, 4)) -> None:
    for seed in seeds:
        with contextlib.redirect_stdout(io.StringIO()):
            exercise.check(fn, seed=seed)


# ----------------------------------------------------------------------- property test


@pytest.mark.parametrize("name", list(EXERCISES))
def test_reference_is_never_rejected(name):
    """Many fresh seeds, never a false rejection (the seeds differ from the other tests')."""
    _accepts(EXERCISES[name], EXERCISES[name].reference, seeds=range(1000, 1015))


# ----------------------------------------------------------------------- side effects


def _mutate(value) -> bool:
    """Change ``value`` in place, as a careless answer would; False if it cannot be."""
    if isinstance(value, list):
        value.reverse() if len(value) > 1 else value.append(0)
        return True
    if isinstance(value, np.ndarray) and value.size:
        value[...] = np.logical_not(value) if value.dtype == bool else value + 1
        return True
    if isinstance(value, torch.Tensor) and value.numel():
        with torch.no_grad():
            value.logical_not_() if value.dtype == torch.bool else value.add_(1)
        return True
    if isinstance(value, torch.nn.Module):
        with torch.no_grad():
            next(value.parameters()).add_(1.0)
        return True
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return _mutate(value[0])
    return False


# road_step: floats only; probe_env: integers only (the checker builds the environment)
MUTABLE = [name for name in WITH_ARGUMENTS if name not in ("road_step", "probe_env")]


@pytest.mark.parametrize("name", MUTABLE)
def test_mutating_answer_is_rejected_by_argument(name):
    exercise = EXERCISES[name]
    changed = []

    def right_answer_then_mutates(**kwargs):
        answer = exercise.reference(**kwargs)
        for key, value in kwargs.items():
            if _mutate(value):
                changed.append(key)
                break
        return answer

    for message in _rejects(exercise, right_answer_then_mutates):
        assert f"changes its argument `{changed[-1]}" in message, message


def test_adam_in_place_is_named_with_its_argument():
    def adam_in_place(param, grad, m, v, t, lr, betas, eps):
        m *= betas[0]
        m += (1 - betas[0]) * grad
        v *= betas[1]
        v += (1 - betas[1]) * grad**2
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        param -= lr * m_hat / (np.sqrt(v_hat) + eps)
        return param, m, v

    for message in _rejects(ch02.ADAM_STEP, adam_in_place):
        assert "updated in place" in message and "`param`" in message, message


def test_reversed_rewards_list_is_named():
    def reverses(rewards, gamma, dones=None):
        rewards.reverse()  # walks backwards by reversing the caller's list
        out = ch00._reference(rewards, gamma, None if dones is None else dones[::-1])
        return out[::-1]

    for message in _rejects(ch00.DISCOUNTED_RETURNS, reverses):
        assert "`rewards`" in message, message


# ----------------------------------------------------------------------- gradients

DIFFERENTIABLE = [
    "fixed_dqn_loss",
    "copy_trick_loss",
    "dqn_loss",
    "rollout",
    "masked_sequence_loss",
    "reinforce_loss",
    "episode_log_probs",
    "drqn_loss",
    "unroll",
]
NO_GRADIENT = "no gradient|does not require grad|carries no gradient|sends no gradient"


def _detached(answer):
    if isinstance(answer, torch.Tensor):
        return answer.detach()
    return type(answer)(_detached(a) for a in answer)


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_detached_answer_is_rejected(name):
    exercise = EXERCISES[name]
    for message in _rejects(exercise, lambda **kw: _detached(exercise.reference(**kw))):
        assert any(s in message for s in NO_GRADIENT.split("|")), message


@pytest.mark.parametrize("name", [n for n in DIFFERENTIABLE if n not in ("rollout", "unroll")])
@pytest.mark.parametrize("style", ["tensor", "float"])
def test_item_built_loss_is_rejected(name, style):
    exercise = EXERCISES[name]

    def from_item(**kwargs):
        number = exercise.reference(**kwargs).sum().item()
        return torch.tensor(number) if style == "tensor" else number

    if name == "episode_log_probs":  # not a scalar: rebuild the (N, T) tensor from numbers

        def from_item(**kwargs):  # noqa: F811
            answer = exercise.reference(**kwargs)
            return torch.tensor(answer.tolist()) if style == "tensor" else answer.tolist()

    for message in _rejects(exercise, from_item):
        if style == "tensor":
            assert any(s in message for s in NO_GRADIENT.split("|")), message
        else:
            assert "torch.Tensor was expected" in message or "return a torch.Tensor" in message


def test_gru_output_detached_before_the_head_is_named():
    def head_on_detached(policy, obs, actions, mask):
        out = policy.features(obs)
        logits = policy.head(out.detach())
        logp = F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        return logp * mask

    for message in _rejects(ch06.EPISODE_LOG_PROBS, head_on_detached):
        assert "detached before the head" in message and "policy.cells" in message, message


def test_state_detached_at_every_step_is_named():
    def unroll_detached(cell, x, h0, starts):
        h, outs = h0, []
        for t in range(x.shape[0]):
            h = cell(x[t], torch.where(starts[t].unsqueeze(-1), torch.zeros_like(h), h))
            outs.append(h)
            h = h.detach()
        return torch.stack(outs), h

    for message in _rejects(ch08.UNROLL, unroll_detached):
        assert "carries no gradient" in message and "last state" in message, message
    for message in _rejects(ch08.UNROLL, ch08._unroll_detached):
        assert "detached between steps" in message and "cell.weight" in message, message


# ----------------------------------------------------------------------- edges


def _cases(exercise, seed):
    """The cases one check draws: the same calls, in the same order, as Exercise.check."""
    rng = np.random.default_rng(seed)
    return [exercise.nth_case(rng, index) for index in range(exercise.n_cases)]


def _padded(mask_or_lengths, steps=None) -> bool:
    if steps is not None:
        return bool((torch.as_tensor(mask_or_lengths) < steps).any())
    return not bool(torch.as_tensor(mask_or_lengths).bool().all())


EDGES = {
    ("discounted_returns", "integer rewards"): lambda c: all(
        isinstance(r, int) for r in c["rewards"]
    ),
    ("discounted_returns", "gamma = 0"): lambda c: c["gamma"] == 0.0,
    ("discounted_returns", "no dones"): lambda c: c["dones"] is None,
    ("td_target", "batch of 1"): lambda c: len(c["rewards"]) == 1,
    ("td_target", "all terminated"): lambda c: bool(c["terminated"].all()),
    ("td_target", "gamma = 0"): lambda c: c["gamma"] == 0.0,
    ("fixed_dqn_loss", "batch of 1"): lambda c: len(c["batch"].rewards) == 1,
    ("copy_trick_loss", "batch of 1"): lambda c: len(c["targets"]) == 1,
    ("dense_relu_backward", "batch of 1"): lambda c: len(c["x"]) == 1,
    ("adam_step", "first step"): lambda c: c["t"] == 1,
    ("sample_from_rollout", "batch of 1"): lambda c: c["batch_size"] == 1,
    ("sample_from_rollout", "one env"): lambda c: c["obs"].shape[1] == 1,
    ("dqn_loss", "batch of 1"): lambda c: len(c["batch"].rewards) == 1,
    ("dqn_loss", "all terminated"): lambda c: bool(c["batch"].terminated.all()),
    ("dqn_loss", "gamma = 0"): lambda c: c["gamma"] == 0.0,
    ("rollout", "batch of 1"): lambda c: c["h0"].shape[0] == 1,
    ("masked_sequence_loss", "batch of 1"): lambda c: len(c["lengths"]) == 1,
    ("masked_sequence_loss", "no padding"): lambda c: (
        not _padded(c["lengths"], c["outputs"].shape[1])
    ),
    ("reinforce_loss", "batch of 1"): lambda c: len(c["mask"]) == 1,
    ("reinforce_loss", "no padding"): lambda c: not _padded(c["mask"]),
    ("reinforce_loss", "log-probs on padding"): lambda c: bool(
        ((c["log_probs"] != 0) & (c["mask"] == 0)).any()
    ),
    ("reinforce_loss", "gamma = 0"): lambda c: c["gamma"] == 0.0,
    ("episode_log_probs", "batch of 1"): lambda c: len(c["mask"]) == 1,
    ("episode_log_probs", "no padding"): lambda c: not _padded(c["mask"]),
    ("drqn_loss", "burn_in = 0"): lambda c: c["burn_in"] == 0,
    ("drqn_loss", "gamma = 0"): lambda c: c["gamma"] == 0.0,
    ("unroll", "batch of 1"): lambda c: c["h0"].shape[0] == 1,
    ("gae", "one env"): lambda c: c["rewards"].shape[1] == 1,
    ("gae", "truncation"): lambda c: bool((c["truncated"] & c["mask"]).any()),
    ("gae", "gamma = 0"): lambda c: c["gamma"] == 0.0,
    ("gae", "lambda = 0"): lambda c: c["lam"] == 0.0,
    ("sequence_minibatches", "one env per minibatch"): lambda c: (
        c["rollout"].h0.shape[0] == c["num_minibatches"]
    ),
}


@pytest.mark.parametrize(("name", "edge"), list(EDGES), ids=[f"{n}:{e}" for n, e in EDGES])
def test_edge_occurs_within_default_cases(name, edge):
    exercise = EXERCISES[name]
    for seed in [*range(10), None]:
        assert any(EDGES[name, edge](case) for case in _cases(exercise, seed)), (
            f"{name}: no case with {edge} among the {exercise.n_cases} cases of seed {seed}"
        )


def _perturbed(answer):
    """The answer with its first number changed (what a mistake on one case looks like)."""
    if isinstance(answer, torch.Tensor):
        return answer + 1.0
    if isinstance(answer, np.ndarray):
        return answer + 1.0
    if isinstance(answer, tuple) and hasattr(answer, "_fields"):
        return answer._replace(**{answer._fields[0]: _perturbed(answer[0])})
    if isinstance(answer, (list, tuple)):
        return type(answer)([_perturbed(answer[0]), *answer[1:]])
    return answer + 1.0


@pytest.mark.parametrize(("name", "edge"), list(EDGES), ids=[f"{n}:{e}" for n, e in EDGES])
def test_mistake_only_on_the_edge_is_rejected(name, edge):
    exercise = EXERCISES[name]

    def wrong_only_on_edge(**kwargs):
        answer = exercise.reference(**kwargs)
        return _perturbed(answer) if EDGES[name, edge](kwargs) else answer

    for message in _rejects(exercise, wrong_only_on_edge):
        assert "wrong answer" in message or "known bug" in message, message


def _only_wrong_on(edge_test, wrong, right):
    """An answer that is right except on the cases where ``edge_test`` holds."""

    def answer(**kwargs):
        return wrong(**kwargs) if edge_test(kwargs) else right(**kwargs)

    return answer


def test_gamma_zero_default_is_rejected():
    def gamma_or_default(rewards, next_q_values, terminated, truncated, gamma):
        return ch01._td_reference(rewards, next_q_values, terminated, truncated, gamma or 0.99)

    for message in _rejects(ch01.TD_TARGET, gamma_or_default):
        assert "target" in message and "gamma=0.0" in message, message


def test_squeeze_without_dim_fails_on_a_batch_of_one():
    def squeezes_everything(rewards, next_q_values, terminated, truncated, gamma):
        with torch.no_grad():
            best = next_q_values.squeeze().max(dim=1).values  # (1, A) -> (A,): no dim 1
            return rewards + gamma * (1 - terminated) * best

    for message in _rejects(ch01.TD_TARGET, squeezes_everything):
        assert "raised IndexError" in message and "rewards=tensor (1,)" in message, message


def test_all_terminated_batch_catches_a_target_without_termination():
    def ignores_termination_when_all_ended(**case):
        return ch03._no_terminal_mask(**case)

    answer = _only_wrong_on(
        lambda c: bool(c["batch"].terminated.all()),
        ignores_termination_when_all_ended,
        ch03._reference_dqn_loss,
    )
    for message in _rejects(ch03.DQN_LOSS, answer):
        assert "terminal states bootstrap" in message, message


def test_log_probs_on_padding_catch_an_unmasked_sum():
    for message in _rejects(ch06.REINFORCE_LOSS, ch06._padding_in_final_sum):
        assert "the padding enters the final sum" in message, message


def test_burn_in_zero_must_still_start_from_the_stored_state():
    def skips_state_without_burn_in(q_net, target_net, batch, gamma, burn_in):
        if burn_in == 0:  # "no burn-in: nothing to rebuild", and the stored state is lost
            batch = batch._replace(initial_state=torch.zeros_like(batch.initial_state))
        return ch07._reference_loss(q_net, target_net, batch, gamma, burn_in)

    for message in _rejects(ch07.DRQN_LOSS, skips_state_without_burn_in):
        assert "drqn_loss" in message


def test_every_sequence_is_trained():
    def first_sequence_only(q_net, target_net, batch, gamma, burn_in):
        errors, mask = ch07._drqn_loss(q_net, target_net, batch, gamma, burn_in, per_step=True)
        return errors[0].sum() / mask[0].sum()  # [0] to "drop the batch axis"

    _rejects(ch07.DRQN_LOSS, first_sequence_only)


def test_integer_rewards_catch_an_integer_buffer():
    def zeros_like_buffer(rewards, gamma, dones=None):
        returns = np.zeros_like(rewards)
        running = 0.0
        for t in reversed(range(len(rewards))):
            done = 0.0 if dones is None else float(dones[t])
            running = rewards[t] + gamma * running * (1.0 - done)
            returns[t] = running
        return returns

    for message in _rejects(ch00.DISCOUNTED_RETURNS, zeros_like_buffer):
        assert "integer array" in message, message


# ----------------------------------------------------------------------- hints


def test_gae_resetting_only_on_termination_hears_about_truncation():
    def resets_on_termination_only(rewards, values, terminated, truncated, mask, gamma, lam):
        adv, running = torch.zeros_like(rewards), torch.zeros_like(rewards[0])
        term, m = terminated.float(), mask.float()
        for t in reversed(range(rewards.shape[0])):
            delta = rewards[t] + gamma * values[t + 1] * (1 - term[t]) - values[t]
            running = (delta + gamma * lam * (1 - term[t]) * running) * m[t]
            adv[t] = running
        return adv

    for message in _rejects(ch08.GAE, resets_on_termination_only):
        assert "truncation" in message, message


def test_sampling_mask_mistake_is_not_blamed_on_the_draw():
    def skips_ends_and_last_row(obs, actions, rewards, terminated, truncated, batch_size, rng):
        done = np.asarray(terminated) | np.asarray(truncated)
        valid = ch03._valid(terminated, truncated) & ~done
        valid[-1] = False
        return ch03._draw(obs, actions, rewards, terminated, truncated, batch_size, rng, valid)

    for message in _rejects(ch03.SAMPLE_FROM_ROLLOUT, skips_ends_and_last_row):
        assert "validity mask" in message and "is a real one" in message, message


def test_sampling_a_reset_step_is_located():
    def includes_reset_steps(obs, actions, rewards, terminated, truncated, batch_size, rng):
        valid = np.ones(np.shape(terminated), dtype=bool)
        valid[:] = np.asarray(terminated) | np.asarray(truncated) | (rng.random() < 2)
        return ch03._draw(obs, actions, rewards, terminated, truncated, batch_size, rng, valid)

    messages = _rejects(ch03.SAMPLE_FROM_ROLLOUT, includes_reset_steps)
    assert any("reset step" in m for m in messages), messages


def test_bessel_std_is_named():
    def torch_default_std(log_probs, rewards, mask, gamma):
        returns = ch06._returns(rewards, mask, gamma)
        real = returns[mask.bool()]
        advantages = ((returns - real.mean()) / (real.std() + 1e-8)).detach() * mask
        return -(log_probs * advantages).sum() / mask.sum()

    # On a single real step torch's std is NaN; on the others it is n - 1.
    for message in _rejects(ch06.REINFORCE_LOSS, torch_default_std):
        assert "n - 1" in message or "NaN" in message or "nan" in message, message


def test_messages_show_shapes_not_raw_tensors():
    def off(**kwargs):
        return ch05._reference_loss(**kwargs) + 1.0

    (message,) = _rejects(ch05.MASKED_LOSS, off, seeds=(0,))
    assert "outputs=tensor (" in message and "tensor([" not in message, message

    def dqn_off(**kwargs):
        return ch03._reference_dqn_loss(**kwargs) + 1.0

    (message,) = _rejects(ch03.DQN_LOSS, dqn_off, seeds=(0,))
    assert "batch=Transitions(obs tensor (" in message, message


# ----------------------------------------------------------------------- correct alternatives


def _returns_forward_index(rewards, gamma, dones=None):
    rewards = [float(r) for r in rewards]
    out = [0.0] * len(rewards)
    for t in range(len(rewards) - 1, -1, -1):
        later = 0.0 if t == len(rewards) - 1 or (dones is not None and dones[t]) else out[t + 1]
        out[t] = rewards[t] + gamma * later
    return np.array(out)


def _td_target_detach(rewards, next_q_values, terminated, truncated, gamma):
    best = next_q_values.detach().max(dim=1).values
    return rewards + gamma * (1.0 - terminated) * best


def _fixed_dqn_loss_index(model, batch, gamma):
    q_sa = model(batch.obs)[torch.arange(len(batch.actions)), batch.actions]
    next_v = model(batch.next_obs).max(dim=1).values.detach()
    return F.mse_loss(q_sa, batch.rewards + gamma * (1 - batch.terminated) * next_v)


def _adam_new_arrays(param, grad, m, v, t, lr, betas, eps):
    m = betas[0] * m + (1 - betas[0]) * grad
    v = betas[1] * v + (1 - betas[1]) * np.square(grad)
    step = lr * (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
    return param - step, m, v


def _dense_where(x, W, b, grad_out):
    delta = np.where(x @ W + b > 0, grad_out, 0.0)
    return delta @ W.T, x.T @ delta, delta.sum(axis=0)


def _masked_loss_indexing(outputs, targets, lengths):
    mask = torch.arange(outputs.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    return F.mse_loss(outputs[mask], targets[mask])


def _rollout_where(cell, inputs, episode_starts, h0):
    h, outputs = h0, []
    for x_t, start in zip(inputs, episode_starts):
        h = cell(x_t, torch.where(start.unsqueeze(-1), torch.zeros_like(h), h))
        outputs.append(h)
    return torch.stack(outputs), outputs[-1]


def _reinforce_population_std(log_probs, rewards, mask, gamma):
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = mask[:, t] * (rewards[:, t] + gamma * running)
        returns[:, t] = running
    real = returns[mask.bool()]
    advantages = (returns - real.mean()) / (real.std(unbiased=False) + 1e-8)
    return -(log_probs * advantages * mask).sum() / mask.sum()


def _log_probs_categorical(policy, obs, actions, mask):
    dist = torch.distributions.Categorical(logits=policy(obs))
    return torch.where(mask.bool(), dist.log_prob(actions), torch.zeros(()))


def _unroll_masked_multiply(cell, x, h0, starts):
    h, outs = h0, []
    for t in range(len(x)):
        h = cell(x[t], h * (~starts[t].bool()).float().unsqueeze(1))
        outs.append(h)
    return torch.stack(outs), h


def _minibatches_other_order(rollout, advantages, returns, env_order, num_minibatches):
    groups = ppo.sequence_minibatches(rollout, advantages, returns, env_order, num_minibatches)
    flipped = []
    for mb in reversed(groups):  # the groups in reverse, each group's envs in reverse
        back = torch.arange(mb.h0.shape[0] - 1, -1, -1)
        flipped.append(ppo.Minibatch(*(f[back] if n == "h0" else f[:, back]
                                       for n, f in zip(mb._fields, mb))))  # fmt: skip
    return flipped


def _drqn_boolean_mask(q_net, target_net, batch, gamma, burn_in):
    errors, mask = ch07._drqn_loss(q_net, target_net, batch, gamma, burn_in, per_step=True)
    return errors[mask.bool()].mean()


def _window_gather_last_real_step(gru, head, windows, lengths):
    out, _ = gru(windows)  # zeros come after the real steps: out at lengths - 1 is unaffected
    return head(out[torch.arange(len(lengths)), lengths - 1])


ALTERNATIVES = {
    "window_logits": _window_gather_last_real_step,
    "discounted_returns": _returns_forward_index,
    "td_target": _td_target_detach,
    "fixed_dqn_loss": _fixed_dqn_loss_index,
    "adam_step": _adam_new_arrays,
    "dense_relu_backward": _dense_where,
    "masked_sequence_loss": _masked_loss_indexing,
    "rollout": _rollout_where,
    "reinforce_loss": _reinforce_population_std,
    "episode_log_probs": _log_probs_categorical,
    "unroll": _unroll_masked_multiply,
    "sequence_minibatches": _minibatches_other_order,
    "drqn_loss": _drqn_boolean_mask,
}


@pytest.mark.parametrize("name", list(ALTERNATIVES))
def test_correct_alternative_is_accepted(name):
    _accepts(EXERCISES[name], ALTERNATIVES[name])
