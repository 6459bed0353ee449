"""Recommendations are changes the run's dtype can carry out, never the spec's current value."""

import numpy as np
import pytest

from nandoctor.diagnosis.recommend import changes_nothing, holdable
from nandoctor.examine import examine, verify_fixes
from nandoctor.spec.models import spec_from_dict


def is_normal(value: float, dtype: str) -> bool:
    held = np.asarray(value, dtype)
    return bool(np.isfinite(held) and abs(held) >= np.finfo(dtype).tiny)


@pytest.mark.parametrize(
    ("value", "dtype", "want"),
    [
        (1e-8, "float16", 1e-4),  # 1e-8 is 0 in float16; 6.1e-5 is its smallest normal
        (3e-5, "float16", 1e-4),  # a subnormal there
        (1e-8, "float32", 1e-8),
        (1e-40, "float32", 1e-37),
        (0.0, "float16", 0.0),  # zero is exact: switching something off stays possible
        ("xavier", "float16", "xavier"),
    ],
)
def test_holdable_numbers_are_normal_in_the_dtype(value, dtype, want):
    got = holdable(value, dtype)
    assert got == want
    if isinstance(got, float) and got:
        assert is_normal(got, dtype)


def float16_spec(optimizer: str, eps: float | None) -> dict:
    """One sample per batch: a ReLU unit off for it gets an exact 0 gradient, so v is 0 there."""
    train = {"steps": 60, "batch_size": 1, "learning_rate": 0.001, "optimizer": optimizer}
    if eps is not None:
        train["eps"] = eps
    return spec_from_dict(
        {
            "data": {"samples": 64, "features": 6},
            "model": {"layers": [{"units": 16, "activation": "relu"}, {"units": 3}]},
            "numerics": {"dtype": "float16"},
            "train": train,
        }
    )


@pytest.mark.parametrize(("optimizer", "eps"), [("adam", 0.0), ("adam", None), ("rmsprop", 1e-8)])
def test_float16_eps_recommendation_is_one_float16_holds_and_is_verified(optimizer, eps):
    spec = float16_spec(optimizer, eps)
    diagnosis, outcome = examine(spec)
    assert diagnosis.cause.id == "division_by_zero"
    verify_fixes(diagnosis, outcome, jobs=1)
    (rec,) = [r for r in diagnosis.recommendations if r.id == "add_eps"]
    proposed = rec.changes["train.eps"]
    assert is_normal(proposed, "float16")
    assert np.float16(proposed) != np.float16(spec.train.eps)  # not the current value again
    assert rec.verified is True, rec.evidence


def test_a_change_to_the_current_value_changes_nothing():
    spec = float16_spec("adam", None)  # eps 1e-8, which float16 holds as 0
    assert changes_nothing(spec, {"train.eps": 0.0})
    assert changes_nothing(spec, {"train.optimizer": "adam", "train.eps": 1e-8})
    assert not changes_nothing(spec, {"train.eps": 1e-4})
    assert not changes_nothing(spec, {"train.clip_grad_norm": 1.0})


def overflowing_float16_spec(lr: float):
    return spec_from_dict(
        {
            "data": {"samples": 64, "features": 10, "scale": 60.0},  # overflows at any rate
            "model": {"layers": [{"units": 16, "activation": "relu"}, {"units": 3}]},
            "numerics": {"dtype": "float16"},
            "train": {"steps": 20, "batch_size": "full", "learning_rate": lr},
        }
    )


def test_halving_tries_only_rates_the_dtype_holds():
    """float16's smallest normal is 6.1e-5: below it a rate trains with rounded-off steps, and
    from 3e-8 down it is 0, which would 'stay finite' by not training at all. (This spec fails
    in step 1's loss at any rate, so ``recommend`` proposes no lower rate for it at all; the
    halving itself is what is tested here.)"""
    from nandoctor.diagnosis.verify import largest_finite_lr

    _, outcome = examine(overflowing_float16_spec(1e-3))
    halving = largest_finite_lr(outcome)
    assert (halving.rate, halving.tried) == (None, 4)  # 1e-3 / 16 = 6.25e-5, the last normal


def test_a_lower_rate_below_the_dtypes_normals_is_its_smallest_normal_power_of_ten():
    assert holdable(1.2e-5, "float16") == 1e-4  # a tenth of 1.2e-4 is a float16 subnormal
    assert holdable(1.2e-5, "float32") == 1.2e-5


