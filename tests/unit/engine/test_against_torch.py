"""The new layers, losses, reductions, optimisers and loss-scaling rules against PyTorch itself.

Each test skips where torch is not installed (``pytest.importorskip``) and runs where it is. The
same float64 numbers go through torch's module or function and through ours; values and
gradients must agree to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest

from nandoctor.engine import nn, optim
from nandoctor.engine.trainer import LossScaler

torch = pytest.importorskip("torch")
F = torch.nn.functional

RTOL = 1e-10


def t64(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# ---------------------------------------------------------------- norms and dropout
@pytest.mark.parametrize("kind", ["batch", "layer"])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_norm_forward_and_backward_match_torch(kind, eps):
    rng = np.random.default_rng(1)
    z = rng.normal(1.0, 2.0, (7, 4))
    gamma, beta, up = rng.normal(size=4), rng.normal(size=4), rng.normal(size=(7, 4))
    tz, tg, tb = t64(z, True), t64(gamma, True), t64(beta, True)
    if kind == "batch":
        out = F.batch_norm(tz, None, None, tg, tb, training=True, eps=eps)
    else:
        out = F.layer_norm(tz, (4,), tg, tb, eps=eps)
    out.backward(t64(up))

    z_hat, inv_std = nn.normalize(kind, z[None], eps)
    ours = nn.affine(z_hat, gamma[None], beta[None])
    g_hat, g_gamma, g_beta = nn.affine_grad(z_hat, gamma[None], up[None])
    gz = nn.normalize_grad(kind, z_hat, inv_std, g_hat)
    np.testing.assert_allclose(ours[0], out.detach().numpy(), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(gz[0], tz.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(g_gamma[0], tg.grad.numpy(), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(g_beta[0], tb.grad.numpy(), rtol=RTOL, atol=1e-12)


def test_dropout_scales_survivors_like_torch():
    p = 0.3
    out = F.dropout(torch.ones(10000, dtype=torch.float64), p=p, training=True).numpy()
    ours = nn.dropout_mask(p, (10000,), np.random.default_rng(0), np.float64)
    assert set(np.unique(out)) == set(np.unique(ours)) == {0.0, 1 / (1 - p)}


# ---------------------------------------------------------------- losses
def _torch_loss(name, out, y, reduction, delta, smoothing):
    if name == "mse":
        return F.mse_loss(out, y, reduction=reduction)
    if name == "mae":
        return F.l1_loss(out, y, reduction=reduction)
    if name == "huber":
        return F.huber_loss(out, y, reduction=reduction, delta=delta)
    if name == "bce":
        return F.binary_cross_entropy_with_logits(out, y, reduction=reduction)
    return F.cross_entropy(out, y, reduction=reduction, label_smoothing=smoothing)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "name, smoothing",
    [
        ("mse", 0),
        ("mae", 0),
        ("huber", 0),
        ("bce", 0),
        ("cross_entropy", 0),
        ("cross_entropy", 0.1),
    ],
)
@pytest.mark.parametrize("naive", [False, True], ids=["stable", "naive"])
def test_losses_and_gradients_match_torch(name, smoothing, reduction, naive):
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2.0, (6, 3))
    delta = 0.7
    if name == "cross_entropy":
        y = rng.integers(0, 3, 6)
        ty = torch.tensor(y)
    elif name == "bce":
        y = rng.uniform(0, 1, (6, 3))
        ty = t64(y)
    else:
        y = rng.normal(0, 2.0, (6, 3))
        ty = t64(y)
    tz = t64(z, True)
    loss = _torch_loss(name, tz, ty, reduction, delta, smoothing)
    loss.backward()
    act = {"cross_entropy": "softmax", "bce": "sigmoid"}.get(name, "linear")
    a = nn.activate(act, z[None], naive)
    value, gz = nn.loss_and_grad(
        name, act, z[None], a, y, naive, reduction=reduction, delta=delta, label_smoothing=smoothing
    )
    np.testing.assert_allclose(value[0], loss.item(), rtol=1e-9)
    np.testing.assert_allclose(gz[0], tz.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_l2_penalty_matches_torch_weight_norms():
    rng = np.random.default_rng(3)
    ws = [rng.normal(size=(3, 4)), rng.normal(size=(4, 2))]
    tws = [t64(w, True) for w in ws]
    penalty = 0.01 * sum((w**2).sum() for w in tws)
    penalty.backward()
    value, grads = nn.l2_penalty([w[None] for w in ws], 0.01)
    np.testing.assert_allclose(value[0], penalty.item(), rtol=RTOL)
    for g, tw in zip(grads, tws, strict=True):
        np.testing.assert_allclose(g[0], tw.grad.numpy(), rtol=RTOL)


# ---------------------------------------------------------------- optimisers
class HP:
    momentum, beta1, beta2, eps = 0.9, 0.8, 0.99, 1e-6

    def __init__(self, weight_decay, amsgrad=False):
        self.weight_decay, self.amsgrad = weight_decay, amsgrad


TORCH_OPT = {
    "nesterov": lambda p, wd, ams: torch.optim.SGD(
        [p], lr=0.05, momentum=0.9, nesterov=True, weight_decay=wd
    ),
    "adamw": lambda p, wd, ams: torch.optim.AdamW(
        [p], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd, amsgrad=ams
    ),
    "adam": lambda p, wd, ams: torch.optim.Adam(
        [p], lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd, amsgrad=ams
    ),
    "adagrad": lambda p, wd, ams: torch.optim.Adagrad([p], lr=0.05, eps=1e-6, weight_decay=wd),
}
CASES = [(k, wd, False) for k in TORCH_OPT for wd in (0.0, 0.1)]
CASES += [(k, 0.1, True) for k in ("adam", "adamw")]


@pytest.mark.parametrize("kind, wd, amsgrad", CASES)
def test_optimizer_trajectories_match_torch(kind, wd, amsgrad):
    rng = np.random.default_rng(4)
    p0 = rng.normal(size=(3, 2))
    # shrinking gradients make amsgrad's running maximum differ from v
    grads = [rng.normal(size=(3, 2)) * 0.5**t for t in range(6)]
    tp = torch.nn.Parameter(t64(p0))
    opt = TORCH_OPT[kind](tp, wd, amsgrad)
    hp = HP(wd, amsgrad)
    p = p0[None]
    state = optim.init_state(kind, [p], amsgrad)
    for t, g in enumerate(grads, start=1):
        tp.grad = t64(g)
        opt.step()
        p = p - optim.delta(kind, 0, p, g[None], state, t, np.full_like(p, 0.05), hp)
        np.testing.assert_allclose(
            p[0], tp.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=f"step {t}"
        )


# ---------------------------------------------------------------- loss scaling
def test_dynamic_loss_scale_follows_gradscaler_updates():
    finite_pattern = [True, False, True, True, True, False, False, True, True, True, True]
    scale, tracker = torch.tensor([65536.0]), torch.tensor([0], dtype=torch.int32)
    ours = LossScaler.create("dynamic", 1)
    ours.GROWTH_INTERVAL = 3
    for finite in finite_pattern:
        found_inf = torch.tensor([0.0 if finite else 1.0])
        torch._amp_update_scale_(scale, tracker, found_inf, 2.0, 0.5, 3)
        ours.after(np.array([finite]))
        assert ours.scale[0] == scale.item()
        assert ours.good[0] == tracker.item()
    assert ours.opt_steps[0] == sum(finite_pattern)
