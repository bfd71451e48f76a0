"""The target-copy exercise of chapter 2: its checker judges what happens to the copy after
the call. It rejects the blank stub and the realistic ways to tie the target to the online
network, each by name, and accepts every correct way to copy."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest

from rldebug.checkers import ch02, ch02_target
from rldebug.checking import CheckFailed, not_implemented_stub


def _message(fn, seed) -> str:
    with pytest.raises(CheckFailed) as caught:
        ch02.check_target_copy(fn, seed=seed)
    return str(caught.value)


CORRECT = {
    "copy method": lambda online: [w.copy() for w in online],
    "np.copy": lambda online: [np.copy(w) for w in online],
    "copy.deepcopy": lambda online: copy.deepcopy(online),
    "np.array": lambda online: [np.array(w) for w in online],
    "a tuple of copies": lambda online: tuple(w.copy() for w in online),
}


@pytest.mark.parametrize("name", list(CORRECT))
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_correct_copies_pass(name, seed):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        ch02.check_target_copy(CORRECT[name], seed=seed)
    assert out.getvalue().startswith("✓")


def test_blank_stub_is_rejected():
    assert "not implemented yet" in _message(not_implemented_stub, seed=0)


MISTAKES = {  # the mistake -> the words its message must contain
    "online": "aliasing",
    "list(online)": "shallow copy",
    "online[:]": "shallow copy",
    "copy.copy(online)": "shallow copy",
    "[np.asarray(w) for w in online]": "shallow copy",
    "[w[:] for w in online]": "views",
    "[w.view() for w in online]": "views",
    "[w.copy() if i % 2 == 0 else w for i, w in enumerate(online)]": "biases are not copied",
    "[online[0].copy()] + online[1:]": "own array objects",
    "[np.zeros_like(w) for w in online]": "exact copy of the online values",
    "[w.astype(np.float16) for w in online]": "exact copy of the online values",
    "None": "must return a list of arrays",
    "online[:-1]": "one per online array",
}


@pytest.mark.parametrize("code", list(MISTAKES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_realistic_mistakes_are_rejected_and_named(code, seed):
    fn = eval(f"lambda online: {code}", {"np": np, "copy": copy})  # noqa: S307
    message = _message(fn, seed)
    assert MISTAKES[code] in message, message


def test_a_copy_that_also_edits_the_online_list_is_named():
    def copies_then_clears(online):
        target = [w.copy() for w in online]
        online[0][...] = 0.0  # "reset" the online weights by mistake
        return target

    assert "changes its argument `online`" in _message(copies_then_clears, seed=0)


def test_the_probe_sees_an_aliased_target_move():
    online = [np.ones((2, 3)), np.zeros(3)]
    probe = ch02_target._probe_target(online, list(online))
    assert probe.same_arrays == 2 and probe.moves_with_online and probe.moves_online
    online = [np.ones((2, 3)), np.zeros(3)]
    probe = ch02_target._probe_target(online, [w.copy() for w in online])
    assert (probe.same_arrays, probe.shared, probe.moves_with_online) == (0, 0, False)