def test_a_verified_change_whose_loss_did_not_fall_is_marked_and_ranked_after_those_that_learn():
    """Finite is what ``verified`` means; a change that stays finite by not learning (a rate too
    small to move the weights) says so and comes after the verified ones whose loss fell. The
    fall is judged as loss_not_decreasing judges it: medians of the first and last tenth, a
    change within their noise is no fall."""
    from nandoctor.diagnosis.findings import Recommendation
    from nandoctor.diagnosis.measures import loss_trend
    from nandoctor.diagnosis.verify import Trial, _record, rank

    rng = np.random.default_rng(0)
    # rising slowly under noise (as on unscaled house prices), its last step below its first
    flat = 8.5e10 * np.linspace(1.0, 1.3, 1000) * (1 + 0.05 * rng.standard_normal(1000))
    flat[-1] = 0.5 * flat[0]
    falls = np.geomspace(1.0, 0.03, 1000) * (1 + 0.05 * rng.standard_normal(1000))
    tiny = Recommendation("lower_learning_rate", "", {"a": 1})
    scaled = Recommendation("standardize", "", {"x": 1, "y": 2})  # a larger change
    failing = Recommendation("clip_gradients", "", {"b": 2})
    _record(tiny, Trial(True, 1000, float(flat[-1]), None, trend=loss_trend(flat)))
    _record(scaled, Trial(True, 1000, float(falls[-1]), None, trend=loss_trend(falls)))
    _record(failing, Trial(False, 6, final_loss=None, failed_step=6))
    assert (tiny.verified, tiny.learns) == (True, False)
    assert "did not fall (median loss over the first 100 steps 8.6" in tiny.evidence
    assert (scaled.verified, scaled.learns) == (True, True)
    assert "did not fall" not in scaled.evidence
    assert failing.learns is None
    # learning first, although the other is the smaller change
    assert rank([failing, tiny, scaled]) == [scaled, tiny, failing]
    noisy = Recommendation("n", "", {})  # batch size 1: a 30% fall within the noise
    loud = np.linspace(3.5, 2.4, 200) * rng.lognormal(0, 1.5, 200)
    _record(noisy, Trial(True, 200, float(loud[-1]), None, trend=loss_trend(loud)))
    assert noisy.verified is True and noisy.learns is None and "did not fall" not in noisy.evidence
    short = Recommendation("s", "", {})
    _record(short, Trial(True, 5, 1.0, None, trend=loss_trend(falls[:5])))
    assert short.verified is True and short.learns is None  # too few steps to tell


def test_a_setting_changed_in_every_layer_counts_as_one_change_when_ranking():
    from nandoctor.diagnosis.findings import Recommendation
    from nandoctor.diagnosis.verify import rank

    he = Recommendation("use_he_init", "", {f"model.layers.{i}.init": "he" for i in range(15)})
    clip = Recommendation("clip_gradients", "", {"train.clip_grad_norm": 1.0})
    both = Recommendation("x", "", {"train.clip_grad_norm": 1.0, "train.learning_rate": 0.1})
    for r, loss in ((he, 0.0064), (clip, 1.15e23), (both, 1e-5)):
        r.verified, r.learns, r.final_loss = True, True, loss
    assert rank([both, clip, he]) == [he, clip, both]  # one setting each, then the lower loss


def test_a_change_whose_loss_grew_by_orders_of_magnitude_is_diverging_not_verified():
    """Finite for the steps it ran, but heading for overflow: the loss of its last tenth is over
    DIVERGE_FACTOR times where it started. Not a fix, and the evidence gives the numbers."""
    from nandoctor.diagnosis.findings import Recommendation
    from nandoctor.diagnosis.measures import DIVERGE_FACTOR, loss_trend
    from nandoctor.diagnosis.verify import Trial, _record

    rng = np.random.default_rng(0)
    grows = np.geomspace(0.6, 5e15, 1000) * (1 + 0.05 * rng.standard_normal(1000))
    rec = Recommendation("lower_learning_rate", "", {"train.learning_rate": 0.075})
    trend = loss_trend(grows)
    _record(rec, Trial(True, 1000, float(grows[-1]), None, trend=trend))
    assert trend.end > DIVERGE_FACTOR * trend.origin
    assert (rec.verified, rec.diverging) == (False, True)
    assert rec.evidence.startswith("finite for 1000 steps but the loss grew from 0.6")
    assert "diverging" in rec.evidence
    # a loss that rose a little is not diverging: verified, not learning
    mild = np.linspace(1.0, 3.0, 1000)
    calm = Recommendation("clip_gradients", "", {"train.clip_grad_norm": 1.0})
    _record(calm, Trial(True, 1000, 3.0, None, trend=loss_trend(mild)))
    assert (calm.verified, calm.learns, calm.diverging) == (True, False, False)


