"""Mixed precision and the new parts in the training loop: master weights, skipped steps leaving
weights and optimiser state untouched, and batched replicas that train exactly as they would
alone (dropout, norms, loss scaling included)."""

from __future__ import annotations

import numpy as np
import pytest

from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare
from nandoctor.engine.trainer import Trainer
from nandoctor.spec.models import spec_from_dict


def make(numerics=None, layers=None, **train_keys):
    return spec_from_dict(
        {
            "seed": 2,
            "data": {"samples": 64, "features": 5, "outputs": 2},
            "model": {
                "layers": layers
                or [
                    {"units": 8, "activation": "relu", "norm": "layer", "dropout": 0.2},
                    {"units": 6, "activation": "tanh", "norm": "batch", "use_bias": False},
                    {"units": 2},
                ]
            },
            "loss": {"name": "huber", "l2": 0.001},
            "numerics": numerics or {},
            "train": {"steps": 30, "optimizer": "adamw", "weight_decay": 0.01, **train_keys},
        }
    )


def test_master_weights_stay_in_float32_while_the_forward_pass_runs_in_float16():
    spec = make({"dtype": "float16", "master_dtype": "float32", "loss_scale": "dynamic"})
    t = Trainer(prepare(spec))
    with t.watch.install():
        t.step()
    assert all(p.dtype == np.float32 for p in t.state.params)
    assert all(v.dtype == np.float32 for vs in t.state.opt.values() for v in vs)
    assert np.isfinite(t.history.replica(0)["loss"][0])


def test_a_skipped_step_leaves_weights_and_optimizer_state_as_they_were():
    spec = make({"dtype": "float16", "master_dtype": "float32", "loss_scale": 1e30})
    t = Trainer(prepare(spec))
    before = [p.copy() for p in t.state.params]
    with t.watch.install():
        t.step()  # a scale of 1e30 overflows every float16 gradient
    assert t.skips.skipped[0] == 1 and t.watch.first_nonfinite == {}
    for a, b in zip(before, t.state.params, strict=True):
        np.testing.assert_array_equal(a, b)
    assert all((v == 0).all() for vs in t.state.opt.values() for v in vs)
    assert t.state.scaler.opt_steps[0] == 0 and t.state.scaler.scale[0] == 1e30  # a fixed scale


def test_batched_replicas_equal_single_runs_with_the_new_parts():
    for numerics in ({}, {"dtype": "float32", "master_dtype": "float64", "loss_scale": "dynamic"}):
        spec = make(numerics)
        rates = [0.001, 0.01, 0.05]
        batched = train(spec, lrs=rates)
        for rate, b in zip(rates, batched, strict=True):
            (single,) = train(spec, lrs=[rate])
            np.testing.assert_array_equal(single.loss, b.loss)


def test_replicas_skip_steps_independently():
    numerics = {"dtype": "float16", "master_dtype": "float32", "loss_scale": "dynamic"}
    spec = make(numerics)
    runs = train(spec, lrs=[1e-4, 1e-3])
    for run, rate in zip(runs, [1e-4, 1e-3], strict=True):
        (single,) = train(spec, lrs=[rate])
        assert single.scaling == run.scaling and run.scaling["skipped"] > 0


@pytest.mark.parametrize("scale", [65536.0, "dynamic"])
def test_a_float16_network_scaled_by_65536_applies_its_updates(scale):
    """float16 holds no 65536 (its largest is 65504): the scale is applied and removed in float32
    and the result rounded once, so the scaled gradients are finite and the steps apply."""

    def spec(loss_scale):
        return spec_from_dict(
            {
                "data": {"samples": 256, "features": 8, "outputs": 1, "noise": 0.01},
                "model": {
                    "layers": [
                        {"units": 8, "activation": "tanh"},
                        {"units": 1, "activation": "linear"},
                    ]
                },
                "numerics": {"dtype": "float16", "loss_scale": loss_scale},
                "train": {"steps": 20, "batch_size": "full", "learning_rate": 0.05},
            }
        )

    scaled, plain = train(spec(scale))[0], train(spec(None))[0]
    assert scaled.loss[-1] < 0.5 * scaled.loss[0]
    assert scaled.loss[-1] == pytest.approx(plain.loss[-1], rel=0.01)
