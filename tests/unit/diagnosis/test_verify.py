"""Verification must not call a change a fix on finiteness alone: each test builds a network that
fails, verifies its recommendations by re-running them, and checks the verdict against the
re-run's own numbers (a rate that stays finite only by exploding and killing the network, a
loss that fell only within its noise, a classifier left at chance level, a factor that the
experiments refute)."""

import math
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.diagnosis.diagnose import Recommendation, diagnose
from nandoctor.diagnosis.verify import (
    BLOWUP_FACTOR,
    _record,
    _trial,
    constant_prediction_loss,
    verify,
)
from nandoctor.engine.runs import train
from nandoctor.spec.models import load_spec, spec_from_dict

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

RELU_3 = [
    {"units": 64, "activation": "relu"},
    {"units": 64, "activation": "relu"},
    {"units": 1, "activation": "linear"},
]


def high_rate_relu():
    """Two ReLU layers of 64 at lr 1: the loss goes 1.84, 1.8e3, 3.6e13, 7.1e53, 4.5e221 and a
    matmul of step 6's forward pass overflows."""
    return spec_from_dict(
        {
            "seed": 0,
            "data": {
                "source": "synthetic",
                "task": "regression",
                "samples": 256,
                "features": 10,
                "outputs": 1,
            },
            "model": {"layers": RELU_3},
            "loss": "mse",
            "train": {"steps": 300, "batch_size": 32, "learning_rate": 1.0},
        }
    )


def test_halving_goes_below_a_rate_that_stays_finite_only_because_the_network_blew_up():
    """lr 0.5 stays finite for 300 steps, but only because its loss reached 6.7e182 at step 7
    and every ReLU died: not a fix. Halving goes on to a rate whose run learns without a
    blow-up, and that is the rate proposed."""
    spec = high_rate_relu()
    outcome = train(spec)[0]
    d = diagnose(outcome)
    verify(d, outcome, jobs=1)
    lower = next(r for r in d.recommendations if r.id == "lower_learning_rate")
    rate = lower.changes["train.learning_rate"]
    assert rate < 0.5 and lower.verified is True and lower.learns is True, lower.evidence
    rerun = train(spec.with_changes({"train.learning_rate": rate}))[0]
    assert np.max(rerun.loss) < BLOWUP_FACTOR * rerun.loss[0]
    assert rerun.loss[-30:].mean() < 0.1 * rerun.loss[0]  # it learns

    half = train(spec.with_changes({"train.learning_rate": 0.5}))[0]
    assert half.finite and np.max(half.loss) > 1e100  # finite, after an explosion
    trial = _trial(half)
    assert trial.learns is False and "blew up" in trial.blowup
    assert trial.frozen  # the dead layers never got a gradient again


def test_fix_does_not_write_a_change_whose_loss_fell_neither_beyond_its_noise_nor_overall(
    tmp_path,
):
    """A softmax of N(0, 1) x 100 weights overflows at step 1 in naive mode. Stable numerics
    keep it finite, but its loss stays near 380: its mini-batch medians fell within their noise,
    and over the training set it went 380 -> 379, under 1%: it does not learn, kept finite, not
    fixed. The step-1 overflow came from the initial weights, so scaled init with init_scale 1
    is proposed, and that is what `fix` writes: its re-run learns."""
    src = tmp_path / "huge_init.yaml"
    src.write_text(
        "seed: 0\n"
        "data: {source: synthetic, task: classification, samples: 128, features: 10, outputs: 4}\n"
        "model:\n  layers:\n"
        "    - {units: 4, activation: softmax, init: normal, init_scale: 100.0}\n"
        "loss: cross_entropy\nnumerics: {mode: naive}\n"
        "train: {steps: 100, batch_size: 32, learning_rate: 0.01}\n"
    )
    spec = load_spec(src)
    outcome = train(spec)[0]
    d = diagnose(outcome)
    verify(d, outcome, jobs=1)
    stable = next(r for r in d.recommendations if r.id == "stable_numerics")
    assert stable.verified is True and stable.learns is False, stable.evidence
    assert "within its step-to-step noise" in stable.evidence
    assert "over the training set it did not fall, whole-data loss 380 -> 379" in stable.evidence
    init = next(r for r in d.recommendations if r.id == "use_he_init")
    assert init.changes["model.layers.0.init_scale"] == 1.0 and init.learns is True

    out = tmp_path / "fixed.yaml"
    r = CliRunner().invoke(main, ["fix", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "fixed by model.layers.0.init" in r.output and "numerics.mode=stable" not in r.output
    fixed = load_spec(out)
    assert fixed.model.layers[0].init_scale == 1.0
    run = train(fixed)[0]
    assert run.finite and np.median(run.loss[-10:]) < 0.95 * np.median(run.loss[:10])


def test_a_change_that_leaves_a_classifier_at_chance_level_does_not_learn(tmp_path):
    """Raw 0-255 pixels into a ReLU layer and a naive softmax: NaN at step 1. Stable numerics
    keep it finite, but the loss blows up, layer 1 dies, and the loss settles at ln 10, the
    chance level of ten balanced classes. Its loss fell from the blow-up, yet it learned
    nothing: learns is false, with the numbers; standardized inputs learn."""
    rng = np.random.default_rng(0)
    proto = rng.integers(0, 256, (10, 64))
    y = np.repeat(np.arange(10), 50)
    x = np.clip(proto[y] + rng.normal(0, 40, (500, 64)), 0, 255).round()
    np.savez(tmp_path / "pixels.npz", x=x.astype(np.float32), y=y)
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"source": "npz", "path": str(tmp_path / "pixels.npz")},
            "model": {
                "layers": [
                    {"units": 32, "activation": "relu"},
                    {"units": 10, "activation": "softmax"},
                ]
            },
            "loss": "cross_entropy",
            "numerics": {"dtype": "float32", "mode": "naive"},
            "train": {"steps": 300, "batch_size": 32, "learning_rate": 0.1},
        }
    )
    outcome = train(spec)[0]
    assert math.isclose(constant_prediction_loss(outcome), math.log(10))  # balanced classes
    d = diagnose(outcome)
    ranked = verify(d, outcome, jobs=1)
    stable = next(r for r in ranked if r.id == "stable_numerics")
    assert stable.verified is True and stable.learns is False, stable.evidence
    assert abs(stable.final_loss - math.log(10)) < 0.05
    assert "chance level" in stable.evidence and stable.frozen_layers == [1]
    best = ranked[0]
    assert best.id == "standardize_inputs" and best.learns is True, best.evidence


