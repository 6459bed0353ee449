"""``nandoctor trace`` at the level of the process: however the program ends (``os._exit``,
``os.abort``, atexit handlers, Ctrl-C, SIGTERM, a failure), the report says what was found, on
the stream and with the exit code docs/output.md promises. Run as a real process: what is at
stake is what reaches the terminal and the exit status, after the interpreter has ended."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

NAN_THEN = "import os\nimport numpy as np\n\na = np.zeros(2)\nr = a / a\n"  # the NaN: line 5


def trace(tmp_path: Path, body: str, *args: str, fmt: str = "json", **kw):
    prog = tmp_path / "prog.py"
    prog.write_text(body)
    return subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", "--format", fmt, str(prog), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        **kw,
    )


def test_os_exit_still_reports_the_nan_it_made_with_exit_1(tmp_path):
    done = trace(tmp_path, NAN_THEN + "print(r, flush=True)\nos._exit(0)\n")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "nonfinite" and doc["first_nonfinite"]["line"] == 5
    assert doc["program"]["exit_code"] == 0
    assert any("os._exit(0)" in n for n in doc["notes"])
    assert "[nan nan]" in done.stderr  # the program's own output, in JSON mode


def test_os_exit_with_no_nan_is_a_failure_when_its_code_says_so(tmp_path):
    done = trace(tmp_path, "import os\nos._exit(7)\n", fmt="text")
    assert done.returncode == 3, done.stderr
    assert "exited with code 7" in done.stdout


def test_os_abort_is_reported_as_a_failed_program_not_a_crash(tmp_path):
    done = trace(tmp_path, NAN_THEN + "os.abort()\n")
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    assert doc["first_nonfinite"]["line"] == 5
    assert doc["program"]["exit_code"] == 128 + signal.SIGABRT


def test_a_forked_worker_still_ends_with_os_exit_as_it_asks(tmp_path):
    """multiprocessing's fork workers end with os._exit: in them it is the real one."""
    body = (
        "import multiprocessing as mp\nimport numpy as np\n\n"
        "def f(x):\n    return float(np.sqrt(x))\n\n"
        "if __name__ == '__main__':\n"
        "    with mp.get_context('fork').Pool(2) as pool:\n"
        "        print(sum(pool.map(f, [1.0, 4.0, 9.0])))\n"
    )
    done = trace(tmp_path, body, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "healthy"
    assert "6.0" in done.stderr


ATEXIT = (
    "import atexit\n\n"
    "atexit.register(lambda: print('saving checkpoint... done'))\n"
    "print('training')\n"
)


def test_atexit_output_stays_out_of_the_json_document(tmp_path):
    done = trace(tmp_path, ATEXIT)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "healthy"  # one document, nothing after it
    assert "saving checkpoint... done" in done.stderr


def test_atexit_output_comes_before_the_text_report(tmp_path):
    done = trace(tmp_path, ATEXIT, fmt="text")
    assert done.returncode == 0, done.stderr
    assert done.stdout.index("saving checkpoint... done") < done.stdout.index("healthy")


def test_atexit_handlers_run_once_in_reverse_order_and_a_raise_does_not_stop_the_rest(tmp_path):
    body = (
        "import atexit\n\n"
        "atexit.register(print, 'first registered')\n"
        "@atexit.register\ndef boom():\n    raise ValueError('in a handler')\n"
        "atexit.register(print, 'last registered')\n"
        "def gone():\n    print('unregistered')\n"
        "atexit.register(gone)\natexit.unregister(gone)\n"
    )
    done = trace(tmp_path, body, fmt="text")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("last registered") == 1 and out.count("first registered") == 1
    assert out.index("last registered") < out.index("first registered") < out.index("healthy")
    assert "unregistered" not in out
    assert "ValueError: in a handler" in done.stderr


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_while_the_program_runs_exits_128_plus_it_with_a_partial_on_stderr(
    tmp_path, sig, code
):
    body = NAN_THEN + (
        f"import signal\nimport time\n\nos.kill(os.getpid(), signal.{sig})\ntime.sleep(30)\n"
    )
    done = trace(tmp_path, body, timeout=60, preexec_fn=_python_signals)
    assert done.returncode == code, done.stderr
    assert done.stdout == ""  # no report on stdout: any there is a whole one
    assert "prog.py:5" in done.stderr  # what was found so far
    assert "— partial:" in done.stderr and f"interrupted by {sig}" in done.stderr


def test_ctrl_c_during_the_second_run_stops_it_and_exits_130(tmp_path):
    """The loop's iteration needs a second run; the program, run again, waits: Ctrl-C then."""
    second = tmp_path / "second.txt"
    body = (
        "import os\nimport time\nimport numpy as np\n\n"
        f"SECOND = {str(second)!r}\n"
        "if os.path.exists(SECOND + '.first'):\n"
        "    with open(SECOND, 'w') as f:\n        f.write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "open(SECOND + '.first', 'w').close()\n"
        "w = np.array([1.0])\nstep = 0\n"
        "while step < 2000:\n    w = w * 10.0\n    step += 1\n"
    )
    prog = tmp_path / "prog.py"
    prog.write_text(body)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nandoctor", "trace", "--format", "json", str(prog)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_python_signals,
    )
    try:
        deadline = time.monotonic() + 60
        while not (second.exists() and second.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        rerun = int(second.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out == ""
    assert "prog.py:14 in <module>" in err and "— partial:" in err
    with pytest.raises(ProcessLookupError):  # the second run was stopped too
        for _ in range(50):
            os.kill(rerun, 0)
            time.sleep(0.1)


def _python_signals() -> None:
    """In the child: SIGINT as an interactive shell leaves it (a test runner may ignore it)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.mark.parametrize(
    "ending",
    [
        "import sys\nsys.exit(5)\n",
        "raise ValueError('bad config')\n",
        "import numpy as np\nnp.seterr(all='raise')\nnp.log(np.zeros(1))\n",
    ],
)
def test_a_failed_program_has_status_failed_as_its_exit_code_3_says(tmp_path, ending):
    done = trace(tmp_path, ending)
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "failed" and doc["program"]["exit_code"] != 0


def test_seconds_is_the_wall_time_of_the_whole_trace_second_run_included(tmp_path):
    """The program takes 0.4 s, and runs twice (a while loop's iteration is counted again)."""
    body = (
        "import time\nimport numpy as np\n\ntime.sleep(0.4)\n"
        "w = np.array([1.0])\nstep = 0\nwhile step < 2000:\n    w = w * 10.0\n    step += 1\n"
    )
    started = time.perf_counter()
    done = trace(tmp_path, body, timeout=120)
    wall = time.perf_counter() - started
    doc = json.loads(done.stdout)
    assert any("run a second time" in n for n in doc["notes"])
    assert 0.8 <= doc["seconds"] <= wall


@pytest.mark.parametrize("packed", ["folder", "zip"])
def test_a_folder_or_zip_with_main_runs_as_python_runs_it(tmp_path, packed):
    """``python DIR`` / ``python APP.zip`` run its __main__.py, with DIR first on sys.path."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "helper.py").write_text("import numpy as np\n\ndef norm(x):\n    return x / x.sum()\n")
    (app / "__main__.py").write_text(
        "import numpy as np\nfrom helper import norm\n\nprint(norm(np.zeros(2)))\n"
    )
    target = app
    if packed == "zip":
        import zipfile

        target = tmp_path / "app.zip"
        with zipfile.ZipFile(target, "w") as z:
            for f in app.iterdir():
                z.write(f, f.name)
    done = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", "--format", "json", str(target)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    first = json.loads(done.stdout)["first_nonfinite"]
    assert first["function"] == "norm" and first["line"] == 4 and first["op"] == "divide"
    assert first["file"].endswith("helper.py")


def test_a_folder_without_main_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "nandoctor", "trace", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "no __main__.py" in done.stderr


def _passes_until_overflow(rate: float) -> int:
    import numpy as np

    w, step = np.array([1.0, 0.5]), 0
    with np.errstate(over="ignore"):
        while np.isfinite(w).all():
            w = w + w * rate
            step += 1
    return step


def test_a_long_while_loop_gets_its_exact_iteration_from_the_second_run(tmp_path):
    """300,000 passes: the second run counts them all and measures the operands at a few (its
    time limit was hit when it measured them at each: 'iteration unknown')."""
    body = (
        "import numpy as np\n\nw = np.array([1.0, 0.5])\nstep = 0\n"
        "while step < 300000:\n    g = w * 0.00237\n    w = w + g\n    step += 1\n"
    )
    done = trace(tmp_path, body, timeout=300)
    first = json.loads(done.stdout)["first_nonfinite"]
    assert (first["line"], first["op"]) == (7, "add")
    assert first["iteration"] == _passes_until_overflow(0.00237)
    cause = json.loads(done.stdout)["cause"]
    assert any(f"at iteration {first['iteration']}" in e for e in cause["evidence"])


def test_a_second_run_cut_short_says_so_rather_than_that_the_program_changed(tmp_path, monkeypatch):
    import nandoctor.trace.rerun as rerun
    from nandoctor.trace.runner import Program
    from nandoctor.trace.session import trace_program

    monkeypatch.setattr(rerun, "launch", lambda *a, **k: {"timed_out": 12.5})
    prog = tmp_path / "prog.py"
    prog.write_text(
        "import numpy as np\n\nw = np.array([1.0])\nwhile True:\n    w = w * 10.0\n"
        "    if not np.isfinite(w).all():\n        break\n"
    )
    first = trace_program(Program(str(prog))).first
    assert first.iteration is None
    assert "stopped after 12.5 s" in first.iteration_note
    assert "did not reach" not in first.iteration_note


def test_a_process_the_program_forks_ends_on_sigterm_as_under_python(tmp_path):
    """A forked child is the program's: SIGTERM ends it by the signal, as under python, not by
    the trace's unwinding into a report of its own (Pool.terminate then waited on a worker that
    never ended: a hang, 1 run in about 45)."""
    body = (
        "import os, signal, time\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    time.sleep(30)\n"
        "    os._exit(0)\n"
        "time.sleep(0.2)\n"
        "os.kill(child, signal.SIGTERM)\n"
        "_, status = os.waitpid(child, 0)\n"
        "print('child', os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM)\n"
    )
    done = trace(tmp_path, body, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "healthy"
    assert "child True" in done.stderr
    assert "interrupted" not in done.stderr
