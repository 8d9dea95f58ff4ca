"""Exercises in the notebooks: a learner writes an answer, `check_answer` says whether it is
right without printing the expected value (the notebook computes that from the model, so the
answer is checked against what this model does, not against a number typed into the notebook).

    answer = None  # your number
    iw.check_answer(answer, expected=float(drop.value), tol=0.05, hint="mean over prompts")
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Number
from typing import Any


def _same(answer: Any, expected: Any, tol: float, rtol: float) -> bool:
    if isinstance(expected, bool) or isinstance(answer, bool):
        return bool(answer) == bool(expected) and type(answer) is type(expected)
    if isinstance(expected, Number) and isinstance(answer, Number):
        a, e = float(answer), float(expected)  # type: ignore[arg-type]
        if math.isnan(a) or math.isnan(e):
            return False
        return abs(a - e) <= max(tol, rtol * abs(e))
    if isinstance(expected, str) or isinstance(answer, str):
        return str(answer) == str(expected)
    if isinstance(expected, Sequence) and isinstance(answer, Sequence):
        return len(answer) == len(expected) and all(
            _same(a, e, tol, rtol) for a, e in zip(answer, expected))
    return answer == expected


def check_answer(answer: Any, expected: Any, *, tol: float = 0.0, rtol: float = 0.0,
                 hint: str = "") -> bool | None:
    """Print whether `answer` matches `expected` and return True / False (None while the
    answer is still None, i.e. not attempted). Numbers match within max(tol, rtol * |expected|);
    strings exactly (a token's leading space counts); sequences element by element; booleans
    only as booleans. The expected value is never printed: `hint` is shown on a wrong answer."""
    if tol < 0 or rtol < 0:
        raise ValueError(f"tol and rtol must be >= 0; got tol={tol}, rtol={rtol}")
    if answer is None:
        print("Not answered yet: set `answer` in the cell above and run this cell again.")
        return None
    if _same(answer, expected, tol, rtol):
        print(f"Correct: {answer!r}.")
        return True
    print(f"Not quite: {answer!r} is not it." + (f" Hint: {hint}" if hint else ""))
    return False
