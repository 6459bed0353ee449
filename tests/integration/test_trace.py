"""nandoctor trace on the example programs: file, line, iteration and cause, from the run itself.

Each expected line is found by its text in the example's own source, so the test states what the
example is about, and the tool must find it from the numbers the program produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.trace.runner import Program
from nandoctor.trace.session import RERUN_MIN_SECONDS, trace_program

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def line_of(path: Path, text: str) -> int:
    lines = path.read_text().splitlines()
    hits = [i for i, line in enumerate(lines, 1) if text in line]
    assert len(hits) == 1, f"{text!r} must occur once in {path}"
    return hits[0]


@pytest.fixture(scope="module")
def traced():
    """Each example traced once, from the repository root, as a user would run it."""
    cache = {}
    old = os.getcwd()

    def get(name: str):
        if name not in cache:
            os.chdir(ROOT)
            try:
                cache[name] = trace_program(Program(f"examples/{name}"))
            finally:
                os.chdir(old)
        return cache[name]

    return get


def test_naive_softmax_on_raw_pixels_overflows_in_exp_at_the_first_iteration(traced):
    r = traced("softmax_raw_pixels.py")
    src = EXAMPLES / "softmax_raw_pixels.py"
    f = r.first
    assert (f.file, f.line, f.function) == (
        "examples/softmax_raw_pixels.py",
        line_of(src, "e = np.exp(z)"),
        "softmax",
    )
    assert (f.op, f.kind, f.value) == ("exp", "overflow", "inf")
    assert f.stack[1].line == line_of(src, "probs = softmax(pixels @ W)")
    assert f.iteration == 1 and f.loop["line"] == line_of(src, "for epoch in range(20):")
    assert r.cause.id == "overflow"
    assert any("709" in e or "710" in e for e in r.cause.evidence)  # exp's float64 limit
    assert r.exit_code == 1 and r.status == "nonfinite"


def test_log_of_a_saturated_float32_sigmoid_is_saturation(traced):
    r = traced("bce_float32_sigmoid.py")
    src = EXAMPLES / "bce_float32_sigmoid.py"
    f = r.first
    assert f.line == line_of(src, "loss = -np.mean(y * np.log(p)")
    assert (f.op, f.kind, f.value) == ("log", "divide_by_zero", "-inf")
    assert f.loop["line"] == line_of(src, "for _step in range(500):")
    assert f.iteration > 1  # the weights had to grow first
    assert r.cause.id == "saturation"
    assert any("exactly 1.0" in e and "float32" in e for e in r.cause.evidence)


def test_the_second_run_counts_the_same_iteration_as_the_loop_variable(traced):
    """Two independent ways to the iteration must agree: range's variable, and line events."""
    from nandoctor.trace.events import Recorder
    from nandoctor.trace.session import _when

    r = traced("bce_float32_sigmoid.py")
    recorder = Recorder()
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        with recorder.armed():
            from nandoctor.trace.runner import run_program

            run_program(Program("examples/bce_float32_sigmoid.py"))
        recorder.first.iteration = None
        _when(Program("examples/bce_float32_sigmoid.py"), recorder, recorder.first, 60, [])
    finally:
        os.chdir(old)
    assert recorder.first.iteration == r.first.iteration


def test_relu_with_a_large_step_explodes_and_a_while_loop_is_counted_by_a_rerun(traced):
    r = traced("relu_large_step.py")
    src = EXAMPLES / "relu_large_step.py"
    f = r.first
    assert f.kind == "overflow"
    assert f.loop["line"] == line_of(src, "while step < 300")
    assert f.iteration is not None and f.iteration > 3
    assert r.cause.id == "exploding_gradient"
    assert any("grew from" in e for e in r.cause.evidence)
    assert any("second run" in n for n in r.notes)


def test_a_nan_read_from_the_data_is_located_by_the_second_pass_as_bad_input(traced):
    r = traced("nan_in_data.py")
    src = EXAMPLES / "nan_in_data.py"
    f = r.first
    assert (f.kind, f.value, f.variable) == ("silent", "nan", "data")
    assert f.line == line_of(src, "data = np.genfromtxt(")
    assert f.iteration is None and f.loop is None
    assert r.cause.id == "bad_input"
    assert any("second" in n for n in r.notes)


def test_standardizing_a_constant_column_divides_zero_by_zero_outside_any_loop(traced):
    r = traced("zero_variance_standardize.py")
    src = EXAMPLES / "zero_variance_standardize.py"
    f = r.first
    assert (f.line, f.function) == (line_of(src, "return (columns - mean) / std"), "standardize")
    assert f.stack[1].line == line_of(src, "Xs = standardize(X)")
    assert (f.op, f.kind, f.value) == ("divide", "invalid", "nan")
    assert f.iteration is None and f.loop is None
    assert r.cause.id == "division_by_zero"
    std = dict(f.operands)["std"]
    assert std["exact_zeros"] == 1 and std["size"] == 3


def test_adam_eps_zero_in_a_helper_module_is_found_there_with_its_call_site_and_batch(traced):
    r = traced("adam_eps0/train.py")
    optim, train = EXAMPLES / "adam_eps0" / "optim.py", EXAMPLES / "adam_eps0" / "train.py"
    f = r.first
    assert f.file == "examples/adam_eps0/optim.py" and f.function == "adam_step"
    assert f.line == line_of(optim, "param -= lr * m_hat")
    assert (f.stack[1].file, f.stack[1].line) == (
        "examples/adam_eps0/train.py",
        line_of(train, 'adam_step(W2, grads["W2"]'),
    )
    assert f.loop == {
        "file": "examples/adam_eps0/train.py",
        "line": line_of(train, "for xb, yb in batches("),
        "updates": True,  # adam_step: a call whose name says it steps
        "outer": [  # the epoch loop around the batch loop
            {
                "file": "examples/adam_eps0/train.py",
                "line": line_of(train, "for epoch in"),
                "iteration": 1,
                "updates": True,
            }
        ],
    }
    assert f.iteration == 1
    assert r.cause.id == "division_by_zero"
    assert any("`eps` is exactly 0" in e for e in r.cause.evidence)
    assert any("eps" in a for a in r.advice)


@pytest.mark.parametrize(
    "name", ["blog_randn_sigmoid.py", "blog_xavier_sigmoid.py", "blog_xavier_lr1.py"]
)
def test_the_blog_programs_stay_finite_and_trace_says_so(traced, name):
    r = traced(name)
    assert r.first is None and r.cause is None and r.exit_code == 0
    assert r.status in ("healthy", "warning")
    assert r.notes[0].startswith(("no operation created", "no NaN or Inf reached a value"))


# -- the command line


def _script(tmp_path: Path, body: str, name: str = "prog.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def trace_json(prog: Path):
    """``nandoctor trace --format json PROG``: the click result and its JSON document."""
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog)])
    return res, json.loads(res.stdout)


