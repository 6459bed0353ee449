"""Acceptance: each example spec is diagnosed from its run's numbers (hand-checked expectations),
and unit checks that the diagnosis moves with the numbers, not with the file."""

import json
from pathlib import Path

import numpy as np
import pytest

from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.spec.models import load_spec, spec_from_dict

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

# spec: (status, cause, (step, phase, layer, tensor, op, value)) -- each checked by hand against
# the run's numbers before being written down (see each spec's header comment).
NONFINITE = {
    "relu_high_lr": ("exploding_gradient", (9, "forward", 2, "pre_activation", "matmul", "inf")),
    "softmax_overflow_naive": ("overflow", (1, "forward", 2, "activation", "exp", "nan")),
    "bce_saturated_naive": ("saturation", (136, "loss", None, "loss", "log", "nan")),
    "nan_in_data": ("bad_input", (None, "data", None, "x", "load", "nan")),
    "zero_variance_standardize": (
        "bad_input",
        (None, "preprocess", None, "x", "standardize", "nan"),
    ),
    "adam_eps_zero": ("division_by_zero", (1, "update", 1, "weight", "divide", "nan")),
    "float16_overflow": ("overflow", (1, "loss", None, "loss", "square", "inf")),
    "short_explosion": ("exploding_gradient", (3, "loss", None, "loss", "square", "inf")),
}
WARNINGS = {
    "dead_relu": {"dead_relu"},
    "deep_sigmoid_saturated": {"saturation"},
    "deep_sigmoid_vanishing": {"vanishing_gradient"},
    "exploding_warning": {"exploding_gradient"},
    "loss_flat": {"loss_not_decreasing"},
    "zero_gradient": {"zero_gradient"},
}
HEALTHY = ["healthy", "blog_randn_sigmoid", "blog_xavier_sigmoid", "blog_xavier_lr1"]


def run_config(name, **changes):
    spec = load_spec(CONFIGS / f"{name}.yaml")
    if changes:
        spec = spec.with_changes(changes)
    return diagnose(train(spec)[0])


@pytest.mark.parametrize("name", sorted(NONFINITE))
def test_nonfinite_specs(name):
    cause, where = NONFINITE[name]
    d = run_config(name)
    assert d.status == "nonfinite"
    assert d.cause.id == cause
    f = d.first_nonfinite
    assert (f.step, f.phase, f.layer, f.tensor, f.op, f.value) == where
    assert len(d.cause.evidence) >= 2  # the location line and at least one number behind the cause
    assert d.recommendations


@pytest.mark.parametrize("name", sorted(WARNINGS))
def test_warning_specs(name):
    d = run_config(name)
    assert d.status == "warning"
    assert d.first_nonfinite is None and d.cause is None
    assert WARNINGS[name] <= {w.id for w in d.warnings}


@pytest.mark.parametrize("name", HEALTHY)
def test_healthy_specs(name):
    d = run_config(name)
    assert d.status == "healthy", [w.summary for w in d.warnings]
    assert d.first_nonfinite is None
    assert d.notes[0].startswith("every value stayed finite")


def test_blog_programs_never_nan_and_say_how_far_from_it():
    """The post says these output NaN; over its 10 steps they do not, and the report says how far
    the sigmoid was from returning an exact 0 or 1 (which a naive log would turn into -inf)."""
    for name in ("blog_randn_sigmoid", "blog_xavier_sigmoid", "blog_xavier_lr1"):
        d = run_config(name)
        assert d.steps_run == d.steps_budget == 10
        assert np.isfinite(d.history["loss"]).all()
        text = " ".join(d.notes)
        assert "36.74" in text and "short of it" in text
        assert "partly saturated" in text


def test_blog_program_does_go_nan_when_pushed_into_log_of_exact_one():
    """What would turn it into NaN: outputs pinned at exactly 1 meeting a naive log (BCE)."""
    d = run_config("bce_saturated_naive")
    assert d.cause.id == "saturation"
    (pinned,) = [line for line in d.cause.evidence if line.startswith("last-layer outputs")]
    out = d.first_nonfinite.inputs["output"]
    assert out["exact_zeros"] + out["exact_ones"] > 0  # log(p) or log(1 - p) met its limit
    assert f"{out['exact_zeros']} of {out['size']} exactly 0, {out['exact_ones']} exactly 1" in (
        pinned
    )


def test_same_network_is_healthy_with_scaled_inputs():
    """The cause comes from the numbers: the softmax spec with scale 1 never overflows."""
    d = run_config("softmax_overflow_naive", **{"data.scale": 1.0})
    assert d.status != "nonfinite"


def test_stable_numerics_remove_the_softmax_overflow():
    d = run_config("softmax_overflow_naive", **{"numerics.mode": "stable"})
    assert d.status != "nonfinite" and d.first_nonfinite is None


