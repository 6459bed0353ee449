"""The CLI through click's CliRunner: exit codes, one JSON document, errors without tracebacks."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nandoctor import __version__
from nandoctor.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_version_and_help():
    r = invoke("--version")
    assert r.exit_code == 0 and __version__ in r.output
    for args in (
        ["-h"],
        ["run", "--help"],
        ["sweep", "-h"],
        ["check", "-h"],
        ["fix", "-h"],
        ["schema", "-h"],
    ):
        r = invoke(*args)
        assert r.exit_code == 0, args
        assert "Example" in r.output, args  # every command's help ends with examples


def test_python_dash_m():
    r = subprocess.run(
        [sys.executable, "-m", "nandoctor", "--version"], capture_output=True, text=True
    )
    assert r.returncode == 0 and __version__ in r.stdout


def test_run_healthy_exits_0_with_summary():
    r = invoke("run", CONFIGS / "healthy.yaml")
    assert r.exit_code == 0, r.output
    assert "healthy" in r.output and "300/300 steps" in r.output


def test_run_nonfinite_exits_1_and_names_the_place():
    r = invoke("run", CONFIGS / "relu_high_lr.yaml")
    assert r.exit_code == 1
    assert "INF at step 9" in r.output
    assert "exploding_gradient" in r.output


@pytest.mark.parametrize("name,code", [("healthy", 0), ("nan_in_data", 1), ("dead_relu", 0)])
def test_run_json_is_one_document(name, code):
    r = CliRunner().invoke(main, ["run", str(CONFIGS / f"{name}.yaml"), "--format", "json"])
    assert r.exit_code == code
    doc = json.loads(r.stdout)  # the whole of stdout parses: nothing else was printed there
    assert doc["name"] == name
    assert doc["status"] in ("healthy", "warning", "nonfinite")


def test_set_is_typed_by_the_schema():
    r = invoke(
        "run",
        CONFIGS / "adam_eps_zero.yaml",
        "--set",
        "train.eps=1e-8",
        "--steps",
        "20",
        "--format",
        "json",
    )
    doc = json.loads(r.stdout)
    assert r.exit_code == 0, r.output
    assert doc["steps_run"] == 20 and doc["status"] != "nonfinite"


def test_bad_set_key_exits_2_with_suggestion():
    r = invoke("run", CONFIGS / "healthy.yaml", "--set", "train.learnig_rate=0.1")
    assert r.exit_code == 2
    assert "learning_rate" in r.output and "Traceback" not in r.output


def test_invalid_spec_lists_every_problem_with_lines(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "data: {task: regresion}\n"
        "model:\n"
        "  layers:\n"
        "    - {units: 4, activation: relu}\n"
        "    - {units: 5, activation: linear}\n"
        "train:\n"
        "  steps: 0\n"
        "  optimiser: adam\n"
    )
    r = invoke("run", bad)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert any(f"{bad}:1:" in x and "regression" in x for x in lines)
    assert any(f"{bad}:7:" in x and "train.steps" in x for x in lines)
    assert any(f"{bad}:8:" in x and "optimizer" in x for x in lines)
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "text,line,needle",
    [
        ("model: {layers: [{units: 5}]\n", 2, "YAML syntax error"),
        ("- a\n- b\n", 1, "mapping"),
        ("", 1, "empty"),
    ],
)
def test_broken_yaml_exits_2(tmp_path, text, line, needle):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    r = invoke("run", f)
    assert r.exit_code == 2
    assert f"{f}:{line}:" in r.output and needle in r.output


def test_missing_spec_file_exits_2(tmp_path):
    r = invoke("run", tmp_path / "nope.yaml")
    assert r.exit_code == 2 and "no such file" in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["run", "{tmp}/nope.yaml"],  # a missing spec
        ["run", "{tmp}/bad.yaml", "--format", "json"],  # an invalid spec, every problem listed
        ["run", CONFIGS / "healthy.yaml", "--set", "train.learnig_rate=0.1"],  # a bad --set key
        ["run", CONFIGS / "healthy.yaml", "--set", "train.steps"],  # --set without a value
        ["run", CONFIGS / "healthy.yaml", "--steps", "0"],  # click's own option check
        ["run", "{tmp}/csv.yaml"],  # a missing data file
        ["sweep", CONFIGS / "healthy.yaml", "--lr", "abc"],  # an unreadable rate list
        ["check", CONFIGS / "healthy.yaml", "--fail-on", "bogus"],  # an unknown policy id
        ["check", CONFIGS / "healthy.yaml", "--steps", "2", "-o", "{tmp}/no/dir/o.json"],
        ["fix", CONFIGS / "healthy.yaml"],  # neither -o nor --dry-run
        ["trace", "{tmp}/missing.py"],  # a program that is not there
        ["trace", "-m", "no_such_module_xyz"],  # a module that is not there
        ["bogus"],  # an unknown command
    ],
)
def test_every_exit_2_message_ends_with_a_newline(tmp_path, args):
    (tmp_path / "bad.yaml").write_text("model: {layers: [{units: 0}]}\ntrain: {steps: x}\n")
    (tmp_path / "csv.yaml").write_text(
        "data: {source: csv, path: gone.csv, target: y}\nmodel: {layers: [{units: 1}]}\n"
    )
    r = invoke(*[str(a).format(tmp=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    assert r.stderr.strip() and r.stderr.endswith("\n"), repr(r.stderr)
    assert "Traceback" not in r.stderr


def test_missing_data_file_names_the_key_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(
        "data:\n  source: csv\n  path: missing.csv\n  target: y\n"
        "model:\n  layers:\n    - {units: 1}\n"
    )
    r = invoke("run", f)
    assert r.exit_code == 2
    assert f"{f}:3:" in r.output and "missing.csv" in r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_trace_writes_history_and_resolved_spec(tmp_path, suffix):
    out = tmp_path / f"trace{suffix}"
    r = invoke("run", CONFIGS / "relu_high_lr.yaml", "--trace", out)
    assert r.exit_code == 1
    assert out.exists() and (tmp_path / "trace.spec.yaml").exists()
    if suffix == ".npz":
        with np.load(out) as t:
            assert t["grad_norm"].shape == (9, 2)
            assert t["loss"].shape == (9,)
    else:
        header = out.read_text().splitlines()[0]
        assert header.startswith("step,loss,max_abs_z_1")
    assert "learning_rate: 1.5" in (tmp_path / "trace.spec.yaml").read_text()


def test_schema_is_json_schema():
    r = invoke("schema")
    schema = json.loads(r.stdout)
    assert "properties" in schema and "train" in schema["properties"]


def test_readme_names_every_command():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for cmd in main.commands:
        assert f"nandoctor {cmd}" in readme, cmd


@pytest.mark.parametrize(
    "args",
    [
        ["run", CONFIGS / "relu_high_lr.yaml"],
        ["fix", CONFIGS / "relu_high_lr.yaml", "--dry-run"],
        [
            "sweep",
            CONFIGS / "relu_high_lr.yaml",
            "--lr",
            "0.1,1,3",
            "--set",
            "train.optimizer=sgd,momentum",
        ],
        ["check", CONFIGS / "healthy.yaml", CONFIGS / "loss_flat.yaml", "--steps", "20"],
    ],
)
def test_progress_bars_on_a_terminal(monkeypatch, args):
    """The progress bars only draw on a TTY; make stderr one and run each command through them."""
    import nandoctor.cli.common as common

    drawn = []
    monkeypatch.setattr(common, "interactive", lambda: drawn.append(1) or True)
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert drawn  # a progress bar was set up
    assert r.exit_code in (0, 1), r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_steps_caps_but_never_extends_the_budget():
    r = invoke("run", CONFIGS / "loss_flat.yaml", "--steps", "50", "--format", "json")
    assert json.loads(r.stdout)["steps_run"] == 50
    r = invoke("run", CONFIGS / "loss_flat.yaml", "--steps", "5000", "--format", "json")
    assert json.loads(r.stdout)["steps_run"] == 200


def test_commands_end_without_the_exit_collection_trace_leaves_python_its_own(monkeypatch):
    """run and the other commands freeze the objects alive at exit (python's last collections
    would walk them all); one registration however many commands a process runs; trace, which
    runs the user's program, registers nothing."""
    import atexit
    import gc

    registered: list = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(
        atexit, "unregister", lambda fn: registered.remove(fn) if fn in registered else None
    )
    for _ in range(3):
        assert invoke("run", CONFIGS / "healthy.yaml", "--format", "json").exit_code == 0
    assert registered == [gc.freeze]
    registered.clear()
    script = Path(__file__).resolve().parents[2] / "examples" / "softmax_raw_pixels.py"
    invoke("trace", "--format", "json", script)
    assert gc.freeze not in registered


