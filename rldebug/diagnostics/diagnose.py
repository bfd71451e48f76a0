"""``rldebug.diagnose(obj)``: every diagnostic of the book that applies to ``obj``, in one call.

``obj`` may be

* an ``nn.Module``: a torch RNN or cell, a model ``forward(obs, state) -> (out, state)``,
  a model that keeps its state inside (``forward(obs) -> out``), or a feed-forward net;
* a step function: ``policy_step(obs, episode_start) -> outputs`` (an acting agent) or
  ``f(obs, state) -> (out, state)`` (a recurrent model written as a function);
* a loss function with a batch: ``diagnose(loss_fn, batch, model=q_net, target=target_net)``
  with ``loss_fn(model, batch)`` or a closure ``loss_fn(batch)``;
* a stable-baselines3 or sb3-contrib model (``DQN``, ``PPO``, ``A2C``, ``RecurrentPPO``);
* a layer with ``forward`` and ``backward`` methods (numpy), with ``inputs={...}``;
* a hooks object, like the agents of chapter 9 (see :data:`CHECKS` for the hook names).

It returns a :class:`Diagnosis`: one :class:`Check` per diagnostic, "pass", "FAIL", "warn"
or "not run" (with what it would need), and prints it as a short table.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from rldebug.diagnostics.adapters import as_sequence_fn, positional_parameters
from rldebug.diagnostics.collapse import batch_states, states_or_random
from rldebug.integrations import is_sb3_model

__all__ = ["Check", "Diagnosis", "diagnose", "CHECKS"]

START_NAMES = ("episode_start", "episode_starts", "start", "starts", "done", "dones", "first",
               "new_episode", "reset", "is_first")  # fmt: skip
FIX_LEAK = (
    "Pass the state in and out, forward(obs, state) -> (out, state), and start each episode "
    "from None (or give the module a reset_state() method and call it at every episode start)."
)
STATUSES = ("pass", "FAIL", "warn", "not run")
RESET_METHODS = ("reset_state", "reset_states", "reset_hidden", "reset_memory", "reset")


@dataclass
class Check:
    """One diagnostic's verdict: ``status`` is "pass", "FAIL", "warn" or "not run"."""

    name: str
    status: str
    summary: str  # one line, for the table
    report: Any = None
    details: str = ""  # the diagnostic's full message

    def __str__(self) -> str:
        return f"{self.name}: {self.status}: {self.details or self.summary}"

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class Diagnosis:
    """What :func:`diagnose` found; ``diagnosis["leak test"]`` is one :class:`Check`."""

    target: str
    checks: list[Check] = field(default_factory=list)

    def __getitem__(self, name: str) -> Check:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; the checks are {[c.name for c in self.checks]}")

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "FAIL"]

    @property
    def passed(self) -> list[str]:
        return [c.name for c in self.checks if c.status == "pass"]

    @property
    def ok(self) -> bool:
        """No check failed and at least one ran."""
        return not self.failed and bool(self.passed)

    def __str__(self) -> str:
        lines = [f"diagnose: {self.target}"]
        for c in self.checks:
            text = textwrap.shorten(c.summary, 100, placeholder=" ...")
            lines.append(f"  {c.name:<19} {c.status:<8} {text}")
        for c in self.checks:
            if c.status in ("FAIL", "warn") and c.details:
                lines += textwrap.wrap(f"{c.name}: {c.details}", 100, subsequent_indent="  ")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {s: sum(c.status == s for c in self.checks) for s in STATUSES}
        return (
            f"Diagnosis({self.target!r}: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")"
        )


# ---------------------------------------------------------------------------------------
# the checks: each needs some hooks and returns (passed, summary, report)
# ---------------------------------------------------------------------------------------


def _memory(h):
    from rldebug.diagnostics.memory import memory_probe

    probe = memory_probe(h.training_fn, h.obs_dim, seq_len=16, max_lag=8, batch_size=16,
                         batch_first=getattr(h, "batch_first", None))  # fmt: skip
    if probe.horizon < 0:
        summary = "the output depends on no input at all"
    elif not probe.has_memory:
        summary = "the output depends on the current input only: is the state zeroed every step?"
    elif probe.horizon >= probe.lags[-1]:
        summary = f"remembers inputs {probe.horizon}+ steps back (the probe's limit)"
    else:
        summary = f"remembers inputs up to {probe.horizon} steps back"
    return probe.has_memory, summary, probe


