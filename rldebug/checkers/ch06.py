"""Checkers for chapter 6, "Recurrent policy gradient"."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rldebug.agents.reinforce import Policy, episode_log_probs, reinforce_loss
from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge

# ----------------------------------------------------------------------------------------
# Exercise 1: the REINFORCE loss over a padded batch of episodes
# ----------------------------------------------------------------------------------------


def _padded_lengths(rng: np.random.Generator, batch: int, steps: int, full: bool) -> np.ndarray:
    """Episode lengths of a batch padded to its longest; without any padding if ``full``."""
    lengths = rng.integers(1, steps + 1, size=batch)
    if full:
        lengths[:] = steps  # every episode ran to the end of the batch: no padding
    elif batch > 1:  # one short episode
        lengths[(rng.integers(batch - 1) + 1 + np.argmax(lengths)) % batch] = rng.integers(1, steps)
    lengths[rng.integers(batch)] = steps  # the batch is padded to its longest episode
    return lengths


LOSS_EDGES = ("batch of 1", "no padding", "log-probs on padding", "gamma = 0")


def _loss_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, LOSS_EDGES)
    batch = 1 if edge == "batch of 1" or rng.random() < 0.2 else int(rng.integers(2, 6))
    steps = int(rng.integers(3, 12))
    lengths = _padded_lengths(rng, batch, steps, edge == "no padding" or rng.random() < 0.2)
    if edge == "log-probs on padding":
        lengths[0] = rng.integers(1, steps)  # at least one padded step to hold them
    mask = (np.arange(steps)[None, :] < lengths[:, None]).astype(np.float32)
    # After an episode ends the vector env has already started the next one: the padding
    # holds real rewards of another episode. Only the mask says they do not belong here.
    rewards = rng.normal(1.0, 1.0, size=(batch, steps)).astype(np.float32)
    log_probs = -rng.exponential(0.7, size=(batch, steps)).astype(np.float32)
    if edge != "log-probs on padding" and rng.random() < 0.5:  # zeroed on the padding, as
        log_probs *= mask  # episode_log_probs returns them; else what the network said
    return {
        "log_probs": torch.from_numpy(log_probs),
        "rewards": torch.from_numpy(rewards),
        "mask": torch.from_numpy(mask),
        "gamma": 0.0 if edge == "gamma = 0" else float(rng.choice([0.0, 0.5, 0.9, 0.99])),
    }


def _returns_no_reset(rewards, mask, gamma):
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running  # never reset: the next episode leaks in
        returns[:, t] = running
    return returns * mask


def _returns(rewards, mask, gamma):
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = mask[:, t] * (rewards[:, t] + gamma * running)
        returns[:, t] = running
    return returns


def _normalise(returns, mask):
    n = mask.sum()
    mean = (returns * mask).sum() / n
    std = (((returns - mean) ** 2 * mask).sum() / n).sqrt()
    return (returns - mean) / (std + 1e-8) * mask


def _mean_over_padding(log_probs, rewards, mask, gamma):
    advantages = _normalise(_returns(rewards, mask, gamma), mask)
    return -(log_probs * advantages * mask).mean()  # divides by N*T, padding included


def _normalised_over_padding(log_probs, rewards, mask, gamma):
    returns = _returns(rewards, mask, gamma)
    advantages = (returns - returns.mean()) / (returns.std(unbiased=False) + 1e-8)
    return -(log_probs * advantages * mask).sum() / mask.sum()


def _return_not_reset(log_probs, rewards, mask, gamma):
    advantages = _normalise(_returns_no_reset(rewards, mask, gamma), mask)
    return -(log_probs * advantages * mask).sum() / mask.sum()


def _std_with_bessel(log_probs, rewards, mask, gamma):
    returns = _returns(rewards, mask, gamma)
    real = returns[mask.bool()]
    advantages = (returns - real.mean()) / (real.std() + 1e-8) * mask  # torch's std: n - 1
    return -(log_probs * advantages * mask).sum() / mask.sum()


def _padding_in_final_sum(log_probs, rewards, mask, gamma):
    returns = _returns(rewards, mask, gamma)
    n = mask.sum()
    mean = (returns * mask).sum() / n
    std = (((returns - mean) ** 2 * mask).sum() / n).sqrt()
    advantages = (returns - mean) / (std + 1e-8)  # not masked: padding gets -mean / std
    return -(log_probs * advantages).sum() / n  # and nothing masks the product either


def _detached_log_probs(log_probs, rewards, mask, gamma):
    return reinforce_loss(log_probs.detach(), rewards, mask, gamma)


def _sign_flipped(log_probs, rewards, mask, gamma):
    return -reinforce_loss(log_probs, rewards, mask, gamma)


def _loss_compare(got, expected):
    if isinstance(got, torch.Tensor) and got.dim() != 0:
        return (
            f"your loss has shape {tuple(got.shape)}; it must be a scalar (shape ()): "
            "sum over the real steps and divide by their number"
        )
    return compare_outputs(got, expected, rtol=1e-4, atol=1e-5, where="loss")


_LOSS_HINT = (
    "The reference: G_t = mask_t * (r_t + gamma * G_{t+1}); A = (G - mean) / (std + 1e-8) "
    "with the mean and the std over the real steps only (std divides by n, not n - 1); "
    "loss = -(log_probs * A * mask).sum() / mask.sum()."
)

REINFORCE_LOSS = Exercise(
    name="reinforce_loss",
    reference=reinforce_loss,
    make_case=_loss_case,
    compare=_loss_compare,
    explain=lambda case, got, expected: _LOSS_HINT,
    grad_inputs=("log_probs",),
    check_gradients=True,
    answer_name="loss",
    reference_path="rldebug.agents.reinforce.reinforce_loss",
    bugs=[
        PlantedBug(
            "the mean runs over the padding",
            _mean_over_padding,
            "`.mean()` divides by N*T, padding included: the loss shrinks when one long "
            "episode pads the others. Divide the masked sum by mask.sum().",
        ),
        PlantedBug(
            "the returns are normalised over the padding too",
            _normalised_over_padding,
            "Compute the mean and the standard deviation of the returns over the real steps "
            "only (weights = mask).",
        ),
        PlantedBug(
            "the return is not reset between episodes",
            _return_not_reset,
            "Rewards after an episode's end belong to the next episode. Multiply inside the "
            "backward sum: G_t = mask_t * (r_t + gamma * G_{t+1}).",
        ),
        PlantedBug(
            "the sign is flipped (this loss lowers the probability of good actions)",
            _sign_flipped,
            "REINFORCE maximises E[G]: minimise -log pi(a_t) * A_t.",
        ),
        PlantedBug(
            "the standard deviation divides by n - 1 (torch's default std())",
            _std_with_bessel,
            "The reference normalises by the population std, sqrt(sum((G - mean)**2) / n): "
            "use .std(unbiased=False) (correction=0), or the masked variance divided by "
            "mask.sum().",
        ),
        PlantedBug(
            "the padding enters the final sum (neither the advantages nor the product is masked)",
            _padding_in_final_sum,
            "The log-probs on the padding are whatever the network said there: multiply "
            "log_probs * advantages by the mask before the sum.",
        ),
        PlantedBug(
            "the log-probabilities are detached",
            _detached_log_probs,
            "Only the returns and advantages are constants (under torch.no_grad()); the "
            "log-probs must keep their graph, or the policy gets no gradient.",
        ),
    ],
)


# ----------------------------------------------------------------------------------------
# Exercise 2: the training pass, whole episodes from the zero state
# ----------------------------------------------------------------------------------------


def _log_probs_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, ("batch of 1", "no padding"))
    n = 1 if edge == "batch of 1" or rng.random() < 0.2 else int(rng.integers(2, 5))
    steps = int(rng.integers(3, 10))
    obs_dim, hidden = int(rng.integers(2, 5)), int(rng.integers(3, 9))
    torch.manual_seed(int(rng.integers(2**31)))
    policy = Policy(obs_dim, 2, hidden)
    with torch.no_grad():  # larger recurrent weights: the past matters visibly
        policy.cells[0].weight_hh.mul_(3.0)
        policy.head.weight.mul_(3.0)
    lengths = _padded_lengths(rng, n, steps, edge == "no padding" or rng.random() < 0.2)
    mask = (np.arange(steps)[None, :] < lengths[:, None]).astype(np.float32)
    return {
        "policy": policy,
        "obs": torch.from_numpy(rng.normal(size=(n, steps, obs_dim)).astype(np.float32)),
        "actions": torch.from_numpy(rng.integers(0, 2, size=(n, steps))),
        "mask": torch.from_numpy(mask),
    }


def _gathered(logits, actions, mask):
    return F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1) * mask


def _each_step_from_zero(policy, obs, actions, mask):
    # The seed's mechanism: every step is a sequence of length 1 that starts from zeros.
    n, t, o = obs.shape
    logits = policy(obs.reshape(n * t, 1, o)).reshape(n, t, -1)
    return _gathered(logits, actions, mask)


def _padding_not_masked(policy, obs, actions, mask):
    logits = policy(obs)
    return F.log_softmax(logits, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def _time_major(policy, obs, actions, mask):
    logits = policy(obs.transpose(0, 1)).transpose(0, 1)  # (T, N, O) into a batch-first policy
    return _gathered(logits, actions, mask)


def _softmax_over_time(policy, obs, actions, mask):
    logits = policy(obs)
    return F.log_softmax(logits, dim=1).gather(-1, actions.unsqueeze(-1)).squeeze(-1) * mask


def _head_on_detached_gru(policy, obs, actions, mask):
    out = policy.features(obs)
    logits = policy.head(out.detach())  # the GRU's output is cut off from its weights
    return _gathered(logits, actions, mask)


def _explain_log_probs(case, got, expected) -> str:
    return (
        "log pi(a_t | o_0..o_t): run the whole (N, T, O) batch through policy(obs) once, "
        "log_softmax over the actions (dim=-1), gather the taken action, multiply by mask."
    )


def _log_probs_compare(got, expected):
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        return (
            f"your log-probs have shape {tuple(got.shape)}; they must be (N, T) = "
            f"{tuple(expected.shape)}: one log pi(a_t) per episode and step (gather the "
            "taken action with actions.unsqueeze(-1), then squeeze(-1))"
        )
    return compare_outputs(got, expected, rtol=1e-4, atol=1e-5, where="log-probs")


EPISODE_LOG_PROBS = Exercise(
    name="episode_log_probs",
    reference=episode_log_probs,
    make_case=_log_probs_case,
    compare=_log_probs_compare,
    explain=_explain_log_probs,
    check_gradients=True,
    answer_name="log-probs",
    grad_hint="Every weight of the policy must get its gradient through the log-probs: no "
    ".detach(), .data or torch.no_grad() between the GRU, the head and the log_softmax.",
    reference_path="rldebug.agents.reinforce.episode_log_probs",
    bugs=[
        PlantedBug(
            "each step is run as its own length-1 sequence from a zero state",
            _each_step_from_zero,
            "This is the 'GRU layer does not learn' bug: the GRU never sees step t-1, so the "
            "training pass scores a feed-forward net, not the policy that acted. Feed each "
            "whole episode (N, T, O) to the GRU once.",
        ),
        PlantedBug(
            "the padding is not masked",
            _padding_not_masked,
            "Steps after an episode's end are padding: multiply the log-probs by the mask.",
        ),
        PlantedBug(
            "the batch is fed time-major (T, N, O) to a batch_first GRU",
            _time_major,
            "The policy reads batch-first input: obs is already (N, T, O); do not transpose.",
        ),
        PlantedBug(
            "log_softmax runs over the time axis, not over the actions",
            _softmax_over_time,
            "The logits are (N, T, A): normalise over the last axis (dim=-1).",
        ),
        PlantedBug(
            "the GRU's output is detached before the head",
            _head_on_detached_gru,
            "This is the 'GRU does not learn' symptom itself: the values are right, but no "
            "gradient reaches the GRU's weights, so only the head is trained. Feed the GRU's "
            "output to the head as it is.",
        ),
    ],
)


# ----------------------------------------------------------------------------------------
# Exercise 3: a window policy that reads the last real step (the question's window design)
# ----------------------------------------------------------------------------------------


def window_logits(gru, head, windows, lengths):
    """Logits (B, A) from the state after each window's last real observation.

    ``windows`` (B, W, O) hold ``lengths[b]`` real observations, then zeros; every window
    starts from the zero state. Packing skips the zeros, so ``h_n`` is the state after the
    last real step.
    """
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        windows, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    _, h_n = gru(packed)  # (layers, B, H): each window's state after its last real step
    return head(h_n[-1])  # the top layer's state -> (B, A)


WINDOW_EDGES = ("full windows", "window of one", "two layers")


def _window_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, WINDOW_EDGES)
    batch, width = int(rng.integers(2, 6)), int(rng.integers(3, 7))
    obs_dim, hidden = int(rng.integers(2, 5)), int(rng.integers(3, 9))
    layers = 2 if edge == "two layers" or rng.random() < 0.3 else 1
    torch.manual_seed(int(rng.integers(2**31)))
    gru = torch.nn.GRU(obs_dim, hidden, num_layers=layers, batch_first=True)
    head = torch.nn.Linear(hidden, int(rng.integers(2, 4)))
    with torch.no_grad():  # larger recurrent weights: which steps were read shows clearly
        for name, weight in gru.named_parameters():
            if name.startswith("weight_hh"):
                weight.mul_(3.0)
    lengths = rng.integers(1, width + 1, size=batch)
    if edge == "full windows":
        lengths[:] = width
    else:
        lengths[0] = 1 if edge == "window of one" else rng.integers(1, width)
        lengths[-1] = width
    windows = rng.normal(size=(batch, width, obs_dim)).astype(np.float32)
    windows[np.arange(width)[None, :] >= lengths[:, None]] = 0.0  # zeros after the real steps
    return {
        "gru": gru,
        "head": head,
        "windows": torch.from_numpy(windows),
        "lengths": torch.from_numpy(lengths.astype(np.int64)),
    }


def _reads_the_padding(gru, head, windows, lengths):
    out, _ = gru(windows)
    return head(out[:, -1])  # the last slot: after the zeros in a short window


def _reads_the_first_step(gru, head, windows, lengths):
    out, _ = gru(windows)
    return head(out[:, 0])


def _first_layer_state(gru, head, windows, lengths):
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        windows, lengths.cpu(), batch_first=True, enforce_sorted=False
    )
    _, h_n = gru(packed)
    return head(h_n[0])  # the bottom layer of a stacked GRU


def _state_carried_across_windows(gru, head, windows, lengths):
    logits, h = [], None
    for b in range(windows.shape[0]):  # each window starts where the previous one ended
        _, h = gru(windows[b : b + 1, : int(lengths[b])], h)
        logits.append(head(h[-1]))
    return torch.cat(logits)


def _detached_state(gru, head, windows, lengths):
    out, _ = gru(windows)
    last = out[torch.arange(len(lengths)), lengths - 1]  # (B, H): after the last real step
    return head(last.detach())


def _window_compare(got, expected):
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        return (
            f"your logits have shape {tuple(got.shape)}; they must be (B, A) = "
            f"{tuple(expected.shape)}: one row per window, from one step's state (no flatten "
            "over the window's steps)"
        )
    return compare_outputs(got, expected, rtol=1e-4, atol=1e-5, where="logits")


WINDOW_LOGITS = Exercise(
    name="window_logits",
    reference=window_logits,
    make_case=_window_case,
    compare=_window_compare,
    explain=lambda case, got, expected: (
        "Run each window from the zero state, skip its padding (pack_padded_sequence, or "
        "gather the output at lengths - 1), and give the head the top layer's state after the "
        "last real observation."
    ),
    check_gradients=True,
    answer_name="logits",
    grad_hint="The GRU's and the head's weights must all get their gradient: no .detach() "
    "or torch.no_grad() between the GRU and the head.",
    reference_path="rldebug.checkers.ch06.window_logits",
    bugs=[
        PlantedBug(
            "the head reads the window's last slot, after the padding",
            _reads_the_padding,
            "out[:, -1] is the state after the zeros of a short window, not after its last "
            "real observation: pack the windows with their lengths, or gather out at "
            "lengths - 1.",
        ),
        PlantedBug(
            "the head reads the window's first step",
            _reads_the_first_step,
            "out[:, 0] has seen one observation; 'now' is the last real step of the window.",
        ),
        PlantedBug(
            "the head reads the bottom layer of a stacked GRU",
            _first_layer_state,
            "h_n is (layers, B, H): the head sits on the top layer, h_n[-1], as out does.",
        ),
        PlantedBug(
            "the state is carried from one window into the next",
            _state_carried_across_windows,
            "Each window already holds the recent past: start every window from the zero "
            "state (hx=None), or each observation is read again in every window it is in.",
        ),
        PlantedBug(
            "the GRU's state is detached before the head",
            _detached_state,
            "The values are right, but the GRU gets no gradient: give the head the state as it is.",
        ),
    ],
)

EXERCISES = [REINFORCE_LOSS, EPISODE_LOG_PROBS, WINDOW_LOGITS]


def check_reinforce_loss(fn, *, seed=None):
    """Check a reader's ``reinforce_loss(log_probs, rewards, mask, gamma)``."""
    REINFORCE_LOSS.check(fn, seed=seed)


def check_episode_log_probs(fn, *, seed=None):
    """Check a reader's ``episode_log_probs(policy, obs, actions, mask)``."""
    EPISODE_LOG_PROBS.check(fn, seed=seed)


def check_window_logits(fn, *, seed=None):
    """Check a reader's ``window_logits(gru, head, windows, lengths)``."""
    WINDOW_LOGITS.check(fn, seed=seed)
