"""A NaN or Inf the program writes itself from a constant is a placeholder, not bad input."""

from __future__ import annotations

import ast

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
