"""Interruptions and dying workers, with real processes: Ctrl-C (SIGINT to the process group,
as a terminal sends it) or SIGTERM stops any command within a bound, exits 130/143, leaves no
worker behind, writes no half file and prints no traceback, and says on stderr what it had
finished, marked partial (stdout gets no report); a worker killed mid-spec (the OOM killer)
costs that spec alone.

To signal a command once something is finished, the tests watch the processes themselves
rather than the clock: worker processes appear only in the phase that uses them, and CPU time
(not wall time, which a busy machine stretches) tells a worker that will never end from one that
ends after a few steps."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for the workers")

HEALTHY = "model:\n  layers:\n    - {units: 8, activation: tanh}\n    - {units: 5}\n"
ENDLESS = HEALTHY + "train: {steps: 1000000, learning_rate: 0.0001}\n"
QUICK = HEALTHY + "train: {steps: 10}\n"
STOP_WITHIN = 5.0  # seconds from the signal to the exit (the machine may be busy)
# Replicas this wide train one per batched run (a replica group), so a sweep of two rates runs
# two worker processes: the tests can tell the groups apart.
WIDE = """data: {samples: 256, features: 2}
model:
  layers:
    - {units: 512, activation: tanh}
    - {units: 5}
train: {steps: 1000000, learning_rate: 0.0001, batch_size: full}
"""
# Goes Inf at step 1 (float16, inputs scaled by 300); with the whole budget re-run, the fix that
# works (standardize the inputs) trains for ever while the ones that fail end within steps.
FLOAT16_OVERFLOW = """seed: 0
data: {source: synthetic, task: regression, samples: 256, features: 10, outputs: 5, scale: 300.0}
model:
  layers:
    - {units: 20, activation: relu, init: he}
    - {units: 5, activation: linear, init: xavier}
