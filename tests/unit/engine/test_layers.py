"""The parts of real networks (docs/spec.md) against central finite differences.

Every case is a real spec run through the trainer's own forward and backward pass
(:meth:`Trainer.forward_backward`): batch and layer norm with their learned scale and shift,
dropout (a fixed mask), layers without a bias, mae / huber / cross-entropy with label smoothing /
bce, both reductions and the l2 penalty. The analytic gradient of every parameter is compared with
central differences of the loss, in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

from nandoctor.engine.setup import prepare
from nandoctor.engine.trainer import Trainer
from nandoctor.spec.models import spec_from_dict

FD_EPS = 1e-6


def make_spec(loss, layers, task="regression", outputs=3, **train):
    return spec_from_dict(
        {
            "seed": 3,
            "data": {"task": task, "samples": 6, "features": 4, "outputs": outputs},
            "model": {"layers": layers},
            "loss": loss,
            "train": {"batch_size": "full", **train},
        }
    )


def central_differences(params, f, eps=FD_EPS):
    """``df/dp`` for every entry of every parameter ``(1, ...)``: all +-eps perturbations are
    replicas on the leading axis, so the whole check is one call of ``f``."""
    flat = np.concatenate([p.ravel() for p in params])
    n = flat.size
    stacked = np.repeat(flat[None, :], 2 * n, axis=0)
    stacked[np.arange(n), np.arange(n)] += eps
    stacked[n + np.arange(n), np.arange(n)] -= eps
    cuts = np.cumsum([0] + [p.size for p in params])
    perturbed = [
        stacked[:, lo:hi].reshape((2 * n, *p.shape[1:]))
        for p, lo, hi in zip(params, cuts[:-1], cuts[1:], strict=True)
    ]
    losses = f(perturbed)
    g = (losses[:n] - losses[n:]) / (2 * eps)
    return [
        g[lo:hi].reshape(p.shape) for p, lo, hi in zip(params, cuts[:-1], cuts[1:], strict=True)
    ]


def check_gradients(spec, rtol=1e-5, atol=1e-7):
    problem = prepare(spec)
    trainer = Trainer(problem, instrument=False)
    rng = np.random.default_rng(5)
    # move gamma/beta and biases off their 1/0 start so their gradients are generic
    params = [p + rng.normal(0, 0.3, p.shape) for p in trainer.state.params]
    masks = trainer._dropout_masks(len(problem.x))
    x, y = problem.x, problem.y

    def loss(ps):
        return trainer.forward_backward(ps, x, y, None, masks)[0]

    analytic = trainer.forward_backward(params, x, y, None, masks)[1]
    numeric = central_differences(params, loss)
    for slot, a, n in zip(problem.slots, analytic, numeric, strict=True):
        np.testing.assert_allclose(a, n, rtol=rtol, atol=atol, err_msg=slot.label)
    return problem


HIDDEN = {"units": 5, "activation": "tanh"}
OUT = {"units": 3, "activation": "linear"}


@pytest.mark.parametrize("norm", ["batch", "layer"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_norm_layers_gradients(norm, use_bias):
    layers = [{**HIDDEN, "norm": norm, "use_bias": use_bias}, {**OUT, "norm": norm}]
    problem = check_gradients(make_spec("mse", layers))
    names = [s.label for s in problem.slots]
    assert ("b1" in names) == use_bias
    assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(names)


def test_dropout_gradient_with_a_fixed_mask():
    check_gradients(make_spec("mse", [{**HIDDEN, "dropout": 0.4}, {**HIDDEN, "dropout": 0.2}, OUT]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "loss",
    [
        {"name": "mse"},
        {"name": "mae"},
        {"name": "huber", "delta": 0.3},
        {"name": "mse", "l2": 0.05},
    ],
    ids=["mse", "mae", "huber", "mse_l2"],
)
def test_regression_losses_gradients(loss, reduction):
    check_gradients(make_spec({**loss, "reduction": reduction}, [HIDDEN, OUT]))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_label_smoothing_gradients(smoothing, reduction):
    loss = {"name": "cross_entropy", "label_smoothing": smoothing, "reduction": reduction}
    spec = make_spec(loss, [HIDDEN, {"units": 3, "activation": "softmax"}], task="classification")
    check_gradients(spec)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_norm_and_l2_gradients(reduction):
    loss = {"name": "bce", "reduction": reduction, "l2": 0.01}
    layers = [{**HIDDEN, "norm": "layer"}, {"units": 3, "activation": "sigmoid"}]
    check_gradients(make_spec(loss, layers, task="binary"))


def test_sum_is_the_mean_times_the_count():
    layers = [HIDDEN, OUT]
    means = {}
    for reduction in ("mean", "sum"):
        problem = prepare(make_spec({"name": "huber", "reduction": reduction}, layers))
        t = Trainer(problem, instrument=False)
        means[reduction] = t.forward_backward(t.state.params, problem.x, problem.y)[0][0]
    np.testing.assert_allclose(means["sum"], means["mean"] * 6 * 3, rtol=1e-12)


def test_l2_is_added_to_the_reported_loss():
    layers = [HIDDEN, OUT]
    plain = prepare(make_spec("mse", layers))
    t = Trainer(plain, instrument=False)
    base = t.forward_backward(t.state.params, plain.x, plain.y)[0][0]
    with_l2 = prepare(make_spec({"name": "mse", "l2": 0.1}, layers))
    t2 = Trainer(with_l2, instrument=False)
    got = t2.forward_backward(t2.state.params, with_l2.x, with_l2.y)[0][0]
    penalty = 0.1 * sum(
        (p**2).sum()
        for s, p in zip(with_l2.slots, with_l2.init_params, strict=True)
        if s.name == "W"
    )
    np.testing.assert_allclose(got, base + penalty, rtol=1e-12)


def test_dropout_masks_follow_the_seed_and_scale_survivors():
    spec = make_spec("mse", [{**HIDDEN, "dropout": 0.5}, OUT])
    a = Trainer(prepare(spec), instrument=False)._dropout_masks(1000)[0]
    b = Trainer(prepare(spec), instrument=False)._dropout_masks(1000)[0]
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 2.0}
    assert 0.4 < (a == 0).mean() < 0.6
