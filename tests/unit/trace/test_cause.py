"""The cause from the operands' numbers: growth vs huge-from-the-start, saturation vs a zero."""

from __future__ import annotations

import pytest

from nandoctor.diagnosis.catalogue import CAUSES
from nandoctor.trace.cause import Cause, decide
from nandoctor.trace.events import FirstNonFinite


def numbers(**kw) -> dict:
    base = {
        "max_abs": 1.0,
        "min_abs": 0.1,
        "min": -1.0,
        "max": 1.0,
        "exact_zeros": 0,
        "exact_ones": 0,
    }
    return base | {"nonfinite": 0, "size": 10, "dtype": "float64"} | kw


def first(op="exp", kind="overflow", operands=(), variables=None) -> FirstNonFinite:
    return FirstNonFinite(
        file="fit.py",
        line=3,
        function="f",
        source="...",
        op=op,
        kind=kind,
        value="inf",
        stack=[],
        operands=list(operands),
        variables=variables or {},
    )


def test_operands_that_grew_over_iterations_are_an_exploding_gradient():
    f = first(op="matmul", operands=[("W", numbers(max_abs=1e160))])
    cause, advice = decide(f, [(1, 2.0), (2, 50.0), (3, 1e80), (4, 1e160)])
    assert cause.id == "exploding_gradient" and any("lower the step size" in a for a in advice)
    assert any("grew from" in e and "iteration 4" in e for e in cause.evidence)


def test_operands_huge_from_the_first_iteration_are_an_overflow():
    f = first(operands=[("z", numbers(max_abs=1290.0))])
    cause, _ = decide(f, [(1, 1290.0)])
    assert cause.id == "overflow"
    assert any("710" in e for e in cause.evidence)  # float64's exp limit, log(max) = 709.78


def test_log_of_one_minus_a_probability_pinned_at_one_is_saturation():
    p = numbers(min=0.2, max=1.0, exact_ones=3, dtype="float32")
    f = first(
        op="log",
        kind="divide_by_zero",
        operands=[("1 - p", numbers(min=0.0, max=0.8, exact_zeros=3))],
        variables={"p": p},
    )
    assert decide(f, [])[0].id == "saturation"


def test_a_zero_standard_deviation_is_a_division_by_zero_not_saturation():
    sd = numbers(min=0.0, max=0.9, exact_zeros=1, size=3)
    f = first(
        op="divide",
        kind="invalid",
        operands=[("x - m", numbers(exact_zeros=100)), ("sd", sd)],
        variables={"sd": sd},
    )
    cause, advice = decide(f, [])
    assert cause.id == "division_by_zero" and "zero-variance" in advice[0]


def test_a_non_finite_operand_no_event_made_is_bad_input():
    f = first(op="subtract", kind="invalid", operands=[("x", numbers(nonfinite=2))])
    assert decide(f, [])[0].id == "bad_input"


def test_every_cause_id_is_from_the_catalogue():
    with pytest.raises(KeyError):
        Cause("not_a_cause", "...")
    assert {"overflow", "exploding_gradient", "saturation", "division_by_zero", "bad_input"} <= set(
        CAUSES
    )


def test_a_log_of_zero_whose_operands_could_not_be_read_has_no_placeholder_evidence():
    f = first(op="log", kind="divide_by_zero")
    cause, _ = decide(f, [])
    assert cause.id == "division_by_zero"
    assert not any("?" in e for e in cause.evidence)


def test_counts_of_only_zeros_and_ones_are_not_a_saturated_probability():
    """A bag-of-words matrix divided by row norms, one of them 0: a zero norm, not a sigmoid."""
    counts = numbers(min=0.0, max=1.0, min_abs=0.0, exact_zeros=39, exact_ones=21, size=60)
    norms = numbers(min=0.0, max=2.24, min_abs=0.0, exact_zeros=1, size=6)
    f = first(op="divide", kind="invalid", operands=[("A", counts), ("norms", norms)])
    f.variables = {"A": counts, "norms": norms}
    cause, _ = decide(f, [])
    assert cause.id == "division_by_zero"
    assert not any("squashing" in e for e in cause.evidence)


def test_a_jump_between_two_iterations_is_growth_not_already_large():
    f = first(op="power", operands=[("err", numbers(max_abs=2.6e156))])
    cause, _ = decide(f, [(1, 1.5e3), (2, 2.6e156)])
    assert cause.id == "exploding_gradient"
    assert not any("no growth was needed" in e for e in cause.evidence)
    assert any("iteration 1" in e and "iteration 2" in e for e in cause.evidence)