def test_json_shape_follows_the_contract(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nprint('hi')\nx = np.zeros(3)\nfor i in range(4):\n    y = 1 / x\n",
    )
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog)])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert set(doc) >= {
        "script",
        "status",
        "first_nonfinite",
        "cause",
        "warnings",
        "events",
        "advice",
        "program",
    }
    f = doc["first_nonfinite"]
    assert set(f) >= {
        "file",
        "line",
        "function",
        "source",
        "op",
        "kind",
        "value",
        "iteration",
        "loop",
        "stack",
    }
    assert (f["line"], f["op"], f["kind"], f["value"], f["iteration"]) == (
        5,
        "divide",
        "divide_by_zero",
        "inf",
        1,
    )
    assert f["loop"]["line"] == 4 and f["stack"][0]["source"] == "y = 1 / x"
    assert doc["cause"]["id"] == "division_by_zero" and doc["cause"]["evidence"]
    assert doc["events"][0] == {"file": f["file"], "line": 5, "kind": "divide_by_zero", "count": 4}
    assert doc["program"] == {"exit_code": 0, "exception": None}


def test_program_output_from_c_goes_to_stderr_under_json(tmp_path):
    prog = _script(
        tmp_path, "import os, sys\nos.write(1, b'from C\\n')\nprint('from python', sys.argv[1:])\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", "--format", "json", str(prog), "a", "--b"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "healthy"
    assert "from C" in done.stderr and "from python ['a', '--b']" in done.stderr


def test_a_failing_program_exits_3_with_its_own_traceback(tmp_path):
    prog = _script(tmp_path, "def boom():\n    raise ValueError('bad shape')\n\nboom()\n")
    res = CliRunner().invoke(main, ["trace", str(prog)])
    assert res.exit_code == 3
    assert "ValueError: bad shape" in res.stderr and "prog.py" in res.stderr
    assert "nandoctor" not in res.stderr.split("ValueError")[0].replace(str(prog), "")


def test_exit_code_of_sys_exit_is_the_programs(tmp_path):
    prog = _script(tmp_path, "import sys\nsys.exit(4)\n")
    assert CliRunner().invoke(main, ["trace", str(prog)]).exit_code == 3


def test_usage_errors_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["trace", str(tmp_path / "missing.py")])
    assert res.exit_code == 2 and "no such file" in res.stderr
    res = CliRunner().invoke(main, ["trace", "-m", "no_such_module_xyz"])
    assert res.exit_code == 2 and "no_such_module_xyz" in res.stderr
    res = CliRunner().invoke(main, ["trace"])
    assert res.exit_code == 2


def test_module_mode_runs_as_python_dash_m(tmp_path, monkeypatch):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fit.py").write_text("import numpy as np\nprint(__name__)\nv = np.log(np.zeros(2))\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["trace", "--format", "json", "-m", "mypkg.fit"])
    doc = json.loads(res.stdout)
    assert res.exit_code == 1 and doc["first_nonfinite"]["line"] == 3
    assert doc["first_nonfinite"]["op"] == "log" and "__main__" in res.stderr


def test_options_after_the_module_are_the_programs_own(tmp_path, monkeypatch):
    """As after a script, and as python -m does: `-m mod --help --format json` passes both on."""
    (tmp_path / "cli_prog.py").write_text("import sys\nprint('argv:', sys.argv[1:])\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["trace", "-m", "cli_prog", "--help", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert "argv: ['--help', '--format', 'json']" in res.stdout
    assert "Usage:" not in res.stdout and "healthy" in res.stdout  # the text report, not JSON
    res = CliRunner().invoke(main, ["trace", "-m"])
    assert res.exit_code == 2 and "-m MODULE" in res.stderr
    res = CliRunner().invoke(main, ["trace", "-m", "cli_prog.py"])  # not run to find it missing
    assert res.exit_code == 2 and "without .py (-m cli_prog)" in res.stderr
    assert "argv:" not in res.stdout


def test_the_programs_own_error_handling_is_honoured_and_still_recorded(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\n"
        "np.seterr(all='raise')\n"
        "try:\n    np.exp(np.array([1000.0]))\nexcept FloatingPointError:\n    print('caught')\n"
        "with np.errstate(divide='ignore'):\n    z = np.log(np.zeros(1))\n",
    )
    res, doc = trace_json(prog)
    assert "caught" in res.stderr and "divide by zero" not in res.stderr
    assert doc["first_nonfinite"]["line"] == 8  # line 4 raised: it kept nothing
    assert {(e["line"], e["kind"]) for e in doc["events"]} == {
        (4, "overflow"),
        (8, "divide_by_zero"),
    }


def test_an_unseeded_program_gets_iteration_unknown_not_a_guess(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nx = np.random.default_rng().random(1) + 1\nk = 0\n"
        "while k < 1000:\n    k += int(np.random.default_rng().integers(1, 3))\n    x = x * 1e30\n",
    )
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog)])
    f = json.loads(res.stdout)["first_nonfinite"]
    assert f["line"] == 6 and f["iteration"] is None and "repeat" in f["iteration_note"]


def test_sentinels_are_not_bad_input(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nbest = float('inf')\nlow = np.full(3, np.inf)\n"
        "for v in [3.0, 1.0]:\n    best = min(best, v)\n    low[0] = v\n",
    )
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog)])
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "healthy"


