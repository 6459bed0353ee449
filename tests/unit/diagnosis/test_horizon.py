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


def test_a_lowered_rate_is_verified_over_its_reduction_times_the_failure_step():
    """A rate k times lower reaches the failing state about k times later: its horizon is at
    least RATE_MARGIN x k x the failure step (capped at the budget), never less than the others'."""
    from nandoctor.diagnosis.verify import RATE_MARGIN, rate_horizon

    o = outcome(50, 5_000)
    base = verification_horizon(o)
    assert rate_horizon(o, base, 2) == base  # a small reduction: the common horizon
    assert rate_horizon(o, base, 16) == RATE_MARGIN * 16 * 50
    assert rate_horizon(o, base, 1024) == 5_000  # never past the budget


def test_the_proposed_lower_rate_stays_finite_over_the_whole_budget_when_re_run_alone():
    """Naive BCE at lr 5 dies at step 50; lr 5/32 stays finite for 1,000 steps (the old
    horizon) and dies later, inside the budget. The rate proposed as verified must hold when the
    user re-runs the spec with it, as `run --set` does."""
    from nandoctor.engine.runs import train
    from nandoctor.examine import examine, verify_fixes
    from nandoctor.spec.models import spec_from_dict

    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"task": "binary", "samples": 256, "features": 10, "outputs": 1},
            "model": {
                "layers": [
                    {"units": 20, "activation": "tanh", "init": "xavier"},
                    {"units": 1, "activation": "sigmoid", "init": "xavier"},
                ]
            },
            "loss": "bce",
            "numerics": {"dtype": "float32", "mode": "naive"},
            "train": {"steps": 3000, "batch_size": "full", "learning_rate": 5.0},
        }
    )
    diagnosis, out = examine(spec)
    failed = diagnosis.first_nonfinite.step
    verify_fixes(diagnosis, out, jobs=1)
    (rec,) = [r for r in diagnosis.recommendations if r.id == "lower_learning_rate"]
    assert rec.verified is True, rec.evidence
    rate = rec.changes["train.learning_rate"]
    alone = train(spec.with_changes({"train.learning_rate": rate}), snapshots=False)[0]
    assert alone.finite, f"lr {rate} went non-finite at step {alone.first_nonfinite.step}"
    from nandoctor.diagnosis.verify import RATE_MARGIN

    assert rec.steps_verified >= min(3000, RATE_MARGIN * (5.0 / rate) * failed)
    # the experiment claims no more than the steps it ran
    (line,) = [e for e in diagnosis.cause.evidence if "lower learning rate" in e]
    if rec.steps_verified < 3000:
        assert f"over the {rec.steps_verified:,} steps verified" in line