def _zero_scalar(dtype: str) -> dict:
    return numbers(max_abs=0.0, min_abs=0.0, min=0.0, max=0.0, exact_zeros=1, size=1, dtype=dtype)


def test_a_zero_exponent_is_not_advised_as_an_eps():
    """``1 - b ** t`` at t = 0: a counter that starts at 0, not an eps of 0."""
    f = first(
        op="divide",
        kind="divide_by_zero",
        operands=[("m", numbers()), ("1 - b ** t", _zero_scalar("float64"))],
        variables={"b": numbers(min=0.9, max=0.9, size=1), "t": _zero_scalar("int64")},
    )
    f.source = "m_hat = m / (1 - b ** t)"
    cause, advice = decide(f, [])
    assert cause.id == "division_by_zero"
    assert any("`t` is exactly 0 and is an exponent" in e for e in cause.evidence)
    assert not any("1e-8" in a for a in advice) and "`t`" in advice[0]


def test_an_eps_of_zero_added_to_the_denominator_is_advised_a_value():
    f = first(
        op="divide",
        kind="invalid",
        operands=[("x", numbers(exact_zeros=2)), ("s + eps", numbers(exact_zeros=2))],
        variables={"s": numbers(exact_zeros=2), "eps": _zero_scalar("float64")},
    )
    f.source = "y = x / (s + eps)"
    _, advice = decide(f, [])
    assert "give `eps` a value" in advice[0]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([0, 0, 0.005, 0.01, 0.125, 0.3, 0.56], id="counts / total (on a grid)"),
        pytest.param([0.0] * 40 + [0.05 + 0.9 * k / 59 for k in range(60)], id="thresholded"),
        pytest.param(
            [0.0] * 40 + [0.3 + 0.69995 * k / 59 for k in range(60)], id="masked, near 1 only"
        ),
    ],
)
def test_log_of_zeros_in_data_is_a_log_of_zero_not_saturation(values):
    """Empty histogram bins, or values the program cut to 0, sit on a grid or with nothing near
    0: no squashing function pinned them, so the log met a zero, not a saturated sigmoid."""
    import numpy as np

    from nandoctor.trace.evaluate import describe

    p = describe(np.array(values))
    f = first(
        op="log",
        kind="divide_by_zero",
        operands=[("p", p)],
        variables={"p": p},
    )
    cause, advice = decide(f, [])
    assert cause.id == "division_by_zero" and any("floor before the log" in a for a in advice)


def test_a_sigmoid_pinned_at_zero_among_values_near_it_is_saturation():
    import numpy as np

    from nandoctor.trace.evaluate import describe

    z = np.linspace(-800, 5, 64)
    with np.errstate(over="ignore"):  # exp(800) = inf: 1 / (1 + inf) = 0, as a sigmoid pins
        p = describe(1 / (1 + np.exp(-z)))  # exactly 0 below -709.8, tiny values just above
    f = first(op="log", kind="divide_by_zero", operands=[("p", p)], variables={"p": p})
    assert p["exact_zeros"] and p["near_zero"] and decide(f, [])[0].id == "saturation"


def test_zero_initialised_operands_that_grew_are_an_exploding_gradient():
    """w = np.zeros(n): the operands are 0 at iteration 1, then grow each update until exp
    overflows. Growth counts from their first non-zero size, not from 0 ('already 0')."""
    f = first(operands=[("X @ w", numbers(max_abs=1.09e46))])
    cause, advice = decide(f, [(1, 0.0), (2, 3.1), (3, 4.4e4), (4, 1.09e46)])
    assert cause.id == "exploding_gradient" and any("lower the step size" in a for a in advice)
    assert any("from 0 at iteration 1, max |x| = 3.1 at iteration 2" in e for e in cause.evidence)
    assert not any("already" in e for e in cause.evidence)


def test_a_float16_power_overflow_is_advised_a_wider_dtype_not_a_softmax():
    """(x - mu) ** 2 of a layer norm in float16: no exp, no logits; float16 holds up to 65504."""
    f = first(op="power", operands=[("x - mu", numbers(max_abs=410.0, dtype="float16"))])
    cause, advice = decide(f, [])
    assert cause.id == "overflow" and not any("exp" in a for a in advice)
    assert any("wider dtype" in a and "6.55e+04" in a for a in advice)


def test_a_growth_over_a_loop_that_steps_no_variable_is_not_blamed_on_training():
    f = first(op="matmul", operands=[("h", numbers(max_abs=1e160))])
    f.loop = {"file": "rnn.py", "line": 7, "updates": False}
    cause, advice = decide(f, [(1, 2.0), (2, 50.0), (3, 1e80), (4, 1e160)])
    assert cause.id == "overflow" and "4 passes of the loop at rnn.py:7" in cause.summary
    assert not any("update made" in e for e in cause.evidence)
    assert any("no training step" in e for e in cause.evidence)
    assert not any("learning rate" in a for a in advice) and "rnn.py:7" in advice[0]


