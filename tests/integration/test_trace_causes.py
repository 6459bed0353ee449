"""nandoctor trace on small programs from bug reports: the cause and the numbers it rests on.

Each program is traced as a user would trace it; what is asserted is read from the numbers it
produced, never from its name or its lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from nandoctor.trace.runner import Program
from nandoctor.trace.session import trace_program

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def traced(tmp_path: Path, body: str, *args: str):
    path = tmp_path / "prog.py"
    path.write_text(body)
    return trace_program(Program(str(path), tuple(args)))


SIGMOID_ON_TWO_LINES = """\
import numpy as np
def sigmoid(z):
    e = np.exp(-z)
    return 1.0 / (1.0 + e)
print(sigmoid(np.array([-1000.0, 0.0, 5.0])))
"""
SIGMOID_CACHED_ON_AN_OBJECT = """\
import numpy as np
class Sigmoid:
    def forward(self, z):
        self.e = np.exp(-z)
        self.out = 1.0 / (1.0 + self.e)
        return self.out
    def backward(self, g):
        return g * self.out * (1 - self.out)
s = Sigmoid()
print(s.forward(np.array([-1000.0, 0.0, 5.0])), s.backward(np.ones(3)))
"""


@pytest.mark.parametrize("body", [SIGMOID_ON_TWO_LINES, SIGMOID_CACHED_ON_AN_OBJECT])
def test_an_inf_the_next_statement_absorbs_is_a_saturation_not_a_failure(tmp_path, body):
    """exp(1000) = inf kept in a variable for one line, then 1/(1+inf) = 0: the program's values
    are all finite, as with the one-line sigmoid."""
    r = traced(tmp_path, body)
    assert r.first is None and r.exit_code == 0 and r.status == "warning"
    assert [w.id for w in r.warnings] == ["saturation"]
    site = next(s for s in r.events if s.kind == "overflow")
    assert (site.op, site.value, site.absorber, site.absorbed_at) == (
        "exp",
        "inf",
        "divide",
        4 if body is SIGMOID_ON_TWO_LINES else 5,
    )
    assert "the next statement to read it" in r.notes[0]


def test_an_inf_a_later_statement_turns_into_nan_is_still_reported(tmp_path):
    """A softmax over two lines: inf / inf = nan in the next statement, so the exp is the first."""
    body = (
        "import numpy as np\ndef softmax(z):\n    e = np.exp(z)\n"
        "    return e / e.sum(axis=1, keepdims=True)\n"
        "print(softmax(np.array([[1000.0, 1.0]])))\n"
    )
    r = traced(tmp_path, body)
    assert r.exit_code == 1 and (r.first.line, r.first.op) == (3, "exp")
    assert r.cause.id == "overflow" and "max-shifted softmax" in r.advice[0]


def test_an_exp_overflow_in_a_sigmoid_gets_sigmoid_advice_not_softmax(tmp_path):
    """np.seterr(all='raise') stops the sigmoid's exp: the advice is for a sigmoid."""
    body = (
        "import numpy as np\nnp.seterr(all='raise')\n"
        "z = np.array([-1000.0, 1.0])\np = 1 / (1 + np.exp(-z))\n"
    )
    r = traced(tmp_path, body)
    assert r.exit_code == 3 and r.stopped_by.op == "exp"
    assert "sigmoid" in r.advice[0] and not any("softmax" in a for a in r.advice)


@pytest.mark.parametrize(
    ("line", "op"),
    [
        (
            "R = np.corrcoef(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]), rowvar=False)",
            "corrcoef",
        ),
        ("s = np.std(np.array([3.0]), ddof=1)", "std"),
    ],
)
def test_a_nan_from_a_divide_inside_a_numpy_function_on_small_numbers_is_zero_over_zero(
    tmp_path, line, op
):
    """A constant column's std is 0 (corrcoef divides by it); one value with ddof=1 divides by
    n - ddof = 0. Operands of at most 5 cannot overflow: not an overflow inside."""
    r = traced(tmp_path, f"import numpy as np\n{line}\nprint(repr({line.split()[0]}))\n")
    assert r.first.op == op and r.first.kind == "invalid"
    assert r.cause.id == "division_by_zero" and "0 / 0" in r.cause.summary
    assert "divide" in r.cause.evidence[0] and not any("rescale" in a for a in r.advice)