def test_a_name_bound_to_a_placeholder_is_the_placeholder_not_data_coming_in(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nloss = np.inf\nprint(f'loss: {loss}')\nbest = loss\n"
        "for t in range(3):\n    loss = 1.0 / (t + 1)\n    best = min(best, loss)\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 0 and doc["status"] == "healthy" and doc["cause"] is None
    assert any("placeholder" in n and ":2" in n for n in doc["notes"])


def test_data_kept_on_the_line_before_a_loop_is_outside_that_loop(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nx = np.array([float(s) for s in '1 nan 3'.split()])\n"
        "for t in range(2):\n    y = x * 2\nprint(y)\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and doc["cause"]["id"] == "bad_input"
    assert doc["first_nonfinite"]["line"] == 2 and doc["first_nonfinite"]["loop"] is None


FULLY_MASKED_ROW = """\
import numpy as np

scores = np.array([[1.0, 2.0], [0.5, 3.0]])
mask = np.array([[True, False], [False, False]])
scores = np.where(mask, scores, -np.inf)
m = scores.max(axis=-1, keepdims=True)
e = np.exp(scores - m)
print(e)
"""


def test_a_nan_from_the_programs_own_minus_inf_mask_names_it_and_the_masked_row(tmp_path):
    res = CliRunner().invoke(main, ["trace", str(_script(tmp_path, FULLY_MASKED_ROW))])
    assert res.exit_code == 1
    assert "own -inf placeholder written at " in res.stdout and "prog.py:5\n" in res.stdout
    assert "1 of 2 rows were entirely masked (all -inf)" in res.stdout
    assert "-inf - (-inf) = nan" in res.stdout and "-1e9" in res.stdout
    assert "check the inputs where they are loaded" not in res.stdout
    assert "operand `scores`: max |x| 1, min |x| 1, 0 exact zeros, 3 non-finite of 4" in res.stdout


DIVERGING_METHOD_SUM = """\
import numpy as np

rng = np.random.default_rng(5)
X = np.c_[np.ones(50), rng.uniform(500, 4000, 50)]
y = 150 * X[:, 1]
theta = np.zeros(2)
for i in range(100):
    err = X @ theta - y
    cost = (err ** 2).sum()
    theta = theta - 0.01 * X.T @ err / len(y)
print(cost)
"""


def test_a_method_reduction_of_an_expression_keeps_its_growth_history(tmp_path):
    prog = _script(tmp_path, DIVERGING_METHOD_SUM)
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and doc["first_nonfinite"]["op"] == "sum"
    assert doc["cause"]["id"] == "exploding_gradient"
    assert any("the operands grew from" in e for e in doc["cause"]["evidence"])


MAIN_LOADS_A_CSV = """\
import os

import numpy as np


def load(path):
    return np.genfromtxt(path, delimiter=",", skip_header=1)


def main():
    data = load(os.path.join(os.path.dirname(__file__), "d.csv"))
    w = np.zeros(1)
    for _ in range(3):
        err = data[:, :1] @ w - data[:, 1]
    print("mse", np.mean(err**2))


if __name__ == "__main__":
    main()
"""


def test_a_nan_loaded_inside_main_is_found_though_mains_locals_are_gone_at_the_end(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,\n5,6\n")
    prog = _script(tmp_path, MAIN_LOADS_A_CSV)
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and "mse nan" in res.stderr
    f = doc["first_nonfinite"]
    assert (f["kind"], f["value"], f["line"], f["function"]) == ("silent", "nan", 7, "load")
    assert doc["cause"]["id"] == "bad_input"
    assert any("line-traced" in n for n in doc["notes"])


def test_a_nan_placeholder_the_program_fills_as_it_trains_is_not_bad_input(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nhistory = np.full(10, np.nan)\nbest = float('inf')\n"
        "for t in range(4):\n    loss = 1.0 / (t + 1)\n    history[t] = loss\n"
        "    best = min(best, loss)\nprint('best', np.nanmin(history), history[:5])\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 0 and doc["status"] == "healthy" and doc["cause"] is None
    assert any("placeholder" in n and ":2" in n for n in doc["notes"])


def test_a_nan_computed_from_a_placeholder_is_still_reported_where_it_is_kept(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nhistory = np.full(3, np.nan)\nhistory[:2] = [1.0, 2.0]\n"
        "mean = history.mean()\nprint(mean)\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 1
    assert (doc["first_nonfinite"]["line"], doc["first_nonfinite"]["variable"]) == (4, "mean")
    assert any("placeholder" in e for e in doc["cause"]["evidence"])


WHERE_MASKED_LOG = """\
import numpy as np

p = np.array([[0.0, 1.0], [0.25, 0.75]])
with np.errstate(divide="ignore", invalid="ignore"):
    H = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
print(H)
"""


def test_a_log_of_zero_that_np_where_discards_is_not_a_failure_and_is_said_exactly(tmp_path):
    r = trace_program(Program(str(_script(tmp_path, WHERE_MASKED_LOG))))
    assert r.first is None and r.exit_code == 0
    site = next(s for s in r.events if s.kind == "divide_by_zero")
    assert (site.op, site.value, site.absorber, site.silenced) == ("log", "-inf", "where", True)
    assert r.notes[0].startswith("no NaN or Inf reached a value the program kept")
    assert any("`where` in the same statement discarded" in n for n in r.notes)
    assert not any("?" in n for n in r.notes)


def test_an_overflow_absorbed_by_a_sigmoid_is_not_called_no_inf_created(tmp_path):
    prog = _script(
        tmp_path, "import numpy as np\nx = np.array([-1000.0, 0.0])\ns = 1 / (1 + np.exp(-x))\n"
    )
    res = CliRunner().invoke(main, ["trace", str(prog)])
    assert res.exit_code == 0
    assert "1 overflow(s) in `exp` made inf that `divide` in the same statement absorbed" in (
        res.stdout
    )
    assert "no operation created" not in res.stdout and "every value stayed" not in res.stdout


@pytest.mark.parametrize(
    "line",
    ["A, cache = 1 / (1 + np.exp(-x)), x", "A, path = 1 / (1 + np.exp(-x)), 'naive'"],
)
def test_an_overflow_absorbed_inside_a_tuple_statement_is_absorbed_too(tmp_path, line):
    prog = _script(tmp_path, f"import numpy as np\nx = np.array([-1000.0, 0.0])\n{line}\n")
    r = trace_program(Program(str(prog)))
    assert r.first is None and r.exit_code == 0
    site = next(s for s in r.events if s.kind == "overflow")
    assert (site.op, site.value, site.absorber) == ("exp", "inf", "divide")


def test_a_tuple_statement_that_keeps_an_inf_is_still_reported(tmp_path):
    prog = _script(tmp_path, "import numpy as np\nx = np.array([-1000.0])\nA, B = np.exp(-x), x\n")
    r = trace_program(Program(str(prog)))
    assert r.first is not None and (r.first.line, r.first.op) == (3, "exp")


def test_a_program_that_crashed_without_nan_is_not_headlined_healthy(tmp_path):
    prog = _script(tmp_path, "import numpy as np\nnp.ones(3) @ np.ones(2)\n")
    res = CliRunner().invoke(main, ["trace", str(prog)])
    assert res.exit_code == 3
    assert "healthy" not in res.stdout and res.stdout.startswith("✗ the program failed")


def test_an_event_in_a_thread_the_program_starts_is_recorded(tmp_path):
    prog = _script(
        tmp_path,
        "import threading\nimport numpy as np\n\ndef work():\n    y = np.sqrt(np.array([-1.0]))\n\n"
        "t = threading.Thread(target=work)\nt.start()\nt.join()\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and doc["first_nonfinite"]["line"] == 5
    assert doc["first_nonfinite"]["op"] == "sqrt" and doc["cause"]["id"] == "domain_error"


# What `nandoctor trace` may have imported when the user's program starts: the command line, the
# runner and the recorder (and numpy, which the program imports anyway). The report, its
# renderers, the diagnosis catalogue and the other commands' libraries wait until it has ended.
RUN_PATH = {
    "nandoctor",
    "nandoctor.__main__",
    "nandoctor.errors",
    "nandoctor.interrupt",
    "nandoctor.cli",
    "nandoctor.cli.common",
    "nandoctor.cli.trace",
    "nandoctor.trace",
    "nandoctor.trace.session",
    "nandoctor.trace.runner",
    "nandoctor.trace.events",
    "nandoctor.trace.frames",
    "nandoctor.trace.npstate",
}
NEVER_FOR_A_HEALTHY_TRACE = {"rich", "pydantic", "yaml", "ruamel", "multiprocessing", "tempfile"}
PROBE = """\
import sys

NEVER = set(sys.argv[2].split(","))
with open(sys.argv[1], "w") as out:
    out.write(repr(sorted(m for m in sys.modules if m.split(".")[0] in {"nandoctor", *NEVER})))
"""
# nandoctor run by a launcher that lists, at the process's exit (after the report; the program's
# own atexit handlers run before it), the modules the whole trace imported
LAUNCHER = """\
import atexit, sys

OUT, NEVER = sys.argv[1], set(sys.argv[2].split(","))
sys.argv = ["nandoctor", *sys.argv[3:]]

def at_exit():
    with open(OUT, "w") as out:
        out.write(repr(sorted(m for m in sys.modules if m.split(".")[0] in {"nandoctor", *NEVER})))

atexit.register(at_exit)
from nandoctor.__main__ import entry

entry()
"""


def test_the_program_starts_before_the_report_and_diagnosis_are_imported(tmp_path):
    prog = _script(tmp_path, PROBE)
    seen, at_exit = tmp_path / "modules.txt", tmp_path / "at_exit.txt"
    never = ",".join(sorted(NEVER_FOR_A_HEALTHY_TRACE))
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(at_exit), never, "trace", str(prog), str(seen)]
        + [never],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "healthy" in done.stdout
    modules = {"start": eval(seen.read_text()), "exit": eval(at_exit.read_text())}  # noqa: S307
    early = set(modules["start"]) - RUN_PATH
    assert not early, f"imported before the program ran (start-up time it pays): {sorted(early)}"
    heavy = {m for m in modules["exit"] if m.split(".")[0] in NEVER_FOR_A_HEALTHY_TRACE}
    assert not heavy, f"imported by a healthy trace that never needs them: {sorted(heavy)}"
    assert "nandoctor.report.trace" in modules["exit"]  # the probe saw the report's imports
    assert not any(m.startswith("nandoctor.diagnosis") for m in modules["exit"])


def test_the_programs_warnings_and_raises_are_numpys_own_words_and_places(tmp_path):
    """A filter on NumPy's message ("... in exp") must take the same branch under trace."""
    prog = _script(
        tmp_path,
        "import warnings\nimport numpy as np\n"
        "warnings.filterwarnings('error', message='overflow encountered in exp')\n"
        "try:\n    np.exp(np.array([1000.0]))\n    print('path: naive')\n"
        "except RuntimeWarning:\n    print('path: stable')\n"
        "warnings.resetwarnings()\n"
        "with warnings.catch_warnings(record=True) as got:\n"
        "    warnings.simplefilter('always')\n"
        "    np.log(np.zeros(1))\n    np.mean(np.array([]))\n"
        "for w in got:\n"
        "    print(w.category.__name__, w.message, os.path.basename(w.filename), w.lineno)\n"
        "np.seterr(all='raise')\n"
        "try:\n    np.sqrt(-np.ones(1))\nexcept FloatingPointError as e:\n    print(e)\n",
    )
    prog.write_text("import os\n" + prog.read_text())
    want = subprocess.run(
        [sys.executable, str(prog)], capture_output=True, text=True, check=True
    ).stdout
    assert "path: stable" in want and "invalid value encountered in sqrt" in want
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog)])
    assert res.stderr.strip().splitlines() == want.strip().splitlines()


def test_a_raise_the_program_asked_numpy_for_ends_its_traceback_at_its_own_line(tmp_path):
    prog = _script(
        tmp_path, "import numpy as np\nnp.seterr(all='raise')\nnp.exp(np.ones(1) * -800)\n"
    )
    res = CliRunner().invoke(main, ["trace", str(prog)])
    assert res.exit_code == 3
    tb = res.stderr[res.stderr.index("Traceback") :]
    files = [line for line in tb.splitlines() if line.strip().startswith("File ")]
    assert "prog.py" in files[-1], tb
    assert "FloatingPointError: underflow encountered in exp" in tb


def test_a_statement_the_programs_warnings_filter_aborted_kept_no_value(tmp_path):
    """filterwarnings('error') turns log(0) into an exception before anything is assigned."""
    prog = _script(
        tmp_path,
        "import warnings\nimport numpy as np\nwarnings.filterwarnings('error')\n"
        "h, restarts = np.array([0.0, 0.5]), 0\nfor _ in range(3):\n    try:\n"
        "        cost = -np.mean(np.log(h))\n    except RuntimeWarning:\n"
        "        restarts += 1\nprint('restarts:', restarts)\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 0 and doc["first_nonfinite"] is None, res.stdout
    assert "restarts: 3" in res.stderr
    assert [(e["line"], e["kind"], e["count"]) for e in doc["events"]] == [(7, "divide_by_zero", 3)]


def test_a_nan_in_a_list_of_floats_is_found_where_it_came_in(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\ndef main():\n"
        "    scores = [float(s) for s in '0.11 0.10 nan'.split()]\n"
        "    print('mean: %.3f' % np.mean(scores))\nmain()\n",
    )
    r = trace_program(Program(str(prog)))
    assert r.exit_code == 1 and (r.first.line, r.first.variable) == (3, "scores")


def test_a_printed_nan_no_run_locates_is_never_called_finite(tmp_path):
    prog = _script(tmp_path, "print(float(' nan '.strip()))\n")  # parsed, not a constant
    res = CliRunner().invoke(main, ["trace", str(prog)])
    assert res.exit_code == 1
    assert "printed, not located" in res.stdout and "kept no NaN" not in res.stdout
    res, doc = trace_json(prog)  # exit 1 and the status agree, as for run
    first = doc["first_nonfinite"]
    assert (res.exit_code, doc["status"], doc["cause"]) == (1, "nonfinite", None)
    assert (first["line"], first["value"], first["found_by"]) == (None, "nan", "printed output")


@pytest.mark.parametrize(
    "body",
    [
        "print('no nan found')\n",
        "print('checking for inf values: none')\n",
        "print('no', 'nan', 'in', 'the', 'loss')\n",  # one line, written a word at a time
        "import sys\nsys.stdout.write('nan-safe mode')\n",
    ],
)
def test_words_about_nan_are_not_a_printed_nan(tmp_path, body):
    """A message that names NaN is not one: no second run, no claim, exit 0."""
    res, doc = trace_json(_script(tmp_path, "import numpy as np\n" + body))
    assert (res.exit_code, doc["status"], doc["first_nonfinite"]) == (0, "healthy", None)
    assert not any("second" in n for n in doc["notes"]), doc["notes"]


def test_a_second_run_out_of_time_is_stopped_and_said(tmp_path, monkeypatch):
    """A NaN held at the end whose second run is too slow: not located, no cause claimed."""
    from nandoctor.trace import session

    monkeypatch.setattr(session, "RERUN_MIN_SECONDS", 0.0)
    monkeypatch.setattr(session, "RERUN_FACTOR", 1.0)
    prog = _script(
        tmp_path,
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'pass'])\n"
        "for i in range(2_000_000):\n    pass\n"
        "vals = [float(s) for s in '1 nan'.split()]\n",
    )
    r = trace_program(Program(str(prog)))
    assert r.exit_code == 1 and r.first.line is None and r.cause is None
    assert any("second run was stopped after" in n for n in r.notes)
    assert any("started other processes" in n for n in r.notes)


def test_an_in_place_op_is_not_described_by_its_own_result(tmp_path):
    """``s += x`` is read after it ran: ``s`` then holds the result, not the operand it was."""
    prog = _script(
        tmp_path,
        "import numpy as np\ns = np.array([30000, 60000], dtype=np.float16)\n"
        "x = np.full(2, 30000, dtype=np.float16)\nfor _ in range(2):\n    s += x\n",
    )
    r = trace_program(Program(str(prog)))
    assert (r.first.line, r.first.op, r.cause.id) == (5, "add", "overflow")
    assert [e for e, _ in r.first.operands] == ["x"]
    assert not any("already held" in e for e in r.cause.evidence)


def test_the_mean_of_an_empty_selection_is_a_division_by_zero_with_the_selection_shown(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nX = np.arange(8.0).reshape(4, 2)\nlabels = np.array([0, 0, 1, 1])\n"
        "C = np.array([X[labels == j].mean(axis=0) for j in range(3)])\n",
    )
    res, doc = trace_json(prog)
    assert doc["cause"]["id"] == "division_by_zero", doc["cause"]
    assert "`X[labels == j]` is empty (shape (0, 2))" in doc["cause"]["evidence"][0]
    done = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", str(prog)],
        capture_output=True,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert done.stderr.count("Mean of empty slice") == 1  # re-reading the line warns no more


def test_the_programs_warning_names_its_file_as_python_does(tmp_path):
    """python runs a script by its absolute path: its warnings and tracebacks show that path."""
    _script(tmp_path, "import numpy as np\nx = np.log(np.zeros(1))\n")
    env = os.environ | {"PYTHONPATH": str(ROOT)}

    def warning_lines(*cmd):
        done = subprocess.run(
            [sys.executable, *cmd, "prog.py"], cwd=tmp_path, capture_output=True, text=True, env=env
        )
        return [line for line in done.stderr.splitlines() if "RuntimeWarning" in line]

    want = warning_lines()
    assert want == [f"{tmp_path / 'prog.py'}:2: RuntimeWarning: divide by zero encountered in log"]
    assert warning_lines("-m", "nandoctor", "trace") == want


def test_a_nan_made_in_a_pool_worker_is_located_there_without_a_cause_claimed(tmp_path):
    """The worker's events are not watched: where it was first held, yes; 'came in as data', no."""
    prog = _script(
        tmp_path,
        "import multiprocessing as mp\nimport numpy as np\n\n"
        "def f(x):\n    y = np.array([x]) / np.array([x])\n    return float(y[0])\n\n"
        "if __name__ == '__main__':\n"
        "    with mp.get_context('fork').Pool(1) as pool:\n"
        "        scores = pool.map(f, [0.0, 1.0])\n    print(scores)\n",
    )
    r = trace_program(Program(str(prog)))
    assert r.exit_code == 1 and r.first.line == 5 and "child" in r.first.found_by
    # the whole trace, second run included, ends before a second run's time limit: the worker
    # that found it ended that run, which was not left waiting for it
    assert r.cause is None and r.seconds < RERUN_MIN_SECONDS
    assert any("started other processes" in n for n in r.notes)


@pytest.mark.parametrize(
    "handling",
    ['np.seterr(all="raise")', 'warnings.filterwarnings("error", category=RuntimeWarning)'],
)
def test_a_program_its_own_error_handling_stopped_says_where_and_why(tmp_path, handling):
    """No NaN was kept (the statement raised), so the program failed (exit 3), but the report
    says which op its own handling stopped, with the operands and the cause they show."""
    prog = _script(
        tmp_path,
        f"import warnings\nimport numpy as np\n{handling}\n\n"
        "def normalize(X):\n    mu, sd = X.mean(axis=0), X.std(axis=0)\n"
        "    return (X - mu) / sd\n\n"
        "X = np.c_[np.ones(8), np.arange(8.0)]\nprint(normalize(X))\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 3 and doc["first_nonfinite"] is None
    stop = doc["stopped_by"]
    assert (stop["line"], stop["op"], stop["function"]) == (7, "divide", "normalize")
    assert doc["cause"]["id"] == "division_by_zero"
    assert any("`sd` holds 1 exact zero" in e for e in doc["cause"]["evidence"])


def test_a_program_that_failed_otherwise_names_no_stopping_op(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nnp.seterr(all='raise')\ntry:\n    np.log(np.zeros(2))\n"
        "except FloatingPointError:\n    pass\nraise ValueError('unrelated')\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 3 and doc["stopped_by"] is None and doc["cause"] is None


ERROR_STATE_PER_CONTEXT = """\
import contextvars
import threading
import numpy as np

np.seterr(divide="ignore")
seen = []
t = threading.Thread(target=lambda: seen.append(np.geterr()["divide"]))
t.start()
t.join()

def raising():
    np.seterr(divide="raise")
    return np.geterr()["divide"]

inside = contextvars.copy_context().run(raising)
print(seen[0], inside, np.geterr()["divide"])
for bad in (42, "x"):
    try:
        np.seterrcall(bad)
    except TypeError as e:
        print("TypeError", e)
np.seterrcall(None)
np.seterr(divide="call")
try:
    np.array([1.0]) / 0
except NameError as e:
    print("NameError", e)
"""


def test_the_programs_error_state_is_per_thread_and_context_and_checked_as_numpy_does(tmp_path):
    """NumPy 2 keeps its error state per context: a new thread starts from the defaults, a
    copied context's np.seterr stays there; bad callbacks are refused in NumPy's words. The
    program prints the same under trace as under python."""
    prog = _script(tmp_path, ERROR_STATE_PER_CONTEXT)
    plain = subprocess.run([sys.executable, str(prog)], capture_output=True, text=True, check=True)
    assert plain.stdout.splitlines()[0] == "warn raise ignore"  # what python itself gives
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog)])
    assert res.stderr == plain.stdout + plain.stderr


