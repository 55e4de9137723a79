"""Exercise checkers: the framework every lesson's checker module is written with.

A lesson's exercise is one code cell that defines a function between nbgrader's solution markers,
followed by a check cell::

    from companion.exercises import lesson00 as check
    check.gaussian_nll(gaussian_nll)

A checker compares the student's function with the companion's reference on several inputs and
prints one line per check, ``PASS`` or ``FAIL`` with a hint that names the likely mistake:

- a stub that raises ``NotImplementedError`` is reported as *not attempted*;
- it never raises in a notebook, so a lesson goes on whatever the answer; ``strict=True`` (or the
  environment variable ``COURSE_STRICT_CHECKS=1``) raises :class:`CheckFailed` for grading;
- with ``COURSE_GRADE_LOG=<file>`` each result is also appended to that file as one JSON line,
  which ``python -m course grade`` reads.

Writing a checker::

    @checker("gaussian_nll")
    def gaussian_nll(t, fn):
        x = torch.randn(5)
        got = t.call(fn, x, mu=0.0, log_sigma=0.0)
        t.close(got, reference(x, 0.0, 0.0), "matches the reference on N(0, 1)",
                hint="mean of -log N(x; mu, sigma^2) over the batch",
                diagnose={"the 0.5 log(2 pi) constant is missing": reference(x) - 0.919})
"""
from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

PASSED, FAILED, NOT_ATTEMPTED = "passed", "failed", "not attempted"


class CheckFailed(AssertionError):
    """Raised by a checker in strict mode when the exercise is wrong or not attempted."""


class _NotAttempted(Exception):
    pass


class _StudentRaised(Exception):
    def __init__(self, description: str, exc: BaseException, hint: str = ""):
        super().__init__(description)
        self.description, self.exc, self.hint = description, exc, hint


@dataclass
class Line:
    ok: bool
    description: str
    hint: str = ""

    def render(self) -> str:
        text = f"  {'PASS' if self.ok else 'FAIL'}  {self.description}"
        return text if self.ok or not self.hint else f"{text}\n        hint: {self.hint}"


@dataclass
class CheckResult:
    """What a checker found: ``status`` is ``passed``, ``failed`` or ``not attempted``."""

    exercise: str
    lesson: str
    status: str
    lines: list[Line] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def hints(self) -> list[str]:
        return [line.hint for line in self.lines if not line.ok]

    def __bool__(self) -> bool:
        return self.passed

    def report(self) -> str:
        n_ok = sum(line.ok for line in self.lines)
        if self.status == NOT_ATTEMPTED:
            head = (f"{self.exercise}: not attempted. Replace `raise NotImplementedError()` "
                    f"with your code, run that cell, then run this check again.")
        else:
            head = f"{self.exercise}: {self.status} ({n_ok}/{len(self.lines)} checks)"
        return "\n".join([head] + [line.render() for line in self.lines])

    def __repr__(self) -> str:
        return f"<CheckResult {self.exercise}: {self.status}>"

    def _ipython_display_(self) -> None:
        """The report is printed when the check runs; show nothing more as a cell's value."""


