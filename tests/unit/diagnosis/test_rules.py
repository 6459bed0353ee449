"""Diagnosis rules on networks built here from spec dicts: each test states a behaviour of the
rules (a short explosion, parameters that never move, a flat loss behind a spike, one entry per
contributing factor) and checks it against the numbers of a real run."""

from pathlib import Path

import numpy as np
import pytest

from nandoctor.diagnosis.catalogue import RECOMMENDATIONS
from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.diagnosis.verify import verify
from nandoctor.engine.runs import train
from nandoctor.spec.models import spec_from_dict

CONFIGS = Path(__file__).parents[3] / "configs"


def spec(layers, loss="mse", data=None, numerics=None, **train_keys):
    return spec_from_dict(
        {
            "seed": 0,
            "data": data
            or {"source": "synthetic", "task": "regression", "samples": 256, "features": 10},
            "model": {"layers": layers},
            "loss": loss,
            "numerics": numerics or {},
            "train": train_keys,
        }
    )


RELU_NET = [{"units": 20, "activation": "relu"}, {"units": 5, "activation": "linear"}]


def test_a_short_violent_explosion_is_an_exploding_gradient_the_experiments_confirm():
    """x1e7 in one update, then an overflow: growth, not an overflow without history."""
    s = spec(RELU_NET, numerics={"dtype": "float32"}, steps=30, learning_rate=300.0)
    outcome = train(s)[0]
    d = diagnose(outcome)
    from nandoctor.diagnosis.measures import total_norm

    g = total_norm(outcome.history["grad_norm"][: d.first_nonfinite.step - 1])
    assert d.first_nonfinite.step <= 3 and g[1] / g[0] > 1e6  # the run is what the test says

    assert d.cause.id == "exploding_gradient"
    assert [c.id for c in d.contributing] == ["high_learning_rate"]
    assert any("gradient norm rose" in line for line in d.cause.evidence)
    assert not any("growth" in line and "no" in line for line in d.cause.evidence)

    ranked = verify(d, outcome, jobs=1)
    lower = next(r for r in ranked if r.id == "lower_learning_rate")
    assert lower.verified is True
    confirms = RECOMMENDATIONS["lower_learning_rate"].confirms
    assert any(confirms in line for line in d.cause.evidence)
    assert not any("does not remove it" in line for line in d.cause.evidence if "lower" in line)


def test_an_explosion_seen_in_the_failing_steps_own_gradient_is_growth():
    """float16, one update x300 the gradient norm, then the loss overflows at step 2: the
    backward pass of step 2 is still finite and shows the growth."""
    s = spec(RELU_NET, numerics={"dtype": "float16"}, steps=20, learning_rate=10.0)
    d = diagnose(train(s)[0])
    assert (d.first_nonfinite.step, d.first_nonfinite.phase) == (2, "loss")
    assert d.cause.id == "exploding_gradient"
    assert "high_learning_rate" in {c.id for c in d.contributing}


def test_a_few_steps_of_orders_of_magnitude_growth_before_a_forward_overflow_is_an_explosion():
    """The failing step's forward pass overflowed: its gradient row is computed from inf (ReLU
    makes -inf 0) and is no measure of growth. The steps before it grew x300, x3e8, x3e34,
    x2e142: exploding_gradient, with the numbers, and clipping proposed and verified."""
    outcome = train(
        spec(
            [*[{"units": 64, "activation": "relu"}] * 2, {"units": 1, "activation": "linear"}],
            data={
                "source": "synthetic",
                "task": "regression",
                "samples": 256,
                "features": 10,
                "outputs": 1,
            },
            steps=300,
            batch_size=32,
            learning_rate=1.0,
        )
    )[0]
    first = outcome.first_nonfinite
    assert (first.step, first.phase) == (6, "forward")  # the run is what the test says
    from nandoctor.diagnosis.measures import total_norm

    g = total_norm(outcome.history["grad_norm"][:5])
    assert np.all(g[1:] / g[:-1] > 100)

    d = diagnose(outcome)
    assert d.cause.id == "exploding_gradient", d.cause.summary
    assert any("gradient norm rose from 7.88 at step 1" in e for e in d.cause.evidence)
    assert not any("no sustained growth" in e for e in d.cause.evidence)
    assert "high_learning_rate" in {c.id for c in d.contributing}
    verify(d, outcome, jobs=1)
    clip = next(r for r in d.recommendations if r.id == "clip_gradients")
    assert clip.verified is True and clip.learns is True, clip.evidence