def test_exploding_cause_needs_growth_history():
    """Overflow at step 1 (no history) is `overflow`; the same network failing after steps of
    growth is `exploding_gradient`."""
    late = run_config("relu_high_lr")
    assert late.cause.id == "exploding_gradient"
    assert any("rose from" in e for e in late.cause.evidence)
    early = run_config("relu_high_lr", **{"data.scale": 3000.0, "numerics.dtype": "float16"})
    assert early.first_nonfinite.step == 1
    assert early.cause.id == "overflow"


def test_contributing_factors_are_evidenced():
    d = run_config("float16_overflow")
    ids = {c.id for c in d.contributing}
    assert {"unscaled_inputs", "low_precision"} <= ids
    unscaled = next(c for c in d.contributing if c.id == "unscaled_inputs")
    assert "300" in unscaled.evidence[0]  # data.scale is cited


def test_division_by_zero_evidence_counts_zeros():
    d = run_config("adam_eps_zero")
    assert any("exactly 0" in e for e in d.cause.evidence)
    assert d.first_nonfinite.inputs["gradient"]["exact_zeros"] > 0


def test_eps_removes_division_by_zero():
    d = run_config("adam_eps_zero", **{"train.eps": 1e-8})
    assert d.status != "nonfinite"


def test_json_matches_contract_shape():
    d = run_config("relu_high_lr")
    doc = json.loads(json.dumps(d.to_json()))
    assert doc["status"] == "nonfinite"
    assert doc["first_nonfinite"]["step"] == 9
    assert doc["cause"]["id"] == "exploding_gradient"
    assert doc["loss"]["final"] is None and doc["loss"]["initial"] > 0
    for r in doc["recommendations"]:
        assert isinstance(r["changes"], dict) and r["verified"] in (True, False, None)


def test_loss_not_decreasing_is_not_a_warning_for_random_gradient():
    spec = spec_from_dict(
        {
            "data": {"task": "random", "samples": 8},
            "model": {"layers": [{"units": 3, "activation": "tanh"}]},
            "loss": "random_gradient",
            "train": {"steps": 40, "learning_rate": 1e-6},
        }
    )
    d = diagnose(train(spec)[0])
    assert "loss_not_decreasing" not in {w.id for w in d.warnings}


def test_an_overflowing_second_moment_is_diagnosed_with_the_gradient_that_overflowed():
    """float32 Adam on inputs x1e10: the step-1 gradient (~1e20) squared overflows v, the update
    is 0 from then on and the weights freeze. The cause is the overflow of the state, with the
    gradient's size and the square root bound; clipping and standardizing both verify."""
    from nandoctor.examine import examine, verify_fixes

    spec = spec_from_dict(
        {
            "data": {"samples": 64, "features": 4, "outputs": 1, "scale": 1e10},
            "model": {"layers": [{"units": 1}]},
            "numerics": {"dtype": "float32"},
            "train": {"steps": 50, "learning_rate": 0.001, "optimizer": "adam"},
        }
    )
    d, outcome = examine(spec)
    assert d.status == "nonfinite"
    assert (d.first_nonfinite.phase, d.first_nonfinite.tensor) == ("update", "weight_exp_avg_sq")
    assert d.cause.id == "overflow" and "exp_avg_sq" in d.cause.summary
    assert any("squared that is" in e and "1.84e+19" in e for e in d.cause.evidence)
    assert any("stop moving" in e for e in d.cause.evidence)
    assert "unscaled_inputs" in {c.id for c in d.contributing}
    verify_fixes(d, outcome, jobs=1)
    verdicts = {r.id: r.verified for r in d.recommendations}
    assert verdicts["clip_gradients"] is True and verdicts["standardize_inputs"] is True
    assert d.recommendations[0].verified is True


def test_inputs_that_overflow_float16_when_cast_are_fixed_by_standardizing_them():
    """Inputs of ~1e5 cast to float16: standardizing (now done before the cast) verifies; a lower
    rate or float32 master weights cannot change the cast, so neither is proposed."""
    from nandoctor.examine import examine, verify_fixes

    spec = spec_from_dict(
        {
            "data": {"samples": 64, "features": 4, "outputs": 1, "scale": 1e5},
            "model": {"layers": [{"units": 8, "activation": "relu"}, {"units": 1}]},
            "numerics": {"dtype": "float16"},
            "train": {"steps": 50, "learning_rate": 0.001, "optimizer": "sgd"},
        }
    )
    d, outcome = examine(spec)
    assert (d.first_nonfinite.phase, d.first_nonfinite.op) == ("data", "cast")
    assert d.cause.id == "overflow" and "finite as loaded" in d.cause.evidence[1]
    verify_fixes(d, outcome, jobs=1)
    verdicts = {r.id: r.verified for r in d.recommendations}
    assert set(verdicts) == {"standardize_inputs", "use_float32"}
    assert (
        verdicts["standardize_inputs"] is True and d.recommendations[0].id == "standardize_inputs"
    )