def test_a_factor_its_own_experiment_refutes_is_not_listed_as_contributing():
    """Five ReLU layers of 256 from N(0, 1) overflow at step 3 at lr 0.001; the first update
    moves the weights by their whole norm (high_learning_rate), but a rate 16 halvings lower
    fails too, while scaled init alone removes it. The factor is refuted and dropped, and the
    cause's evidence says so."""
    layers = [{"units": 256, "activation": "relu", "init": "normal"}] * 5
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {
                "source": "synthetic",
                "task": "regression",
                "samples": 256,
                "features": 64,
                "outputs": 1,
            },
            "model": {"layers": [*layers, {"units": 1, "activation": "linear"}]},
            "loss": "mse",
            "train": {"steps": 60, "batch_size": 32, "learning_rate": 0.001},
        }
    )
    outcome = train(spec)[0]
    d = diagnose(outcome)
    assert "high_learning_rate" in {c.id for c in d.contributing}  # before the experiments
    verify(d, outcome, jobs=1)
    lower = next(r for r in d.recommendations if r.id == "lower_learning_rate")
    assert lower.verified is False and "16 halvings" in lower.evidence
    assert "high_learning_rate" not in {c.id for c in d.contributing}
    assert any("refutes the factor high_learning_rate" in e for e in d.cause.evidence)


def adam_eps_1e8():
    """adam_eps_zero with eps 1e-8, its fix: one row per batch, 200 steps, 256 rows."""
    return load_spec(CONFIGS / "adam_eps_zero.yaml").with_changes({"train.eps": 1e-8})


def mse_by_hand(o, params) -> float:
    """The mean squared error of a relu -> linear network over all of ``o``'s rows."""
    w1, b1, w2, b2 = (np.asarray(p, np.float64) for p in params)
    out = np.maximum(o.prepared.x @ w1 + b1, 0) @ w2 + b2
    return float(((out - o.prepared.y) ** 2).mean())


def test_a_fall_within_the_mini_batch_noise_is_decided_by_the_loss_over_the_training_set():
    """One-row batches: the medians of the first and last 20 losses (3.54 -> 2.3) fall within
    their step-to-step noise, since one row's loss varies more than training moves it. Over all
    256 rows, at the weights the run started and ended with, the loss fell 3.93 -> 2.13: the
    change learns, and its evidence says so with those numbers."""
    o = train(adam_eps_1e8())[0]
    trial = _trial(o)
    assert trial.trend.learned is None  # the windows cannot tell
    whole = trial.whole
    assert whole.rows == whole.samples == 256
    assert math.isclose(whole.start, mse_by_hand(o, o.prepared.init_params), rel_tol=1e-9)
    assert math.isclose(whole.end, mse_by_hand(o, o.final_params), rel_tol=1e-9)
    assert whole.end < 0.6 * whole.start and trial.learns is True
    rec = Recommendation("add_eps", "", {"train.eps": 1e-8}, None)
    _record(rec, trial)
    assert rec.learns is True
    assert "over the training set it fell: whole-data loss 3.93 -> 2.13 (all 256 rows" in (
        rec.evidence
    )


def test_weights_that_end_predicting_a_constant_do_not_learn_however_far_the_loss_fell():
    """The same run, its final weights replaced by a network that outputs the targets' mean
    whatever the input: its whole-data loss fell from 3.93 to the targets' variance, the loss of
    a constant prediction, so it learned nothing from the inputs."""
    o = train(adam_eps_1e8())[0]
    w1, b1, w2, _ = o.final_params
    o.final_params = [w1, b1, np.zeros_like(w2), o.prepared.y.mean(axis=0)]
    trial = _trial(o)
    assert trial.trend.learned is None and trial.whole.fell
    assert math.isclose(trial.whole.end, constant_prediction_loss(o), rel_tol=1e-9)
    assert trial.learns is False and "over the training set" in trial.baseline
