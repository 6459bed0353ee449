"""The network math (``nandoctor.engine.nn``) against central finite differences and hand values.

A tiny two-layer network is built here by hand -- ``x (batch, 3) -> hidden (5) -> output (3)``,
with two replicas stacked on the leading axis -- run forward with :func:`nn.activate`, through
:func:`nn.loss_and_grad`, and backward by hand with :func:`nn.activation_grad`. The analytic
gradient of every weight and bias is compared with central differences of the loss, for every
valid hidden activation x output activation x loss x mode x dtype (docs/spec.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from nandoctor.engine import nn

ACTIVATIONS = ["linear", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "softmax"]
HIDDEN = [a for a in ACTIVATIONS if a != "softmax"]  # softmax is for the last layer only
OUTPUT_FOR_LOSS = {
    "mse": ACTIVATIONS,
    "random_gradient": ACTIVATIONS,
    "cross_entropy": ["softmax", "linear"],  # the loss reads z as logits
    "bce": ["sigmoid", "linear"],  # p = sigmoid(z)
}
LOSS_PAIRS = [
    pytest.param(
        loss,
        act,
        id=f"{loss}-{act}",
    )
    for loss, acts in OUTPUT_FOR_LOSS.items()
    for act in acts
]
MODES = {"stable": False, "naive": True}

R, BATCH, N_IN, N_HID, N_OUT = 2, 4, 3, 5, 3
MARGIN = 0.05  # every pre-activation at least this far from relu's / elu's kink at 0 ...
BOUND = 4.0  # ... and within this of it: well scaled, so float16's naive sigmoid is not pinned at 1
FD_EPS = 1e-6


# ---------------------------------------------------------------- the hand-built network
def make_case(loss: str, hidden: str, seed: int = 0):
    """Inputs, float64 params ``[W1, b1, W2, b2]``, targets and noise, drawn until no
    pre-activation of either layer lies within ``MARGIN`` of 0 (so relu's kink is not crossed)
    or beyond ``BOUND``."""
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        x = rng.normal(size=(BATCH, N_IN))
        params = [
            rng.normal(0.0, 0.8, (R, N_IN, N_HID)),
            rng.normal(0.0, 0.3, (R, N_HID)),
            rng.normal(0.0, 0.8, (R, N_HID, N_OUT)),
            rng.normal(0.0, 0.3, (R, N_OUT)),
        ]
        z1 = x @ params[0] + params[1][:, None, :]
        z2 = nn.activate(hidden, z1, False) @ params[2] + params[3][:, None, :]
        mags = np.abs(np.concatenate([z1.ravel(), z2.ravel()]))
        if mags.min() > MARGIN and mags.max() < BOUND:
            break
    else:  # pragma: no cover - the loop finds a case within a few tries
        raise AssertionError("no well-separated case found")
    if loss == "cross_entropy":
        y = rng.integers(0, N_OUT, BATCH)
    elif loss == "bce":
        y = rng.uniform(0.0, 1.0, (BATCH, N_OUT))
    elif loss == "mse":
        y = rng.normal(size=(BATCH, N_OUT))
    else:
        y = None
    noise = rng.normal(size=(BATCH, N_OUT)) if loss == "random_gradient" else None
    return x, params, y, noise


def cast(x, params, y, dtype):
    """The case in ``dtype`` (integer class targets stay integers, as in the trainer)."""
    y = y if y is None or y.dtype.kind == "i" else y.astype(dtype)
    return x.astype(dtype), [p.astype(dtype) for p in params], y


def loss_and_grads(params, x, y, noise, hidden, out_act, loss, naive):
    """Forward, loss and hand-written backward; returns ``(loss (*R,), [dW1, db1, dW2, db2])``.

    ``W: (*R, n_in, n_out)``, ``b: (*R, n_out)``; ``R`` may have several axes.
    """
    W1, b1, W2, b2 = params
    z1 = x @ W1 + b1[..., None, :]
    a1 = nn.activate(hidden, z1, naive)
    z2 = a1 @ W2 + b2[..., None, :]
    a2 = nn.activate(out_act, z2, naive)
    value, gz2 = nn.loss_and_grad(loss, out_act, z2, a2, y, naive, noise)
    gW2 = np.swapaxes(a1, -1, -2) @ gz2
    gb2 = gz2.sum(axis=-2)
    ga1 = gz2 @ np.swapaxes(W2, -1, -2)
    gz1 = nn.activation_grad(hidden, z1, a1, ga1)
    gW1 = x.T @ gz1
    gb1 = gz1.sum(axis=-2)
    return value, [gW1, gb1, gW2, gb2]


def central_differences(params, f, eps=FD_EPS):
    """``d(sum over replicas of f)/dp`` for every entry of every float64 param.

    Every +-eps perturbation of every entry is one more leading axis entry of the params, so the
    whole check is one call of ``f`` (the math supports any number of leading replica axes).
    """
    flat = np.concatenate([p.ravel() for p in params])
    n = flat.size
    stacked = np.repeat(flat[None, :], 2 * n, axis=0)
    stacked[np.arange(n), np.arange(n)] += eps
    stacked[n + np.arange(n), np.arange(n)] -= eps
    offsets = np.cumsum([0] + [p.size for p in params])
    perturbed = [
        stacked[:, lo:hi].reshape((2 * n, *p.shape))
        for p, lo, hi in zip(params, offsets[:-1], offsets[1:], strict=True)
    ]
    losses = f(perturbed).reshape(2 * n, -1).sum(axis=1)
    g = (losses[:n] - losses[n:]) / (2 * eps)
    return [
        g[lo:hi].reshape(p.shape)
        for p, lo, hi in zip(params, offsets[:-1], offsets[1:], strict=True)
    ]


TOLERANCE = {np.float64: {"rtol": 1e-6, "atol": 1e-8}, np.float32: {"rtol": 1e-3, "atol": 1e-4}}


@pytest.mark.parametrize("dtype", TOLERANCE, ids=["float64", "float32"])
@pytest.mark.parametrize(("loss", "out_act"), LOSS_PAIRS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradient_matches_central_differences(hidden, loss, out_act, dtype):
    """The dtype's analytic gradient, in both modes, against float64 central differences."""
    x, params, y, noise = make_case(loss, hidden)
    xd, pd, yd = cast(x, params, y, dtype)
    # Finite differences in float64, of exactly the function the dtype's params define.
    x64, p64, y64 = cast(xd, pd, yd, np.float64)
    for mode, naive in MODES.items():
        value, analytic = loss_and_grads(pd, xd, yd, noise, hidden, out_act, loss, naive)
        assert value.shape == (R,)
        assert np.isfinite(value).all()
        assert [g.dtype for g in analytic] == [np.dtype(dtype)] * 4
        assert [g.shape for g in analytic] == [p.shape for p in params]

        def f(ps, naive=naive):
            return loss_and_grads(ps, x64, y64, noise, hidden, out_act, loss, naive)[0]

        numeric = central_differences(p64, f)
        for name, a, n in zip(["dW1", "db1", "dW2", "db2"], analytic, numeric, strict=True):
            np.testing.assert_allclose(a, n, **TOLERANCE[dtype], err_msg=f"{name} ({mode})")


@pytest.mark.parametrize(("loss", "out_act"), LOSS_PAIRS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_gradient_float16_close_to_float64(hidden, loss, out_act):
    x, params, y, noise = make_case(loss, hidden)
    x16, p16, y16 = cast(x, params, y, np.float16)
    # The reference: the float64 gradient of the same (float16-rounded) values.
    x64, p64, y64 = cast(x16, p16, y16, np.float64)
    for mode, naive in MODES.items():
        value16, g16 = loss_and_grads(p16, x16, y16, noise, hidden, out_act, loss, naive)
        assert np.isfinite(value16).all()
        assert [g.shape for g in g16] == [p.shape for p in params]
        assert [g.dtype for g in g16] == [np.dtype(np.float16)] * 4
        _, g64 = loss_and_grads(p64, x64, y64, noise, hidden, out_act, loss, naive)
        for name, a, b in zip(["dW1", "db1", "dW2", "db2"], g16, g64, strict=True):
            err = np.linalg.norm(a.astype(np.float64) - b)
            assert err <= 1e-1 * np.linalg.norm(b) + 1e-3, f"{name} ({mode})"


# ---------------------------------------------------------------- values against hand formulas
def _reference_activation(name, z):
    if name == "linear":
        return z
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    if name == "elu":
        return np.where(z > 0, z, np.exp(np.minimum(z, 0)) - 1)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    if name == "tanh":
        return (np.exp(z) - np.exp(-z)) / (np.exp(z) + np.exp(-z))
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_values(name, mode):
    z = np.random.default_rng(1).normal(0.0, 2.0, (R, BATCH, N_OUT))
    a = nn.activate(name, z, MODES[mode])
    assert a.shape == z.shape
    np.testing.assert_allclose(a, _reference_activation(name, z), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_loss_values_by_hand(mode):
    naive = MODES[mode]
    # mse: mean over every element.
    a = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    value, _ = nn.loss_and_grad("mse", "linear", a, a, np.zeros((2, 2)), naive)
    np.testing.assert_allclose(value, [(1 + 4 + 9 + 16) / 4])
    # cross_entropy: mean over samples of -log softmax(z)[target].
    z = np.array([[[0.0, 0.0], [0.0, math.log(3.0)]]])
    for act in ("softmax", "linear"):
        value, _ = nn.loss_and_grad(
            "cross_entropy", act, z, nn.activate(act, z, naive), np.array([0, 1]), naive
        )
        np.testing.assert_allclose(value, [(math.log(2.0) - math.log(0.75)) / 2], rtol=1e-12)
    # bce: mean over every element of -(y log p + (1-y) log(1-p)), p = sigmoid(z).
    z = np.array([[[0.0, math.log(3.0)]]])  # p = 1/2, 3/4
    y = np.array([[1.0, 0.25]])
    expected = (math.log(2.0) - (0.25 * math.log(0.75) + 0.75 * math.log(0.25))) / 2
    for act in ("sigmoid", "linear"):
        value, _ = nn.loss_and_grad("bce", act, z, nn.activate(act, z, naive), y, naive)
        np.testing.assert_allclose(value, [expected], rtol=1e-12)
    # random_gradient: sum(noise * a) per replica.
    a = np.array([[[1.0, -2.0]], [[0.5, 3.0]]])
    value, _ = nn.loss_and_grad(
        "random_gradient", "linear", a, a, None, naive, np.array([[2.0, 1.0]])
    )
    np.testing.assert_allclose(value, [0.0, 4.0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("loss", "out_act"), LOSS_PAIRS)
def test_loss_gradient_keeps_the_replica_axis(loss, out_act, mode):
    """``grad_z`` is ``(*R, batch, out)`` like ``z``, for every loss and last activation."""
    naive = MODES[mode]
    rng = np.random.default_rng(6)
    z = rng.normal(size=(R, BATCH, N_OUT))
    y = (
        rng.integers(0, N_OUT, BATCH)
        if loss == "cross_entropy"
        else rng.uniform(size=(BATCH, N_OUT))
    )
    noise = rng.normal(size=(BATCH, N_OUT))
    value, grad = nn.loss_and_grad(
        loss, out_act, z, nn.activate(out_act, z, naive), y, naive, noise
    )
    assert value.shape == (R,)
    assert grad.shape == z.shape


# ---------------------------------------------------------------- naive and stable agree
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("loss", "act"),
    [
        ("cross_entropy", "softmax"),
        ("cross_entropy", "linear"),
        ("bce", "sigmoid"),
        ("bce", "linear"),
    ],
)
def test_naive_and_stable_agree_where_finite(loss, act, dtype):
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 3.0, (R, 8, N_OUT)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, N_OUT, 8)
    else:
        y = rng.uniform(0.0, 1.0, (8, N_OUT)).astype(dtype)
    results = {}
    for mode, naive in MODES.items():
        a = nn.activate(act, z, naive)
        results[mode] = nn.loss_and_grad(loss, act, z, a, y, naive)
    (v_naive, g_naive), (v_stable, g_stable) = results["naive"], results["stable"]
    assert np.isfinite(v_naive).all() and np.isfinite(g_naive).all()
    assert g_naive.dtype == g_stable.dtype == np.dtype(dtype)
    rtol, atol = (1e-10, 1e-14) if dtype == np.float64 else (1e-4, 1e-6)
    np.testing.assert_allclose(v_naive, v_stable, rtol=rtol, atol=atol)
    np.testing.assert_allclose(g_naive, g_stable, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["sigmoid", "softmax"])
def test_naive_and_stable_activations_agree(name, dtype):
    z = np.random.default_rng(3).normal(0.0, 4.0, (R, BATCH, N_OUT)).astype(dtype)
    a_naive, a_stable = nn.activate(name, z, True), nn.activate(name, z, False)
    assert a_naive.dtype == a_stable.dtype == np.dtype(dtype)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(a_naive, a_stable, rtol=rtol, atol=1e-30)


# ---------------------------------------------------------------- where naive fails
def test_naive_softmax_overflows_where_stable_does_not():
    z = np.array([[[1000.0, 0.0, -1.0], [1000.0, 1000.0, 1000.0]]])
    with np.errstate(all="ignore"):
        naive = nn.activate("softmax", z, naive=True)
        naive_ce, naive_grad = nn.loss_and_grad("cross_entropy", "softmax", z, naive, [1, 0], True)
    assert np.isnan(naive).any()
    assert not np.isfinite(naive_ce).all()
    assert not np.isfinite(naive_grad).all()

    stable = nn.activate("softmax", z, naive=False)
    np.testing.assert_allclose(stable, [[[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]]], atol=1e-300)
    for act in ("softmax", "linear"):
        ce, grad = nn.loss_and_grad("cross_entropy", act, z, stable, np.array([1, 0]), False)
        # -log p: 1000 for the first sample (target 0 at z=0 vs 1000), log 3 for the second.
        np.testing.assert_allclose(ce, [(1000.0 + math.log(3.0)) / 2], rtol=1e-12)
        assert np.isfinite(grad).all()


def test_naive_sigmoid_reaches_exactly_one_but_not_zero():
    # 1/(1+exp(-z)) is exactly 1.0 for z > 36.7, but exactly 0.0 only below -745.
    a = nn.activate("sigmoid", np.array([[[40.0, -40.0]]]), naive=True)
    assert a[0, 0, 0] == 1.0
    assert 0.0 < a[0, 0, 1] < 1e-17


@pytest.mark.parametrize("act", ["sigmoid", "linear"])
def test_naive_bce_breaks_at_saturation_where_stable_gives_40(act):
    z = np.array([[[40.0]]])
    y = np.array([[0.0]])
    with np.errstate(all="ignore"):
        a = nn.activate(act, z, naive=True)
        naive_value, naive_grad = nn.loss_and_grad("bce", act, z, a, y, naive=True)
    assert not np.isfinite(naive_value).any()  # log(1 - p) = log(0)
    assert not np.isfinite(naive_grad).any()  # (1 - y) / (1 - p) = 1 / 0

    a = nn.activate(act, z, naive=False)
    value, grad = nn.loss_and_grad("bce", act, z, a, y, naive=False)
    np.testing.assert_allclose(value, [40.0], rtol=1e-12)
    np.testing.assert_allclose(grad, [[[1.0]]], rtol=1e-12)  # sigmoid(40) - 0


# ---------------------------------------------------------------- initialisation
N_IN_BIG, N_OUT_BIG = 400, 600
INIT_VARIANCE = {
    "normal": 1.0,
    "xavier": 2.0 / (N_IN_BIG + N_OUT_BIG),
    "xavier_uniform": 2.0 / (N_IN_BIG + N_OUT_BIG),
    "he": 2.0 / N_IN_BIG,
    "he_uniform": 2.0 / N_IN_BIG,
    "uniform": 1.0 / 3.0,  # U(-1, 1) as implemented; the README documents it
}


@pytest.mark.parametrize("init", INIT_VARIANCE)
def test_init_variance(init):
    w = nn.init_weights(init, N_IN_BIG, N_OUT_BIG, 1.0, np.random.default_rng(4))
    assert w.shape == (N_IN_BIG, N_OUT_BIG)
    assert w.dtype == np.float64
    var = INIT_VARIANCE[init]
    assert w.var() == pytest.approx(var, rel=0.03)
    assert abs(w.mean()) < 0.02 * math.sqrt(var)
    if init.endswith("uniform"):
        assert np.abs(w).max() <= math.sqrt(3 * var) * (1 + 1e-12)


def test_init_zeros():
    w = nn.init_weights("zeros", 7, 3, 5.0, np.random.default_rng(0))
    assert w.shape == (7, 3)
    assert w.dtype == np.float64
    assert not w.any()


@pytest.mark.parametrize("init", INIT_VARIANCE)
def test_init_scale_multiplies(init):
    base = nn.init_weights(init, 20, 30, 1.0, np.random.default_rng(5))
    scaled = nn.init_weights(init, 20, 30, 3.0, np.random.default_rng(5))
    np.testing.assert_allclose(scaled, 3.0 * base, rtol=1e-15)


def test_unknown_names_are_errors():
    z = np.zeros((1, 2, 2))
    with pytest.raises(ValueError, match="swish"):
        nn.activate("swish", z, False)
    with pytest.raises(ValueError, match="swish"):
        nn.activation_grad("swish", z, z, z)
    with pytest.raises(ValueError, match="hinge"):
        nn.loss_and_grad("hinge", "linear", z, z, np.zeros((2, 2)), False)
    with pytest.raises(ValueError, match="lecun"):
        nn.init_weights("lecun", 2, 2, 1.0, np.random.default_rng(0))


def test_the_activation_table_covers_exactly_the_spec_vocabulary():
    from typing import get_args

    from nandoctor.spec.models import Activation

    assert set(nn.ACTIVATIONS) == set(get_args(Activation))


@pytest.mark.parametrize("name", sorted(nn.ACTIVATIONS))
def test_the_forward_runs_under_the_op_its_table_entry_declares(name):
    from nandoctor.instrument import events

    events.op("?")
    nn.activate(name, np.zeros((1, 2, 3)), naive=False)
    declared = nn.ACTIVATIONS[name].op
    composite = name in ("sigmoid", "softmax")  # these name each of their own ops
    assert events._op == (declared or "?") or composite


def test_the_watched_sigmoid_is_exact_never_flags_and_keeps_replicas_apart():
    from nandoctor.instrument.events import FPWatch

    z = np.array([[[-800.0, -720.0, -30.0, -1e-3, 0.0, 2.0, 40.0, 800.0]]])
    calm = z.copy()
    calm[0, 0, :2] = -5.0  # the same replica without the entries whose exp(-z) overflows
    watch = FPWatch(2)
    with watch.install():
        both = nn.activate("sigmoid", np.concatenate([z, calm]), naive=False)
        alone = nn.activate("sigmoid", calm, naive=False)
    assert not watch.events  # the overflow of the fast form was not the network's
    exact = 1 / (1 + np.exp(-np.longdouble(z)))
    np.testing.assert_allclose(both[0], exact[0].astype(float), rtol=1e-15, atol=0)
    assert both[0, 0, 1] > 0  # e^-720 is a subnormal, not 0
    assert np.array_equal(both[1], alone[0])  # replica 2 is what it is alone


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("shape", [(32, 20), (512, 64)], ids=["dot", "reduce"])
def test_bias_grad_sums_the_batch_alike_for_a_replica_alone_or_beside_others(dtype, shape):
    """``nn.bias_grad`` is the batch sum, and a replica's sum does not depend on the replicas
    beside it (sweeps equal single runs bit for bit)."""
    gz = np.random.default_rng(0).standard_normal((8, *shape)).astype(dtype)
    together = nn.bias_grad(gz)
    atol = {np.float64: 1e-10, np.float32: 1e-3, np.float16: 0.5}[dtype]  # sums near 0
    np.testing.assert_allclose(together, gz.astype(np.float64).sum(axis=-2), rtol=0, atol=atol)
    for r in range(8):
        out = np.empty((1, shape[1]), dtype)
        alone = nn.bias_grad(gz[r : r + 1].copy(), out=out)
        assert alone is out
        assert np.array_equal(alone[0], together[r])


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
@pytest.mark.parametrize("shape", [(32, 20), (512, 64)], ids=["dot", "reduce"])
def test_bias_grad_raises_the_overflow_flag_the_watch_reads(dtype, shape):
    gz = np.full((2, *shape), np.finfo(dtype).max / 4, dtype)
    with np.errstate(over="raise"), pytest.raises(FloatingPointError):
        nn.bias_grad(gz)


@pytest.mark.parametrize("shape", [(3, 32, 20), (2, 300, 300), (1, 1, 1)])
def test_share_of_counts_every_true_exactly(shape):
    """The share of True over the last two axes, equal to NumPy's own count, also where the count
    needs more than 16 bits (300 x 300) and where every entry is True."""
    rng = np.random.default_rng(0)
    for mask in (rng.random(shape) < 0.3, np.ones(shape, bool), np.zeros(shape, bool)):
        expected = np.count_nonzero(mask, axis=(-2, -1)) / (shape[-2] * shape[-1])
        got = nn.share_of(mask)
        assert got.dtype == np.float64
        assert np.array_equal(got, expected)


# ---------------------------------------------------------------- float16 matmul
@pytest.mark.parametrize(
    ("m", "k", "n"), [(32, 10, 20), (256, 64, 256), (64, 256, 10), (20, 32, 5), (100, 100, 1)]
)
def test_half_matmul_is_numpys_float16_matmul_summed_in_another_order(m, k, n):
    """NumPy's own float16 loop sums the float32 products one by one; BLAS in its own order: the
    results agree but for the last float16 bit of a few (stacked, and into ``out``, as the
    trainer calls it)."""
    rng = np.random.default_rng(k)
    a = (rng.standard_normal((m, k)) * 3).astype(np.float16)
    b = (rng.standard_normal((2, k, n)) * 3).astype(np.float16)
    ref, got = np.matmul(a, b), nn.half_matmul(a, b)
    apart = np.abs(got.astype(np.float32) - ref.astype(np.float32))
    assert np.all(apart <= np.spacing(np.abs(ref))) and np.mean(got != ref) < 0.01
    out = np.empty((2, m, n), np.float16)
    assert nn.half_matmul(a, b, out=out) is out and np.array_equal(out, got)


def test_half_matmul_overflow_raises_the_flag_the_watch_reads():
    big = np.full((2, 2), 200, np.float16)  # 2 * 200 * 200 = 80,000 > 65,504
    with np.errstate(over="raise"), pytest.raises(FloatingPointError, match="overflow"):
        nn.half_matmul(big, big)


def test_half_matmul_leaves_other_dtypes_to_numpy():
    """A float16 network's float64 copy (sweep's sharpness) is multiplied in float64."""
    a = np.full((2, 2), 1 + 1e-12)  # 1.0 in float32: a float32 product would give exactly 2
    got = nn.half_matmul(a, a)
    assert got.dtype == np.float64 and np.array_equal(got, np.matmul(a, a)) and got[0, 0] != 2.0
    assert nn.matmul_for("float16") is nn.half_matmul and nn.matmul_for("float32") is np.matmul


def test_a_float16_loss_sum_that_overflows_is_named_the_sum():
    """1024 squares of 10 are 100 each: the float16 sum (102,400) overflows, not the square."""
    from nandoctor.instrument.events import FPWatch

    watch = FPWatch(1)
    watch.at("loss", None, ("loss", "loss_gradient"))
    z = np.full((1, 1024, 1), 10, np.float16)
    with watch.install():
        nn.loss_and_grad(
            "mse", "linear", z, z, np.zeros((1024, 1), np.float16), False, reduction="sum"
        )
    assert [(op, kind) for *_, op, kind in watch.events] == [("sum", "overflow")]


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_limit_shares_from_z_count_the_outputs_near_their_limits(name, dtype):
    """Saturated: an output within SATURATION_TOL of its nearer limit; weak: a derivative under a
    tenth of its peak. Read from |z|, the counts are those of the outputs, computed exactly (in
    float64 from float64 z), including every |z| of the dtype next to either bound."""
    fn = nn.activation(name)
    rng = np.random.default_rng(0)
    edges = []
    for bound in (fn.saturated_beyond, fn.weak_beyond):
        b = np.asarray(bound, dtype)
        edges += [np.nextafter(b, -np.inf, dtype=dtype), b, np.nextafter(b, np.inf, dtype=dtype)]
    z = np.concatenate([rng.standard_normal(2000) * 5, edges, np.negative(edges)]).astype(dtype)
    z = z[: len(z) // 20 * 20].reshape(1, -1, 20)
    exact = z.astype(np.float64)
    if name == "sigmoid":
        distance = 1 / (1 + np.exp(np.abs(exact)))  # min(a, 1 - a)
        weak = distance < nn.WEAK_SIGMOID
    else:
        distance = 1 - np.tanh(np.abs(exact))
        weak = np.tanh(np.abs(exact)) > nn.WEAK_TANH
    sat, weak_share = nn.limit_shares(fn, np.abs(z))
    assert sat[0] == (distance < nn.SATURATION_TOL).mean()
    assert weak_share[0] == weak.mean()