LR_EXPLOSION_OVER_EPOCHS = """\
import numpy as np
params = [np.array([1.0]), np.array([2.0])]
for epoch in range(1000):
    grads = [p * 3.0 for p in params]
    for p, g in zip(params, grads):
        p -= 1e5 * g
"""
IN_PLACE_EXP_OF_A_SOFTMAX_CLASSIFIER = """\
import numpy as np
rng = np.random.default_rng(0)
X = rng.normal(size=(100, 5)) * 3
Y = np.eye(3)[rng.integers(0, 3, 100)]
W = np.zeros((5, 3))
for it in range(50):
    Z = X @ W
    Z -= Z.mean(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    P = Z / Z.sum(axis=1, keepdims=True)
    np.subtract(W, 5.0 * (X.T @ (P - Y)), out=W)
"""
OWN_SETERR_RAISE_IN_A_LOGISTIC_REGRESSION = """\
import numpy as np
np.seterr(all='raise')
rng = np.random.default_rng(0)
X = rng.normal(size=(50, 3))
y = (X[:, 0] > 0).astype(float)
w = np.zeros(3)
for step in range(100):
    p = 1 / (1 + np.exp(-(X @ w)))
    w -= 2000 * X.T @ (p - y) / len(y)
"""


@pytest.mark.parametrize(
    "body",
    [
        LR_EXPLOSION_OVER_EPOCHS,  # the batch loop fails at its first pass: grown over epochs
        IN_PLACE_EXP_OF_A_SOFTMAX_CLASSIFIER,  # 0, then past exp's limit 710, in place
        OWN_SETERR_RAISE_IN_A_LOGISTIC_REGRESSION,  # w = 0 at step 1, |z| > 710 at step 2
    ],
)
def test_a_learning_rate_explosion_is_an_exploding_gradient(tmp_path, body):
    r = traced(tmp_path, body)
    assert r.cause.id == "exploding_gradient", r.cause.evidence
    assert "lower the step size" in r.advice[0]


def test_the_growth_over_epochs_names_the_epoch_loop(tmp_path):
    r = traced(tmp_path, LR_EXPLOSION_OVER_EPOCHS)
    assert "of the loop at" in r.cause.summary and r.first.loop["outer"][0]["iteration"] == 57


def test_a_python_float_overflow_in_a_conditional_expression_is_made_there(tmp_path):
    """x * x on Python floats makes inf without a flag; inside `a if c else b` it is still the
    multiply at that line, an overflow, never data that came in."""
    body = (
        'x = 1.5\nfor i in range(30):\n    x = x * x if i >= 0 else x\nd = x - x; print("d", d)\n'
    )
    r = traced(tmp_path, body)
    f = r.first
    assert (f.line, f.op, f.kind, f.iteration) == (3, "multiply", "overflow", 11)
    assert r.cause.id == "overflow" and f.no_flag == "Python float arithmetic"


def test_a_bare_expression_statement_keeps_nothing(tmp_path):
    """np.log(W - 10) on a line of its own: its NaN is discarded, W stays finite."""
    body = 'import numpy as np\nW = np.array([1.0, 2.0])\nnp.log(W - 10)\nprint("ok", W.sum())\n'
    r = traced(tmp_path, body)
    assert r.first is None and r.exit_code == 0
    assert "discarded (a bare expression" in r.notes[0]


def test_a_str_that_prints_as_nan_is_text_not_a_nan(tmp_path):
    """A user's name "Nan", lower-cased and printed, is text: no NaN, no claim, exit 0."""
    r = traced(tmp_path, 'name = "Nan"\nprint("user:", name.lower())\n')
    assert r.first is None and r.exit_code == 0 and r.status == "healthy"


CLIP_FROM_CONFIG = """\
import json, sys
import numpy as np
cfg = json.loads(sys.argv[1]) if sys.argv[1].startswith("{") else {"clip_norm": sys.argv[1]}
clip = float(cfg["clip_norm"])
print("clip_norm:", clip)
w = np.ones(4)
for i in range(3):
    g = 2 * w
    if np.linalg.norm(g) > clip:
        g = g * clip / np.linalg.norm(g)
    w = w - 0.1 * g
print("w", w)
"""


@pytest.mark.parametrize("given", ['{"clip_norm": "inf"}', "inf"])
def test_an_inf_parsed_from_a_config_or_argv_and_only_printed_is_a_setting(tmp_path, given):
    """ "inf" as "no clipping", parsed with float() from a config or the command line, printed
    and compared: the program stays finite, so it is a note, not a failure."""
    r = traced(tmp_path, CLIP_FROM_CONFIG, given)
    assert r.first is None and r.exit_code == 0
    assert any("parsed from text at" in n and "clip = float(" in n for n in r.notes)


