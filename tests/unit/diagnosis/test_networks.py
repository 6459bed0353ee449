"""Diagnoses for the parts of real networks, each made from the numbers a run produced: a norm
over a zero-variance batch, an oscillating loss, loss scaling that skips steps, missing data,
float16 that needs mixed precision, and the recommendations that use the new keys (verified by
re-running)."""

from __future__ import annotations

import numpy as np
import pytest

from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.diagnosis.networks import oscillating_loss
from nandoctor.diagnosis.verify import verify
from nandoctor.engine.runs import train
from nandoctor.spec.models import spec_from_dict

REGRESSION = {"task": "regression", "samples": 64, "features": 6, "outputs": 2}


def make(layers, data=None, **sections):
    return spec_from_dict(
        {"seed": 1, "data": {**REGRESSION, **(data or {})}, "model": {"layers": layers}, **sections}
    )


def examine(spec):
    outcome = train(spec)[0]
    d = diagnose(outcome)
    d.recommendations = verify(d, outcome, jobs=1)
    return d, outcome


def rec(d, rid):
    return next(r for r in d.recommendations if r.id == rid)


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_zero_variance_norm_with_eps_0_is_division_by_zero_in_that_layers_norm(norm):
    # batch: a last batch of one row (65 = 2 * 32 + 1); layer: a one-unit layer, whose variance
    # over its units is always 0
    hidden = {"units": 1 if norm == "layer" else 8, "activation": "tanh"}
    layers = [{"units": 8, "activation": "tanh"}, {**hidden, "norm": norm, "norm_eps": 0.0}]
    layers.append({"units": 2})
    spec = make(layers, {"samples": 65}, train={"steps": 30, "batch_size": 32})
    d, outcome = examine(spec)
    first = outcome.first_nonfinite
    assert (first.phase, first.layer, first.op, first.tensor) == (
        "forward",
        2,
        f"{norm}_norm",
        "normalized",
    )
    assert first.step == (3 if norm == "batch" else 1)
    assert d.cause.id == "division_by_zero" and d.cause.layer == 2
    assert any("variance of exactly 0" in line for line in d.cause.evidence)
    fix = rec(d, "add_norm_eps")
    assert fix.changes == {"model.layers.1.norm_eps": 1e-5} and fix.verified is True
    assert "add_eps" not in {r.id for r in d.recommendations}  # the optimiser is not at fault


def test_norm_eps_is_proposed_for_every_unguarded_norm_not_only_the_first_to_fail():
    """Two batch norms with norm_eps 0 and a last batch of one row: the first fails first, but
    guarding it alone lets the second fail the same way, so both are changed (and verified)."""
    layers = [
        {"units": 8, "activation": "relu", "norm": "batch", "norm_eps": 0.0},
        {"units": 8, "activation": "relu", "norm": "batch", "norm_eps": 0.0},
        {"units": 8, "activation": "tanh", "norm": "layer"},  # torch's eps already: unchanged
        {"units": 2},
    ]
    spec = make(layers, {"samples": 65}, train={"steps": 30, "batch_size": 32})
    d, outcome = examine(spec)
    assert d.cause.id == "division_by_zero" and outcome.first_nonfinite.layer == 1
    fix = rec(d, "add_norm_eps")
    assert fix.changes == {"model.layers.0.norm_eps": 1e-5, "model.layers.1.norm_eps": 1e-5}
    assert fix.summary.endswith("in the norm of layers 1, 2")
    assert fix.verified is True, fix.evidence
    one = spec.with_changes({"model.layers.0.norm_eps": 1e-5})  # what was proposed before
    assert train(one)[0].first_nonfinite.layer == 2