def _leak(h):
    from rldebug.diagnostics.recurrent import hidden_state_leak_test

    report = hidden_state_leak_test(h.policy_step, h.obs_dim, n_trials=6)
    if not report.leaks:
        return True, f"a new episode ignores the one before ({report.n_trials} trials)", report
    summary = (
        f"a new episode's output changes by up to {report.max_abs_diff:.2g} with the one "
        "before: the state is not reset at episode starts"
    )
    hint = getattr(h, "leak_hint", "")
    if hint:
        measured = (
            f"(measured: a new episode's output moves by up to {report.max_abs_diff:.2g} with "
            f"the episode before, over {report.n_trials} trials)"
        )
        return False, hint, report, f"{hint}. {FIX_LEAK} {measured}"
    return False, summary, report


def _gradient_mask(h):
    from rldebug.diagnostics.gradients import gradient_mask_report

    report = gradient_mask_report(h.q_network, h.loss_fn, h.sample_batch(),
                                  target=getattr(h, "target_network", None))  # fmt: skip
    if report.ok:
        summary = "only Q(s, taken action) gets gradient, sample by sample"
        if report.relative_to_gather is not None:
            summary += f"; {report.relative_to_gather:.2g}x the gradient of gather"
        return True, summary, report
    return False, report.problems[0], report


def _first_epoch(h):
    from rldebug.diagnostics.ppo import FirstEpochReport, first_epoch_check

    stats = h.first_epoch_stats()
    report = stats if isinstance(stats, FirstEpochReport) else first_epoch_check(*stats)
    dev = report.max_ratio_dev
    if report.ok:
        return True, f"ratio = 1 on all {report.n_steps} steps (max |ratio - 1| {dev:.1g})", report
    return False, f"ratio != 1 before any update: |ratio - 1| = {dev:.2g} at {report.where}", report


def _consistency(h):
    from rldebug.diagnostics.recurrent import rollout_consistency

    report = rollout_consistency(h.rollout_outputs(), h.training_outputs(), dims=("env", "step"))
    return report.ok, str(report), report


def _td_shapes(h):
    from rldebug.diagnostics.gradients import check_td_shapes

    q_sa, target = h.q_and_target(h.q_network, h.sample_batch())
    try:
        check_td_shapes(q_sa, target)
    except ValueError as err:
        return False, str(err), err
    return True, f"q_sa and target are both {tuple(q_sa.shape)}", None


def _truncation(h):
    from rldebug.bughunt.diagnose import truncation_probe

    probe = truncation_probe(h.td_target, h.gamma, h.n_actions)
    return probe.ok, str(probe), probe


def _burn_in(h):
    from rldebug.bughunt.diagnose import burn_in_gradient

    report = burn_in_gradient(h)
    return report.ok, str(report), report


def _one_action(h):
    from rldebug.diagnostics.collapse import collapse_check

    q_network, states, random_inputs = h.collapse_inputs()
    return collapse_check(q_network, states, random_inputs=random_inputs)


def _gradient_check(h):
    from rldebug.diagnostics.gradcheck import check_layer

    report = check_layer(h.forward, h.backward, h.inputs)
    return report.ok, str(report), report


# name -> (hooks it needs, what to pass to diagnose for it, the check)
CHECKS: dict[str, tuple[tuple[str, ...], str, Callable]] = {
    "memory probe": (("training_fn", "obs_dim"), "a recurrent model (a module or "
                     "f(obs, state) -> (out, state)) and obs_dim", _memory),
    "leak test": (("policy_step", "obs_dim"), "a recurrent model or an acting function "
                  "policy_step(obs, episode_start), and obs_dim", _leak),
    "gradient mask": (("q_network", "loss_fn", "sample_batch"), "your Q-loss and a batch: "
                      "diagnose(loss_fn, batch, model=q_net, target=target_net)", _gradient_mask),
    "first-epoch check": (("first_epoch_stats",), "an on-policy model (PPO, RecurrentPPO) with "
                          "its env, or a first_epoch_stats() hook", _first_epoch),
    "rollout consistency": (("rollout_outputs", "training_outputs"), "rollout_outputs() and "
                            "training_outputs() hooks", _consistency),
    "td shapes": (("q_network", "sample_batch", "q_and_target"), "a q_and_target(q_network, "
                  "batch) hook", _td_shapes),
    "truncation probe": (("td_target", "gamma", "n_actions"), "td_target, gamma and n_actions "
                         "hooks", _truncation),
    "burn-in gradient": (("sample_sequence_batch", "sequence_loss", "burn_in"),
                         "sample_sequence_batch, sequence_loss and burn_in hooks", _burn_in),
    "one action": (("collapse_inputs",), "a Q-network and states: collapse_inputs() -> "
                   "(q_network, states, random_inputs)", _one_action),
    "gradient check": (("forward", "backward", "inputs"), "a layer with forward and backward "
                       "methods, and inputs={name: array}", _gradient_check),
}  # fmt: skip
ALWAYS_LISTED = ("memory probe", "leak test", "gradient mask", "first-epoch check")


