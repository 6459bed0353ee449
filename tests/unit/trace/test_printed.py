"""What counts as a printed nan or inf: a value the program printed, not a word about one."""

from __future__ import annotations

import io

import pytest

from nandoctor.trace.runner import Outcome, WatchedStream, printed_value


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("nan", "nan"),
        ("loss: nan", "nan"),
        ("epoch 3 loss nan", "nan"),
        ("[ 1. nan]", "nan"),
        ("array([nan,  1.])", "nan"),
        ("tensor(inf)", "inf"),
        ("np.float64(-inf)", "-inf"),
        ("{'loss': nan}", "nan"),
        ("x=inf, y=2", "inf"),
        ("0    NaN", "nan"),  # pandas
        ('{"loss": Infinity}', "inf"),  # json.dumps
        ("| nan |", "nan"),
        ("loss became NaN, stopping", "nan"),
    ],
)
def test_a_printed_value_is_seen(line, value):
    assert printed_value(line) == value


@pytest.mark.parametrize(
    "line",
    [
        "no nan found",
        "No NaN or Inf in the gradients",
        "checking for nan values",
        "is there a nan?",
        "nan check passed",
        "nan-safe mode",
        "There was no nan",
        "info: inference took 3 nanoseconds",
        "banana",
        "math.inf(",
        "",
    ],
)
def test_words_about_one_are_not(line):
    assert printed_value(line) is None


def test_a_line_is_judged_whole_across_writes():
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen)
    for part in ("no", " ", "nan", " ", "here", "\n"):  # print("no", "nan", "here")
        out.write(part)
    assert seen.printed_nonfinite is None
    for part in ("step 3 ", "loss", " ", "nan", "\r"):  # a progress line ends with \r
        out.write(part)
    assert seen.printed_nonfinite == "step 3 loss nan"


def test_a_last_line_without_its_end_is_judged_at_the_end():
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen)
    out.write("loss: inf")
    assert seen.printed_nonfinite is None
    out.end()
    assert seen.printed_nonfinite == "loss: inf"