def test_unscaled_regression_targets_are_a_factor_and_standardizing_them_is_verified():
    """Targets of ~1e5 (house prices) with no preprocessing: the mse gradient explodes. The
    factor shows max |y|; standardized targets are the verified fix that learns, ranked above
    the changes that stay finite only by not learning."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 4))
    y = (x @ rng.standard_normal((4, 1)) + 3.0) * 1e5
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    np.savez(folder / "prices.npz", x=x, y=y)
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"source": "npz", "path": str(folder / "prices.npz")},
            "model": {"layers": [{"units": 16, "activation": "relu"}, {"units": 1}]},
            "train": {"steps": 200, "batch_size": 32, "learning_rate": 0.01},
        }
    )
    d, outcome = examine(spec)
    assert d.status == "nonfinite"
    (factor,) = [f for f in d.contributing if f.id == "unscaled_targets"]
    top = float(np.abs(y).max())
    assert f"{top:.2e}" in factor.summary
    fix = rec(d, "standardize_targets")
    assert fix.changes == {"data.target_preprocess": "standardize"}
    assert fix.verified is True and fix.learns is True, fix.evidence
    assert d.recommendations[0] is fix
    stalled = [r for r in d.recommendations if r.verified and r.learns is False]
    assert all("did not fall" in r.evidence for r in stalled)
    assert all(d.recommendations.index(r) > 0 for r in stalled)


def test_scaled_targets_are_not_a_factor():
    layers = [{"units": 50, "activation": "relu"}, {"units": 2}]
    spec = make(layers, train={"steps": 40, "learning_rate": 5.0})
    d, _ = examine(spec)
    assert d.status == "nonfinite"
    assert "unscaled_targets" not in {f.id for f in d.contributing}


def test_the_same_norm_with_torchs_eps_stays_finite():
    layers = [{"units": 8, "activation": "tanh", "norm": "batch"}, {"units": 2}]
    spec = make(layers, {"samples": 65}, train={"steps": 30, "batch_size": 32})
    assert train(spec)[0].first_nonfinite is None


def test_oscillating_loss_needs_reversals_and_a_growing_swing():
    t = np.arange(40)
    growing = 1.0 + 0.01 * 1.08**t * (-1) ** t
    assert oscillating_loss(growing).id == "oscillating_loss"
    shrinking = 1.0 + 0.01 * 0.95**t * (-1) ** t
    assert oscillating_loss(shrinking) is None
    assert oscillating_loss(np.exp(-0.05 * t)) is None  # a falling loss
    noisy = np.exp(-0.05 * t) + np.random.default_rng(0).normal(0, 0.01, 40)
    assert oscillating_loss(noisy) is None


def test_gradient_descent_past_the_edge_of_stability_warns_oscillating_loss():
    # 2/lambda_max of this full-batch problem is about 0.15 (nandoctor sweep): 0.46 is 3x that
    layers = [{"units": 8, "activation": "relu"}, {"units": 1}]
    data = {"samples": 64, "features": 4, "outputs": 1}
    train_keys = {"steps": 150, "batch_size": "full", "learning_rate": 0.46}
    d = diagnose(train(make(layers, data, seed=0, train=train_keys))[0])
    warning = next(w for w in d.warnings if w.id == "oscillating_loss")
    assert "reversed direction" in warning.summary
    assert "lower_learning_rate" in {r.id for r in d.recommendations}
    calm = diagnose(
        train(make(layers, data, seed=0, train={**train_keys, "learning_rate": 0.1}))[0]
    )
    assert "oscillating_loss" not in {w.id for w in calm.warnings}


MIXED = {"dtype": "float16", "master_dtype": "float32", "loss_scale": "dynamic"}


def test_skipped_steps_are_not_the_first_nonfinite_but_a_collapsing_scale_warns():
    layers = [{"units": 20, "activation": "relu"}, {"units": 2}]
    spec = make(
        layers,
        {"scale": 100.0, "samples": 256},
        loss={"name": "mse", "reduction": "sum"},
        numerics=MIXED,
        train={"steps": 12, "batch_size": "full", "learning_rate": 1e-6},
    )
    outcome = train(spec)[0]
    log = outcome.scaling
    assert outcome.first_nonfinite is None and log["skipped"] == 12 and log["first_applied"] == 0
    assert (log["scale_first"], log["scale_last"]) == (65536.0, 65536.0 * 0.5**11)
    d = diagnose(outcome)
    assert d.status == "warning"
    (w,) = [w for w in d.warnings if w.id == "skipped_steps"]
    assert log["seen"] == 12 and "skipped 12 of 12 steps" in w.summary


def test_a_few_skips_at_the_start_are_normal_and_do_not_warn():
    layers = [{"units": 20, "activation": "relu"}, {"units": 2}]
    spec = make(
        layers,
        {"scale": 100.0},
        numerics=MIXED,
        train={"steps": 100, "optimizer": "adam", "learning_rate": 0.001},
    )
    outcome = train(spec)[0]
    log = outcome.scaling
    assert 0 < log["skipped"] <= 20 and log["later"] == 0 and log["last_skip"] < 50
    assert "skipped_steps" not in {w.id for w in diagnose(outcome).warnings}


def test_float16_overflow_is_fixed_by_verified_mixed_precision():
    layers = [{"units": 20, "activation": "relu"}, {"units": 5}]
    spec = make(
        layers,
        {"scale": 100.0, "samples": 256, "features": 10, "outputs": 5},
        numerics={"dtype": "float16"},
        train={"steps": 100, "optimizer": "adam", "learning_rate": 0.001},
    )
    d, outcome = examine(spec)
    assert outcome.first_nonfinite is not None and d.cause.id == "overflow"
    mixed = rec(d, "use_mixed_precision")
    assert mixed.changes == {"numerics.master_dtype": "float32", "numerics.loss_scale": "dynamic"}
    assert mixed.verified is True


def test_missing_values_are_bad_input_and_dropping_their_rows_is_verified():
    spec = make([{"units": 8, "activation": "relu"}, {"units": 2}], {"nan_fraction": 0.01})
    spec = spec.with_changes({"train.steps": 50})
    d, _ = examine(spec)
    assert d.cause.id == "bad_input"
    drop = rec(d, "drop_missing_rows")
    assert drop.changes == {"data.missing": "drop_rows"} and drop.verified is True
    fixed = diagnose(train(spec.with_changes(drop.changes))[0])
    assert any("dropped" in note and "of 64 rows" in note for note in fixed.notes)


def test_a_deep_saturating_stack_is_offered_batch_norm_and_sgd_explosions_adamw():
    sig = {"units": 16, "activation": "sigmoid", "init": "normal", "init_scale": 4.0}
    spec = make([sig, sig, sig, {"units": 2}], train={"steps": 40})
    d = diagnose(train(spec)[0])
    assert "saturation" in {w.id for w in d.warnings}
    bn = rec(d, "use_batch_norm")
    assert bn.changes == {f"model.layers.{i}.norm": "batch" for i in range(3)}

    relu = [{"units": 20, "activation": "relu"}, {"units": 5}]
    data = {"samples": 256, "features": 10, "outputs": 5}
    d = diagnose(train(make(relu, data, seed=0, train={"steps": 100, "learning_rate": 1.5}))[0])
    assert d.cause.id == "exploding_gradient"
    assert rec(d, "use_adamw").changes == {
        "train.optimizer": "adamw",
        "train.learning_rate": 0.001,
    }


@pytest.mark.parametrize(("optimizer", "fires"), [("adamw", True), ("sgd", True), ("adam", False)])
def test_weight_decay_that_flips_the_weights_each_step_is_a_factor_and_its_fix_learns(
    optimizer, fires
):
    """lr 0.1 x weight_decay 100: w <- -9 w - lr x step. The factor shows 1 - lr x wd and the
    weight norm's growth; weight_decay 0.01 is verified and learns, ranked above a lower rate
    (which stays finite with the weights pinned near 0). Adam rescales the decay term: not it."""
    layers = [{"units": 32, "activation": "relu"}, {"units": 1}]
    train_keys = {"steps": 300, "learning_rate": 0.1, "optimizer": optimizer}
    spec = make(layers, {"samples": 256, "features": 10, "outputs": 1}, train=train_keys)
    spec = spec.with_changes({"train.weight_decay": 100.0})
    d, _ = examine(spec)
    found = [f for f in d.contributing if f.id == "high_weight_decay"]
    assert bool(found) == fires
    if not fires:
        return
    assert d.status == "nonfinite"
    assert "1 - 0.1 x 100 = -9" in found[0].evidence[0]
    fix = d.recommendations[0]
    assert fix.id == "lower_weight_decay" and fix.changes == {"train.weight_decay": 0.01}
    assert fix.verified is True and fix.learns is True, fix.evidence


def test_a_schedule_that_raises_the_rate_is_named_with_the_rate_it_reached():
    """lr 0.002 doubled every 50 steps: the failure comes from the rate the schedule reached,
    which the factors show (not 0.002 alone), and a decaying schedule is verified."""
    layers = [{"units": 32, "activation": "relu"}, {"units": 1}]
    train_keys = {"steps": 600, "learning_rate": 0.002, "schedule": "exponential"}
    spec = make(layers, {"samples": 512, "features": 10, "outputs": 1}, train=train_keys)
    spec = spec.with_changes({"train.lr_gamma": 2.0, "train.lr_step_size": 50})
    d, outcome = examine(spec)
    assert d.status == "nonfinite"
    (grown,) = [f for f in d.contributing if f.id == "growing_schedule"]
    step = outcome.first_nonfinite.step
    reached = 0.002 * 2.0 ** ((step - 1) / 50)
    assert f"to {reached:.3g} by step {step}" in grown.summary
    fix = rec(d, "decay_schedule")
    assert fix.changes == {"train.lr_gamma": 0.1} and fix.verified is True, fix.evidence


def test_a_run_stuck_on_unscaled_targets_is_advised_to_standardize_them(tmp_path):
    """Finite, but the loss does not fall: with targets of ~1e6 and a small rate, standardizing
    the targets is proposed (untried: nothing failed); with scaled targets it is not."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((256, 4))
    for scale, proposed in ((1e6, True), (1.0, False)):
        np.savez(tmp_path / "d.npz", x=x, y=(x @ rng.standard_normal((4, 1))) * scale + 3 * scale)
        spec = spec_from_dict(
            {
                "seed": 0,
                "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
                "model": {"layers": [{"units": 8, "activation": "relu"}, {"units": 1}]},
                "train": {"steps": 200, "batch_size": 32, "learning_rate": 1e-12},
            }
        )
        d = diagnose(train(spec)[0])
        assert "loss_not_decreasing" in {w.id for w in d.warnings}
        assert ("standardize_targets" in {r.id for r in d.recommendations}) == proposed


def test_an_exactly_zero_gradient_behind_a_division_is_explained_by_the_dead_units():
    """Adagrad with eps 0 behind ReLUs whose bias (-20) kills every unit: the division by
    sqrt(0) + 0 is the cause, and the evidence says why the gradient was 0."""
    layers = [{"units": 32, "activation": "relu", "bias": -20.0}, {"units": 1}]
    train_keys = {"steps": 50, "learning_rate": 0.1, "optimizer": "adagrad", "eps": 0.0}
    spec = make(layers, {"samples": 256, "features": 8, "outputs": 1}, train=train_keys)
    d = diagnose(train(spec)[0])
    assert d.cause.id == "division_by_zero"
    assert any("layer 1: 100% of its ReLU units output 0" in e for e in d.cause.evidence)
