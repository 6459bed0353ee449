"""Interruptions and dying workers, with real processes: Ctrl-C (SIGINT to the process group,
as a terminal sends it) or SIGTERM stops any command within a bound, exits 130/143, leaves no
worker behind, writes no half file and prints no traceback; a worker killed mid-spec (the OOM
killer) costs that spec alone."""

import json
import os
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


def start(*args, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "nandoctor", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job
    )


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
