"""Chapter 2's target-copy exercise: checked for its side effects as much as its values.

The arrays ``target_copy(online)`` returns must hold the online values, and must stay put
when the online arrays are updated in place (and the other way round): a target network
that shares memory with the online one is the online network.
"""

from __future__ import annotations

import copy
from typing import Any, NamedTuple

import numpy as np

from rldebug.checking import Exercise, PlantedBug, _Outcome, compare_outputs
from rldebug.checking_probes import changed_argument, snapshot

__all__ = ["TARGET_COPY", "check_target_copy"]


# --------------------------------------------------------------------------- exercise 3


def _target_case(rng: np.random.Generator) -> dict:
    """The parameters of a random MLP: [W0, b0, W1, b1, ...], sometimes with a member axis."""
    sizes = [int(k) for k in rng.integers(1, 6, size=int(rng.integers(2, 5)))]
    lead = (int(rng.integers(1, 4)),) if rng.random() < 0.3 else ()
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    online = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        online.append(rng.normal(size=lead + (n_in, n_out)).astype(dtype))
        online.append(rng.normal(size=lead + (n_out,)).astype(dtype))
    return {"online": online}


def _target_reference(online):
    return [w.copy() for w in online]


class _TargetProbe(NamedTuple):
    """What a target copy did: its values, and whether it is tied to the online arrays."""

    problem: str | None  # the answer is not a list of arrays like ``online``
    values: list  # the target's values right after the copy
    same_list: bool  # the answer is the online list itself
    same_arrays: int  # how many of its arrays are online arrays
    shared: int  # how many of its arrays share memory with an online array
    moves_with_online: bool  # an in-place update of the online arrays changed the target
    moves_online: bool  # an in-place update of the target changed the online arrays


def _probe_target(online: list, target: Any) -> _TargetProbe:
    if not isinstance(target, (list, tuple)):
        return _TargetProbe(
            f"target_copy must return a list of arrays, got {type(target).__name__}",
            [], False, 0, 0, False, False,
        )  # fmt: skip
    if len(target) != len(online) or not all(isinstance(t, np.ndarray) for t in target):
        return _TargetProbe(
            f"target_copy must return {len(online)} numpy arrays, one per online array, in "
            f"order; got {len(target)} items of types "
            f"{sorted({type(t).__name__ for t in target})}",
            [], False, 0, 0, False, False,
        )  # fmt: skip
    values = [t.copy() for t in target]
    same_list = target is online
    same_arrays = sum(any(t is w for w in online) for t in target)
    shared = sum(any(np.shares_memory(t, w) for w in online) for t in target)
    for w in online:  # an optimizer's step, in place as Adam's `params -= step`
        w -= 0.5
    moves_with_online = any(not np.array_equal(t, v) for t, v in zip(target, values))
    online_now = [w.copy() for w in online]
    for t in target:
        if t.flags.writeable:
            t += 1.0
    moves_online = any(not np.array_equal(w, o) for w, o in zip(online, online_now))
    return _TargetProbe(
        None, values, same_list, same_arrays, shared, moves_with_online, moves_online
    )


def _compare_target(got: _TargetProbe, expected: _TargetProbe) -> str | None:
    """None when ``got`` did what ``expected`` did: the same values, the same ties."""
    if got.problem or expected.problem:
        return None if got.problem == expected.problem else got.problem or "a different answer"
    for i, (g, e) in enumerate(zip(got.values, expected.values)):
        problem = compare_outputs(g, e, rtol=0.0, atol=0.0, where=f"target array {i}")
        if problem:
            return problem + " (the target starts as an exact copy of the online values)"
    n = len(got.values)
    if got.same_list != expected.same_list:
        return (
            "your target is the online list itself (`target = online`): the two names hold "
            "one network"
        )
    if got.same_arrays != expected.same_arrays:
        return (
            f"your target is a new list, but {got.same_arrays} of its {n} arrays are the "
            "online network's own array objects"
        )
    if got.shared != expected.shared:
        return (
            f"{got.shared} of your {n} target arrays share memory with the online arrays "
            "(views such as w[:], w.view(), w.reshape(...))"
        )
    if got.moves_with_online != expected.moves_with_online:
        return "after an in-place update of the online arrays (w -= step), your target moved too"
    if got.moves_online != expected.moves_online:
        return "an in-place update of your target arrays moved the online arrays"
    return None


def _aliased(online):
    return online  # "the target network is the online network"


def _shallow_copy(online):
    return list(online)  # a new list of the same array objects


def _views(online):
    return [w[:] for w in online]  # new array objects, the same memory


def _biases_shared(online):
    return [w.copy() if i % 2 == 0 else w for i, w in enumerate(online)]


_TIED_HINT = (
    "An optimizer updates the online arrays in place (`w -= step`), so every array the "
    "target shares with the online network moves with it, and the TD target chases the "
    "very values it should hold still. Copy the data: [w.copy() for w in online], "
    "np.copy(w) or copy.deepcopy(online)."
)


class _TargetExercise(Exercise):
    """An exercise whose answer is judged by what happens to it after the call."""

    def _run(self, fn, case):
        args = copy.deepcopy(case)
        before = {name: snapshot(value) for name, value in args.items()}
        answer = fn(**args)
        changed = changed_argument(before, args)  # before the probe updates anything
        return _Outcome(_probe_target(args["online"], answer), changed)


TARGET_COPY = _TargetExercise(
    name="target_copy",
    reference=_target_reference,
    make_case=_target_case,
    compare=_compare_target,
    explain=lambda case, got, expected: _TIED_HINT,
    reference_path="[w.copy() for w in online]",
    answer_name="target",
    bugs=[
        PlantedBug(
            "the target is the online network (aliasing)",
            _aliased,
            "`target = online` copies nothing: it gives the same list a second name. " + _TIED_HINT,
        ),
        PlantedBug(
            "a shallow copy: a new list of the same arrays",
            _shallow_copy,
            "list(online), online[:] and copy.copy(online) make a new list that holds the same "
            "array objects (and np.asarray(w) returns w itself). " + _TIED_HINT,
        ),
        PlantedBug(
            "the target arrays are views of the online arrays",
            _views,
            "w[:] and w.view() are new array objects over the same memory. " + _TIED_HINT,
        ),
        PlantedBug(
            "the biases are not copied",
            _biases_shared,
            "Every array must be copied, the biases (the odd positions) as well as the "
            "weights. " + _TIED_HINT,
        ),
    ],
)


def check_target_copy(fn, *, seed=None):
    """Check a reader's ``target_copy(online) -> target``: a list of independent arrays."""
    TARGET_COPY.check(fn, seed=seed)
    print("  and the copies stay put when the online arrays are updated in place")