def test_overflow_without_updates_stays_overflow():
    """Step 1 has no update behind it: float16's range alone is the cause."""
    s = spec(RELU_NET, numerics={"dtype": "float16"}, steps=5, learning_rate=0.01)
    s = s.with_changes({"data.scale": 1e4})
    d = diagnose(train(s)[0])
    assert d.first_nonfinite.step == 1 and d.cause.id == "overflow"


def test_parameters_that_never_move_are_a_zero_gradient_warning():
    """A softmax over one unit outputs 1 whatever its input: no layer ever gets a gradient."""
    s = spec(
        [{"units": 8, "activation": "tanh"}, {"units": 1, "activation": "softmax"}],
        data={"source": "synthetic", "task": "regression", "samples": 64, "features": 4},
        steps=30,
    )
    outcome = train(s)[0]
    assert np.all(outcome.history["grad_norm"] == 0)
    d = diagnose(outcome)
    zero = [w for w in d.warnings if w.id == "zero_gradient"]
    assert [w.layer for w in zero] == [1, 2]
    assert all(w.step == 1 and "from 1 to 30" in w.summary for w in zero)


def test_a_layer_that_learns_has_no_zero_gradient_warning():
    d = diagnose(train(spec(RELU_NET, steps=30, learning_rate=0.01))[0])
    assert "zero_gradient" not in {w.id for w in d.warnings}


@pytest.fixture
def spiky_flat_run(tmp_path):
    """A loss that cannot fall (a learning rate of 1e-9) and one batch, the 6th, holding an
    input row of 1e4: a loss spike of six orders of magnitude at step 6, then back."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 10))
    y = x @ rng.standard_normal((10, 5)) * 0.3 + 0.1 * rng.standard_normal((2000, 5))
    x[50] = 1e4
    np.savez(tmp_path / "data.npz", x=x, y=y)
    s = spec(
        RELU_NET,
        data={"source": "npz", "path": str(tmp_path / "data.npz")},
        steps=200,
        batch_size=10,
        shuffle=False,
        learning_rate=1e-9,
    )
    return train(s)[0]


def test_one_huge_early_spike_does_not_hide_a_loss_that_does_not_fall(spiky_flat_run):
    loss = spiky_flat_run.loss
    assert loss[5] > 1e5 * np.median(loss)  # the spike is there, in the first tenth
    d = diagnose(spiky_flat_run)
    assert "loss_not_decreasing" in {w.id for w in d.warnings}


def test_a_transient_spike_is_an_exploding_gradient_warning_even_after_recovery(spiky_flat_run):
    d = diagnose(spiky_flat_run)
    assert d.status == "warning"
    (spike,) = [w for w in d.warnings if w.id == "exploding_gradient"]
    assert spike.step == 6 and spike.layer == 1
    assert "by step 200" in spike.summary


def test_mini_batch_noise_does_not_pass_for_a_falling_loss():
    """A learning rate too small to move the weights, batches of 32 shuffled: the medians of the
    two ends differ by noise alone, which is no fall."""
    d = diagnose(train(spec(RELU_NET, steps=200, learning_rate=1e-7))[0])
    assert "loss_not_decreasing" in {w.id for w in d.warnings}


def test_one_row_batches_whose_loss_fell_over_the_training_set_are_not_flagged():
    """Batches of one row: each step's loss is one row's, so the medians of the first and last
    20 steps differ within their noise even while training works. The loss over all 256 rows
    at the first and last weights decides: it fell, no warning; at a rate too small to move the
    weights it did not, and the warning gives both numbers. A fall one outlier row carries is
    no fall either (test_one_huge_early_spike_does_not_hide_a_loss_that_does_not_fall)."""
    from nandoctor.diagnosis.measures import run_loss_trend, whole_data_loss

    learns = train(spec(RELU_NET, steps=200, batch_size=1, optimizer="adam", learning_rate=1e-3))[0]
    assert run_loss_trend(learns).learned is None  # the windows cannot tell
    assert whole_data_loss(learns).end < 0.9 * whole_data_loss(learns).start
    assert "loss_not_decreasing" not in {w.id for w in diagnose(learns).warnings}

    still = train(spec(RELU_NET, steps=200, batch_size=1, learning_rate=1e-7))[0]
    assert run_loss_trend(still).noisy  # here the last window's median is higher, within noise
    (w,) = [w for w in diagnose(still).warnings if w.id == "loss_not_decreasing"]
    assert "step-to-step noise" in w.summary and "whole-data loss" in w.summary


def test_a_falling_loss_is_not_flagged():
    d = diagnose(train(spec(RELU_NET, steps=200, learning_rate=0.01))[0])
    assert "loss_not_decreasing" not in {w.id for w in d.warnings}


def test_each_contributing_factor_is_listed_once_with_each_layers_evidence():
    """Three N(0, 1) squashing layers saturated at step 1: one poor_init, three evidence lines."""
    s = spec(
        [
            {"units": 20, "activation": "tanh", "init": "normal"},
            {"units": 20, "activation": "tanh", "init": "normal"},
            {"units": 1, "activation": "sigmoid", "init": "normal"},
        ],
        loss="bce",
        data={"source": "synthetic", "task": "binary", "samples": 256, "features": 10},
        numerics={"dtype": "float32", "mode": "naive"},
        steps=300,
        learning_rate=2.0,
    )
    d = diagnose(train(s)[0])
    assert d.cause.id == "saturation"
    ids = [c.id for c in d.contributing]
    assert len(ids) == len(set(ids))
    (poor,) = [c for c in d.contributing if c.id == "poor_init"]
    assert [line.split(":")[0] for line in poor.evidence] == ["layer 1", "layer 2", "layer 3"]


def deep_relu(init: str, depth: int = 6, steps: int = 5):
    layers = [{"units": 64, "activation": "relu", "init": init} for _ in range(depth)]
    return spec_from_dict(
        {
            "seed": 0,
            "data": {"samples": 64, "features": 64, "outputs": 1},
            "model": {"layers": [*layers, {"units": 1, "init": init}]},
            "train": {"steps": steps, "batch_size": 32, "learning_rate": 1e-9},
        }
    )


def test_activations_multiplied_layer_after_layer_at_the_first_step_are_a_warning():
    """N(0, 1) weights over a fan-in of 64 multiply a ReLU layer's output by ~5.7: the warning
    gives the growth per layer from the run's max |z|, and proposes He init."""
    outcome = train(deep_relu("normal"))[0]
    d = diagnose(outcome)
    (w,) = [w for w in d.warnings if w.id == "exploding_activations"]
    z = outcome.history["max_abs_z"][0]
    assert w.step == 1 and w.layer >= 4
    assert f"({z[0]:.3g})" in w.summary
    per = (z[w.layer - 1] / z[0]) ** (1 / (w.layer - 1))
    assert 4 <= per <= 10 and f"x{per:.3g} per layer" in w.summary
    (rec,) = [r for r in d.recommendations if r.id == "use_he_init"]
    assert set(rec.changes.values()) == {"he"} and len(rec.changes) == 7


