"""Optimisers, clipping, norms and schedules (``nandoctor.engine.optim``) against torch's rules by hand.

The optimisers follow ``torch.optim`` exactly (SGD with momentum and no dampening,
Adam with bias correction and ``sqrt(v_hat) + eps``, RMSprop with ``beta2`` as alpha,
``weight_decay`` added to the gradient), and ``clip_grad_norm`` follows
``torch.nn.utils.clip_grad_norm_``. Each expected value below is written out step by step.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from nandoctor.engine import optim

KINDS = ["sgd", "momentum", "rmsprop", "adam"]
P0 = np.array([1.0, -2.0])
GRADS = [np.array([0.5, -1.0]), np.array([-0.3, 0.2]), np.array([0.2, 0.4])]
LR = 0.1
EPS = 1e-8


def hparams(**over) -> SimpleNamespace:
    hp = {"momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "eps": EPS, "weight_decay": 0.0}
    return SimpleNamespace(**{**hp, **over})


def trajectory(kind, hp, lr=LR, dtype=np.float64, grads=GRADS, p0=P0):
    """Params after each step of ``kind`` on one replica of ``p0`` with the given gradients."""
    p = np.asarray(p0, dtype=dtype)[None]  # (1 replica, entries)
    state = optim.init_state(kind, [p])
    out = []
    for t, g in enumerate(grads, start=1):
        lr_b = np.full_like(p, lr)
        d = optim.delta(kind, 0, p, np.asarray(g, dtype=dtype)[None], state, t, lr_b, hp)
        assert d.shape == p.shape
        p = p - d
        out.append(p[0])
    return out


# ---------------------------------------------------------------- every optimiser by hand
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_sgd_by_hand(wd):
    g1 = GRADS[0] + wd * P0
    p1 = P0 - LR * g1
    g2 = GRADS[1] + wd * p1
    p2 = p1 - LR * g2
    g3 = GRADS[2] + wd * p2
    p3 = p2 - LR * g3
    np.testing.assert_allclose(
        trajectory("sgd", hparams(weight_decay=wd)), [p1, p2, p3], rtol=1e-14
    )


def test_sgd_literal_values():
    got = trajectory("sgd", hparams())
    np.testing.assert_allclose(got, [[0.95, -1.9], [0.98, -1.92], [0.96, -1.96]], rtol=1e-14)
    got = trajectory("sgd", hparams(weight_decay=0.1), grads=GRADS[:2])
    # g1 = 0.5 + 0.1*1 = 0.6 -> 0.94; g2 = -0.3 + 0.1*0.94 = -0.206 -> 0.9606 (first entry)
    np.testing.assert_allclose([p[0] for p in got], [0.94, 0.9606], rtol=1e-14)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_momentum_by_hand(wd):
    mu = 0.9
    g1 = GRADS[0] + wd * P0
    buf1 = g1  # torch: the buffer starts as the first gradient (no dampening)
    p1 = P0 - LR * buf1
    g2 = GRADS[1] + wd * p1
    buf2 = mu * buf1 + g2
    p2 = p1 - LR * buf2
    g3 = GRADS[2] + wd * p2
    buf3 = mu * buf2 + g3
    p3 = p2 - LR * buf3
    got = trajectory("momentum", hparams(momentum=mu, weight_decay=wd))
    np.testing.assert_allclose(got, [p1, p2, p3], rtol=1e-14)


def test_momentum_literal_values():
    # buf: [0.5, -1] -> [0.15, -0.7] -> [0.335, -0.23]
    got = trajectory("momentum", hparams(momentum=0.9))
    np.testing.assert_allclose(got, [[0.95, -1.9], [0.935, -1.83], [0.9015, -1.807]], rtol=1e-14)


def test_momentum_first_step_ignores_stale_buffer():
    """At t=1 torch creates the buffer from the gradient; whatever the state held is unused."""
    p = P0[None].copy()
    state = {"buf": [np.full_like(p, 123.0)]}
    d = optim.delta("momentum", 0, p, GRADS[0][None], state, 1, np.full_like(p, LR), hparams())
    np.testing.assert_allclose(d, LR * GRADS[0][None], rtol=1e-15)
    np.testing.assert_array_equal(state["buf"][0], GRADS[0][None])


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_rmsprop_by_hand(wd):
    alpha = 0.99  # beta2 is RMSprop's alpha
    g1 = GRADS[0] + wd * P0
    v1 = (1 - alpha) * g1**2
    p1 = P0 - LR * g1 / (np.sqrt(v1) + EPS)
    g2 = GRADS[1] + wd * p1
    v2 = alpha * v1 + (1 - alpha) * g2**2
    p2 = p1 - LR * g2 / (np.sqrt(v2) + EPS)
    g3 = GRADS[2] + wd * p2
    v3 = alpha * v2 + (1 - alpha) * g3**2
    p3 = p2 - LR * g3 / (np.sqrt(v3) + EPS)
    got = trajectory("rmsprop", hparams(beta2=alpha, weight_decay=wd))
    np.testing.assert_allclose(got, [p1, p2, p3], rtol=1e-12, atol=1e-15)


def test_rmsprop_literal_first_step():
    # v1 = 0.01 * g^2 -> sqrt(v1) = 0.1 |g|: the first step is lr * 10 * sign(g) (eps aside).
    got = trajectory("rmsprop", hparams(beta2=0.99), grads=GRADS[:1])
    np.testing.assert_allclose(got[0], [0.0, -1.0], atol=1e-6)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_by_hand(wd):
    b1, b2 = 0.9, 0.999
    g1 = GRADS[0] + wd * P0
    m1 = (1 - b1) * g1
    v1 = (1 - b2) * g1**2
    p1 = P0 - LR * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + EPS)
    g2 = GRADS[1] + wd * p1
    m2 = b1 * m1 + (1 - b1) * g2
    v2 = b2 * v1 + (1 - b2) * g2**2
    p2 = p1 - LR * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + EPS)
    g3 = GRADS[2] + wd * p2
    m3 = b1 * m2 + (1 - b1) * g3
    v3 = b2 * v2 + (1 - b2) * g3**2
    p3 = p2 - LR * (m3 / (1 - b1**3)) / (np.sqrt(v3 / (1 - b2**3)) + EPS)
    got = trajectory("adam", hparams(beta1=b1, beta2=b2, weight_decay=wd))
    np.testing.assert_allclose(got, [p1, p2, p3], rtol=1e-12)


def test_adam_literal_values():
    got = trajectory("adam", hparams(), grads=GRADS[:2])
    # Bias correction makes the first step lr * g / (|g| + eps): lr * sign(g).
    np.testing.assert_allclose(got[0], [0.9, -1.9], rtol=1e-7)
    # Step 2, first entry: m = 0.015, v = 0.00033975; m_hat = 0.015 / 0.19,
    # v_hat = 0.00033975 / 0.001999 -> update 0.1 * 0.0789474 / 0.4122620 = 0.0191498.
    assert got[1][0] == pytest.approx(0.9 - 0.1 * (0.015 / 0.19) / math.sqrt(0.00033975 / 0.001999))
    assert got[1][0] == pytest.approx(0.88085, abs=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_replicas_use_their_own_learning_rate(kind):
    """Two replicas at lr 0.1 and 0.01 in one call equal two separate single runs."""
    hp = hparams(weight_decay=0.05)
    lrs = np.array([0.1, 0.01])
    p = np.stack([P0, P0])
    state = optim.init_state(kind, [p])
    for t, g in enumerate(GRADS, start=1):
        lr_b = np.broadcast_to(optim.per_replica(lrs, p), p.shape)
        p = p - optim.delta(kind, 0, p, np.stack([g, g]), state, t, lr_b, hp)
    for r, lr in enumerate(lrs):
        np.testing.assert_allclose(p[r], trajectory(kind, hp, lr=lr)[-1], rtol=1e-14)


@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_dtype_is_preserved(kind, dtype, wd):
    p = P0[None].astype(dtype)
    state = optim.init_state(kind, [p])
    hp = hparams(weight_decay=wd, eps=1e-3)  # 1e-8 is 0 in float16
    for t, g in enumerate(GRADS, start=1):
        d = optim.delta(kind, 0, p, g[None].astype(dtype), state, t, np.full_like(p, LR), hp)
        assert d.dtype == np.dtype(dtype)
        p = p - d
        assert p.dtype == np.dtype(dtype)
        assert all(s[0].dtype == np.dtype(dtype) for s in state.values())
    expected = trajectory(kind, hp)[-1]
    np.testing.assert_allclose(p[0], expected, rtol=1e-2 if dtype == np.float16 else 1e-5)


def test_init_state_is_zeros_like_params():
    params = [np.ones((2, 3, 4), np.float32), np.ones((2, 4), np.float32)]
    assert optim.init_state("sgd", params) == {}
    assert set(optim.init_state("momentum", params)) == {"buf"}
    assert set(optim.init_state("rmsprop", params)) == {"v"}
    state = optim.init_state("adam", params)
    assert set(state) == {"m", "v"}
    for arrays in state.values():
        for s, p in zip(arrays, params, strict=True):
            assert s.shape == p.shape and s.dtype == p.dtype and not s.any()


def test_unknown_optimizer_and_schedule_are_errors():
    p = P0[None]
    with pytest.raises(ValueError, match="lbfgs"):
        optim.delta("lbfgs", 0, p, p, {}, 1, np.full_like(p, LR), hparams())
    with pytest.raises(ValueError, match="cyclic"):
        optim.schedule_factor("cyclic", 1, 10, 1, 0.5, 1)


# ---------------------------------------------------------------- clipping
def test_clip_by_norm_above_the_bound_scales_like_torch():
    g = np.array([[3.0, 4.0]])  # norm 5
    (clipped,) = optim.clip_by_norm([g], 1.0)
    np.testing.assert_allclose(clipped, g * (1.0 / (5.0 + 1e-6)), rtol=1e-15)


def test_clip_by_norm_below_the_bound_leaves_gradients_alone():
    g = np.array([[3.0, 4.0]])
    (clipped,) = optim.clip_by_norm([g], 10.0)
    np.testing.assert_array_equal(clipped, g)


def test_clip_by_norm_at_the_bound_scales_slightly_like_torch():
    # torch multiplies by min(bound / (norm + 1e-6), 1): at norm == bound that is just below 1.
    g = np.array([[3.0, 4.0]])
    (clipped,) = optim.clip_by_norm([g], 5.0)
    np.testing.assert_allclose(clipped, g * (5.0 / 5.000001), rtol=1e-15)
    assert (np.abs(clipped) < np.abs(g)).all()


def test_clip_by_norm_is_joint_over_arrays_and_per_replica():
    # Replica 0: weight [3, 0, 0] and bias [4] -> joint norm 5 (over 1); replica 1: 0.5 (under).
    w = np.array([[[3.0, 0.0, 0.0]], [[0.3, 0.0, 0.0]]])  # (2, 1, 3)
    b = np.array([[4.0], [0.4]])  # (2, 1)
    cw, cb = optim.clip_by_norm([w, b], 1.0)
    coef = 1.0 / (5.0 + 1e-6)
    np.testing.assert_allclose(cw[0], w[0] * coef, rtol=1e-15)
    np.testing.assert_allclose(cb[0], b[0] * coef, rtol=1e-15)
    np.testing.assert_array_equal(cw[1], w[1])
    np.testing.assert_array_equal(cb[1], b[1])
    # Alone the arrays' norms are 3 and 4; clipped together, the joint norm is the bound.
    np.testing.assert_allclose(
        np.hypot(np.linalg.norm(cw[0]), np.linalg.norm(cb[0])), 1.0, rtol=1e-6
    )


def test_clip_by_norm_keeps_dtype():
    grads = [np.full((1, 2, 2), 10.0, np.float32), np.full((1, 2), 10.0, np.float32)]
    clipped = optim.clip_by_norm(grads, 1.0)
    assert [c.dtype for c in clipped] == [np.dtype(np.float32)] * 2
    np.testing.assert_allclose(optim.global_norm(clipped), [1.0], rtol=1e-5)


def test_clip_by_value():
    g = np.array([[-3.0, -0.5, 0.0, 0.5, 3.0]])
    (clipped,) = optim.clip_by_value([g], 1.0)
    np.testing.assert_array_equal(clipped, [[-1.0, -0.5, 0.0, 0.5, 1.0]])


# ---------------------------------------------------------------- norms
def test_norm_matches_numpy_on_ordinary_values():
    a = np.random.default_rng(0).normal(size=(3, 4, 5))
    n = optim.norm(a)
    assert n.shape == (3,)
    assert n.dtype == np.float64
    np.testing.assert_allclose(n, np.linalg.norm(a.reshape(3, -1), axis=1), rtol=1e-13)


@pytest.mark.parametrize(
    ("value", "dtype"), [(1e200, np.float64), (1e30, np.float32), (300.0, np.float16)]
)
def test_norm_does_not_overflow(value, dtype):
    # The plain sum of squares is inf (1e400, 1e60, 90000) although the norm is finite.
    a = np.full((2, 4), value, dtype=dtype)
    a[1] *= 0.5
    with np.errstate(all="ignore"):  # the documented precondition: its own overflow is muted
        n = optim.norm(a)
    np.testing.assert_allclose(n, [2 * value, value], rtol=1e-6)


def test_norm_of_a_truly_infinite_array_is_inf():
    a = np.array([[1.0, np.inf], [3.0, 4.0]])
    with np.errstate(all="ignore"):
        n = optim.norm(a)
    assert n[0] == np.inf
    assert n[1] == pytest.approx(5.0)


def test_global_norm_over_several_arrays():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4))]
    flat = np.concatenate([a.reshape(2, -1) for a in arrays], axis=1)
    np.testing.assert_allclose(optim.global_norm(arrays), np.linalg.norm(flat, axis=1), rtol=1e-13)
    huge = [np.full((1, 4), 1e200), np.full((1, 5), 1e200)]
    np.testing.assert_allclose(optim.global_norm(huge), [3e200], rtol=1e-12)


# ---------------------------------------------------------------- schedules
def test_schedule_constant():
    assert [optim.schedule_factor("constant", t, 10, 3, 0.5, 4) for t in (1, 5, 10)] == [1.0] * 3


def test_schedule_step():
    # gamma ** ((t - 1) // step_size): steps 1..10 at 1, 11..20 at 0.5, 21.. at 0.25.
    got = [optim.schedule_factor("step", t, 100, 10, 0.5, 1) for t in (1, 10, 11, 20, 21)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_schedule_exponential():
    got = [optim.schedule_factor("exponential", t, 100, 10, 0.5, 1) for t in (1, 6, 11, 21)]
    assert got == pytest.approx([1.0, math.sqrt(0.5), 0.5, 0.25])


def test_schedule_cosine():
    # torch CosineAnnealingLR with T_max = steps: 0.5 (1 + cos(pi (t - 1) / steps)).
    got = [optim.schedule_factor("cosine", t, 10, 1, 0.5, 1) for t in (1, 6, 10, 11)]
    assert got == pytest.approx([1.0, 0.5, 0.5 * (1 + math.cos(0.9 * math.pi)), 0.0], abs=1e-15)
    factors = [optim.schedule_factor("cosine", t, 10, 1, 0.5, 1) for t in range(1, 12)]
    assert all(a > b for a, b in zip(factors, factors[1:], strict=False))


def test_schedule_warmup():
    got = [optim.schedule_factor("warmup", t, 100, 1, 0.5, 4) for t in (1, 2, 4, 5, 100)]
    assert got == [0.25, 0.5, 1.0, 1.0, 1.0]


# ---------------------------------------------------------------- against torch itself
@pytest.mark.parametrize("wd", [0.0, 0.1])
@pytest.mark.parametrize("kind", KINDS)
def test_trajectories_match_torch(kind, wd):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    p0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(5)]
    hp = hparams(momentum=0.9, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=wd)

    tp = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
    make = {
        "sgd": lambda: torch.optim.SGD([tp], lr=LR, weight_decay=wd),
        "momentum": lambda: torch.optim.SGD([tp], lr=LR, momentum=0.9, weight_decay=wd),
        "rmsprop": lambda: torch.optim.RMSprop([tp], lr=LR, alpha=0.99, eps=1e-6, weight_decay=wd),
        "adam": lambda: torch.optim.Adam([tp], lr=LR, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd),
    }
    opt = make[kind]()
    expected = []
    for g in grads:
        tp.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        expected.append(tp.detach().numpy().copy())

    p = p0[None]
    state = optim.init_state(kind, [p])
    for t, (g, want) in enumerate(zip(grads, expected, strict=True), start=1):
        p = p - optim.delta(kind, 0, p, g[None], state, t, np.full_like(p, LR), hp)
        np.testing.assert_allclose(p[0], want, rtol=1e-10, atol=1e-12, err_msg=f"step {t}")


@pytest.mark.parametrize("bound", [0.5, 100.0])
def test_clip_by_norm_matches_torch(bound):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    grads = [rng.normal(size=(3, 4)), rng.normal(size=(4,))]
    params = [torch.nn.Parameter(torch.zeros(g.shape, dtype=torch.float64)) for g in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor(g, dtype=torch.float64)
    torch.nn.utils.clip_grad_norm_(params, bound)
    ours = optim.clip_by_norm([g[None] for g in grads], bound)
    for o, p in zip(ours, params, strict=True):
        np.testing.assert_allclose(o[0], p.grad.numpy(), rtol=1e-12)
