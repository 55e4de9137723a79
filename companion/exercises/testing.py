"""The test pattern for every checker: accept the reference, reject plausible wrong answers.

Used by the test suite (``tests/test_exercises_*.py``)::

    verify_checker(check.gaussian_nll, basics.gaussian_nll, wrong={
        "constant": lambda x, mu, log_sigma: ...,   # the hint must mention "constant"
        ...
    })
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Mapping

from companion.exercises import FAILED, NOT_ATTEMPTED, PASSED, CheckFailed


def _quiet(check, fn, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = check(fn, **kwargs)
    return result, out.getvalue()


def verify_checker(check: Callable, reference: Callable,
                   wrong: Mapping[str, Callable], min_wrong: int = 3) -> None:
    """Assert the checker's contract.

    - ``reference`` passes, also with ``strict=True``;
    - a stub raising ``NotImplementedError`` is "not attempted", prints that, and does not raise
      (but raises :class:`CheckFailed` with ``strict=True``);
    - each wrong implementation fails, without raising, with a hint containing its key
      (case-insensitive), and raises with ``strict=True``.
    """
    if len(wrong) < min_wrong:
        raise AssertionError(f"wrong: test at least {min_wrong} wrong implementations, "
                             f"got {len(wrong)}")
    result, printed = _quiet(check, reference)
    assert result.status == PASSED, f"reference rejected:\n{printed}"
    _quiet(check, reference, strict=True)

    def stub(*args, **kwargs):
        raise NotImplementedError()

    result, printed = _quiet(check, stub)
    assert result.status == NOT_ATTEMPTED, printed
    assert "not attempted" in printed, printed
    try:
        _quiet(check, stub, strict=True)
    except CheckFailed:
        pass
    else:
        raise AssertionError("strict=True did not raise for a stub")

    for expected_hint, fn in wrong.items():
        result, printed = _quiet(check, fn)
        assert result.status == FAILED, f"wrong implementation '{expected_hint}' passed:\n{printed}"
        hints = " | ".join(result.hints).lower()
        assert expected_hint.lower() in hints, (
            f"wrong implementation '{expected_hint}': hint not given; hints were: {hints!r}"
        )
        try:
            _quiet(check, fn, strict=True)
        except CheckFailed:
            pass
        else:
            raise AssertionError(f"strict=True did not raise for '{expected_hint}'")
