"""The exercise-checker framework.

A checker runs the reader's function on fresh random cases, compares each answer with
the reference implementation, and on the first mismatch raises :class:`CheckFailed`
with a message that names the likely bug in plain words. Known bugs are recognised by
running *planted* buggy versions on the same case: when the reader's answer equals a
planted bug's answer, the message names that bug.

Besides the values, a check looks at two things a value cannot show:

* side effects: every argument is compared before and after the reader's call, and an
  argument changed in place is named (the caller still needs it);
* gradients (``check_gradients=True``): where the answer feeds a backward pass, the
  gradients it sends to the differentiable inputs (``grad_inputs``) and to the parameters
  of every network among the arguments must equal the reference's. A detached answer,
  or one assembled from ``.item()``, has the right numbers and no gradient.

Every exercise is an :class:`Exercise`. ``tests/test_checkers.py`` proves, for each one,
that its checker accepts the reference, rejects the blank stub and rejects every
planted bug by name.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rldebug.checking_probes import (
    changed_argument,
    float_tensors,
    gradient_sources,
    gradients,
    gradients_match,
    is_named_tuple,
    is_tensor,
    snapshot,
    to_comparable,
)

__all__ = [
    "CheckFailed",
    "PlantedBug",
    "Exercise",
    "compare_outputs",
    "describe",
    "forced_edge",
    "not_implemented_stub",
    "type_phrase",
]

_DETACHED = "(.item(), float(...), .detach(), .numpy() or torch.no_grad())"


class CheckFailed(Exception):
    """The reader's answer is wrong; the message says how and names the likely bug."""


@dataclass(frozen=True)
class PlantedBug:
    """A realistic wrong implementation that a checker must recognise by name."""

    name: str
    fn: Callable[..., Any]
    hint: str = ""


def forced_edge(case_index: int, edges: Sequence[str]) -> str | None:
    """The edge case number ``case_index`` of a check must show, or None.

    Cases 1, 3, 5, ... show ``edges`` in turn, so that every edge occurs in every check
    (given at least ``2 * len(edges)`` cases); the other cases are drawn freely and may show
    edges at random too. A generator that takes ``case_index`` uses this.
    """
    k = case_index // 2
    return edges[k] if case_index % 2 == 1 and k < len(edges) else None


def not_implemented_stub(*args: Any, **kwargs: Any) -> Any:
    """What an exercise looks like before the reader fills it in."""
    raise NotImplementedError()


def type_phrase(value: Any) -> str:
    """ "an int", "a float", "a numpy.ndarray", "a torch.Tensor": the type with its article."""
    module = type(value).__module__.split(".")[0]
    name = type(value).__name__ if module == "builtins" else f"{module}.{type(value).__name__}"
    return ("an " if name[0].lower() in "aeiou" else "a ") + name


def _plain_number_note(got: Any) -> str:
    if isinstance(got, (float, int, np.floating, np.integer)) and not isinstance(got, bool):
        return " (a plain number carries no gradient: build the result from tensor operations)"
    return ""


def compare_outputs(
    got: Any, expected: Any, *, rtol: float = 1e-5, atol: float = 1e-6, where: str = "output"
) -> str | None:
    """Return ``None`` when ``got`` matches ``expected``, else a sentence saying how not."""
    if got is None and expected is not None:
        return f"got None for your {where}: did the function forget to `return` its result?"
    if is_tensor(expected) and not is_tensor(got):
        return (
            f"your {where} is {type_phrase(got)}; a torch.Tensor was expected"
            + _plain_number_note(got)
        )
    if is_named_tuple(expected):
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
    got_c, exp_c = to_comparable(got), to_comparable(expected)
    try:
        got_a = np.asarray(got_c, dtype=np.float64)
    except (TypeError, ValueError):
        return f"your {where} is {type_phrase(got)}, which cannot be read as numbers"
    exp_a = np.asarray(exp_c, dtype=np.float64)
    if got_a.shape != exp_a.shape:
        return (
            f"the shape of your {where} is {tuple(got_a.shape)}, the reference's is "
            f"{tuple(exp_a.shape)}"
        )
    if not np.allclose(got_a, exp_a, rtol=rtol, atol=atol, equal_nan=True):
        diff = np.abs(got_a - exp_a)
        # NaN in one answer but not the other is the worst possible difference.
        diff = np.where(np.isnan(got_a) != np.isnan(exp_a), np.inf, np.nan_to_num(diff))
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.ndim else ()
        return (
            f"the values of your {where} are off by up to {float(np.max(diff)):.4g}"
            + (f" (at index {tuple(int(i) for i in worst)}: " if diff.ndim else " (")
            + f"yours {float(got_a[worst]):.6g}, reference {float(exp_a[worst]):.6g})"
        )
    return None


