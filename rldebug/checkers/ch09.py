"""Checkers for chapter 9, "Bug hunt".

For each suspect the reader writes a function that returns the name of its bug, one of
:data:`rldebug.bughunt.BUG_NAMES`. The answers are stored as salted hashes, so reading
this file does not give them away; a wrong answer gets a hint that names the diagnostic
to run.
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import torch

from rldebug.bughunt import BUG_NAMES, SUSPECTS
from rldebug.checking import Exercise, PlantedBug, compare_outputs, forced_edge, type_phrase
from rldebug.recurrent import RecurrentNet, masked_mean, reset_state

_SALT = "rldebug-ch09"
_ANSWER_HASHES = {
    "agent_1": "6d600e98a936e08cd58bb6da",
    "agent_2": "16abadad7e6a10577b6511dd",
    "agent_3": "15c687f9dcb91b7089964b9c",
    "agent_4": "917258dae1d9b6ebd250f8ed",
    "agent_5": "c9e6ddb733f98fe0a6c76082",
    "agent_6": "a09ba4743ca00ebd184c0c29",
    "agent_7": "34f3c6ba5b591589d991ad8d",
    "agent_8": "791a1f495eac5df9dcf7de44",
    "agent_9": "48c771f0f027b9e2785d4fd0",
    "agent_10": "d922e6288cc1c22af04a1be4",
}

# Where to look, per suspect: the diagnostic that flags it and the method to read.
_HINTS = {
    "agent_1": "Run run_all_diagnostics(agent): 'td shapes' flags it. Print the shapes that "
    "q_and_target returns.",
    "agent_2": "Run run_all_diagnostics(agent): the leak test flags it. Follow what "
    "policy_step does with its episode_start argument.",
    "agent_3": "Run run_all_diagnostics(agent): the truncation probe flags it. Read td_target "
    "line by line: which flags stop the bootstrap?",
    "agent_4": "Run run_all_diagnostics(agent): the memory probe flags it. Which state does "
    "training_pass start each step from?",
    "agent_5": "Run run_all_diagnostics(agent): the burn-in gradient check flags it. Which "
    "part of sequence_loss runs with gradient?",
    "agent_6": "Run run_all_diagnostics(agent): the gradient-mask report says a second forward "
    "pass receives gradient. Which pass builds the target?",
    "agent_7": "Run run_all_diagnostics(agent): rollout consistency flags it but the leak test "
    "does not. Compare training_pass with policy_step at episode starts.",
    "agent_8": "Run run_all_diagnostics(agent): only the first-epoch check flags it, so the "
    "full training pass is right. Look at how the minibatches are cut.",
    "agent_9": "No diagnostic flags it: read act_step line by line. The GRU has two layers; "
    "which of them does the head read when the agent acts, and which when it trains?",
    "agent_10": "No diagnostic flags it: read td_loss line by line. Which steps does its mean "
    "run over, and what does the batch's mask say about the others?",
}

# What each bug would look like, to say why a wrong answer cannot be right.
_WOULD_SHOW = {
    "broadcast loss: (B, 1) - (B,)": "'td shapes' would flag it",
    "action not masked: every output gets an error": "the gradient-mask report would show "
    "several outputs per row",
    "truncation treated as terminal": "the truncation probe would flag it",
    "target not detached": "the gradient-mask report would flag a second forward pass",
    "hidden state leaks across episodes": "the leak test would flag it",
    "zero state at every training step": "the memory probe would find no memory",
    "no reset in the training unroll": "rollout consistency would flag it and the leak test "
    "would pass",
    "burn-in with gradient": "the burn-in gradient check would flag it",
    "padding not masked in the loss": "its loss would average over steps that its mask "
    "marks as padding (only an agent that pads its sequences can have it)",
    "timesteps shuffled in PPO minibatches": "only the first-epoch check would flag it",
    "h_n read instead of output": "its head would read a layer of h_n where the top layer's "
    "output belongs (only an agent with a stacked RNN shows it)",
}


def _digest(agent: str, answer: str) -> str:
    return hashlib.sha256(f"{_SALT}:{agent}:{answer}".encode()).hexdigest()[:24]


def _answer(agent: str) -> str:
    for name in BUG_NAMES:
        if _digest(agent, name) == _ANSWER_HASHES[agent]:
            return name
    raise RuntimeError(f"no bug name matches the answer key of {agent}")  # pragma: no cover


def _compare(got, expected) -> str | None:
    if not isinstance(got, str):
        return (
            f"your answer is {type_phrase(got)}; return one of the strings in "
            "rldebug.bughunt.BUG_NAMES"
        )
    if got not in BUG_NAMES:
        return f"your answer {got!r} is not one of rldebug.bughunt.BUG_NAMES (copy one exactly)"
    if got != expected:
        return f"{got!r} is not the bug planted in this suspect"
    return None


def _exercise(agent: str) -> Exercise:
    hint = _HINTS[agent]
    return Exercise(
        name=f"bug_in_{agent}",
        reference=partial(_answer, agent),
        make_case=lambda rng: {},
        compare=_compare,
        explain=lambda case, got, expected: hint,
        n_cases=1,
        reference_path=f"the answer key for {agent}",
        bugs=[
            PlantedBug(
                f"a wrong bug name ({wrong})",
                partial(str, wrong),
                f"If it were {wrong!r}, {_WOULD_SHOW[wrong]}. {hint}",
            )
            for wrong in BUG_NAMES
            if _digest(agent, wrong) != _ANSWER_HASHES[agent]
        ],
    )


_NAME_EXERCISES = [_exercise(agent) for agent in SUSPECTS]
_BY_AGENT = dict(zip(SUSPECTS, _NAME_EXERCISES))


# --------------------------------------------------------------------- the hard cases' fixes
def act_step(net: RecurrentNet, obs: torch.Tensor, h, episode_start: torch.Tensor):
    """One acting step of a recurrent Q-network: (Q (B, A), the next state).

    ``net.rnn`` is a batch-first ``nn.GRU`` or ``nn.LSTM`` with any number of layers,
    ``net.head`` a linear layer; ``h`` is its state, (L, B, H) or (h, c); ``obs`` (B, D).
    """
    h = reset_state(h, episode_start)  # a new episode starts from zero, h and c alike
    output, h = net.rnn(obs.unsqueeze(1), h)  # (B, D) -> (B, 1, D); output (B, 1, H)
    return net.head(output[:, -1]), h  # the top layer's output at this step


_ACT_EDGES = ("LSTM", "three layers")


def _act_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, _ACT_EDGES)
    cell = "lstm" if edge == "LSTM" or rng.random() < 0.4 else "gru"
    layers = 3 if edge == "three layers" else int(rng.integers(1, 4))
    batch, obs_dim, hidden = (
        int(rng.integers(2, 6)),
        int(rng.integers(2, 5)),
        int(rng.integers(3, 8)),
    )
    torch.manual_seed(int(rng.integers(2**31)))
    net = RecurrentNet(obs_dim, int(rng.integers(2, 4)), hidden, cell=cell, num_layers=layers)
    h = torch.randn(layers, batch, hidden)  # a state from earlier steps, not zeros
    state = (h, torch.randn(layers, batch, hidden)) if cell == "lstm" else h
    start = torch.from_numpy(rng.random(batch) < 0.5)
    start[0], start[-1] = True, False  # one env starts an episode, one goes on
    return {"net": net, "obs": torch.randn(batch, obs_dim), "h": state, "episode_start": start}


def _bottom_layer(net, obs, h, episode_start):
    h = reset_state(h, episode_start)
    _, h = net.rnn(obs.unsqueeze(1), h)
    return net.head(h[0]), h  # h_n[0]: the bottom layer (for an LSTM, all of h_n)


def _last_of_the_tuple(net, obs, h, episode_start):
    h = reset_state(h, episode_start)
    _, h = net.rnn(obs.unsqueeze(1), h)
    top = h[-1] if isinstance(h, torch.Tensor) else h[-1][-1]  # an LSTM's h[-1] is c
    return net.head(top), h


def _no_reset(net, obs, h, episode_start):
    output, h = net.rnn(obs.unsqueeze(1), h)
    return net.head(output[:, -1]), h


def _reset_after_the_step(net, obs, h, episode_start):
    output, h = net.rnn(obs.unsqueeze(1), h)
    return net.head(output[:, -1]), reset_state(h, episode_start)


def _act_compare(got, expected):
    if not (isinstance(got, tuple) and len(got) == 2):
        return f"act_step returns {type_phrase(got)}; it must return a pair (Q, next state)"
    if isinstance(got[0], torch.Tensor) and got[0].shape != expected[0].shape:
        return (
            f"your Q-values have shape {tuple(got[0].shape)}; they must be (B, A) = "
            f"{tuple(expected[0].shape)}: one row per environment, from one layer's state"
        )
    return compare_outputs(got, expected, rtol=1e-4, atol=1e-5, where="(Q, next state)")


ACT_STEP = Exercise(
    name="act_step",
    reference=act_step,
    make_case=_act_case,
    compare=_act_compare,
    n_cases=12,
    explain=lambda case, got, expected: (
        "Reset the state where an episode starts, run one step, and give the head the top "
        "layer's output (output[:, -1]; for a GRU also h_n[-1], for an LSTM h_n[0][-1])."
    ),
    check_gradients=True,
    answer_name="(Q, next state)",
    grad_hint="Every layer of the RNN and the head must get its gradient: no .detach() or "
    "torch.no_grad() between the RNN and the head.",
    reference_path="rldebug.checkers.ch09.act_step",
    bugs=[
        PlantedBug(
            "the head reads the bottom layer, h_n[0]",
            _bottom_layer,
            "h_n is (layers, B, H), bottom layer first: h_n[0] is the first layer's state, "
            "whose features the head was never trained on (the training pass reads the top "
            "layer's output). With one layer it happens to be right, which is how this bug "
            "survives until someone adds a layer.",
        ),
        PlantedBug(
            "the head reads h_n[-1] of an LSTM's (h, c): the cell state c",
            _last_of_the_tuple,
            "An LSTM returns its state as a pair (h_n, c_n); [-1] of the pair is c_n. The "
            "head reads h: output[:, -1], or h_n[0][-1].",
        ),
        PlantedBug(
            "the state is not reset at an episode start",
            _no_reset,
            "A new episode must start from zeros: reset_state(h, episode_start) before the step.",
        ),
        PlantedBug(
            "the state is reset after the step instead of before it",
            _reset_after_the_step,
            "The first observation of a new episode must be read from the zero state: reset "
            "*before* the step that reads it.",
        ),
    ],
)


def td_loss(q_sa: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared TD error over the real steps: q_sa, target and mask are (B, T)."""
    return masked_mean((q_sa - target) ** 2, mask)