class Checks:
    """The object a checker body receives: call the student's function and record checks."""

    def __init__(self, exercise: str):
        self.exercise = exercise
        self.lines: list[Line] = []

    # -- calling the student's code ------------------------------------------------------------
    def call(self, fn: Callable, *args, copy: bool = True, hint: str = "", **kwargs):
        """Call the student's ``fn`` (on copies of the inputs unless ``copy=False``).

        ``NotImplementedError`` means not attempted; any other exception fails the exercise with
        a line naming the exception, and ``hint`` (or a generic hint) below it.
        """
        if copy:
            args = tuple(_copy(a) for a in args)
            kwargs = {k: _copy(v) for k, v in kwargs.items()}
        try:
            return fn(*args, **kwargs)
        except NotImplementedError:
            raise _NotAttempted() from None
        except Exception as exc:  # noqa: BLE001 - report whatever the student's code raised
            raise _StudentRaised(f"your function raised {type(exc).__name__}: {exc}", exc,
                                 hint) from None

    # -- recording checks ------------------------------------------------------------------------
    def expect(self, ok: bool, description: str, hint: str = "") -> bool:
        """Record one check: ``ok`` with its description, and the hint shown when it fails."""
        ok = bool(ok)
        self.lines.append(Line(ok, description, "" if ok else hint))
        return ok

    def tensor(self, got, description: str, *, shape=None, dtype_float: bool = False) -> bool:
        """Check that ``got`` is a tensor (of ``shape``, floating point if asked)."""
        if not isinstance(got, torch.Tensor):
            return self.expect(False, description,
                               f"return a torch.Tensor, not {type(got).__name__}")
        if shape is not None and tuple(got.shape) != tuple(shape):
            return self.expect(False, description,
                               f"expected shape {tuple(shape)}, got {tuple(got.shape)}")
        if dtype_float and not got.is_floating_point():
            return self.expect(False, description, f"expected a float tensor, got {got.dtype}")
        return self.expect(True, description)

    def close(self, got, expected, description: str, hint: str = "", *, atol: float = 1e-5,
              rtol: float = 1e-4, diagnose: Mapping[str, object] | None = None) -> bool:
        """Check that ``got`` equals ``expected`` (a number or tensor) within tolerances.

        On a mismatch the hint is the first ``diagnose`` entry whose value ``got`` matches (a known
        wrong answer and the mistake that produces it), else ``hint``.
        """
        exp = torch.as_tensor(expected, dtype=torch.float64)
        try:
            got_t = _to_tensor(got)
        except (TypeError, ValueError):
            return self.expect(False, description,
                               f"return a number or a tensor, not {type(got).__name__}")
        if got_t.shape != exp.shape:
            if got_t.numel() == exp.numel() == 1:
                got_t = got_t.reshape(exp.shape)
            else:
                return self.expect(False, description,
                                   f"expected shape {tuple(exp.shape)}, got {tuple(got_t.shape)}"
                                   + (f"; {hint}" if hint else ""))
        if _allclose(got_t, exp, atol, rtol):
            return self.expect(True, description)
        for mistake, wrong in (diagnose or {}).items():
            wrong_t = torch.as_tensor(wrong, dtype=torch.float64)
            if wrong_t.shape == got_t.shape and _allclose(got_t, wrong_t, atol, rtol):
                return self.expect(False, description, mistake)
        return self.expect(False, description, hint or "the values differ from the reference")


def _copy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _to_tensor(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64)
    if isinstance(value, (int, float, np.ndarray, np.number, list, tuple)):
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    raise TypeError(type(value).__name__)


def _allclose(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return bool(torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=False))


def _strict_from_env() -> bool:
    return os.environ.get("COURSE_STRICT_CHECKS", "").strip().lower() in ("1", "true", "yes")


def _log_for_grading(result: CheckResult) -> None:
    path = os.environ.get("COURSE_GRADE_LOG")
    if not path:
        return
    record = {
        "lesson": result.lesson, "exercise": result.exercise, "status": result.status,
        "passed": sum(line.ok for line in result.lines), "total": len(result.lines),
        "time": time.time(),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def checker(exercise: str):
    """Turn ``body(t: Checks, fn)`` into a notebook-safe checker ``check(fn, strict=False)``."""
    if not isinstance(exercise, str) or not exercise.isidentifier():
        raise ValueError(f"exercise: expected an identifier, got {exercise!r}")

    def wrap(body: Callable[[Checks, Callable], None]):
        lesson = body.__module__.rsplit(".", 1)[-1]

        @functools.wraps(body)
        def run(fn, *, strict: bool | None = None, quiet: bool = False) -> CheckResult:
            t = Checks(exercise)
            status = None
            if not callable(fn):
                t.expect(False, f"`{exercise}` is a function",
                         f"pass the function itself, got {type(fn).__name__}")
                status = FAILED
            else:
                try:
                    body(t, fn)
                except _NotAttempted:
                    status = NOT_ATTEMPTED
                except _StudentRaised as err:
                    t.expect(False, err.description, err.hint or _hint_for_exception(err.exc))
                except Exception as exc:  # noqa: BLE001 - a checker must not raise in a notebook
                    t.expect(False, f"the checker could not finish ({type(exc).__name__}: {exc})",
                             "check that your function returns the type the exercise asks for")
            if status is None:
                status = PASSED if t.lines and all(line.ok for line in t.lines) else FAILED
            result = CheckResult(exercise, lesson, status, t.lines)
            if not quiet:
                print(result.report())
            _log_for_grading(result)
            if (strict if strict is not None else _strict_from_env()) and not result.passed:
                raise CheckFailed(result.report())
            return result

        run.exercise = exercise
        return run

    return wrap


def _hint_for_exception(exc: BaseException) -> str:
    if isinstance(exc, RuntimeError) and "shape" in str(exc):
        return "a shape mismatch: print the shapes of your intermediate tensors"
    if isinstance(exc, TypeError):
        return "check the argument names and types the exercise's signature gives"
    if isinstance(exc, (AttributeError, NameError)):
        return "a name is not defined or misspelled; did you run the cells above?"
    return "run your function on a small input in a new cell to see where it fails"
