"""The bug hunt of chapter 9: ten suspects, each with a bug from chapters 1-8.

Every suspect is a small agent that trains without crashing and looks plausible. Each has
a *fixed twin*: the reference agent of its family, which differs from the suspect in one
method. The diagnostics of the book run on any of them through
:func:`run_all_diagnostics`. Which bug sits in which suspect is for the reader to find;
the exercise checkers in :mod:`rldebug.checkers.ch09` know (as hashes).

Suspects (``make_agent(name)``, ``make_agent(name, fixed=True)`` for the twin):

* Q-learning on Taxi (:mod:`rldebug.bughunt.taxi`): agent_1, agent_3, agent_6;
* recurrent PPO on the recall task (:mod:`rldebug.bughunt.ppo`): agent_2, agent_4,
  agent_7, agent_8;
* DRQN with burn-in on the recall task (:mod:`rldebug.bughunt.drqn`): agent_5;
* the hard cases, whose bugs no diagnostic flags: agent_9 (a DRQN with a two-layer GRU) and
  agent_10 (a DRQN on padded whole episodes), both in :mod:`rldebug.bughunt.drqn`.
"""

from __future__ import annotations

import inspect
from typing import Any

from rldebug.bughunt import drqn, ppo, taxi
from rldebug.bughunt.diagnose import (
    DIAGNOSTICS,
    Finding,
    burn_in_gradient,
    flagged,
    run_all_diagnostics,
    truncation_probe,
)
from rldebug.bughunt.recall import RecallEnv

__all__ = [
    "AGENT_NAMES",
    "HARD_CASES",
    "SUSPECTS",
    "BUG_NAMES",
    "DIAGNOSTICS",
    "Finding",
    "family_of",
    "RecallEnv",
    "burn_in_gradient",
    "findings_matrix",
    "flagged",
    "make_agent",
    "plot_findings",
    "run_all_diagnostics",
    "suspect_source",
    "truncation_probe",
]

# The bugs a suspect may have: every chapter's classic, plus a few that none of them has.
BUG_NAMES: tuple[str, ...] = (
    "broadcast loss: (B, 1) - (B,)",
    "action not masked: every output gets an error",
    "truncation treated as terminal",
    "target not detached",
    "hidden state leaks across episodes",
    "zero state at every training step",
    "no reset in the training unroll",
    "burn-in with gradient",
    "padding not masked in the loss",
    "timesteps shuffled in PPO minibatches",
    "h_n read instead of output",
)

_SUSPECTS: dict[str, tuple[type, type]] = {
    "agent_1": (taxi.Agent1, taxi.TaxiDQN),
    "agent_2": (ppo.Agent2, ppo.RecurrentPPO),
    "agent_3": (taxi.Agent3, taxi.TaxiDQN),
    "agent_4": (ppo.Agent4, ppo.RecurrentPPO),
    "agent_5": (drqn.Agent5, drqn.RecurrentDQN),
    "agent_6": (taxi.Agent6, taxi.TaxiDQN),
    "agent_7": (ppo.Agent7, ppo.RecurrentPPO),
    "agent_8": (ppo.Agent8, ppo.RecurrentPPO),
    # The hard cases: bugs that none of the diagnostics flags.
    "agent_9": (drqn.Agent9, drqn.TwoLayerDQN),
    "agent_10": (drqn.Agent10, drqn.EpisodeDQN),
}
#: The suspects every diagnostic of the book was run on; one of them flags each.
AGENT_NAMES: tuple[str, ...] = tuple(
    name for name in _SUSPECTS if name not in ("agent_9", "agent_10")
)
#: The suspects whose bug no diagnostic flags: reading the code is the only way.
HARD_CASES: tuple[str, ...] = ("agent_9", "agent_10")
SUSPECTS: tuple[str, ...] = AGENT_NAMES + HARD_CASES


def _check_name(name: str) -> None:
    if name not in _SUSPECTS:
        raise ValueError(f"unknown suspect {name!r}; the suspects are {', '.join(SUSPECTS)}")


def make_agent(name: str, *, fixed: bool = False, seed: int = 0, **kwargs: Any):
    """A fresh suspect (``fixed=False``) or its fixed twin (``fixed=True``)."""
    _check_name(name)
    broken, reference = _SUSPECTS[name]
    return (reference if fixed else broken)(seed, **kwargs)


def family_of(name: str) -> str:
    """What kind of agent a suspect is, e.g. "Q-learning on Taxi"."""
    _check_name(name)
    return _SUSPECTS[name][0].family


def suspect_source(name: str, *, fixed: bool = False) -> str:
    """The source of the methods where the suspect's family hides its bugs, as the suspect
    (or its twin) runs them."""
    _check_name(name)
    cls = _SUSPECTS[name][1 if fixed else 0]
    parts = [f"# {name}: {cls.family}"]
    for method in cls.suspect_methods:
        parts.append(inspect.getsource(getattr(cls, method)))
    return "\n".join(parts)


def findings_matrix(findings: dict[str, dict[str, Finding]]):
    """{agent: {diagnostic: Finding}} -> array (agents, diagnostics): 1 flagged, 0 passed,
    NaN not applicable."""
    import numpy as np

    rows = []
    for per_agent in findings.values():
        rows.append(
            [
                (float(per_agent[d].flagged) if per_agent[d].applicable else np.nan)
                for d in DIAGNOSTICS
            ]
        )
    return np.array(rows)


def plot_findings(findings: dict[str, dict[str, Finding]], ax=None, title: str = ""):
    """Heat map of agents x diagnostics: red flagged, green passed, grey not applicable."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    matrix = findings_matrix(findings)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 + 0.4 * len(matrix)))
    shown = np.where(np.isnan(matrix), 0.5, matrix)
    ax.imshow(shown, cmap=ListedColormap(["#4caf50", "#dddddd", "#e53935"]), vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            text = "n/a" if np.isnan(value) else ("FLAG" if value else "ok")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(DIAGNOSTICS)), DIAGNOSTICS, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(findings)), list(findings), fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax.figure