_LOSS_EDGES = ("no padding", "an episode of one step")


def _loss_case(rng: np.random.Generator, case_index: int = 0) -> dict:
    edge = forced_edge(case_index, _LOSS_EDGES)
    batch, steps = int(rng.integers(2, 7)), int(rng.integers(3, 13))
    lengths = rng.integers(1, steps + 1, size=batch)
    lengths[-1] = steps  # the longest episode sets the padded length
    if edge == "no padding":
        lengths[:] = steps
    elif edge == "an episode of one step":
        lengths[0] = 1
    mask = torch.from_numpy(np.arange(steps)[None, :] < lengths[:, None])  # (B, T)
    # Padding holds whatever the network says about zeros: not zeros, not data.
    q_sa = torch.from_numpy(rng.normal(size=(batch, steps)).astype(np.float32))
    target = torch.from_numpy(rng.normal(size=(batch, steps)).astype(np.float32))
    return {"q_sa": q_sa, "target": target, "mask": mask}


def _unmasked(q_sa, target, mask):
    return ((q_sa - target) ** 2).mean()


def _masked_but_divided_by_all(q_sa, target, mask):
    return (((q_sa - target) ** 2) * mask).mean()


def _mean_of_episode_means(q_sa, target, mask):
    per_step = ((q_sa - target) ** 2) * mask
    return (per_step.sum(1) / mask.sum(1)).mean()