def test_targets_that_overflow_float16_when_cast_are_fixed_by_standardizing_them(tmp_path):
    from nandoctor.examine import examine, verify_fixes

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3))
    y = 1e5 * (2.0 + x @ np.array([1.0, -2.0, 0.5]))
    (tmp_path / "d.csv").write_text(
        "a,b,c,t\n" + "".join(f"{r[0]},{r[1]},{r[2]},{t}\n" for r, t in zip(x, y, strict=True))
    )
    spec = spec_from_dict(
        {
            "data": {"source": "csv", "path": str(tmp_path / "d.csv"), "target": "t"},
            "model": {"layers": [{"units": 8, "activation": "relu"}, {"units": 1}]},
            "numerics": {"dtype": "float16"},
            "train": {"steps": 50, "learning_rate": 0.001, "optimizer": "sgd"},
        }
    )
    d, outcome = examine(spec)
    assert (d.first_nonfinite.phase, d.first_nonfinite.tensor) == ("data", "y")
    assert "targets" in d.cause.summary
    verify_fixes(d, outcome, jobs=1)
    verdicts = {r.id: r.verified for r in d.recommendations}
    assert verdicts["standardize_targets"] is True
    assert "standardize_inputs" not in verdicts and "lower_learning_rate" not in verdicts


def test_a_constant_csv_column_is_named_in_the_evidence(tmp_path):
    """The column's position alone ('columns 3') sends the user counting; its header name does
    not: both, from the CSV the run read."""
    rows = ["size,city,age,price"] + [f"{i % 7},1,{i % 5},{i}" for i in range(20)]
    (tmp_path / "houses.csv").write_text("\n".join(rows) + "\n")
    spec = spec_from_dict(
        {
            "data": {
                "source": "csv",
                "path": "houses.csv",
                "target": "price",
                "preprocess": "standardize",
            },
            "model": {"layers": [{"units": 4, "activation": "relu"}, {"units": 1}]},
            "numerics": {"mode": "naive"},
            "train": {"steps": 5},
        },
        base_dir=tmp_path,
    )
    d = diagnose(train(spec)[0])
    assert d.cause.id == "bad_input"
    assert any("(column 2 (city))" in e for e in d.cause.evidence)


def test_non_finite_data_is_located_by_column_in_the_inputs_and_the_targets(tmp_path):
    """An inf in an input column came first; the NaN in the target column is said too, so the
    user fixes both in one go."""
    rows = ["area,rooms,price"] + [f"{50 + i},{i % 4},{100 + i}" for i in range(12)]
    rows[3] = "inf,2,150"
    rows[7] = "60,3,nan"
    (tmp_path / "h.csv").write_text("\n".join(rows) + "\n")
    spec = spec_from_dict(
        {
            "data": {"source": "csv", "path": "h.csv", "target": "price"},
            "model": {"layers": [{"units": 4, "activation": "relu"}, {"units": 1}]},
            "train": {"steps": 5},
        },
        base_dir=tmp_path,
    )
    d = diagnose(train(spec)[0])
    assert d.cause.id == "bad_input" and d.first_nonfinite.tensor == "x"
    assert "inputs (x): non-finite entries: 1 in column 1 (area)" in d.cause.evidence
    assert "targets (y): non-finite entries: 1 in column 1 (price)" in d.cause.evidence


def test_a_softmax_layers_saturation_is_told_as_the_share_of_pinned_rows():
    """A softmax saturates by rows (top probability above 1 - 1e-6), not by outputs within 1e-3
    of a limit: the warning says which share it measured."""
    spec = spec_from_dict(
        {
            "data": {"source": "synthetic", "task": "classification", "samples": 256,
                     "features": 20, "outputs": 10, "scale": 100},
            "model": {"layers": [{"units": 32, "activation": "relu"},
                                 {"units": 10, "activation": "softmax"}]},
            "loss": "cross_entropy",
            "train": {"steps": 20},
        }
    )  # fmt: skip
    d = diagnose(train(spec)[0])
    # an output layer saturated while the loss fell (121 -> 16.5) is told as a note
    assert not [w for w in d.warnings if w.id == "saturation"]
    (said,) = [n for n in d.notes if "confident output layer" in n]
    assert "rows whose top probability is above 1 - 1e-6" in said
    assert "outputs within" not in said


def test_the_weight_norms_quoted_are_those_the_failing_step_ran_with():
    """A row's weight norm is taken after its step's update; the failing step's own update (from
    its huge gradient) came after the op that failed, so the evidence stops the step before."""
    from nandoctor.diagnosis.findings import fmt

    outcome = train(load_spec(CONFIGS / "relu_high_lr.yaml"))[0]
    d = diagnose(outcome)
    step = d.first_nonfinite.step
    (line,) = [e for e in d.cause.evidence if e.startswith("weight norms went")]
    used = outcome.history["weight_norm"][step - 2]  # after step - 1's update
    assert f"after step {step - 1}, the weights step {step} ran with" in line
    assert ", ".join(fmt(v) for v in used) in line