def test_a_growth_over_a_loop_that_steps_a_variable_is_an_exploding_gradient():
    f = first(op="matmul", operands=[("W", numbers(max_abs=1e160))])
    f.loop = {"file": "fit.py", "line": 2, "updates": True}
    cause, _ = decide(f, [(1, 2.0), (2, 50.0), (3, 1e80), (4, 1e160)])
    assert cause.id == "exploding_gradient"


@pytest.mark.parametrize(
    ("op", "fix"),
    [
        ("log", "np.log(np.maximum(x, eps))"),
        ("sqrt", "np.sqrt(np.maximum(v, 0)"),
        ("arcsin", "np.clip(x, -1, 1)"),
    ],
)
def test_a_domain_error_is_advised_for_its_own_op(op, fix):
    f = first(op=op, kind="invalid", operands=[("x", numbers(min=-0.5, max=2.0))])
    cause, advice = decide(f, [])
    assert cause.id == "domain_error" and fix in advice[0]


@pytest.mark.parametrize(
    ("op", "growth"),
    [
        ("exp", [(1, 400.0), (2, 720.0)]),  # exp(400) is finite: the growth to 720 overflowed it
        ("multiply", [(1, 3e152), (2, 2e153)]),  # no known limit; they grew, under 10-fold
    ],
)
def test_no_growth_needed_is_never_said_of_operands_that_grew(op, growth):
    f = first(op=op, operands=[("z", numbers(max_abs=growth[-1][1]))])
    cause, _ = decide(f, growth)
    assert not any("no growth was needed" in e for e in cause.evidence), cause.evidence
    assert any("grew from" in e and "iteration 2" in e for e in cause.evidence), cause.evidence


def test_no_growth_needed_is_said_of_operands_beyond_the_ops_limit_from_the_start():
    f = first(operands=[("z", numbers(max_abs=800.0))])
    cause, _ = decide(f, [(1, 750.0), (2, 800.0)])
    assert cause.id == "overflow"
    assert any("beyond the op's limit" in e and "no growth was needed" in e for e in cause.evidence)


def test_a_recurrence_inside_a_training_loop_names_the_loop_that_trains():
    """h = Wh @ h grows through time (no step in that loop), but Wh -= ... in the epoch loop
    around it grew Wh: 'no training step made them grow' would be false there."""
    f = first(op="matmul", operands=[("h", numbers(max_abs=1e306))])
    f.loop = {
        "file": "rnn.py",
        "line": 9,
        "updates": False,
        "outer": [{"file": "rnn.py", "line": 7, "iteration": 2, "updates": True}],
    }
    cause, advice = decide(f, [(1, 1e76), (3, 1e200), (5, 1e306)])
    assert cause.id == "overflow"
    assert not any("no training step" in e for e in cause.evidence)
    assert any("the loop at rnn.py:7 around it does step variables" in e for e in cause.evidence)
    assert any("rnn.py:7, lower its step size" in a for a in advice)


@pytest.mark.parametrize("op", ["einsum", "matmul", "sum"])
def test_nan_from_finite_operands_of_an_op_with_no_domain_is_an_overflow_inside_it(op):
    """np.einsum('i,i->', [1e308, -1e308], [10, 10]): +inf and -inf summed; no domain was left."""
    f = first(op=op, kind="invalid", operands=[("a", numbers(max_abs=1e308, min=-1e308))])
    cause, advice = decide(f, [])
    assert cause.id == "overflow" and any("inf - inf" in e for e in cause.evidence)
    assert not any("sqrt" in a for a in advice)


def test_a_range_outside_a_domain_is_said_with_the_digits_that_show_it():
    from nandoctor.trace.cause import _exact, _outside

    assert _exact(1.0000000000000002) == "1 + 2.2e-16"
    assert _exact(-1.0000000000000002) == "-1 - 2.2e-16"
    assert _exact(0.5) == "0.5" and _exact(1.0) == "1" and _exact(2.5e-9) == "2.50e-09"
    assert _outside("arccos", -0.5, 1.0000000000000002) == " (above 1 by 2.2e-16)"
    assert _outside("sqrt", -0.25, 4.0) == " (below 0 by 0.25)"
    assert _outside("sqrt", 0.0, 4.0) == "" and _outside("power", -1.0, 1.0) == ""