def test_halving_proposes_the_largest_rate_that_neither_overflows_nor_diverges(high_momentum):
    """Nesterov momentum 0.99 at lr 0.3 overflows; at lr/4 it stays finite over the budget while
    its loss climbs towards overflow. The rate proposed is one whose re-run did not diverge,
    and no experiment says a diverging change removes the failure."""
    from nandoctor.diagnosis.measures import loss_trend
    from nandoctor.engine.runs import train

    spec = high_momentum(1000)
    diagnosis, out = examine(spec)
    assert diagnosis.status == "nonfinite"
    verify_fixes(diagnosis, out, jobs=1)
    (rec,) = [r for r in diagnosis.recommendations if r.id == "lower_learning_rate"]
    rate = rec.changes["train.learning_rate"]
    alone = train(spec.with_changes({"train.learning_rate": rate}), snapshots=False)[0]
    assert alone.finite and not loss_trend(alone.loss).diverged
    # every larger halving went non-finite or diverged within the budget
    larger = [0.3 / 2**k for k in range(1, 17) if 0.3 / 2**k > rate]
    for o in train(spec, lrs=larger, snapshots=False):
        assert not o.finite or loss_trend(o.loss).diverged
    for r in diagnosis.recommendations:
        if r.diverging:
            assert r.verified is False and "diverging" in r.evidence
            assert not any("removes it" in e and r.evidence in e for e in diagnosis.cause.evidence)


def test_a_failure_before_the_first_update_is_not_treated_with_the_update():
    """exp overflows in step 1's forward pass: the initial weights did it, so a lower learning
    rate, clipping or another optimizer cannot change it and none is proposed; a failure after
    updates (step 9) still gets them."""
    from pathlib import Path

    from nandoctor.spec.models import load_spec

    configs = Path(__file__).parents[3] / "configs"
    before, _ = examine(load_spec(configs / "softmax_overflow_naive.yaml"))
    assert (before.first_nonfinite.step, before.first_nonfinite.phase) == (1, "forward")
    ids = {r.id for r in before.recommendations}
    assert ids and not ids & {"lower_learning_rate", "clip_gradients", "use_adamw"}
    after, _ = examine(load_spec(configs / "relu_high_lr.yaml"))
    assert after.first_nonfinite.step > 1
    assert "lower_learning_rate" in {r.id for r in after.recommendations}


def test_a_verified_change_that_learns_outranks_one_whose_fall_was_within_noise():
    """clip (one setting, its loss fell within noise) was written by `fix` over adamw (two
    settings, its loss fell): learning comes before the size of the change."""
    from nandoctor.diagnosis.findings import Recommendation
    from nandoctor.diagnosis.verify import rank

    noisy = Recommendation("clip_gradients", "", {"train.clip_grad_norm": 1.0})
    learns = Recommendation(
        "use_adamw", "", {"train.optimizer": "adamw", "train.learning_rate": 1e-3}
    )
    flat = Recommendation("lower_learning_rate", "", {"train.learning_rate": 1e-6})
    for rec, learned in ((noisy, None), (learns, True), (flat, False)):
        rec.verified, rec.learns = True, learned
    assert [r.id for r in rank([noisy, flat, learns])] == [
        "use_adamw",
        "clip_gradients",
        "lower_learning_rate",
    ]


def test_a_proposed_rate_is_written_as_a_person_would():
    """A tenth of 2.3 is proposed as 0.23, not 0.22999999999999998."""
    from pathlib import Path

    from nandoctor.spec.models import load_spec

    spec = load_spec(Path(__file__).parents[3] / "configs" / "relu_high_lr.yaml")
    diagnosis, _ = examine(spec.with_changes({"train.learning_rate": 2.3}))
    (rec,) = [r for r in diagnosis.recommendations if r.id == "lower_learning_rate"]
    assert rec.changes == {"train.learning_rate": 0.23}
