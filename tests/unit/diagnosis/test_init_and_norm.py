"""Findings about what a run started from: ReLUs dead before any update (the init, not the
rate), batch norm over one-row batches (frozen, not dead), a confident output layer (not a
stall), and the weights a step-1 failure ran with."""

import io
from pathlib import Path

import numpy as np
from rich.console import Console

from nandoctor.check import check_one
from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.examine import examine, verify_fixes
from nandoctor.report.diagnosis import layer_table
from nandoctor.spec.models import load_spec, spec_from_dict

UPDATE_RULE = ("train.learning_rate", "train.clip_grad_norm", "train.optimizer")


def dead_from_init(**layer) -> dict:
    return {
        "seed": 0,
        "data": {"source": "synthetic", "task": "regression", "samples": 256, "features": 10,
                 "outputs": 1},
        "model": {"layers": [{"units": 32, "activation": "relu", **layer},
                             {"units": 1, "activation": "linear"}]},
        "loss": "mse",
        "train": {"steps": 200, "batch_size": 32, "learning_rate": 0.01},
    }  # fmt: skip


def test_relus_dead_from_step_1_blame_the_bias_and_get_a_fresh_init_not_a_rate():
    """A bias of -20 kills every unit before any update: the warning says the init did it, the
    fix is bias 0 (verified: its re-run learns), and no update-rule change is proposed."""
    d, outcome = examine(spec_from_dict(dead_from_init(bias=-20.0)))
    (w,) = [w for w in d.warnings if w.id == "dead_relu"]
    assert w.step == 1 and w.blames == "model.layers.0.bias"
    assert "before any update" in w.summary and "bias -20" in w.summary
    assert not any(key in r.changes for r in d.recommendations for key in UPDATE_RULE)
    verify_fixes(d, outcome)
    best = d.recommendations[0]
    assert best.id == "reset_init" and best.changes == {"model.layers.0.bias": 0.0}
    assert best.verified is True and best.learns is True and not best.frozen_layers


def test_dead_from_a_zero_init_blames_the_init():
    d, _ = examine(spec_from_dict(dead_from_init(init="zeros")))
    (w,) = [w for w in d.warnings if w.id == "dead_relu"]
    assert w.blames == "model.layers.0.init"
    (reset,) = [r for r in d.recommendations if r.id == "reset_init"]
    assert reset.changes == {"model.layers.0.init": "he"}


def test_a_check_annotation_of_relus_dead_from_init_points_at_the_bias(tmp_path):
    path = tmp_path / "dead.yaml"
    path.write_text(
        "seed: 0\n"
        "data: {source: synthetic, task: regression, samples: 256, features: 10, outputs: 1}\n"
        "model:\n"
        "  layers:\n"
        "    - {units: 32, activation: relu, bias: -20.0}\n"
        "    - {units: 1, activation: linear}\n"
        "loss: mse\n"
        "train: {steps: 200, batch_size: 32, learning_rate: 0.01}\n"
        "check: {fail_on: [dead_relu]}\n"
    )
    r = check_one((str(path), None, None))
    assert not r.passed and "dead_relu" in r.reasons
    assert (r.line, r.col) == (5, 37)  # bias:, not learning_rate: on line 8


def test_relus_that_die_while_training_still_blame_the_rate():
    spec = load_spec(Path(__file__).parents[3] / "configs/dead_relu.yaml")
    d = diagnose(train(spec)[0])
    (w,) = [w for w in d.warnings if w.id == "dead_relu"]
    assert w.step > 1 and w.blames is None
    assert "lower_learning_rate" in {r.id for r in d.recommendations}


def one_row_batch_norm(batch_size) -> dict:
    return {
        "seed": 0,
        "data": {"source": "synthetic", "task": "regression", "samples": 64, "features": 4,
                 "outputs": 1},
        "model": {"layers": [{"units": 16, "activation": "relu", "norm": "batch"},
                             {"units": 1, "activation": "linear"}]},
        "loss": "mse",
        "train": {"steps": 200, "batch_size": batch_size, "learning_rate": 0.01},
    }  # fmt: skip


