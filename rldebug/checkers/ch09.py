"""Checkers for chapter 9, "Bug hunt".

For each suspect the reader writes a function that returns the name of its bug, one of
:data:`rldebug.bughunt.BUG_NAMES`. The answers are stored as salted hashes, so reading
this file does not give them away; a wrong answer gets a hint that names the diagnostic
to run.
"""

from __future__ import annotations

import hashlib
from functools import partial

from rldebug.bughunt import AGENT_NAMES, BUG_NAMES
from rldebug.checking import Exercise, PlantedBug, type_phrase

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
    "padding not masked in the loss": "none of these suspects pads its sequences",
    "timesteps shuffled in PPO minibatches": "only the first-epoch check would flag it",
    "h_n read instead of output": "none of these suspects reads h_n",
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


EXERCISES = [_exercise(agent) for agent in AGENT_NAMES]
_BY_AGENT = dict(zip(AGENT_NAMES, EXERCISES))


def check_agent(agent: str, fn, *, seed=None) -> None:
    """Check ``fn()``, the reader's name for the bug of ``agent`` (e.g. "agent_3")."""
    if agent not in _BY_AGENT:
        raise ValueError(f"unknown suspect {agent!r}; the suspects are {', '.join(AGENT_NAMES)}")
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


def show_fix(agent: str, fn, *, reveal: bool = False) -> str | None:
    """Print the fix of ``agent`` (a diff of the suspect's methods against its fixed twin)
    once ``fn()`` names the bug correctly, or when ``reveal=True``. Returns the diff."""
    import contextlib
    import difflib
    import io

    from rldebug.bughunt import suspect_source

    if agent not in _BY_AGENT:
        raise ValueError(f"unknown suspect {agent!r}; the suspects are {', '.join(AGENT_NAMES)}")
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
