"""What counts as a printed nan or inf: a value the program printed, not a word about one."""

from __future__ import annotations

import io

import pytest

from nandoctor.trace.runner import Outcome, WatchedStream, argv_nonfinite, printed_value


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("nan", "nan"),  # print(x)
        ("loss: nan", "nan"),
        ("step 10 loss=nan", "nan"),
        ("epoch 3 loss nan", "nan"),  # print("epoch", 3, "loss", loss)
        ("Epoch 1: train loss nan val loss nan", "nan"),
        ("loss nan | acc 0.5", "nan"),
        ("[ 1. nan]", "nan"),  # a NumPy array
        (" [nan  3.]]", "nan"),  # its second row
        ("array([nan,  1.])", "nan"),
        ("[0.5, nan]", "nan"),  # a list
        ("(nan, 1.0)", "nan"),
        ("tensor(inf)", "inf"),
        ("np.float64(-inf)", "-inf"),
        ("{'loss': nan}", "nan"),
        ("x=inf, y=2", "inf"),
        ("nan 1.0", "nan"),  # print(a, b)
        ("[ 0.  1.  2. ... nan  4.  5.]", "nan"),  # a summarised array
        ("[   nan 1.]", "nan"),  # NumPy pads to the column's width
        ("tensor([1., nan, 3.])", "nan"),
        ("bins: (-inf, 5.0)", "-inf"),  # a tuple
        ("x: -nan", "nan"),  # a NaN with its sign bit set is a NaN
    ],
)
def test_a_printed_value_is_seen(line, value):
    assert printed_value(line) == value


@pytest.mark.parametrize(
    "line",
    [
        "no nan found",
        "checking for nan values",
        "is there a nan?",
        "nan check passed",
        "nan-safe mode",
        "There was no nan",
        "nan: False",
        "info: inference took 3 nanoseconds",
        "banana",
        "math.inf(",
        "",
        # counts, headers, prose in capitals, a log level, an argument: none is a value
        "age: 0 NaN, 0 Inf",
        "checked 0 inf / 0 nan",
        "weights: 0 nan, 0 inf",
        "column   mean   std   nan   inf",
        "dropped 3 rows with NaN",
        "missing (NaN): 0",
        "Warning: input contains NaN; using nanmean",
        "No NaN or Inf in the gradients",
        "[19:00:56 INF] epoch 0 loss 7.3270",
        "norm(x, inf) = 3.2",
        "[nan check] passed",  # a tag
        "[inf] model loaded",
        "x == inf? False",  # a comparison
        "loss != nan",
        "(nan-safe) mean computed",
        "missing (nan): 0",
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
    nan = str(float("nan"))  # computed: a literal of this file would be prose it wrote
    for part in ("step 3 ", "loss", " ", nan, "\r"):  # a progress line ends with \r
        out.write(part)
    assert seen.printed_nonfinite == "step 3 loss " + nan


def test_a_last_line_without_its_end_is_judged_at_the_end():
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen)
    out.write(f"loss: {float('inf')}")  # computed: a literal of this file would be prose
    assert seen.printed_nonfinite is None
    out.end()
    assert seen.printed_nonfinite == "loss: " + "inf"


def test_a_line_the_source_holds_as_a_string_literal_is_prose_not_a_value():
    """The file that prints (this one) holds the first line verbatim in a literal: text the
    program wrote. A value computed at run time and printed after it still counts, and so does
    a bare float("nan") spelling, which is a value's, not prose."""
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen)
    out.write("settings: max_norm=inf (clipping off), nan guard on\n")
    assert seen.printed_nonfinite is None
    out.write(f"objective={float('nan')}\n")
    assert seen.printed_nonfinite == "objective=" + "nan"  # (not a literal of this file)


@pytest.mark.parametrize("args", [("--max-norm", "inf"), ("--max-norm=inf",)])
def test_an_options_value_given_on_the_command_line_and_echoed_is_noted_not_kept(args):
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen, argv_nonfinite(args))
    out.write(f"Namespace(max_norm={float('inf')}, lr=0.1)\n")
    assert seen.printed_nonfinite is None and seen.printed_echo[1] == " ".join(args)
    out.write(f"grad norm: {float('inf')}\n")  # not beside the option's name: computed
    assert seen.printed_nonfinite == "grad norm: " + "inf"


def test_a_str_the_program_printed_as_text_is_not_a_value():
    """``print("user:", name.lower())`` with ``name = "Nan"`` prints ``user: nan``: the text of a
    str, not a float's repr. A float printed the same way, plain or in an f-string, still counts."""
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen)
    name = "Nan"
    print("user:", name.lower(), file=out)
    print(f"hello {name.lower()}!", file=out)
    assert seen.printed_nonfinite is None
    ratio = float("nan")
    print(f"ratio: {ratio}", file=out)
    assert seen.printed_nonfinite == "ratio: " + "nan"
    seen = Outcome()
    out = WatchedStream(io.StringIO(), seen)
    print("ratio:", ratio, file=out)
    assert seen.printed_nonfinite == "ratio: " + "nan"