def _only_q_masked(q_sa, target, mask):
    return ((q_sa * mask - target) ** 2).sum() / mask.sum()


TD_LOSS = Exercise(
    name="td_loss",
    reference=td_loss,
    make_case=_loss_case,
    grad_inputs=("q_sa",),
    check_gradients=True,
    answer_name="loss",
    grad_hint="Padded steps must get zero gradient and every real step the same weight: "
    "2 (q - target) / (number of real steps).",
    explain=lambda case, got, expected: (
        "Average the squared error over the real steps only: sum over mask, divided by "
        "mask.sum() (or index with the mask, then .mean())."
    ),
    reference_path="rldebug.checkers.ch09.td_loss",
    bugs=[
        PlantedBug(
            "the mean runs over the padding too",
            _unmasked,
            "Padded steps are not data: their Q-values are what the network says about the "
            "zeros appended after an episode, and their targets are not returns of anything. "
            "Leave them out of the mean.",
        ),
        PlantedBug(
            "the padding is zeroed but still counted in the mean",
            _masked_but_divided_by_all,
            "Multiplying by the mask removes the padding's errors but .mean() still divides by "
            "every slot: the loss shrinks with the amount of padding. Divide by mask.sum().",
        ),
        PlantedBug(
            "each episode is averaged first, then the episodes",
            _mean_of_episode_means,
            "This weighs a step of a short episode more than a step of a long one; an unpadded "
            "replay gives every transition the same weight. Divide the masked sum by mask.sum().",
        ),
        PlantedBug(
            "only Q is masked, not the error",
            _only_q_masked,
            "q * mask is 0 on padding but the target is not: the padding still gets an error "
            "of -target. Mask the squared error.",
        ),
    ],
)