def test_a_failure_of_nandoctors_own_examination_never_becomes_the_programs(tmp_path, monkeypatch):
    """The examination runs inside the program's NumPy op: a bug there is kept as a note, and
    the program goes on as under python."""
    import nandoctor.trace.evaluate as evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("examination bug")

    monkeypatch.setattr(evaluate, "read_line", broken)
    prog = _script(tmp_path, "import numpy as np\nx = np.log(np.zeros(2))\nprint('went on')\n")
    r = trace_program(Program(str(prog)))
    assert not r.program.failed and r.program.exit_code == 0
    assert any("nandoctor failed while examining" in n and "examination bug" in n for n in r.notes)


def test_an_eps_of_zero_on_the_next_line_of_its_statement_is_still_named(tmp_path):
    """The division's line holds only part of the statement: its roles are read from all of it."""
    prog = _script(
        tmp_path,
        "import numpy as np\neps = 0.0\nv = np.zeros(3)\ng = np.zeros(3)\n"
        "step = g / (np.sqrt(v)\n            + eps)\n",
    )
    r = trace_program(Program(str(prog)))
    assert r.exit_code == 1 and r.cause.id == "division_by_zero"
    assert any("`eps` is exactly 0" in e for e in r.cause.evidence), r.cause.evidence
    assert any("give `eps` a value" in a for a in r.advice), r.advice