def test_batch_norm_over_one_row_is_named_and_a_larger_batch_is_verified():
    """Batch norm over one row outputs beta whatever the input: layer 1's weights never get a
    gradient. The warnings say so; the one recommendation is a larger batch, verified by a re-run
    that trains every layer; leaky_relu and a lower rate, which leave it frozen, are not offered."""
    d, outcome = examine(spec_from_dict(one_row_batch_norm(1)))
    said = {w.id: w.summary for w in d.warnings}
    assert "batch of 1 row" in said["zero_gradient"] and "beta" in said["zero_gradient"]
    assert "batch of 1 row" in said["dead_relu"]
    assert [r.id for r in d.recommendations] == ["larger_batch"]
    verify_fixes(d, outcome)
    (rec,) = d.recommendations
    assert rec.changes == {"train.batch_size": 32}
    assert rec.verified is True and rec.learns is True and not rec.frozen_layers


def test_batch_norm_over_several_rows_is_not_blamed():
    d = diagnose(train(spec_from_dict(one_row_batch_norm(32)))[0])
    assert not any("batch of 1 row" in w.summary for w in d.warnings)


def confident(output_layer: dict, task: str, loss: str, lr: float, outputs: int) -> dict:
    return {
        "seed": 0,
        "data": {"source": "synthetic", "task": task, "samples": 256, "features": 10,
                 "outputs": outputs},
        "model": {"layers": [{"units": 16, "activation": "relu"}, output_layer]},
        "loss": loss,
        "train": {"steps": 500, "batch_size": 32, "learning_rate": lr},
    }  # fmt: skip


def test_a_saturated_output_layer_on_a_falling_loss_is_a_note_not_a_stall():
    spec = spec_from_dict(confident({"units": 1, "activation": "sigmoid"}, "binary", "bce", 1.0, 1))
    d = diagnose(train(spec)[0])
    assert d.status == "healthy" and not d.warnings
    assert not any("learning stalls" in n for n in d.notes)
    (note,) = [n for n in d.notes if "confident output layer" in n]
    assert note.startswith("layer 2 (sigmoid)") and "the loss fell from" in note


def test_a_saturated_hidden_layer_still_warns():
    sig = {"units": 16, "activation": "sigmoid", "init": "normal", "init_scale": 4.0}
    spec = spec_from_dict(
        {
            "data": {"source": "synthetic", "task": "regression", "samples": 64, "features": 4},
            "model": {"layers": [sig, sig, {"units": 2}]},
            "train": {"steps": 40},
        }
    )
    d = diagnose(train(spec)[0])
    assert {w.layer for w in d.warnings if w.id == "saturation"} >= {1}
    assert any("learning stalls" in n for n in d.notes)


def test_a_step_1_failure_shows_the_weights_it_ran_with():
    """float16 fails in the loss at step 1; that step's history row holds the weights after its
    update (inf, NaN). The table shows the initial weights' norms, which step 1 ran with."""
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"source": "synthetic", "task": "regression", "samples": 256,
                     "features": 10, "outputs": 1, "scale": 100},
            "model": {"layers": [{"units": 32, "activation": "relu"}, {"units": 1}]},
            "loss": {"name": "mse", "reduction": "sum"},
            "numerics": {"dtype": "float16"},
            "train": {"steps": 200},
        }
    )  # fmt: skip
    outcome = train(spec)[0]
    d = diagnose(outcome)
    assert d.first_nonfinite.step == 1 and d.first_nonfinite.phase == "loss"
    assert not np.isfinite(d.history["weight_norm"][0]).all()  # after the failing update
    W = [
        p
        for s, p in zip(outcome.prepared.slots, outcome.prepared.init_params, strict=True)
        if s.name == "W"
    ]
    want = [float(np.linalg.norm(w.astype(np.float64))) for w in W]
    assert np.allclose(d.weights_ran_with, want)
    out = io.StringIO()
    Console(file=out, width=140).print(layer_table(d))
    text = out.getvalue()
    assert "the weights it ran with" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1] in ("1", "2")]
    assert [r[6] for r in rows] == [f"{v:.3g}" for v in want] and [r[7] for r in rows] == ["-"] * 2
