"""``nandoctor trace`` on programs written in ways the examples are not: several statements on a
line, a program that replaces its streams or changes directory, odd ways of naming or ending a
program. Each test states what python itself does, and what the report must say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def run_trace(tmp_path: Path, body: str, *args: str, fmt: str = "json", name: str = "prog.py"):
    """``nandoctor trace`` in a process of its own, started in ``tmp_path``."""
    (tmp_path / name).write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", "--format", fmt, name, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )


def report(done: subprocess.CompletedProcess) -> dict:
    assert done.stdout, f"no report on stdout (rc {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout)


# -- several statements on one line: each is evaluated and labelled on its own

GROWING = """\
import numpy as np
w = np.float64(1.0)
step = 0
while step < 100000:
{body}
print("done")
"""


def test_an_overflow_kept_by_one_of_several_statements_on_a_line_is_located(tmp_path):
    """``w = w + g`` keeps the Inf in ``w``: the statements beside it on the line do not absorb
    it. Located as the same program with one statement per line is, at the same pass."""
    one_line = report(
        run_trace(tmp_path, GROWING.format(body="    g = w * 1.5; w = w + g; step += 1"))
    )
    apart = report(
        run_trace(
            tmp_path,
            GROWING.format(body="    g = w * 1.5\n    w = w + g\n    step += 1"),
            name="apart.py",
        )
    )
    assert apart["status"] == "nonfinite" and apart["first_nonfinite"]["line"] == 6
    first = one_line["first_nonfinite"]
    assert one_line["status"] == "nonfinite", one_line["notes"]
    assert (first["line"], first["op"], first["kind"]) == (5, "add", "overflow")
    assert first["source"] == "w = w + g"  # the statement, not the whole line
    assert first["iteration"] == apart["first_nonfinite"]["iteration"] > 700
    assert one_line["cause"]["id"] == apart["cause"]["id"] == "exploding_gradient"


@pytest.mark.parametrize("after", ["print(r); os._exit(0)", "print(os.getpid() > 0)"])
def test_the_op_of_a_line_of_several_statements_is_read_from_the_one_that_ran(tmp_path, after):
    """``r = a / a; print(r); os._exit(0)``: the NaN came from the divide, never from a call
    beside it on the line (nor is that call repeated to find out)."""
    body = f"import os\nimport numpy as np\na = np.zeros(3)\nr = a / a; {after}\n"
    doc = report(run_trace(tmp_path, body))
    first = doc["first_nonfinite"]
    assert (first["line"], first["op"], first["kind"], first["value"]) == (
        4,
        "divide",
        "invalid",
        "nan",
    )
    assert first["source"] == "r = a / a"
    assert doc["cause"]["id"] == "division_by_zero"


def test_an_absorbed_statement_beside_a_kept_one_does_not_hide_it(tmp_path):
    """``e = np.exp(x); s = 1 / (1 + np.exp(x))``: the second statement absorbs its Inf, the
    first keeps its own; each is counted and judged apart (never an all-clear)."""
    body = (
        "import numpy as np\nx = np.array([800.0, 1.0])\n"
        "e = np.exp(x); s = 1 / (1 + np.exp(x))\nprint(s)\n"
    )
    doc = report(run_trace(tmp_path, body))
    assert doc["status"] == "nonfinite", doc["notes"]
    first = doc["first_nonfinite"]
    assert (first["line"], first["op"], first["source"]) == (3, "exp", "e = np.exp(x)")
    events = sorted((e["line"], e.get("column"), e["count"]) for e in doc["events"])
    assert events == [(3, 1, 1), (3, 16, 1)]  # one site per statement, by its column


def test_an_inf_made_without_a_flag_on_a_line_of_several_statements_names_its_statement(tmp_path):
    """Python floats raise no flag: the line-traced second run re-evaluates the line's
    statements in order, each on what the ones before it assigned, and names the one that made
    the Inf (``w = w + g``), not a call beside it (``xs.append(d)``)."""
    body = (
        "import numpy as np\nw = 1.0\nxs = []\nfor i in range(2000):\n"
        "    g = w * 1.5; w = w + g; d = w - w; xs.append(d)\narr = np.array(xs)\n"
    )
    doc = report(run_trace(tmp_path, body))
    first = doc["first_nonfinite"]
    assert doc["status"] == "nonfinite", doc["notes"]
    assert (first["line"], first["op"], first["value"]) == (5, "add", "inf")
    assert first["source"] == "w = w + g" and first["no_flag"] == "Python float arithmetic"


# -- what the program does to its process does not reach the report

LOG_ZERO = "import numpy as np\nx = np.log(np.zeros(2))\n"


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize(
    "hostile",
    [
        "import sys, io\nsys.stdout = io.StringIO()\nsys.stderr = None\n",
        "import sys\nsys.stdout.close()\n",
        "import os\nn = os.open(os.devnull, os.O_WRONLY)\nos.dup2(n, 1)\nos.dup2(n, 2)\n",
    ],
    ids=["replaced", "closed", "descriptors"],
)
def test_the_report_reaches_the_stdout_nandoctor_was_given_whatever_the_program_did(
    tmp_path, fmt, hostile
):
    done = run_trace(tmp_path, LOG_ZERO + hostile, fmt=fmt)
    assert done.returncode == 1, done.stderr
    if fmt == "json":
        assert report(done)["first_nonfinite"]["line"] == 2
    else:
        assert "first -inf created by log" in done.stdout and "prog.py:2" in done.stdout


def test_a_program_that_changes_directory_is_shown_with_its_paths_as_given(tmp_path):
    """``os.chdir("/")``: paths stay relative to where nandoctor was started, in the text and
    the JSON, and the second run (to count the while loop's passes) still finds the program."""
    body = (
        "import os\nimport numpy as np\n\n\ndef grow(w, step=0):\n    while step < 2000:\n"
        "        w = w * 2.5\n        step += 1\n\nos.chdir('/')\ngrow(np.float64(1.0))\n"
    )
    doc = report(run_trace(tmp_path, body))
    first = doc["first_nonfinite"]
    assert (first["file"], first["line"], first["op"]) == ("prog.py", 7, "multiply")
    assert [(f["file"], f["line"]) for f in first["stack"]] == [("prog.py", 7), ("prog.py", 11)]
    assert first["loop"]["file"] == "prog.py" and first["iteration"] == 775
    assert {e["file"] for e in doc["events"]} == {"prog.py"}
    text = run_trace(tmp_path, body, fmt="text").stdout
    assert "where  prog.py:7 in grow" in text, text


# -- what a call nandoctor does not run is given is still read


def test_the_mean_of_an_empty_array_printed_is_a_division_by_zero_not_an_overflow(tmp_path):
    """``print(v.mean())``: print is not run again, but what it is given is, as Python
    evaluates it first: the mean of nothing is 0 / 0 (NumPy warns "Mean of empty slice")."""
    doc = report(run_trace(tmp_path, "import numpy as np\nv = np.array([])\nprint(v.mean())\n"))
    first = doc["first_nonfinite"]
    assert (first["line"], first["op"], first["value"]) == (3, "mean", "nan")
    assert first["operands"][0]["expr"] == "v" and first["operands"][0]["size"] == 0
    assert doc["cause"]["id"] == "division_by_zero"
    assert "empty" in doc["cause"]["evidence"][0]


def test_a_printed_value_an_inf_was_absorbed_into_is_not_a_failure(tmp_path):
    """``print(1 / (1 + np.exp(x)))`` prints 0: the Inf stayed inside the statement, as it does
    in ``p = 1 / (1 + np.exp(x))``; ``print("loss", np.exp(x))`` is given the Inf itself."""
    head = "import numpy as np\nx = np.array([800.0])\nprint(1 / (1 + np.exp(x)))\n"
    done = run_trace(tmp_path, head)
    doc = report(done)
    assert done.returncode == 0 and doc["first_nonfinite"] is None, doc["notes"]
    assert any(
        "exp" in n and "absorbed" in n
        for n in doc["notes"] + [w["summary"] for w in doc["warnings"]]
    )
    doc = report(run_trace(tmp_path, head + 'print("loss", np.exp(x))\n'))
    assert doc["status"] == "nonfinite" and doc["first_nonfinite"]["line"] == 4


# -- how the program is named and how it ends, as python says it


def test_a_package_without_main_is_a_usage_error_worded_as_python_words_it(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("raise SystemExit('imported: it must not run')\n")
    done = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", "-m", "pkg"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "No module named pkg.__main__; 'pkg' is a package and cannot be directly executed"
        )
    ), done.stderr
    assert "Traceback" not in done.stderr and "imported" not in done.stderr