def test_an_element_taken_out_of_a_placeholder_is_the_placeholder_still(tmp_path):
    """Bin edges written with -inf and inf, printed, then read an element or a pair at a time:
    the program's own constants, not data that came in."""
    prog = _script(
        tmp_path,
        "import numpy as np\nedges = np.array([-np.inf, 18.0, 35.0, np.inf])\n"
        "print('bins:', edges)\nlo = edges[0]\n"
        "for a, b in zip(edges[:-1], edges[1:]):\n    print(f'[{a}, {b})')\n",
    )
    res, doc = trace_json(prog)
    assert (res.exit_code, doc["status"], doc["first_nonfinite"]) == (0, "healthy", None)
    assert any("`edges` was given" in n and "placeholder" in n for n in doc["notes"]), doc["notes"]


def test_a_value_computed_from_a_placeholder_element_is_still_reported(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nedges = np.array([-np.inf, 1.0])\nlo = edges[0]\n"
        "x = np.float64(2.0)\nwith np.errstate(all='ignore'):\n    y = lo * 0 + x\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and doc["first_nonfinite"]["line"] == 6


def test_the_second_run_reads_the_same_stdin_as_the_first(tmp_path):
    """Data piped in with a missing value: the second run, which finds the line that let the NaN
    in, is given what the first read, so it names the reader's line, not a later one."""
    prog = _script(
        tmp_path,
        "import sys\nimport numpy as np\n\ndef main():\n"
        "    data = np.genfromtxt(sys.stdin, delimiter=',')\n"
        "    means = data.mean(axis=0)\n    print('means:', means)\n\nmain()\n",
    )
    res = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", "--format", "json", str(prog)],
        input="1,2\n3,\n5,6\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    doc = json.loads(res.stdout)
    assert res.returncode == 1 and doc["cause"]["id"] == "bad_input"
    assert (doc["first_nonfinite"]["line"], doc["first_nonfinite"]["variable"]) == (5, "data")


@pytest.mark.parametrize("op", ["acc *= np.float32(9.0)", "np.multiply(acc, 9.0, out=acc)"])
def test_an_in_place_op_that_overflows_has_its_growth_measured(tmp_path, op):
    """acc *= c overflowing at pass 41: once acc holds inf the op does not re-raise, so the
    second run measures the statement from its line's start, where acc is still the operand."""
    prog = _script(
        tmp_path,
        f"import numpy as np\nacc = np.ones(10, dtype=np.float32)\nfor i in range(45):\n    {op}\n",
    )
    r = trace_program(Program(str(prog)))
    assert (r.first.line, r.first.op, r.first.iteration) == (4, "multiply", 41)
    assert any("grew from" in e and "iteration 41" in e for e in r.cause.evidence)
    # acc *= 9 is a growth, not a training step: no learning rate to blame
    assert r.cause.id == "overflow" and r.first.loop["updates"] is False
    assert any("no training step" in e for e in r.cause.evidence)


def test_a_value_the_program_silenced_itself_is_reported_and_says_so(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nclicks, views = np.array([1.0, 0.0]), np.array([2.0, 0.0])\n"
        "with np.errstate(divide='ignore', invalid='ignore'):\n    ctr = clicks / views\n"
        "ctr[~np.isfinite(ctr)] = 0.0\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and doc["first_nonfinite"]["line"] == 4
    assert any("silenced" in n and "errors here itself" in n for n in doc["notes"]), doc["notes"]
    res, doc = trace_json(
        _script(tmp_path, "import numpy as np\nx = np.log(np.zeros(1))\n", "b.py")
    )
    assert not any("silenced" in n for n in doc["notes"])


def test_a_lambda_sigmoid_that_absorbs_its_overflow_is_not_a_failure(tmp_path):
    """The op ran in the lambda's frame: its body is what is re-read, as a def's return is."""
    prog = _script(
        tmp_path,
        "import numpy as np\nsigmoid = lambda x: 1 / (1 + np.exp(-x))\n"
        "p = sigmoid(np.array([-1000.0, 0.0, 3.0]))\n",
    )
    res, doc = trace_json(prog)
    assert (res.exit_code, doc["status"]) == (0, "warning")
    assert [w["id"] for w in doc["warnings"]] == ["saturation"]


def test_a_placeholder_iterated_listed_and_rebound_is_the_placeholder_still(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nedges = np.array([-np.inf, 0.0, np.inf])\nprint(edges)\n"
        "for e in edges:\n    last = e\nhist = np.full(3, np.nan)\ncurve = list(hist)\n",
    )
    res, doc = trace_json(prog)
    assert (res.exit_code, doc["status"], doc["first_nonfinite"]) == (0, "healthy", None)


def test_a_printed_inf_the_program_writes_as_a_constant_is_its_placeholder(tmp_path):
    """argparse's default=float('inf') ('no clipping'), printed in the Namespace."""
    prog = _script(
        tmp_path,
        "import argparse\np = argparse.ArgumentParser()\n"
        "p.add_argument('--clip', type=float, default=float('inf'))\n"
        "args = p.parse_args([])\nprint(args)\n",
    )
    res, doc = trace_json(prog)
    assert (res.exit_code, doc["status"], doc["first_nonfinite"]) == (0, "healthy", None)
    assert any("writes inf itself as a constant" in n and ":3" in n for n in doc["notes"])


def test_a_nan_from_the_data_in_a_loop_over_rows_has_its_pass_counted(tmp_path):
    """No op made it, so the line-traced second run finds it; its loop variable is a row, not a
    counter, so that run counts the loop's passes itself (the body's last line, checked as the
    header fires again, still belongs to the pass before)."""
    prog = _script(
        tmp_path,
        "import numpy as np\nraw = '1,2;3,4;5,x;7,8'\nrows = []\nfor text in raw.split(';'):\n"
        "    rows.append(np.genfromtxt([text], delimiter=','))\n"
        "acc = np.zeros(2)\nfor r in rows:\n    acc = acc + r\n",
    )
    r = trace_program(Program(str(prog)))
    assert r.exit_code == 1 and r.first.found_by == "second pass"
    # the first variable holding it: r, bound at the header of the loop over rows in its third
    # pass (appending to a list is not an assignment the second run reads)
    assert (r.first.line, r.first.variable, r.first.iteration) == (7, "r", 3)
    assert r.first.loop["line"] == 7


ENTROPY_IN_A_COMPREHENSION = """\
import numpy as np
def entropy(p):
    return -np.sum(p * np.log(p))
dists = [np.array([0.5, 0.5]), np.array([0.9, 0.1]), np.array([1.0, 0.0]), np.array([0.2, 0.8])]
ents = [entropy(d) for d in dists]
"""


def where_when(tmp_path, body: str):
    """Trace ``body``: its result and (line, iteration, loop line) of its first non-finite value."""
    r = trace_program(Program(str(_script(tmp_path, body))))
    return r, (r.first.line, r.first.iteration, r.first.loop["line"])


def test_a_comprehension_is_a_loop_and_its_pass_is_read_from_its_iterator(tmp_path):
    """The third distribution holds the 0 whose log is -inf: pass 3 of the comprehension, read
    without a second run (the comprehension's iterator says how many items it handed out)."""
    r, found = where_when(tmp_path, ENTROPY_IN_A_COMPREHENSION)
    assert found == (3, 3, 5) and not any("second run" in n for n in r.notes)


DICT_COMPREHENSION_OVER_ITEMS = """\
import numpy as np
per_class = {0: [0.3, 0.25], 1: [0.1], 2: [], 3: [0.9]}
means = {c: np.mean(v) for c, v in per_class.items()}
"""
COMPREHENSION_IN_AN_EPOCH_LOOP = """\
import numpy as np
W = [np.full(3, 100.0), np.full(3, 200.0)]
for epoch in range(1, 6):
    h = [np.exp(w * epoch) for w in W]
"""


@pytest.mark.parametrize(
    ("body", "found"),
    [
        # a dict's item iterator does not say its pass: the second run counts it (class 2)
        (DICT_COMPREHENSION_OVER_ITEMS, (3, 3, 3)),
        # exp(200 * 4) overflows in the comprehension in epoch 4: the epoch is what tells
        (COMPREHENSION_IN_AN_EPOCH_LOOP, (4, 4, 3)),
    ],
)
def test_the_pass_told_of_a_comprehension_and_of_a_loop_around_one(tmp_path, body, found):
    assert where_when(tmp_path, body)[1] == found


def test_the_loops_around_the_innermost_are_told_with_their_passes(tmp_path):
    """The batch loop's pass alone (4) hides the epoch (31): both are said, innermost first."""
    body = (
        "import numpy as np\n"
        "rng = np.random.default_rng(12)\n"
        "X = rng.normal(size=(40, 2))\n"
        "y = X @ np.array([2.0, -1.0])\n"
        "w = np.zeros(2)\n"
        "for epoch in range(40):\n"
        "    for b in range(0, 40, 10):\n"
        "        xb, yb = X[b:b+10], y[b:b+10]\n"
        "        w -= 0.9 * 2 * xb.T @ (xb @ w - yb)\n"
        "        loss = np.mean((X @ w - y) ** 2)\n"
    )
    r, found = where_when(tmp_path, body)
    prog = tmp_path / "prog.py"
    assert found == (10, 4, 7)
    assert r.first.loop["outer"] == [
        {"file": str(prog), "line": 6, "iteration": 31, "updates": True}
    ]
    res = CliRunner().invoke(main, ["trace", str(prog)])
    assert f"iteration 4 of the loop at {prog}:7, in iteration 31 of the loop at {prog}:6" in (
        " ".join(res.output.split())
    )


def test_a_value_computed_only_from_the_programs_own_constants_is_not_bad_input(tmp_path):
    """An early-stopping loop: ``lowest - x`` is inf while ``lowest`` is still the program's own
    inf, and a log it fills leaves NaN slots it wrote itself. Nothing came in, nothing was made:
    healthy, with the value computed from the sentinel named in a note."""
    prog = _script(
        tmp_path,
        "import numpy as np\nlog = np.full(8, np.nan)\nlowest = float('inf')\n"
        "for k in range(3):\n    x = 2.0 - k * 0.5\n    log[k] = x\n    gap = lowest - x\n"
        "    if gap > 0.1:\n        lowest = x\nprint(lowest)\n",
    )
    res, doc = trace_json(prog)
    assert (res.exit_code, doc["status"], doc["cause"]) == (0, "healthy", None)
    assert any("`gap`" in n and "own constants (`lowest`)" in n for n in doc["notes"])
    # `log` still holds its NaN slots: the verdict says so, not that nothing was left
    assert "but the program's own placeholders" in doc["notes"][0], doc["notes"][0]


@pytest.mark.parametrize(
    ("body", "line", "op", "no_flag"),
    [
        # Python floats overflow to inf silently: no NumPy flag, yet the line made it
        (
            "w = 2.0\nfor k in range(30):\n    g = w * w * w\n    w = w - g\n",
            3,
            "multiply",
            "Python",
        ),
        # made in a function's return, called from the loop
        (
            "def cube(v):\n    return v * v * v\n\nw = 2.0\nfor k in range(30):\n"
            "    w = w - cube(w)\n",
            2,
            "multiply",
            "Python",
        ),
        # einsum's sum of products overflows without a flag; the subtract after it flags inf-inf
        (
            "import numpy as np\nb = np.full((3, 2), 1e250)\ng = np.einsum('ij,ij->i', b, b)\n"
            "d = g - g\n",
            3,
            "einsum",
            "np.einsum",
        ),
    ],
)
def test_an_inf_made_from_finite_numbers_without_a_flag_is_made_there_not_data(
    tmp_path, body, line, op, no_flag
):
    res, doc = trace_json(_script(tmp_path, body))
    f = doc["first_nonfinite"]
    assert res.exit_code == 1 and (f["line"], f["op"], f["kind"]) == (line, op, "overflow")
    assert f["no_flag"].startswith(no_flag) and f["found_by"] == "second pass"
    assert f["iteration"] == (7 if f["loop"] else None)  # |w| 1.3e188 at 7: w * w overflows
    assert any("raised no NumPy floating-point flag" in e for e in doc["cause"]["evidence"])
    if f["loop"]:  # w = w - g steps w: its growth over the passes, measured by the second run
        assert doc["cause"]["id"] == "exploding_gradient"
        grew = [e for e in doc["cause"]["evidence"] if "grew from" in e]
        assert grew and "at iteration 1 " in grew[0] and "iteration 7" in grew[0]
    else:
        assert doc["cause"]["id"] == "overflow"


@pytest.mark.parametrize(("ending", "code"), [("sys.exit(0)", 0), ("sys.exit(4)", 4)])
def test_a_nan_held_when_the_program_calls_sys_exit_is_found(tmp_path, ending, code):
    """sys.exit is how a script ends, not a failure of nandoctor's reading: the variables it
    ends with are looked at as for a normal end or a raise, and its exit code is kept."""
    prog = _script(
        tmp_path,
        "import sys\nimport numpy as np\nvals = np.array([float(t) for t in '1 nan 2'.split()])\n"
        f"if np.isnan(vals).any():\n    {ending}\n",
    )
    res, doc = trace_json(prog)
    assert res.exit_code == 1 and doc["program"]["exit_code"] == code
    assert (doc["first_nonfinite"]["line"], doc["cause"]["id"]) == (3, "bad_input")


def test_the_growth_history_is_that_of_the_call_whose_loop_failed(tmp_path):
    """A rate search calls fit(lr) several times: the stable calls' iterations are not mixed
    into the growth of the call that overflowed."""
    prog = _script(
        tmp_path,
        "import numpy as np\n\ndef fit(lr, n):\n    w = 0.0\n    k = 0\n    while k < n:\n"
        "        r = 2.0 * w - 7.0\n        sq = np.float64(r) ** 2\n        w = w - lr * 4.0 * r\n"
        "        k += 1\n    return sq\n\nfor lr in [0.05, 0.02, 0.9]:\n    print(lr, fit(lr, 300))\n",
    )
    r = trace_program(Program(str(prog)))
    assert (r.first.line, r.first.op) == (8, "power") and r.cause.id == "exploding_gradient"
    grew = [e for e in r.cause.evidence if "grew from" in e]
    assert (
        grew
        and "at iteration 1 " in grew[0]
        and "no growth was needed" not in " ".join(r.cause.evidence)
    )
    assert f"iteration {r.first.iteration} " in grew[0]


def test_each_second_run_is_said_to_write_what_the_program_writes_again(tmp_path):
    """The program appends to a log: a second run (here to count a while loop's passes) appends
    again, and the report says so, in its notes, as often as it happened."""
    prog = _script(
        tmp_path,
        "import numpy as np\nwith open('runs.log', 'a') as f:\n    f.write('ran\\n')\n"
        "x = np.array([1.0, 0.0])\nk = 0\nwhile k < 2:\n    y = 1.0 / x\n    k += 1\n",
    )
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        res, doc = trace_json(prog)
        healthy, healthy_doc = trace_json(_script(tmp_path, "x = 1.0\n", "ok.py"))
        text = CliRunner().invoke(main, ["trace", str(prog)]).stdout
    finally:
        os.chdir(old)
    runs = (tmp_path / "runs.log").read_text().count("ran") // 2  # the text trace ran it too
    again = [n for n in doc["notes"] if "run a second time" in n and "written again" in n]
    assert res.exit_code == 1 and len(again) == runs - 1 >= 1
    assert not any("second time" in n for n in healthy_doc["notes"])
    assert "written again" in text


def test_an_inf_given_on_the_command_line_and_printed_back_is_not_the_programs(tmp_path):
    prog = _script(
        tmp_path,
        "import argparse\nimport numpy as np\np = argparse.ArgumentParser()\n"
        "p.add_argument('--cap', type=float, default=1.0)\nargs = p.parse_args()\nprint(args)\n"
        "print('note: cap=inf disables the cap')\nw = np.ones(2)\n"
        "print('w', np.minimum(w, args.cap))\n",
    )
    res = CliRunner().invoke(main, ["trace", "--format", "json", str(prog), "--cap", "inf"])
    doc = json.loads(res.stdout)
    assert (res.exit_code, doc["status"], doc["first_nonfinite"]) == (0, "healthy", None)
    assert any("command line (`--cap inf`)" in n for n in doc["notes"]), doc["notes"]
    assert not any("second time" in n for n in doc["notes"])


def test_an_op_meeting_the_programs_own_mask_needs_no_second_run(tmp_path):
    """scores - scores.max() of a fully -inf row: the mask explains the -inf the subtract met
    (its max is computed from it), so no run looks for where it appeared."""
    inline = FULLY_MASKED_ROW.replace(
        "m = scores.max(axis=-1, keepdims=True)\ne = np.exp(scores - m)",
        "e = np.exp(scores - scores.max(axis=-1, keepdims=True))",
    )
    res, doc = trace_json(_script(tmp_path, inline))
    assert res.exit_code == 1 and doc["first_nonfinite"]["line"] == 6
    assert doc["cause"]["id"] == "bad_input" and "placeholder" in doc["cause"]["summary"]
    assert not any("second time" in n for n in doc["notes"]), doc["notes"]


def test_a_nan_computed_only_from_a_placeholder_and_kept_is_not_said_to_come_from_data(tmp_path):
    prog = _script(
        tmp_path,
        "import numpy as np\nscores = np.full(4, np.nan)\nscores[0] = 0.5\n"
        "total = scores.sum()\nprint('total', total)\n",
    )
    res, doc = trace_json(prog)
    f = doc["first_nonfinite"]
    assert res.exit_code == 1 and (f["line"], f["variable"]) == (4, "total")
    assert f["computed_from"] == ["scores"]
    assert not any(
        "data" in e and "placeholder, not data" not in e for e in doc["cause"]["evidence"]
    )
    assert not any("check the data" in a for a in doc["advice"])


def test_a_kept_nan_from_a_placeholder_is_reported_however_many_came_before_it(tmp_path):
    """Many values computed from a sentinel and dropped, then one from a NaN placeholder kept
    to the end: the notes name a few, the kept one is still found, and huge Python ints read
    by a statement do not stop the search."""
    gaps = "".join(f"g{i} = top - {i}\n" for i in range(8))
    prog = _script(
        tmp_path,
        "import numpy as np\ntop = np.inf\nslots = np.full(3, np.nan)\nn = 10**400\nn2 = n * 2\n"
        f"{gaps}avg = slots.mean()\n",
    )
    res, doc = trace_json(prog)
    f = doc["first_nonfinite"]
    assert res.exit_code == 1 and (f["variable"], f["computed_from"]) == ("avg", ["slots"])


def test_an_inf_made_by_a_call_not_re_run_is_that_calls_with_no_cause_claimed(tmp_path):
    """A library call on finite numbers returned inf without a flag: nandoctor does not re-run
    it, so it names the call and the finite inputs, says which op and why are unknown, and
    claims no cause -- not bad input."""
    prog = _script(
        tmp_path,
        "import functools\nimport operator\nside = 1e200\n"
        "area = functools.reduce(operator.mul, (side, side))\nprint(area - area)\n",
    )
    res, doc = trace_json(prog)
    f = doc["first_nonfinite"]
    assert res.exit_code == 1 and (f["line"], f["op"], f["kind"]) == (
        4,
        "functools.reduce",
        "silent",
    )
    assert "does not re-run" in f["no_flag"] and doc["cause"] is None
    assert "made it" in doc["notes"][0] and "unknown" in doc["notes"][0]


SENTINEL_IN_NUMPY_SCALARS = """\
import numpy as np
rng = np.random.default_rng(1)
X = rng.normal(size=(60, 4)); y = X @ np.array([1.0, -2.0, 0.5, 3.0])
w = np.zeros(4)
best = np.inf
for epoch in range(50):
    w -= 0.05 * 2 * X.T @ (X @ w - y) / len(y)
    val = np.mean((X @ w - y) ** 2)
    rel = (best - val) / best  # inf/inf = nan on the first epoch only
    if val < best:
        best = val
print(f"best {best:.3g}, last rel {rel:.3g}")
"""


def test_a_flagged_nan_from_a_sentinel_that_does_not_last_is_a_note(tmp_path):
    """With np.float64 values, inf / inf raises a flag at epoch 1 (Python floats raise none); the
    NaN is replaced at epoch 2 and nothing holds one at the end: healthy, as without the flag.
    The RuntimeWarning's echo of that source line (its comment says 'nan') is code, not output."""
    res, doc = trace_json(_script(tmp_path, SENTINEL_IN_NUMPY_SCALARS))
    assert (res.exit_code, doc["status"], doc["first_nonfinite"]) == (0, "healthy", None)
    assert any("did not last" in n and ":9" in n for n in doc["notes"])
    assert not any("printed" in n for n in doc["notes"])


def test_a_comprehension_around_a_training_loop_tells_which_item(tmp_path):
    """[train(lr) for lr in rates]: the third rate diverges; its training loop's pass alone would
    not say which rate."""
    body = (
        "import numpy as np\n"
        "X = np.array([[3.0, 1.0], [1.0, 2.0]]); y = np.array([1.0, -1.0])\n"
        "def train(lr):\n"
        "    w = np.zeros(2)\n"
        "    for step in range(1, 2000):\n"
        "        err = X @ w - y\n"
        "        w -= lr * X.T @ err\n"
        "    return w\n"
        "out = [train(lr) for lr in [0.01, 0.1, 1.0]]\n"
    )
    r, _ = where_when(tmp_path, body)
    assert r.first.loop["line"] == 5
    assert [(o["line"], o["iteration"]) for o in r.first.loop["outer"]] == [(9, 3)]


def test_an_operand_given_twice_is_described_once(tmp_path):
    """np.einsum('i,i->', err, err) reads err twice: one description of it, not two."""
    body = (
        "import numpy as np\n"
        "err = np.full(4, 1e160)\n"
        "for k in range(3):\n"
        "    loss = np.einsum('i,i->', err, err) * np.float64(k)\n"
    )
    r, _ = where_when(tmp_path, body)
    assert [e for e, _ in r.first.operands].count("err") == 1