def _short(value: Any) -> str:
    """One argument, as a reader wants to see it in a message: shapes, not raw tensors."""
    if is_tensor(value):
        if value.ndim == 0:
            return f"tensor({float(value):.4g})"
        return f"tensor {tuple(value.shape)} {str(value.dtype).replace('torch.', '')}"
    if is_named_tuple(value):
        fields = ", ".join(f"{k} {_short(v)}" for k, v in zip(value._fields, value))
        return f"{type(value).__name__}({fields})"
    if hasattr(value, "parameters"):  # a torch module: its one-line repr, or its class
        text = repr(value)
        return text if "\n" not in text and len(text) < 60 else f"<{type(value).__name__}>"
    try:
        shown = np.asarray(value) if isinstance(value, (list, np.ndarray)) else None
    except ValueError:  # a ragged list, such as a network's weights and biases
        return "[" + ", ".join(_short(v) for v in value) + "]"
    if shown is not None and shown.dtype != object:
        if shown.ndim > 1 or shown.size > 12:
            return f"array {shown.shape} {shown.dtype}"
        return np.array2string(shown, precision=3, max_line_width=120)
    return repr(value)


def describe(case: Mapping[str, Any], limit: int = 600) -> str:
    """A short, readable description of a case's arguments for error messages."""
    if not case:
        return "(no arguments)"
    text = ", ".join(f"{key}={_short(value)}" for key, value in case.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Outcome:
    """One call of a function on one case: its answer, gradients and side effects."""

    output: Any
    changed: str | None = None  # the first argument the call changed in place
    sources: dict[str, Any] = field(default_factory=dict)  # what gradients may reach
    grads: dict[str, Any] | None = None  # filled in by Exercise._differentiate


# ----------------------------------------------------------------------- exercises


@dataclass
class Exercise:
    """One exercise: its reference, how to make random cases, and the bugs it names.

    ``make_case(rng)`` returns the keyword arguments of one random call. ``compare``
    returns ``None`` for a match or a sentence describing the mismatch. ``explain``
    may add a chapter-specific hint for a mismatch that matches no planted bug.
    ``grad_inputs`` names the arguments that arrive as the output of a network (each call
    gets its own copy, attached to a fresh graph); with ``check_gradients`` the gradients
    with respect to them and to the arguments' network weights are compared, and
    ``grad_hint`` adds the exercise's usual reason for a wrong gradient; ``answer_name``
    and ``answer_parts`` name the answer and its tensors in messages. ``alternatives``
    are other correct conventions (for example one mean per agent instead of one mean over
    all): an answer that matches one of them in every respect passes.
    """

    name: str
    reference: Callable[..., Any]
    make_case: Callable[[np.random.Generator], dict[str, Any]]
    bugs: Sequence[PlantedBug] = field(default_factory=tuple)
    compare: Callable[[Any, Any], str | None] = compare_outputs
    explain: Callable[[dict[str, Any], Any, Any], str] | None = None
    n_cases: int = 20
    reference_path: str = ""
    grad_inputs: Sequence[str] = ()
    check_gradients: bool = False
    grad_hint: str = ""
    answer_name: str = "answer"
    answer_parts: Sequence[str] = ()
    alternatives: Sequence[Callable[..., Any]] = ()

    def nth_case(self, rng: np.random.Generator, case_index: int) -> dict[str, Any]:
        """Case number ``case_index`` of a check (generators may force edges by index)."""
        if "case_index" in inspect.signature(self.make_case).parameters:
            return self.make_case(rng, case_index=case_index)
        return self.make_case(rng)

    def _run(self, fn: Callable[..., Any], case: dict[str, Any]) -> _Outcome:
        """Call ``fn`` on its own copy of ``case``; note its gradients and side effects."""
        args = copy.deepcopy(case)
        leaves = {}
        for name in self.grad_inputs:  # a network's output: a graph leads back to a leaf
            leaves[name] = args[name].detach().clone().requires_grad_(True)
            args[name] = leaves[name] * 1.0
        before = {name: snapshot(value) for name, value in args.items()}
        output = fn(**args)
        sources = gradient_sources(args, leaves) if self.check_gradients else {}
        return _Outcome(output, changed_argument(before, args), sources)

    @staticmethod
    def _differentiate(outcome: _Outcome, use: Sequence[bool]) -> dict[str, Any]:
        if outcome.grads is None:
            outcome.grads = gradients(outcome.output, outcome.sources, use)
        return outcome.grads

    def _gradient_problem(self, got: _Outcome, expected: _Outcome) -> str | None:
        what = self.answer_name
        pairs = list(zip(float_tensors(got.output), float_tensors(expected.output)))
        for i, (g, e) in enumerate(pairs):
            if e.requires_grad and not g.requires_grad:
                whose = (
                    f"your {what}"
                    if len(pairs) == 1
                    else f"the {self._part_name(i)} of your {what}"
                )
                return (
                    f"{whose} has the right values but carries no gradient: it was built "
                    f"from numbers cut off from the graph {_DETACHED}, so a backward pass "
                    "through it changes nothing"
                )
        for source, wanted in (expected.grads or {}).items():
            mine = (got.grads or {}).get(source)
            if gradients_match(mine, wanted):
                continue
            if mine is None or not bool(mine.any()):
                return (
                    f"your {what} has the right values but no gradient reaches {source}: "
                    f"somewhere on the way it was detached {_DETACHED}"
                )
            if wanted is None or not bool(wanted.any()):
                return (
                    f"your {what} has the right values but sends gradient into {source}, "
                    "which the reference's does not"
                )
            worst = float((mine - wanted).abs().max())
            return (
                f"your {what} has the right values but not the right gradient with respect "
                f"to {source} (off by up to {worst:.3g}): part of the computation is "
                "detached or goes around the graph"
            )
        return None

    def _part_name(self, i: int) -> str:
        return self.answer_parts[i] if i < len(self.answer_parts) else f"tensor number {i}"

    def _compare(self, got: Any, expected: Any) -> str | None:
        """``compare``, with a sentence instead of a crash (a graph broken by an in-place edit)."""
        try:
            return self.compare(got, expected)
        except RuntimeError as err:
            return f"your {self.answer_name} cannot be compared: {str(err).splitlines()[0]}"

    def _fail_on_call(self, err: Exception, case: dict[str, Any]) -> CheckFailed:
        if isinstance(err, NotImplementedError):
            return CheckFailed(
                f"{self.name} is not implemented yet: replace `raise NotImplementedError()` "
                "with your code, then run this check again."
            )
        return CheckFailed(
            f"{self.name} raised {type(err).__name__}: {err}\n  on the input: {describe(case)}"
        )

    def check(self, fn: Any, *, seed: int | None = None, n_cases: int | None = None) -> None:
        """Run ``fn`` on fresh random cases; print one line or raise :class:`CheckFailed`."""
        if not callable(fn):
            raise TypeError(
                f"check_{self.name} expects your function itself (for example "
                f"`check_{self.name}({self.name})`), got {type_phrase(fn)}: {fn!r:.80}"
            )
        rng = np.random.default_rng(seed)  # seed=None: fresh cases on every run
        n = self.n_cases if n_cases is None else n_cases
        for index in range(n):
            case = self.nth_case(rng, index)
            expected = self._run(self.reference, case)
            try:
                got = self._run(fn, case)
            except CheckFailed:
                raise
            except Exception as err:  # the reader's code crashed: say where
                raise self._fail_on_call(err, case) from (
                    None if isinstance(err, NotImplementedError) else err
                )
            try:
                self._verdict(case, got, expected)
            except CheckFailed:
                if not any(self._matches(alt, case, got) for alt in self.alternatives):
                    raise
        print(f"✓ {self.name}: matches the reference on {n} fresh random cases.")

    def _matches(
        self, alternative: Callable[..., Any], case: dict[str, Any], got: _Outcome
    ) -> bool:
        """Whether ``got`` is right by another correct convention, ``alternative``."""
        try:
            got.grads = None  # differentiated again, in the alternative's direction
            self._verdict(case, got, self._run(alternative, case))
        except CheckFailed:
            return False
        return True

    def _verdict(self, case: dict[str, Any], got: _Outcome, expected: _Outcome) -> None:
        """Raise :class:`CheckFailed` unless ``got`` is right in value, effects and gradient."""
        side_effect = (
            f"{self.name} also changes its argument `{got.changed}` in place.\n  "
            if got.changed
            else ""
        )
        problem = self._compare(got.output, expected.output)
        by_gradient = False
        if problem is None and got.changed:
            bug = self._identify(case, got, None, changed=got.changed)
            raise CheckFailed(
                (f"{self.name} has a known bug: {bug.name}.\n  " if bug else f"{self.name} ")
                + f"gives the right answer but changes its argument `{got.changed}` in "
                f"place.\n  The caller still needs `{got.changed}` as it was: "
                + (
                    bug.hint
                    if bug and bug.hint
                    else "build new arrays or tensors (x = x - ..., np.zeros_like(x), x.clone()) "
                    "instead of writing into the input (x -= ..., x[...] = ..., .reverse(), "
                    ".add_())."
                )
                + f"\n  on the input: {describe(case)}"
            )
        use = [t.requires_grad for t in float_tensors(expected.output)]
        if problem is None and self.check_gradients:
            self._differentiate(got, use)
            self._differentiate(expected, use)
            problem, by_gradient = self._gradient_problem(got, expected), True
        if problem is None:
            return
        bug = self._identify(case, got, use if by_gradient else None)
        if bug is not None:
            raise CheckFailed(
                f"{self.name} has a known bug: {bug.name}.\n  {problem}.\n"
                + (f"  {bug.hint}\n" if bug.hint else "")
                + side_effect
                + f"  on the input: {describe(case)}"
            )
        extra = self.grad_hint if by_gradient else ""
        if not by_gradient and self.explain:
            try:
                extra = self.explain(case, got.output, expected.output)
            except RuntimeError:  # an answer whose graph was broken by an in-place edit
                extra = ""
        raise CheckFailed(
            f"{self.name} gives a wrong answer on a random case.\n  {problem}.\n"
            + (f"  {extra}\n" if extra else "")
            + side_effect
            + f"  on the input: {describe(case)}"
        )

    def _identify(
        self,
        case: dict[str, Any],
        got: _Outcome,
        use: Sequence[bool] | None,
        changed: str | None = None,
    ) -> PlantedBug | None:
        """The planted bug whose answer equals the reader's; with ``use`` (the gradients
        differ) its gradients must equal the reader's too, with ``changed`` it must change
        the same argument."""
        for bug in self.bugs:
            try:
                bug_out = self._run(bug.fn, case)
            except Exception:  # a bug may crash on inputs the reader's code survives
                continue
            if self._compare(got.output, bug_out.output) is not None:
                continue
            if changed is not None and bug_out.changed != changed:
                continue
            if use is not None:
                bug_grads = self._differentiate(bug_out, use)
                if bug_grads.keys() != got.grads.keys() or not all(
                    gradients_match(got.grads[k], bug_grads[k]) for k in got.grads
                ):
                    continue
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