@pytest.mark.parametrize("init", ["he", "xavier"])
def test_scaled_init_keeps_activations_level_and_has_no_such_warning(init):
    d = diagnose(train(deep_relu(init))[0])
    assert "exploding_activations" not in {w.id for w in d.warnings}


def test_a_shallow_unscaled_network_is_not_flagged():
    d = diagnose(train(deep_relu("normal", depth=2))[0])
    assert "exploding_activations" not in {w.id for w in d.warnings}


def test_exploding_activations_are_seen_in_the_forward_pass_of_a_step_that_failed():
    """15 ReLU layers of width 128 from N(0, 1), float32 Adam: the first step's gradient is too
    large to square, so the run fails in its first update, with no complete step. Its forward
    pass still shows max |z| multiplied layer after layer, and He init, proposed from that, is
    the verified fix that learns, ranked first."""
    layers = [{"units": 128, "activation": "relu", "init": "normal"} for _ in range(15)]
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"samples": 256, "features": 128, "outputs": 1},
            "model": {"layers": [*layers, {"units": 1, "init": "normal"}]},
            "numerics": {"dtype": "float32"},
            "train": {"steps": 200, "batch_size": 32, "learning_rate": 0.001, "optimizer": "adam"},
        }
    )
    outcome = train(spec)[0]
    assert outcome.first_nonfinite.step == 1 and outcome.first_nonfinite.phase == "update"
    d = diagnose(outcome)
    (w,) = [w for w in d.warnings if w.id == "exploding_activations"]
    assert w.step == 1 and w.layer >= 10
    d.recommendations = verify(d, outcome, jobs=1)
    best = d.recommendations[0]
    assert best.id == "use_he_init" and best.verified and best.learns, best.evidence