numerics: {dtype: float16}
train: {steps: 1000000, learning_rate: 0.01}
"""
ENDLESS_CPU = 2.0  # CPU seconds no finishing worker of these tests reaches (they use < 0.5)
STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_leftovers():
    """A test that fails half-way leaves no endless command running on the machine."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def start(*args, cwd):
    proc = subprocess.Popen(
        [sys.executable, "-m", "nandoctor", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job
    )
    STARTED.append(proc)
    return proc


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def handles_sigterm(pid: int) -> bool:
    """Whether ``pid`` has installed its own SIGTERM handler (the SigCgt mask in /proc): before
    that, the interpreter itself is still starting and a SIGTERM ends it as for any process."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = int(next(x for x in status.splitlines() if x.startswith("SigCgt:")).split()[1], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def only_an_endless_worker_left(pid: int) -> list[int]:
    """The one child of ``pid`` when it is the only one and has used more CPU than a finishing
    worker ever does: every other work unit started with it has finished (and was reaped)."""
    kids = children(pid)
    return kids if len(kids) == 1 and cpu_seconds(kids[0]) > ENDLESS_CPU else []


def alive(pid: int) -> bool:
    """Whether ``pid`` is still there, running or a zombie (both are leftovers)."""
    return Path(f"/proc/{pid}").exists()


def stop(proc, sig, group: bool, times: int = 1):
    for _ in range(times):
        (os.killpg if group else os.kill)(proc.pid, sig)
        time.sleep(0.05)
    began = time.monotonic()
    out, err = proc.communicate(timeout=30)
    return time.monotonic() - began, out, err


def specs(folder: Path, *texts: str) -> Path:
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"s{i}.yaml").write_text(text)
    return folder


@pytest.mark.parametrize(
    ("sig", "group", "times", "code"),
    [
        (signal.SIGINT, True, 1, 130),  # Ctrl-C: the whole group, workers included
        (signal.SIGINT, True, 2, 130),  # Ctrl-C twice
        (signal.SIGTERM, False, 1, 143),  # a job runner's SIGTERM to the parent alone
    ],
)
def test_check_with_workers_stops_reaps_them_and_prints_what_finished(
    tmp_path, sig, group, times, code
):
    folder = specs(tmp_path / "specs", QUICK, ENDLESS, ENDLESS)
    report = tmp_path / "report.json"
    proc = start("check", folder, "-j", "2", "--format", "json", "-o", report, cwd=tmp_path)
    workers = wait_for(lambda: len(children(proc.pid)) == 2 and children(proc.pid))
    time.sleep(0.5)
    took, out, err = stop(proc, sig, group, times)
    assert proc.returncode == code, err
    assert took < STOP_WITHIN
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted" in err and "no report written" in err
    assert not report.exists() and out == ""
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary left
    assert not [w for w in workers if alive(w)]


@pytest.mark.parametrize(
    ("command", "sig", "code"),
    [
        (["run", "s0.yaml"], signal.SIGINT, 130),
        (["run", "s0.yaml", "--trace", "t.npz"], signal.SIGTERM, 143),
        (["sweep", "s0.yaml", "--lr", "1e-4,1e-3"], signal.SIGINT, 130),
        (["fix", "s0.yaml", "-o", "fixed.yaml"], signal.SIGTERM, 143),
    ],
)
def test_run_sweep_and_fix_stop_cleanly(tmp_path, command, sig, code):
    (tmp_path / "s0.yaml").write_text(ENDLESS)
    proc = start(*command, cwd=tmp_path)
    wait_for(lambda: handles_sigterm(proc.pid))  # the interpreter is up, nandoctor is starting
    time.sleep(
        1.5
    )  # a moment later: into training on an idle machine, still importing on a busy one
    took, _out, err = stop(proc, sig, group=True)
    assert proc.returncode == code, err
    assert took < STOP_WITHIN
    assert "Traceback" not in err and f"interrupted by {signal.Signals(sig).name}" in err
    assert sorted(os.listdir(tmp_path)) == ["s0.yaml"]  # nothing written, not even half


# Runs nandoctor as its `nandoctor` script does (import nandoctor.__main__, call entry()), and
# sends itself a signal at the Nth module imported once nandoctor.__main__ starts to load: a
# Ctrl-C in the start-up's imports, at a chosen import rather than at a chosen time.
SIGNAL_AT_IMPORT = """\
import os, sys

SIG, NTH = int(sys.argv[1]), int(sys.argv[2])
sys.argv = ["nandoctor", *sys.argv[3:]]
seen = []

def hook(event, args):
    if event != "import" or len(seen) > NTH:
        return
    if seen or args[0] == "nandoctor.__main__":
        seen.append(args[0])
        if len(seen) == NTH + 1:
            os.kill(os.getpid(), SIG)

import nandoctor  # (its parent package: imported after the event for nandoctor.__main__)

sys.addaudithook(hook)
from nandoctor.__main__ import entry

entry()
"""


@pytest.mark.parametrize(
    ("command", "sig", "nth"),
    [
        (["run", "s.yaml"], signal.SIGINT, 1),  # the first import nandoctor makes
        (["check", "s.yaml"], signal.SIGTERM, 1),
        (["trace", "prog.py"], signal.SIGINT, 5),
        (["run", "s.yaml"], signal.SIGINT, 20),
        (["check", "s.yaml"], signal.SIGTERM, 60),
    ],
)
def test_a_signal_during_the_start_up_imports_exits_cleanly(tmp_path, command, sig, nth):
    """However early the signal comes once nandoctor's own code runs: exit 128 + signal, the
    one line on stderr, no traceback and nothing on stdout."""
    (tmp_path / "s.yaml").write_text(QUICK)
    (tmp_path / "prog.py").write_text("print('hello')\n")
    done = subprocess.run(
        [sys.executable, "-c", SIGNAL_AT_IMPORT, str(int(sig)), str(nth), *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    name = signal.Signals(sig).name
    assert done.returncode == 128 + sig, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert done.stderr.endswith(
        f"nandoctor: interrupted by {name}; stopped, nothing half-written\n"
    )
    assert done.stdout == ""


def test_a_worker_killed_mid_spec_costs_that_spec_alone(tmp_path):
    folder = specs(tmp_path / "specs", ENDLESS, QUICK, QUICK)
    proc = start("check", folder, "-j", "2", "--format", "json", cwd=tmp_path)
    # The endless spec starts first and never ends: once it is the only worker, it is that one.
    (victim,) = wait_for(lambda: len(children(proc.pid)) == 1 and children(proc.pid))
    os.kill(victim, signal.SIGKILL)  # as the OOM killer does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    results = json.loads(out)["results"]
    assert [r["status"] for r in results] == ["error", "healthy", "healthy"]
    assert "killed by SIGKILL" in results[0]["verdict"]
    assert "Traceback" not in err


def flat(text: str) -> str:
    """``text`` with its lines joined (stderr wraps long messages at 120 columns)."""
    return " ".join(text.split())


def assert_stopped_cleanly(proc, took, err, code, workers=()):
    assert proc.returncode == code, err
    assert took < STOP_WITHIN
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert not [w for w in workers if alive(w)]


def test_sweep_interrupted_prints_the_groups_finished_in_workers(tmp_path):
    (tmp_path / "wide.yaml").write_text(WIDE)
    # 1e6 goes non-finite within tens of steps; 1e-4 trains for ever, in the other worker
    proc = start("sweep", "wide.yaml", "--lr", "1e6,1e-4", cwd=tmp_path)
    workers = wait_for(lambda: only_an_endless_worker_left(proc.pid))
    took, out, err = stop(proc, signal.SIGINT, group=True)
    assert_stopped_cleanly(proc, took, err, 130, workers)
    assert out == ""  # the partial table goes to stderr: stdout only ever holds a whole report
    assert "spec as written — partial: 1 of 2 rates finished" in err
    assert re.search(r"1\.00e\+06\s+nonfinite\s+\d+\s+\w+", err)  # its row, as a sweep shows it
    assert "not finished: 1.00e-04 (their batched run had not ended)" in flat(err)
    assert (
        "interrupted at the training of the rates — partial: 1 of 2 rates finished;"
        " no report written" in flat(err)
    )
    assert "max stable learning rate" not in err  # not claimed: the unfinished rate could fail
    assert sorted(os.listdir(tmp_path)) == ["wide.yaml"]


def test_sweep_json_interrupted_prints_the_finished_grid_points_and_nothing_on_stdout(tmp_path):
    (tmp_path / "wide.yaml").write_text(WIDE)
    # grid point 1 trains 20 steps per rate; point 2's workers never end
    proc = start(
        "sweep", "wide.yaml", "--lr", "1e-4,2e-4", "--set", "train.steps=20,1000000",
        "--format", "json", cwd=tmp_path,
    )  # fmt: skip
    endless = wait_for(
        lambda: (
            len(kids := children(proc.pid)) == 2
            and all(cpu_seconds(k) > ENDLESS_CPU for k in kids)
            and kids
        )
    )
    took, out, err = stop(proc, signal.SIGTERM, group=False)  # a job runner's SIGTERM
    assert_stopped_cleanly(proc, took, err, 143, endless)
    assert out == ""  # no partial document: whatever is on stdout parses as a whole one
    assert "train.steps=20" in err and "max stable learning rate: 2.00e-04" in err
    assert (
        "(grid point 2 of 2) — partial: 1 of 2 grid points finished, 0 of 2 rates of grid"
        " point 2 finished; no report written" in flat(err)
    )


def test_run_interrupted_in_training_says_the_step_it_reached(tmp_path):
    (tmp_path / "s0.yaml").write_text(ENDLESS)
    proc = start("run", "s0.yaml", "--format", "json", cwd=tmp_path)
    # well past start-up (under a second of CPU): training has run for a while
    wait_for(lambda: cpu_seconds(proc.pid) > 3.0)
    took, out, err = stop(proc, signal.SIGINT, group=True)
    assert_stopped_cleanly(proc, took, err, 130)
    assert out == ""
    reached = re.search(
        r"interrupted at step ([\d,]+) of 1,000,000 \(loss [^)]+\) of the training — partial:"
        r" no diagnosis, which needs the finished run; no report written",
        flat(err),
    )
    assert reached and int(reached[1].replace(",", "")) > 0, err


@pytest.mark.parametrize(
    ("command", "sig", "code"), [("run", signal.SIGINT, 130), ("fix", signal.SIGTERM, 143)]
)
def test_run_and_fix_interrupted_while_verifying_say_what_was_verified(
    tmp_path, command, sig, code
):
    (tmp_path / "f16.yaml").write_text(FLOAT16_OVERFLOW)
    extra = ["-o", "fixed.yaml"] if command == "fix" else []
    proc = start(command, "f16.yaml", "--verify-full", *extra, cwd=tmp_path)
    # workers run only the verification (the diagnosis is made); the failing fixes end at
    # once, the one that works re-runs a million steps
    workers = wait_for(lambda: only_an_endless_worker_left(proc.pid))
    took, out, err = stop(proc, sig, group=True)
    assert_stopped_cleanly(proc, took, err, code, workers)
    assert out == ""
    assert sorted(os.listdir(tmp_path)) == ["f16.yaml"]  # fix wrote nothing
    if command == "run":
        assert "INF at step 1" in err and "Cause: overflow" in err  # the diagnosis, complete
    untried = err.count("[untried]")
    failed = len(re.findall(r"\[(?:✗ |x )?still fails\]", err))  # x: on an ASCII-only stderr
    assert untried == 1 and failed >= 2, err  # only the endless re-run had no verdict
    assert re.search(
        rf"interrupted at the verification — partial: the diagnosis is complete;"
        rf" {failed} of {failed + 1} recommendations re-run, the others untried;"
        rf" {'no report written' if command == 'run' else 'nothing written'}",
        flat(err),
    ), err