@pytest.mark.parametrize(
    ("ending", "status"),
    [("sys.exit(300)", 44), ("sys.exit(-1)", 255), ("os._exit(300)", 44), ("sys.exit(256)", 0)],
)
def test_the_exit_code_reported_is_the_one_the_process_would_end_with(tmp_path, ending, status):
    body = f"import os, sys\n{ending}\n"
    (tmp_path / "plain.py").write_text(body)
    python = subprocess.run([sys.executable, "plain.py"], cwd=tmp_path, check=False, timeout=60)
    assert python.returncode == status  # what python itself ends with
    done = run_trace(tmp_path, body)
    doc = report(done)
    assert doc["program"]["exit_code"] == status
    assert done.returncode == (3 if status else 0)


# -- watching what the program prints costs little


def test_printed_lines_without_nan_or_inf_are_not_judged_one_by_one(monkeypatch):
    """A program that prints a lot: lines that do not hold "nan" or "inf" are searched in bulk,
    never judged line by line (the judging is what made such a program 5x slower)."""
    import io

    from nandoctor.trace import runner

    judged = []
    real = runner.value_spans
    monkeypatch.setattr(runner, "value_spans", lambda line: judged.append(line) or real(line))
    seen = runner.Outcome()
    out = runner.WatchedStream(io.StringIO(), seen)
    for i in range(20_000):  # print("x" * 50, i): four writes each
        for part in ("x" * 50, " ", str(i), "\n"):
            out.write(part)
    assert judged == [] and seen.printed_nonfinite is None
    out.write("loss: ")  # past many bulk searches, a value is still found, its line judged
    out.write(str(float("nan")))
    out.write("\n")
    line = "loss: " + "nan"  # (not a literal of this file: that would be prose it wrote)
    assert seen.printed_nonfinite == line and judged == [line]


def test_a_nan_split_across_writes_and_buffers_is_still_found():
    import io

    from nandoctor.trace import runner

    seen = runner.Outcome()
    out = runner.WatchedStream(io.StringIO(), seen)
    out.write("y" * (runner.WatchedStream.CHUNK - 3) + "\nloss: n")  # a bulk search falls here
    out.write("a")
    out.write("n\nmore\n")
    out.end()
    assert seen.printed_nonfinite == "loss: " + "nan"


@pytest.mark.parametrize("how", ["folder", "module"])
def test_html_never_replaces_the_program_it_traces(tmp_path, how):
    """``--html`` onto the program's own source -- a folder's __main__.py, or the file a
    ``-m MODULE`` runs -- is refused before the program runs, and the source is kept."""
    source = "import numpy as np\nprint(np.log(np.zeros(1)))\n"
    if how == "folder":
        (tmp_path / "app").mkdir()
        target = tmp_path / "app" / "__main__.py"
        args = ["--html", str(target), str(tmp_path / "app")]
    else:
        target = tmp_path / "mod1.py"
        args = ["--html", "mod1.py", "-m", "mod1"]
    target.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "refusing to overwrite it" in done.stderr
    assert target.read_text() == source
