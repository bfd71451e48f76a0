"""The exercise-checker framework.

A checker runs the reader's function on fresh random cases, compares each answer with
the reference implementation, and on the first mismatch raises :class:`CheckFailed`
with a message that names the likely bug in plain words. Known bugs are recognised by
running *planted* buggy versions on the same case: when the reader's answer equals a
planted bug's answer, the message names that bug.

Every exercise is an :class:`Exercise`. ``tests/test_checkers.py`` proves, for each one,
that its checker accepts the reference, rejects the blank stub and rejects every
planted bug by name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CheckFailed",
    "PlantedBug",
    "Exercise",
    "compare_outputs",
    "describe",
    "not_implemented_stub",
]


class CheckFailed(Exception):
    """The reader's answer is wrong; the message says how and names the likely bug."""


@dataclass(frozen=True)
class PlantedBug:
    """A realistic wrong implementation that a checker must recognise by name."""

    name: str
    fn: Callable[..., Any]
    hint: str = ""


def not_implemented_stub(*args: Any, **kwargs: Any) -> Any:
    """What an exercise looks like before the reader fills it in."""
    raise NotImplementedError()


def _to_comparable(value: Any) -> Any:
    """Torch tensors become numpy arrays; containers are converted element-wise."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
        return value.detach().cpu().numpy()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_to_comparable(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_to_comparable(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _to_comparable(v) for k, v in value.items()}
    return value


def _type_name(value: Any) -> str:
    return type(value).__module__.split(".")[0] + "." + type(value).__name__


def compare_outputs(
    got: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-6, where: str = "output"
) -> str | None:
    """Return ``None`` when ``got`` matches ``expected``, else a sentence saying how not."""
    if got is None and expected is not None:
        return f"your {where} is None: did the function forget to `return` its result?"
    expected_is_tensor = hasattr(expected, "detach") and hasattr(expected, "cpu")
    got_is_tensor = hasattr(got, "detach") and hasattr(got, "cpu")
    if expected_is_tensor and not got_is_tensor:
        return f"your {where} is a {_type_name(got)}; a torch.Tensor was expected"
    if isinstance(expected, tuple) and hasattr(expected, "_fields"):
        if not (isinstance(got, tuple) and len(got) == len(expected)):
            return (
                f"your {where} should be a {type(expected).__name__} with fields {expected._fields}"
            )
        for name, g, e in zip(expected._fields, got, expected):
            problem = compare_outputs(g, e, rtol=rtol, atol=atol, where=f"{where}.{name}")
            if problem:
                return problem
        return None
    if isinstance(expected, (list, tuple)) and not isinstance(got, np.ndarray):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            n = len(got) if isinstance(got, (list, tuple)) else "not a sequence"
            return f"your {where} should be a sequence of {len(expected)} items, got {n}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare_outputs(g, e, rtol=rtol, atol=atol, where=f"{where}[{i}]")
            if problem:
                return problem
        return None
    got_c, exp_c = _to_comparable(got), _to_comparable(expected)
    try:
        got_a = np.asarray(got_c, dtype=np.float64)
    except (TypeError, ValueError):
        return f"your {where} is a {_type_name(got)}, which cannot be read as numbers"
    exp_a = np.asarray(exp_c, dtype=np.float64)
    if got_a.shape != exp_a.shape:
        return (
            f"your {where} has shape {tuple(got_a.shape)}, the reference has shape "
            f"{tuple(exp_a.shape)}"
        )
    if not np.allclose(got_a, exp_a, rtol=rtol, atol=atol, equal_nan=True):
        diff = np.abs(got_a - exp_a)
        # NaN in one answer but not the other is the worst possible difference.
        diff = np.where(np.isnan(got_a) != np.isnan(exp_a), np.inf, np.nan_to_num(diff))
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        return (
            f"your {where} differs from the reference by up to {float(np.max(diff)):.4g}"
            + (f" (at index {tuple(int(i) for i in worst)}: " if diff.ndim else " (")
            + f"yours {float(got_a[worst]):.6g}, reference {float(exp_a[worst]):.6g})"
        )
    return None


def describe(case: Mapping[str, Any], limit: int = 400) -> str:
    """A short, readable description of a case's arguments for error messages."""
    if not case:
        return "(no arguments)"
    parts = []
    for key, value in case.items():
        shown = _to_comparable(value)
        if isinstance(shown, np.ndarray):
            text = np.array2string(shown, precision=3, threshold=12, max_line_width=120)
            if shown.ndim > 1 or shown.size > 12:
                text = f"array of shape {shown.shape}"
        elif hasattr(value, "parameters"):
            text = f"<{type(value).__name__}>"
        else:
            text = repr(shown)
        parts.append(f"{key}={text}")
    text = ", ".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Exercise:
    """One exercise: its reference, how to make random cases, and the bugs it names.

    ``make_case(rng)`` returns the keyword arguments of one random call. ``compare``
    returns ``None`` for a match or a sentence describing the mismatch. ``explain``
    may add a chapter-specific hint for a mismatch that matches no planted bug.
    """

    name: str
    reference: Callable[..., Any]
    make_case: Callable[[np.random.Generator], dict[str, Any]]
    bugs: Sequence[PlantedBug] = field(default_factory=tuple)
    compare: Callable[[Any, Any], str | None] = compare_outputs
    explain: Callable[[dict[str, Any], Any, Any], str] | None = None
    n_cases: int = 20
    reference_path: str = ""

    def check(self, fn: Any, *, seed: int | None = None, n_cases: int | None = None) -> None:
        """Run ``fn`` on fresh random cases; print one line or raise :class:`CheckFailed`."""
        if not callable(fn):
            raise TypeError(
                f"check_{self.name} expects your function itself (for example "
                f"`check_{self.name}({self.name})`), got a {type(fn).__name__}: {fn!r:.80}"
            )
        rng = np.random.default_rng(seed)  # seed=None: fresh cases on every run
        n = self.n_cases if n_cases is None else n_cases
        for _ in range(n):
            case = self.make_case(rng)
            expected = self.reference(**copy.deepcopy(case))
            try:
                got = fn(**copy.deepcopy(case))
            except NotImplementedError:
                raise CheckFailed(
                    f"{self.name} is not implemented yet: replace `raise NotImplementedError()` "
                    "with your code, then run this check again."
                ) from None
            except CheckFailed:
                raise
            except Exception as err:  # the reader's code crashed: say where
                raise CheckFailed(
                    f"{self.name} raised {type(err).__name__}: {err}\n  on the input: "
                    f"{describe(case)}"
                ) from err
            problem = self.compare(got, expected)
            if problem is None:
                continue
            bug = self._identify(case, got)
            if bug is not None:
                raise CheckFailed(
                    f"{self.name} has a known bug: {bug.name}.\n  {problem}.\n"
                    + (f"  {bug.hint}\n" if bug.hint else "")
                    + f"  on the input: {describe(case)}"
                )
            extra = self.explain(case, got, expected) if self.explain else ""
            raise CheckFailed(
                f"{self.name} gives a wrong answer on a random case.\n  {problem}.\n"
                + (f"  {extra}\n" if extra else "")
                + f"  on the input: {describe(case)}"
            )
        print(f"✓ {self.name}: matches the reference on {n} fresh random cases.")

    def _identify(self, case: dict[str, Any], got: Any) -> PlantedBug | None:
        for bug in self.bugs:
            try:
                bug_out = bug.fn(**copy.deepcopy(case))
            except Exception:  # a bug may crash on inputs the reader's code survives
                continue
            if self.compare(got, bug_out) is None:
                return bug
        return None

    def or_reference(self, fn: Any) -> Callable[..., Any]:
        """Return ``fn`` if it passes the check, else the reference with a visible note.

        This lets a reader who skips an exercise run the rest of the chapter.
        """
        import contextlib
        import io

        where = self.reference_path or "the reference implementation"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.check(fn)
        except (CheckFailed, TypeError) as err:
            reason = str(err).splitlines()[0]
            print(f"note: {reason}\n      The rest of this chapter uses {where} instead.")
            return self.reference
        print(f"Using your {self.name} for the rest of this chapter.")
        return fn