EXERCISES = [*_NAME_EXERCISES, ACT_STEP, TD_LOSS]


def check_act_step(fn, *, seed=None):
    """Check a reader's ``act_step(net, obs, h, episode_start)`` (suspect 9's fix)."""
    ACT_STEP.check(fn, seed=seed)


def check_td_loss(fn, *, seed=None):
    """Check a reader's ``td_loss(q_sa, target, mask)`` (suspect 10's fix)."""
    TD_LOSS.check(fn, seed=seed)


def check_agent(agent: str, fn, *, seed=None) -> None:
    """Check ``fn()``, the reader's name for the bug of ``agent`` (e.g. "agent_3")."""
    if agent not in _BY_AGENT:
        raise ValueError(f"unknown suspect {agent!r}; the suspects are {', '.join(SUSPECTS)}")
    _BY_AGENT[agent].check(fn, seed=seed)


def check_agent_1(fn, *, seed=None):
    check_agent("agent_1", fn, seed=seed)


def check_agent_2(fn, *, seed=None):
    check_agent("agent_2", fn, seed=seed)


def check_agent_3(fn, *, seed=None):
    check_agent("agent_3", fn, seed=seed)


def check_agent_4(fn, *, seed=None):
    check_agent("agent_4", fn, seed=seed)


def check_agent_5(fn, *, seed=None):
    check_agent("agent_5", fn, seed=seed)


def check_agent_6(fn, *, seed=None):
    check_agent("agent_6", fn, seed=seed)


def check_agent_7(fn, *, seed=None):
    check_agent("agent_7", fn, seed=seed)


def check_agent_8(fn, *, seed=None):
    check_agent("agent_8", fn, seed=seed)


def check_agent_9(fn, *, seed=None):
    check_agent("agent_9", fn, seed=seed)


def check_agent_10(fn, *, seed=None):
    check_agent("agent_10", fn, seed=seed)


def show_fix(agent: str, fn, *, reveal: bool = False) -> str | None:
    """Print the fix of ``agent`` (a diff of the suspect's methods against its fixed twin)
    once ``fn()`` names the bug correctly, or when ``reveal=True``. Returns the diff."""
    import contextlib
    import difflib
    import io

    from rldebug.bughunt import suspect_source

    if agent not in _BY_AGENT:
        raise ValueError(f"unknown suspect {agent!r}; the suspects are {', '.join(SUSPECTS)}")
    if not reveal:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                _BY_AGENT[agent].check(fn)
        except Exception:  # not answered yet, or wrong: keep the fix hidden
            print(f"Name the bug of {agent} first: the fix is shown once your answer is right.")
            return None
    diff = difflib.unified_diff(
        suspect_source(agent).splitlines(),
        suspect_source(agent, fixed=True).splitlines(),
        fromfile=f"{agent} (suspect)",
        tofile=f"{agent} (fixed twin)",
        n=1,
        lineterm="",
    )
    text = "\n".join(line for line in diff if not line.startswith("# "))
    print(text)
    return text
