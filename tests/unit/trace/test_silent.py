"""A NaN or Inf the program writes itself from a constant is a placeholder, not bad input."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from nandoctor.trace.silent import writes_constant


@pytest.mark.parametrize(
    "source",
    [
        "history = np.full(args.epochs, np.nan)",
        "best, wait = float('inf'), 0",
        "x[i] = np.nan",
        "low = -math.inf",
        "masked = np.where(m, x, np.nan)",
        "h = np.ones(3) * np.nan",
        "big = 1e999",
    ],
)
def test_a_nan_or_inf_written_from_a_constant_is_a_placeholder(source):
    assert writes_constant(ast.parse(source).body[0])


@pytest.mark.parametrize(
    "source",
    [
        "data = np.genfromtxt(path, delimiter=',')",
        "data = np.genfromtxt(path, filling_values=np.nan)",  # the reader's constant: data
        "info = load_info(path)",  # 'inf' in a name is not a constant
        "y = x / n",
    ],
)
def test_what_a_reader_returns_or_a_computation_makes_is_not_a_placeholder(source):
    assert not writes_constant(ast.parse(source).body[0])


def test_placeholders_a_loop_writes_every_pass_are_not_all_kept():
    """np.full(n, np.nan) and float('inf') each pass of a long loop: the second run keeps
    neither every array alive nor a scalar per pass (nor slows as they would pile up)."""
    import gc
    import sys

    from nandoctor.trace.silent import FirstNaNFinder

    finder = FirstNaNFinder(on_found=lambda *a: None)
    frame = sys._getframe()
    source = Path(__file__).read_text().splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(source, 1) if line.strip() == text)

    at_history = line_of("history = np.full(1000, np.nan)")
    at_best = line_of('best = float("inf")')
    for _ in range(2000):
        history = np.full(1000, np.nan)
        best = float("inf")
        finder._check(frame, at_history, "history", history)
        finder._check(frame, at_best, "best", best)
    gc.collect()
    assert len(finder.placeholders) == 1  # the one still bound to `history`
    assert len(finder.scalars) == 1
    assert finder._placeholder(history[2:], (frame.f_code, "view"))  # a view of a held one
    assert finder._placeholder(best, (frame.f_code, "best"))  # the name written from a constant


@pytest.mark.parametrize(
    ("a", "b", "python", "flagged"),
    [
        (1e300, 1e300, True, []),  # Python floats: inf, and no flag
        (np.float64(1e300), np.float64(1e300), False, ["overflow"]),  # NumPy's: it flags
    ],
)
def test_what_made_a_value_from_finite_numbers_says_whether_it_raises_a_flag(
    tmp_path, a, b, python, flagged
):
    """np.float64 is a Python float subclass, but its arithmetic is NumPy's and raises a flag:
    a value it made where events were not watched (a child process) must not be said to come
    from an op that raises none."""
    from types import SimpleNamespace

    from nandoctor.trace.silent import created_by

    path = tmp_path / "prog.py"
    path.write_text("p = a * b\n")
    frame = SimpleNamespace(
        f_code=SimpleNamespace(co_filename=str(path)), f_locals={}, f_globals={}, f_lineno=1
    )
    made = created_by(frame, 1, {"a": a, "b": b})
    assert (made["op"], made["value"]) == ("multiply", "inf")
    assert (made["python"], made["flagged"]) == (python, flagged)
