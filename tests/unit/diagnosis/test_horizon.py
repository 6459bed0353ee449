"""Verification sized to the failure, not the budget (a horizon that follows from the failure
step, with a floor; the whole budget on request), reported as steps verified."""

import json
import resource
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from nandoctor.diagnosis.verify import HORIZON_FACTOR, HORIZON_FLOOR, verification_horizon


def outcome(failed_step, budget):
    first = None if failed_step is None else SimpleNamespace(step=failed_step)
    return SimpleNamespace(first_nonfinite=first, steps_budget=budget)


@pytest.mark.parametrize(
    ("failed", "budget", "expected"),
    [
        (9, 1_000_000, HORIZON_FLOOR),  # an early failure: the floor
        (5_000, 1_000_000, HORIZON_FACTOR * 5_000),  # a late one: a multiple of its step
        (9, 500, 500),  # never past the budget
        (0, 1_000_000, HORIZON_FLOOR),  # a failure in the data, before any step
    ],
)
def test_the_horizon_follows_the_failure_step_with_a_floor(failed, budget, expected):
    assert verification_horizon(outcome(failed, budget)) == expected
    assert verification_horizon(outcome(failed, budget), full=True) == budget


SPEC = """\
model:
  layers:
    - {units: 20, activation: relu, init: he}
    - {units: 5, activation: linear, init: xavier}
train: {steps: 1000000, batch_size: 32, learning_rate: 1.5}
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux")
def test_a_million_step_spec_that_dies_early_answers_in_seconds_and_little_memory(tmp_path):
    path = tmp_path / "million.yaml"
    path.write_text(SPEC)
    started = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "nandoctor", "run", str(path), "--format", "json", "-j", "1"],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    failed = doc["first_nonfinite"]["step"]
    assert failed < 100
    verified = [rec for rec in doc["recommendations"] if rec["verified"]]
    assert verified
    for rec in verified:
        assert rec["steps_verified"] == max(HORIZON_FLOOR, HORIZON_FACTOR * failed)
        assert "--verify-full" in rec["evidence"]
    # Sized to the budget, this allocated 2.1 GB and ran for over ten minutes.
    assert peak_mb < 400
    assert seconds < 120  # generous for a shared machine; it takes a few seconds
