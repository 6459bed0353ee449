"""The whole-data loss a run is judged by when its mini-batch losses are too noisy: a run keeps
the weights it ended with, and the loss at given weights is the trainer's own loss over every
row (or a fixed subset of a large set), without dropout, checked against a forward pass written
out here."""

import math

import numpy as np
import pytest

from nandoctor.engine.evaluate import MAX_ROWS, data_losses, evaluated_rows
from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare
from nandoctor.spec.models import spec_from_dict


def make(layers=None, **train_keys):
    return spec_from_dict(
        {
            "seed": 0,
            "data": {
                "source": "synthetic",
                "task": "regression",
                "samples": 64,
                "features": 6,
                "outputs": 3,
            },
            "model": {
                "layers": layers
                or [{"units": 8, "activation": "relu"}, {"units": 3, "activation": "linear"}]
            },
            "loss": "mse",
            "train": {"steps": 30, "batch_size": 1, "learning_rate": 0.01, **train_keys},
        }
    )


def test_a_finite_run_keeps_its_final_weights_and_a_failed_replica_none():
    spec = make()
    slow, fast = train(spec, lrs=[0.01, 1e12])
    assert fast.final_params is None and not fast.finite  # lr 1e12 overflows
    assert slow.finite and not slow.resumed
    init = prepare(spec).init_params
    assert [p.shape for p in slow.final_params] == [p.shape for p in init]
    assert any(not np.array_equal(p, q) for p, q in zip(slow.final_params, init, strict=True))
    alone = train(spec)[0]  # a replica trains as it does alone
    for p, q in zip(slow.final_params, alone.final_params, strict=True):
        np.testing.assert_array_equal(p, q)
    replay = train(spec, start=alone.snapshots[-1], prepared=alone.prepared)[0]
    assert replay.resumed


def test_the_whole_data_loss_is_the_mean_loss_over_every_row_at_those_weights():
    spec = make()
    run = train(spec)[0]
    p, x, y = run.final_params, run.prepared.x, run.prepared.y
    out = np.maximum(x @ p[0] + p[1], 0) @ p[2] + p[3]  # W1, b1, W2, b2
    assert math.isclose(data_losses(run.prepared, spec, p)[0], float(((out - y) ** 2).mean()))


def test_the_whole_data_loss_has_no_dropout():
    drop = make([{"units": 8, "activation": "relu", "dropout": 0.5}, {"units": 3}])
    plain = make([{"units": 8, "activation": "relu"}, {"units": 3}])
    prepared = prepare(drop)
    params = prepared.init_params
    first = data_losses(prepared, drop, params)[0]
    assert first == data_losses(prepared, drop, params)[0]  # no random mask
    assert math.isclose(first, data_losses(prepare(plain), plain, params)[0])


def test_a_large_training_set_is_judged_on_the_same_fixed_subset():
    rows = evaluated_rows(10 * MAX_ROWS)
    assert len(rows) == MAX_ROWS == len(np.unique(rows)) and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, evaluated_rows(10 * MAX_ROWS))
    assert evaluated_rows(MAX_ROWS) == slice(None)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_have_no_whole_data_loss(bad):
    spec = make()
    prepared = prepare(spec)
    params = [p.copy() for p in prepared.init_params]
    params[0][0, 0] = bad
    assert math.isnan(data_losses(prepared, spec, params)[0])


def test_each_rows_term_is_its_own_loss_and_their_mean_is_the_whole_data_loss():
    spec = make()
    run = train(spec)[0]
    p, x, y = run.final_params, run.prepared.x, run.prepared.y
    loss, terms = data_losses(run.prepared, spec, p)
    out = np.maximum(x @ p[0] + p[1], 0) @ p[2] + p[3]
    np.testing.assert_allclose(terms, ((out - y) ** 2).mean(axis=1), rtol=1e-12)
    assert math.isclose(terms.mean(), loss, rel_tol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_rows_take_their_own_class(smoothing):
    spec = spec_from_dict(
        {
            "seed": 0,
            "data": {"source": "synthetic", "task": "classification", "samples": 60},
            "model": {"layers": [{"units": 4, "activation": "softmax"}]},
            "loss": {"name": "cross_entropy", "label_smoothing": smoothing},
            "train": {"steps": 5},
        }
    )
    prepared = prepare(spec)
    w, b = prepared.init_params
    loss, terms = data_losses(prepared, spec, [w, b])
    z = prepared.x @ w + b
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    target = np.eye(4)[prepared.y] * (1 - smoothing) + smoothing / 4
    np.testing.assert_allclose(terms, -(target * logp).sum(axis=1), rtol=1e-12)
    assert len(np.unique(prepared.y)) > 1 and math.isclose(terms.mean(), loss, rel_tol=1e-12)
