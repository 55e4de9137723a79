"""Quality gates: the lesson checks that fail CI when a lesson stops teaching what it claims.

A gate prints one line with the measured value beside its bar, then asserts::

    GATE pixel_model_gain: 3.07 >= 2.5 (bits/dim saved over uniform) PASS

``python -m course run`` collects these lines from the executed notebook and reports them.
Bars are set from measured runs over several seeds and are never loosened to fit a run.
"""
from __future__ import annotations

import math
import re

GATE_LINE = re.compile(
    r"^GATE (?P<name>[\w.-]+): (?P<value>\S+) (?P<op>>=|<=|>|<|==) (?P<bar>\S+)"
    r"(?: \((?P<note>.*)\))? (?P<status>PASS|FAIL)$",
    re.M,
)
_OPS = {
    ">=": lambda v, b: v >= b,
    "<=": lambda v, b: v <= b,
    ">": lambda v, b: v > b,
    "<": lambda v, b: v < b,
    "==": lambda v, b: v == b,
}


class GateFailed(AssertionError):
    """A lesson's quality gate fell short of its bar."""


def gate(name: str, value, op: str, bar, note: str = "", digits: int = 4) -> float:
    """Print ``GATE name: value op bar (note) PASS|FAIL`` and raise :class:`GateFailed` on FAIL.

    ``op`` is one of ``>=``, ``<=``, ``>``, ``<``, ``==``. A NaN value always fails.
    """
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name):
        raise ValueError(f"name: expected letters, digits, '_', '.', '-', got {name!r}")
    if op not in _OPS:
        raise ValueError(f"op: expected one of {', '.join(_OPS)}, got {op!r}")
    try:
        value = float(value)
        bar = float(bar)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"value and bar: expected numbers ({exc})") from None
    ok = not math.isnan(value) and _OPS[op](value, bar)
    fmt = f"{{:.{digits}g}}"
    line = f"GATE {name}: {fmt.format(value)} {op} {fmt.format(bar)}"
    if note:
        line += f" ({note})"
    line += " PASS" if ok else " FAIL"
    print(line)
    if not ok:
        raise GateFailed(line)
    return value