class Hooks:
    """What :func:`diagnose` found out about its target: attributes named as in CHECKS."""

    def __init__(self, **hooks: Any):
        self.reasons: dict[str, str] = {}  # check -> why it cannot run on this target
        self.__dict__.update(hooks)


def _run(hooks: Any, target: str, extra: tuple[str, ...] = ()) -> Diagnosis:
    diagnosis = Diagnosis(target)
    reasons = getattr(hooks, "reasons", {})
    for name, (needs, what, check) in CHECKS.items():
        missing = [hook for hook in needs if not hasattr(hooks, hook)]
        if missing or name in reasons:
            if name in ALWAYS_LISTED or name in extra:
                partial = len(missing) < len(needs)  # some hooks there: name the others
                why = reasons.get(name) or (
                    f"missing the hooks {', '.join(missing)}" if partial else f"needs {what}"
                )
                diagnosis.checks.append(Check(name, "not run", why))
            continue
        try:
            passed, summary, report, *details = check(hooks)
        except Exception as err:  # a check that cannot read this target says why
            text = f"{type(err).__name__}: {err}"
            diagnosis.checks.append(Check(name, "not run", text, err, text))
            continue
        text = details[0] if details else (str(report) if report is not None else summary)
        status = passed if isinstance(passed, str) else ("pass" if passed else "FAIL")
        diagnosis.checks.append(Check(name, status, summary, report, text))
    return diagnosis


# ---------------------------------------------------------------------------------------
# what is it? one Hooks object per kind of target
# ---------------------------------------------------------------------------------------


def _infer_obs_dim(module: nn.Module) -> int | None:
    for sub in module.modules():
        for name in ("input_size", "in_features"):
            if isinstance(getattr(sub, name, None), int):
                return getattr(sub, name)
    return None


def _first_tensor(value: Any) -> torch.Tensor:
    while isinstance(value, (tuple, list)):
        value = value[0]
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"the model returned a {type(value).__name__}, not a tensor")
    return value


def _stepper(model: Any, obs_dim: int, batch_first: bool | None) -> Callable:
    """``policy_step`` for a model with an explicit state: state None at every start."""
    sequence_fn = as_sequence_fn(model, obs_dim, batch_first=batch_first)
    memory = {"state": None}

    def policy_step(obs: torch.Tensor, episode_start: bool) -> torch.Tensor:
        state = None if episode_start else memory["state"]
        out, memory["state"] = sequence_fn(obs.reshape(1, 1, -1), state)
        return out

    return policy_step


def _call_on_observations(module: nn.Module, obs: torch.Tensor) -> Any:
    try:
        with torch.no_grad():
            return module(obs)
    except (RuntimeError, ValueError, IndexError) as err:
        raise ValueError(
            f"the model failed on observations of shape {tuple(obs.shape)}: {err}. Pass "
            "obs_dim= the size of one observation your model expects."
        ) from err