def test_an_inf_parsed_on_a_line_of_several_statements_is_a_setting_too(tmp_path):
    """The statement that parsed it is the one assigning ``clip``, not the line's last."""
    body = CLIP_FROM_CONFIG.replace(
        'clip = float(cfg["clip_norm"])\n', 'clip = float(cfg["clip_norm"]); n = 3\n'
    )
    r = traced(tmp_path, body, "inf")
    assert r.first is None and r.exit_code == 0
    assert any("parsed from text at" in n for n in r.notes)


def test_an_inf_parsed_from_text_that_reaches_arithmetic_is_reported_where_it_came_in(tmp_path):
    body = CLIP_FROM_CONFIG.replace("    if np.linalg.norm(g) > clip:\n", "    if True:\n")
    r = traced(tmp_path, body, "inf")
    assert r.exit_code == 1 and (r.first.line, r.first.variable) == (4, "clip")
    assert r.first.spread["variable"] == "g" and r.first.spread["line"] == 10
    assert r.cause.id == "bad_input" and "reached arithmetic" in r.cause.summary


def test_loaded_data_counts_its_nan_and_inf_apart(tmp_path):
    """[1, inf, inf, nan] loaded from a file holds 1 NaN and 2 Inf: the evidence says so, not
    "3 nan", and agrees with the note's NaN count."""
    body = (
        "import numpy as np\n"
        f"np.save({str(tmp_path / 'a.npy')!r}, np.array([1, np.inf, np.inf, np.nan]))\n"
        f"x = np.load({str(tmp_path / 'a.npy')!r})\n"
    )
    r = traced(tmp_path, body)
    assert r.exit_code == 1 and r.first.line == 3 and r.cause.id == "bad_input"
    numbers = r.first.operands[0][1]
    assert (numbers["nan"], numbers["posinf"], numbers["neginf"]) == (1, 2, 0)
    assert "(1 NaN and 2 Inf of 4 entries)" in r.cause.evidence[0]
    assert any("ended holding 1 NaN of 4" in n for n in r.notes)


def test_a_domain_error_just_past_its_limit_shows_the_digits_that_put_it_outside(tmp_path):
    """arccos(1.0000000000000002): "ranges over [1, 1]" would not show why; the evidence gives
    the value's offset from the limit and how far outside the domain it is."""
    r = traced(tmp_path, "import numpy as np\nc = 1.0000000000000002\na = np.arccos(c)\n")
    assert r.exit_code == 1 and r.cause.id == "domain_error"
    assert "[1 + 2.2e-16, 1 + 2.2e-16] (above 1 by 2.2e-16)" in r.cause.evidence[0]


def test_an_integer_division_by_zero_is_not_said_to_make_inf(tmp_path):
    """``totals // counts`` with a 0 in counts: NumPy raises divide-by-zero and gives 0. The
    program is healthy, and no note claims an Inf was made and absorbed."""
    body = (
        "import numpy as np\ntotals = np.array([4, 6, 9])\ncounts = np.array([2, 0, 3])\n"
        "avg = totals // counts\nprint(avg)\n"
    )
    r = traced(tmp_path, body)
    assert r.first is None and r.exit_code == 0 and r.status == "healthy"
    assert not any("inf" in n.replace("never NaN or Inf", "") for n in r.notes)
    assert r.notes[0].startswith("no operation created a NaN or an Inf")
    assert "`floor_divide` on integers made 0" in r.notes[0]


GROWS_BESIDE_A_CONSTANT = {
    "numpy": "import numpy as np\nw = np.ones(3)\nlr = 2.0\nfor i in range(2000):\n"
    "    w = w - lr * 2 * w\n",
    "python floats": "w = 1.0\nlr = 2.0\nfor i in range(2000):\n    w = w - lr * 2 * w\n",
    "per parameter": "import numpy as np\nparams = [np.ones(3), np.ones(2)]\n"
    "for it in range(200):\n    for p in params:\n        g = p * 1.0\n        p -= 1e5 * g\n",
}


@pytest.mark.parametrize("body", GROWS_BESIDE_A_CONSTANT.values(), ids=GROWS_BESIDE_A_CONSTANT)
def test_growth_is_measured_on_the_operand_that_grew_not_a_constant_beside_it(tmp_path, body):
    """w started at 1 and grew; ``lr * 2`` (4) and ``1e5`` are constants beside it: the growth
    starts from w's 1, not from the constant."""
    r = traced(tmp_path, body)
    assert r.exit_code == 1 and r.cause.id == "exploding_gradient"
    grew = next(e for e in r.cause.evidence if "grew from" in e)
    assert "grew from max |x| = 1 at iteration 1" in grew