def test_files_a_run_writes_are_whole_with_objects_frozen_at_exit(tmp_path):
    """A real process: what it writes (JSON on stdout, the HTML page, the trace) is complete
    although python leaves the objects alive at exit to the operating system."""
    page, trace = tmp_path / "run.html", tmp_path / "trace.npz"
    cmd = [sys.executable, "-m", "nandoctor", "run", CONFIGS / "relu_high_lr.yaml"]
    cmd += ["--format", "json", "--html", page, "--trace", trace]
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["status"] == "nonfinite"
    assert page.read_text().rstrip().endswith("</html>")
    with np.load(trace) as t:  # a whole zip archive, every column of every step
        assert t["loss"].shape == (9,) and t["grad_norm"].shape == (9, 2)
    assert "learning_rate: 1.5" in (tmp_path / "trace.spec.yaml").read_text()


@pytest.mark.parametrize("style", ["block", "flow"])
def test_a_data_problem_points_at_the_line_and_column_of_the_key_that_names_the_file(
    tmp_path, style
):
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,3\n4,5\n")
    data = (
        "data:\n  source: csv\n  path: ragged.csv\n  target: y\n"
        if style == "block"
        else "data: {source: csv, path: ragged.csv, target: y}\n"
    )
    spec = tmp_path / "s.yaml"
    spec.write_text(data + "model:\n  layers:\n    - {units: 1}\n")
    line, col = (3, 9) if style == "block" else (1, 27)
    r = invoke("run", spec)
    assert r.exit_code == 2
    assert f"s.yaml:{line}:{col}: data.path: '" in r.output
    assert "ragged.csv' line 3 has 2 fields" in r.output
    r = invoke("run", spec, "--set", "data.path=ragged.csv")  # given on the command line
    assert r.exit_code == 2 and r.output.startswith("--set data.path=ragged.csv: '")


def test_the_header_of_a_run_that_failed_after_its_loss_says_the_nan_came_next():
    """Adam with eps 0 goes NaN in the update of step 1: the loss shown last is finite, and the
    header must not read as a run whose loss stayed put."""
    r = invoke("run", CONFIGS / "adam_eps_zero.yaml", "--no-verify")
    header = r.output.splitlines()[0]
    assert r.exit_code == 1 and "(then nan)" in header
    assert re.search(r"loss \S+ → \S+ \(then nan\)", header)


@pytest.mark.parametrize(
    "args",
    [
        ["run", "healthy.yaml", "--steps", "3", "--format", "json"],
        ["sweep", "healthy.yaml", "--steps", "3", "--lr", "0.01,0.02", "--format", "json"],
        ["sweep", "healthy.yaml", "--steps", "3", "--lr", "0.01,0.02", "--format", "csv"],
    ],
)
def test_a_report_for_a_program_never_loads_rich(args, modules_loaded_by):
    """JSON and CSV are written without rich: its import is start-up time a sweep or a run
    read by another program would pay for nothing."""
    assert modules_loaded_by(args, ("rich",), CONFIGS) == []