def _module_hooks(module: nn.Module, obs_dim: int | None, batch_first, states) -> tuple:
    obs_dim = obs_dim or _infer_obs_dim(module)
    if not obs_dim:
        raise ValueError(
            f"cannot tell the observation size of {type(module).__name__}: pass obs_dim="
        )
    explicit = isinstance(module, (nn.RNNBase, nn.RNNCellBase)) or (
        len(positional_parameters(module)) >= 2
    )
    name = type(module).__name__
    if explicit:
        try:  # one short sequence: a wrong observation size fails here, with a clear message
            with torch.no_grad():
                as_sequence_fn(module, obs_dim, batch_first=batch_first)(
                    torch.zeros(2, 2, obs_dim), None
                )
        except (RuntimeError, ValueError, IndexError) as err:
            raise ValueError(
                f"{name} failed on observations of size {obs_dim}: {err}. Pass obs_dim= the "
                "size of one observation your model expects."
            ) from err
        layout = ""
        if isinstance(module, nn.RNNBase):
            layout = ", batch-first" if module.batch_first else ", sequence-first"
        hooks = Hooks(training_fn=module, obs_dim=obs_dim, batch_first=batch_first,
                      policy_step=_stepper(module, obs_dim, batch_first))  # fmt: skip
        return (
            hooks,
            f"{name}, a recurrent model with an explicit state{layout} (obs_dim {obs_dim})",
        )
    obs = torch.randn(2, obs_dim, generator=torch.Generator().manual_seed(0))
    snapshot = copy.deepcopy(module)
    outputs = []
    for seed in (1, 2):  # two copies in the same state, different random numbers
        twin = copy.deepcopy(snapshot)
        torch.manual_seed(seed)
        outputs.append(_first_tensor(_call_on_observations(twin, obs)))
    if not torch.allclose(outputs[0], outputs[1], rtol=0, atol=0, equal_nan=True):  # NaN: same
        raise ValueError(
            f"{name} gives different outputs for the same input in the same state: it samples "
            "(actions, noise) or uses dropout. diagnose needs deterministic outputs: call "
            "model.eval(), and pass the network that returns logits, Q-values or means, not "
            "the sampled action."
        )
    again = _first_tensor(_call_on_observations(twin, obs))
    if torch.allclose(again, outputs[1], rtol=0, atol=0, equal_nan=True):
        inputs = states_or_random(states, obs_dim)  # (S, obs_dim), and whether random
        hooks = Hooks(obs_dim=obs_dim, collapse_inputs=lambda: (module, *inputs))
        hooks.reasons = {
            "memory probe": "the model is feed-forward (same input, same output): no memory",
            "leak test": "the model is feed-forward: no state to leak",
        }
        return hooks, f"{name}, a feed-forward model (obs_dim {obs_dim})"
    reset_name = next((m for m in RESET_METHODS if callable(getattr(module, m, None))), None)
    reset = getattr(module, reset_name) if reset_name else None

    def policy_step(obs: torch.Tensor, episode_start: bool) -> torch.Tensor:
        if episode_start and reset is not None:
            reset()
        return _first_tensor(module(obs.reshape(1, -1)))

    def training_fn(inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        fresh = copy.deepcopy(snapshot)  # every sequence starts from the same state
        if reset is not None:
            getattr(fresh, reset_name)()
        outs = [_first_tensor(fresh(inputs[:, t])) for t in range(inputs.shape[1])]
        return torch.stack(outs, dim=1), None

    hint = (
        "" if reset is not None else f"the state lives inside {name}: never reset between episodes"
    )
    hooks = Hooks(training_fn=training_fn, policy_step=policy_step, obs_dim=obs_dim, leak_hint=hint)
    with_reset = f"reset by {reset_name}()" if reset is not None else "no reset method"
    return hooks, f"{name}, a model that keeps its state inside ({with_reset}; obs_dim {obs_dim})"


def _function_hooks(fn: Callable, obs_dim: int | None, batch_first: bool | None) -> tuple:
    params = positional_parameters(fn)
    if obs_dim is None:
        raise ValueError("diagnose needs obs_dim= (the size of one observation) for a function")
    if len(params) >= 2 and params[1].lower() in START_NAMES:
        return Hooks(policy_step=fn, obs_dim=obs_dim), f"an acting function {params[:2]}"
    if len(params) >= 2:
        hooks = Hooks(training_fn=fn, obs_dim=obs_dim, batch_first=batch_first,
                      policy_step=_stepper(fn, obs_dim, batch_first))  # fmt: skip
        return hooks, "a recurrent model written as f(obs, state) -> (out, state)"
    raise TypeError(
        f"diagnose cannot tell what {getattr(fn, '__name__', fn)!r} is: a function needs two "
        "parameters, policy_step(obs, episode_start) or f(obs, state) -> (out, state); a loss "
        "needs its batch: diagnose(loss_fn, batch, model=q_net)"
    )


def _loss_hooks(loss_fn: Callable, batch: Any, model: Any, target: Any) -> tuple:
    if not isinstance(model, nn.Module):
        raise TypeError(
            "a loss function needs the Q-network it trains: diagnose(loss_fn, batch, "
            "model=q_net, target=target_net)"
        )
    hooks = Hooks(q_network=model, loss_fn=loss_fn, sample_batch=lambda: batch)
    hooks.collapse_inputs = lambda: (model, batch_states(batch), False)  # one-action check
    if target is not None:
        hooks.target_network = target
    hooks.reasons = {
        "memory probe": "a loss is not a recurrent model",
        "leak test": "a loss does not act",
        "first-epoch check": "a loss has no rollout: pass the on-policy model itself",
    }
    return hooks, f"the loss {getattr(loss_fn, '__name__', 'function')} on a batch"


def diagnose(
    obj: Any,
    batch: Any = None,
    *,
    model: nn.Module | None = None,
    target: nn.Module | None = None,
    obs_dim: int | None = None,
    inputs: dict | None = None,
    batch_first: bool | None = None,
    states: Any = None,
    show: bool = True,
    seed: int = 0,
) -> Diagnosis:
    """Run every diagnostic that applies to ``obj`` (see the module's docstring).

    ``obs_dim`` is the size of one observation (read from the model when it can be);
    ``batch_first=False`` declares a sequence model that reads (T, B, D). ``states`` (S,
    obs_dim): observations your agent meets, for the one-action check of a feed-forward
    network (without them it reads Q on random inputs). Prints the table
    unless ``show=False`` and returns the :class:`Diagnosis`. The model's weights are left
    as they were; its environment and random generators move on.
    """
    torch.manual_seed(seed)
    np.random.seed(seed)
    extra: tuple[str, ...] = ()
    if is_sb3_model(obj):
        from rldebug.integrations.sb3 import hooks_for

        hooks = hooks_for(obj)
        what = type(obj).__name__
        reasons = {}
        if not hasattr(hooks, "training_fn"):
            reasons["memory probe"] = f"the {what} policy is feed-forward: no memory"
            reasons["leak test"] = f"the {what} policy is feed-forward: no state to leak"
        if not hasattr(hooks, "first_epoch_stats"):
            reasons["first-epoch check"] = f"{what} is off-policy: no rollout to recompute"
        if not hasattr(hooks, "loss_fn"):
            reasons["gradient mask"] = f"{what} has no Q-network"
        hooks.reasons = reasons
        target_text = f"a stable-baselines3 {what} (obs_dim {hooks.obs_dim})"
    elif isinstance(obj, nn.Module) and batch is None:
        hooks, target_text = _module_hooks(obj, obs_dim, batch_first, states)
        hooks.reasons.setdefault(
            "first-epoch check", "a module has no rollout: pass the PPO model itself"
        )
    elif callable(obj) and batch is not None:
        hooks, target_text = _loss_hooks(obj, batch, model, target)
    elif inputs is not None or isinstance(obj, tuple):
        forward, backward = obj if isinstance(obj, tuple) else (obj.forward, obj.backward)
        hooks, extra = Hooks(forward=forward, backward=backward, inputs=inputs), ("gradient check",)
        hooks.reasons = {n: "not a recurrent model or a Q-loss" for n in ALWAYS_LISTED}
        target_text = "a layer's forward and backward"
    elif any(hasattr(obj, hook) for needs, _, _ in CHECKS.values() for hook in needs):
        hooks, target_text = obj, f"an agent with hooks ({type(obj).__name__})"
    elif callable(obj):
        hooks, target_text = _function_hooks(obj, obs_dim, batch_first)
    else:
        raise TypeError(
            f"diagnose does not know what to do with a {type(obj).__name__}. It takes an "
            "nn.Module, a step function policy_step(obs, episode_start) or f(obs, state), a "
            "loss with its batch (diagnose(loss_fn, batch, model=q_net)), a stable-baselines3 "
            "or sb3-contrib model, a layer with forward/backward and inputs=, or an object "
            f"with hooks ({', '.join(sorted({h for n, _, _ in CHECKS.values() for h in n}))})."
        )
    diagnosis = _run(hooks, target_text, extra)
    if show:
        print(diagnosis)
    return diagnosis