def test_a_loss_that_ended_orders_of_magnitude_above_step_1_is_flagged():
    """Raw house prices: step 2's update lifts the loss from ~6e10 to ~1e23, the ReLUs die and
    the loss then falls slowly, so the first tenth's median is above the last tenth's. It still
    ended orders of magnitude above step 1: a diverging loss, and the unscaled data are what to
    standardize."""
    from pathlib import Path

    from nandoctor.diagnosis.findings import fmt
    from nandoctor.diagnosis.measures import DIVERGE_FACTOR, median

    houses = Path(__file__).resolve().parents[3] / "configs" / "data" / "houses.csv"
    data = {
        "source": "csv",
        "path": str(houses),
        "target": "price",
        "categorical": ["district"],
        "missing": "drop_rows",
    }
    run = train(spec(RELU_NET[:1] + [{"units": 1}], data=data, steps=200, learning_rate=1e-3))[0]
    loss = run.loss
    k = len(loss) // 10
    assert run.finite and median(loss[-k:]) > DIVERGE_FACTOR * loss[0]
    d = diagnose(run)
    (w,) = [w for w in d.warnings if w.id == "loss_not_decreasing"]
    assert "diverging" in w.summary and fmt(loss[0]) in w.summary
    ids = {r.id for r in d.recommendations}
    assert {"standardize_inputs", "standardize_targets"} <= ids


def test_a_loss_that_converged_within_its_first_tenth_learned():
    """6.4 at step 1, the optimum 0.0093 from step 20 of 300: the first and last tenth have the
    same median, yet it fell 700-fold. Not 'loss_not_decreasing', and a change like it learns."""
    from nandoctor.diagnosis.measures import loss_trend

    loss = np.maximum(6.4 * 0.6 ** np.arange(300), 0.00929)
    trend = loss_trend(loss)
    assert trend.start == trend.end  # the medians alone cannot tell
    assert trend.learned is True and not trend.flat
    assert "at step 1" in str(trend)
    slow = loss_trend(np.full(300, 6.4) * (1 + 1e-4 * np.sin(np.arange(300))))
    assert slow.learned is False  # flat from step 1: still no fall


def test_a_run_longer_than_the_window_is_judged_from_its_real_first_tenth():
    """6,000 steps keep full-resolution losses for the last 4,096 only: the first tenth (steps
    1-600) is read from the run's summary, not from the window's first rows (steps 1905-2504,
    which are 5 times lower here)."""
    from nandoctor.diagnosis.measures import loss_trend, median, run_loss_trend
    from nandoctor.spec.models import load_spec

    spec = load_spec(CONFIGS / "healthy.yaml").with_changes({"train.steps": 6000})
    o = train(spec, snapshots=False)[0]
    assert o.history_start > 1  # the window no longer holds step 1
    every_step = train(spec, instrument=False, snapshots=False)[0].loss
    truth = median(every_step[:600])
    trend = run_loss_trend(o)
    assert trend.window == 600 and trend.every > 1
    assert abs(trend.start - truth) < 0.2 * truth
    assert loss_trend(o.loss).start < 0.5 * truth  # what the window's first rows would say
    assert "over the first 600 steps" in str(trend) and "one value per" in str(trend)


def test_scaled_init_gives_a_softmax_layer_xavier_not_he():
    """An oversized N(0, 1) x 100 softmax layer overflows at step 1; the scaled init proposed for
    it is the saturating layers' Xavier, as for sigmoid and tanh (He is for the relu family)."""
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {
                "source": "synthetic",
                "task": "classification",
                "samples": 128,
                "features": 10,
                "outputs": 4,
            },
            "model": {
                "layers": [
                    {"units": 16, "activation": "relu", "init": "normal"},
                    {"units": 4, "activation": "softmax", "init": "normal", "init_scale": 100.0},
                ]
            },
            "loss": "cross_entropy",
            "numerics": {"mode": "naive"},
            "train": {"steps": 20, "batch_size": 32, "learning_rate": 0.01},
        }
    )
    d = diagnose(train(spec)[0])
    (rec,) = [r for r in d.recommendations if r.id == "use_he_init"]
    assert rec.changes["model.layers.0.init"] == "he"
    assert rec.changes["model.layers.1.init"] == "xavier"
    assert rec.changes["model.layers.1.init_scale"] == 1.0
