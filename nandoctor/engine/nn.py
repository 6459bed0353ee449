"""The network math: activations, losses and initialisers as small functions over arrays.

Shapes: ``x`` is ``(batch, n_in)``; a layer's weights ``W`` are ``(*R, n_in, n_out)`` and biases
``b`` are ``(*R, n_out)``, where the optional leading axes ``R`` stack independent replicas of
the network (a learning-rate sweep trains them in one matmul). A single run has ``R == ()``.

Two numerics modes: ``naive`` is the textbook code people write by hand -- softmax
without subtracting the max, ``1 / (1 + exp(-z))``, ``log(p)`` with no clipping -- and fails
exactly where that code fails; ``stable`` is log-sum-exp and losses from logits.

Each function names the primitive op it is about to run with :func:`op`, so the floating-point
watch (``nandoctor.instrument.events``) can say *which* op overflowed or produced a NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np

from nandoctor.instrument.events import installed_watch, op

LEAKY_SLOPE = 0.01


# ---------------------------------------------------------------- activations
# Thresholds on an activation's outputs, each a statement about its derivative.
SATURATION_TOL = 1e-3  # sigmoid/tanh outputs this close to their limits are saturated
SOFTMAX_PINNED = 1 - 1e-6  # a softmax row whose largest probability exceeds this is saturated
WEAK_SIGMOID = 0.0257  # sigmoid'(z) = a(1 - a) < 0.025 (a tenth of 0.25) outside [0.0257, 0.9743]
WEAK_TANH = 0.9487  # tanh'(z) = 1 - a^2 < 0.1 beyond |a| = 0.9487

Forward = Callable[[np.ndarray, bool], np.ndarray]  # (z, naive) -> a
Backward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (z, a, dL/da) -> dL/dz
Share = Callable[[np.ndarray], np.ndarray]  # a: (..., batch, units) -> (...) share of units


@dataclass(frozen=True)
class ActivationFn:
    """One activation: its forward, its derivative and the op it runs, declared together.

    ``forward(z, naive)`` and ``backward(z, a, grad_a)`` work on ``(*R, batch, units)``; ``op`` is
    the primitive the watch names while the forward runs (composite forwards such as the sigmoid
    name each of their ops themselves). The remaining fields are what the rest of nandoctor needs
    to know about the function: the init it defaults to, how to measure saturated outputs and
    weak derivatives (None where they cannot occur), and whether a unit can die (ReLU: no
    gradient at all once ``z <= 0`` for every sample).

    An element-wise squashing function (sigmoid, tanh) is monotonic and odd about its middle, so
    an output is within a distance of its nearer limit exactly where ``|z|`` is beyond a bound:
    it is saturated within SATURATION_TOL of the limit (``|z| > saturated_beyond``) and its
    derivative weak (``|z| > weak_beyond``; :func:`limit_shares`). A softmax saturates by rows
    instead: ``saturated(a)`` is its share of pinned rows.
    """

    forward: Forward
    backward: Backward
    op: str | None
    default_init: Literal["he", "xavier"] = "xavier"
    saturated: Share | None = None  # the row-wise kind (softmax)
    can_die: bool = False
    saturated_beyond: float | None = None  # the element-wise kind: bounds on |z|
    weak_beyond: float | None = None

    @property
    def saturates(self) -> bool:
        """Bounded outputs that can pin at their limits (sigmoid, tanh, softmax)."""
        return self.squashing or self.saturated is not None

    @property
    def squashing(self) -> bool:
        """Element-wise and bounded: a unit's derivative fades as its output nears a limit."""
        return self.saturated_beyond is not None


def _sigmoid(z: np.ndarray, naive: bool) -> np.ndarray:
    if naive:
        op("exp")
        e = np.exp(-z)
        op("divide")
        return 1 / (1 + e)
    watch = installed_watch()
    if watch is None or watch.muted:
        return _sigmoid_everywhere(z)
    # 1 / (1 + exp(-z)) is exact to rounding wherever exp(-z) does not overflow, in half the
    # calls of the form that never overflows; the entries where it did are redone in that form,
    # entry by entry, so a replica's values do not depend on the others'.
    if watch.probing:  # an outer probe redoes all of its work labelled if anything overflowed
        return 1 / (1 + np.exp(-z))
    watch.probe()
    e = np.exp(-z)
    a = 1 / (1 + e)
    if watch.end_probe():
        far = np.isinf(e)
        a[far] = _sigmoid_everywhere(z[far])
    return a


def _sigmoid_everywhere(z: np.ndarray) -> np.ndarray:
    """The sigmoid without overflow for any ``z``."""
    op("exp")
    e = np.exp(-np.abs(z))  # in (0, 1]: cannot overflow
    op("divide")
    d = 1 + e
    return np.where(z >= 0, 1 / d, e / d)


def _softmax(z: np.ndarray, naive: bool) -> np.ndarray:
    if not naive:
        op("subtract")
        z = z - z.max(axis=-1, keepdims=True)
    op("exp")
    e = np.exp(z)
    op("sum")
    s = e.sum(axis=-1, keepdims=True)
    op("divide")
    return e / s


def limit_shares(fn: ActivationFn, abs_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The share of saturated outputs and of weak derivatives of a squashing activation, from the
    magnitudes of its inputs ``abs_z = |z|: (..., batch, units)``: two arrays of shape
    ``abs_z.shape[:-2]`` (float64). Read from ``z`` rather than the outputs, the statistics need
    no copy of the outputs, and the ``|z|`` that gives max |z| gives these too."""
    beyond = np.greater(abs_z, _below(abs_z.dtype, fn.saturated_beyond))
    saturated = share_of(beyond)
    return saturated, share_of(np.greater(abs_z, _below(abs_z.dtype, fn.weak_beyond), out=beyond))


@cache
def _below(dtype: np.dtype, bound: float) -> np.generic:
    """The largest value of ``dtype`` not above ``bound``: a value of that dtype exceeds it exactly
    when it exceeds ``bound`` (a bound rounded up would miss a float16 |z| equal to it)."""
    b = np.asarray(bound, dtype=dtype)
    if float(b) > bound:
        b = np.nextafter(b, -np.inf, dtype=dtype)
    return b[()]


def _sigmoid_beyond(distance: float) -> float:
    """|z| beyond which sigmoid(z) is within ``distance`` of 0 or 1: ``log((1 - d) / d)``."""
    return math.log((1 - distance) / distance)


def share_of(mask: np.ndarray) -> np.ndarray:
    """The share of True over the last two axes of ``mask: (..., batch, units)``, float64.

    Counted exactly in the narrowest unsigned integer that holds the count: summing into 16 bits
    takes a quarter of the time of ``count_nonzero``'s 64 (4 us against 16 over a sweep
    group's 6 steps x 8 replicas x 32 x 20), and the same count divides alike."""
    size = mask.shape[-2] * mask.shape[-1]
    counter = np.uint16 if size <= 0xFFFF else np.uint32 if size <= 0xFFFFFFFF else np.uint64
    return np.add.reduce(mask, axis=(-2, -1), dtype=counter) / size


ACTIVATIONS: dict[str, ActivationFn] = {
    "linear": ActivationFn(
        forward=lambda z, naive: z,
        backward=lambda z, a, g: g,
        op=None,
    ),
    "relu": ActivationFn(
        forward=lambda z, naive: np.maximum(z, 0),
        backward=lambda z, a, g: g * (z > 0),
        op="maximum",
        default_init="he",
        can_die=True,
    ),
    "leaky_relu": ActivationFn(
        forward=lambda z, naive: np.where(z > 0, z, LEAKY_SLOPE * z),
        backward=lambda z, a, g: g * np.where(z > 0, 1.0, LEAKY_SLOPE).astype(z.dtype),
        op="multiply",
        default_init="he",
    ),
    "elu": ActivationFn(
        forward=lambda z, naive: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
        backward=lambda z, a, g: g * np.where(z > 0, 1, a + 1),
        op="expm1",
        default_init="he",
    ),
    "tanh": ActivationFn(
        forward=lambda z, naive: np.tanh(z),
        backward=lambda z, a, g: g * (1 - a * a),
        op="tanh",
        saturated_beyond=math.atanh(1 - SATURATION_TOL),
        weak_beyond=math.atanh(WEAK_TANH),
    ),
    "sigmoid": ActivationFn(
        forward=_sigmoid,
        backward=lambda z, a, g: g * (a * (1 - a)),
        op="exp",
        saturated_beyond=_sigmoid_beyond(SATURATION_TOL),
        weak_beyond=_sigmoid_beyond(WEAK_SIGMOID),
    ),
    "softmax": ActivationFn(
        forward=_softmax,
        backward=lambda z, a, g: a * (g - (g * a).sum(axis=-1, keepdims=True)),
        op="exp",
        saturated=lambda a: (a.max(axis=-1) > SOFTMAX_PINNED).mean(axis=-1),
    ),
}


def activation(name: str) -> ActivationFn:
    """The table entry of activation ``name`` (ValueError for a name it does not hold)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}") from None


def activate(name: str, z: np.ndarray, naive: bool) -> np.ndarray:
    """Activation ``a = f(z)``; ``z: (*R, batch, units)`` -> same shape."""
    fn = activation(name)
    if fn.op:
        op(fn.op)
    return fn.forward(z, naive)


def activation_grad(name: str, z: np.ndarray, a: np.ndarray, grad_a: np.ndarray) -> np.ndarray:
    """Back through the activation: ``dL/dz`` from ``dL/da``; all ``(*R, batch, units)``."""
    fn = activation(name)
    op("multiply")
    return fn.backward(z, a, grad_a)


# ---------------------------------------------------------------- dense layers
def half_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(a, b, out=out)``; of two float16 arrays, through float32 BLAS.

    NumPy has no float16 BLAS: its own loop converts every element to float32, sums the products
    in float32 and rounds each result to float16 once, 20-100x slower than BLAS (a 256 x 64 x 256
    product: 18 ms against 0.4). The products of two float16 are exact in float32, so BLAS on
    the float32 copies, rounded to float16 once, is that arithmetic (float32 accumulation, as
    float16 hardware does) with the terms summed in BLAS's order rather than one by one: a
    result may differ from NumPy's in its last float16 bit (about 1 in 2,000 results), so a
    float16 run follows its own trajectory, the same in every command that trains it. An
    overflow of float16 shows as NumPy's overflow flag at the rounding, as before. Other dtypes
    (a float16 network's float64 copy, as ``sweep.sharpness`` makes) go to ``np.matmul``."""
    if a.dtype != np.float16 or b.dtype != np.float16:
        return np.matmul(a, b, out=out)
    wide = np.matmul(a.astype(np.float32), b.astype(np.float32))
    if out is None:
        return wide.astype(np.float16)
    np.copyto(out, wide, casting="same_kind")
    return out


def matmul_for(dtype) -> Callable[..., np.ndarray]:
    """The matmul a network of ``dtype`` computes with: NumPy's, or :func:`half_matmul`."""
    return half_matmul if np.dtype(dtype) == np.float16 else np.matmul


SUM_BY_DOT = 1 << 13  # batch x units of one replica up to which a bias gradient is a dot product


def bias_grad(gz: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``dL/db``: ``gz: (..., batch, units)`` summed over the batch, ``(..., units)``.

    A small layer's sum is a BLAS dot product with ones, one call per replica whatever the
    replicas (so a replica sums alike alone and beside others): a reduction over the batch axis
    runs NumPy's inner loop once per row and unit block, three times slower on 8 replicas of a
    32 x 20 layer. Larger layers, and float16 (no BLAS), keep ``np.add.reduce``; either way the
    caller's watch sees a sum that overflows (BLAS is single-threaded at this size)."""
    rows, units = gz.shape[-2:]
    if gz.dtype != np.float16 and rows * units <= SUM_BY_DOT:
        return np.matmul(_ones(rows, gz.dtype), gz, out=out)
    return np.add.reduce(gz, axis=-2, out=out)


@cache
def _ones(n: int, dtype: np.dtype) -> np.ndarray:
    """A read-only vector of ``n`` ones, made once per length and dtype."""
    ones = np.ones(n, dtype)
    ones.flags.writeable = False
    return ones


# ---------------------------------------------------------------- normalization
NORM_AXIS = {"batch": -2, "layer": -1}  # batch: per unit over the batch; layer: per sample


def normalize(kind: str, z: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """``z_hat = (z - mean) / sqrt(var + eps)`` with the biased variance; ``z: (*R, batch,
    units)``. batch: statistics per unit over the batch (torch BatchNorm1d, training mode);
    layer: per sample over the units (torch LayerNorm). Returns ``(z_hat, inv_std)``, ``inv_std``
    broadcastable to ``z``. A zero-variance batch with ``eps = 0`` divides by zero here."""
    axis = NORM_AXIS[kind]
    op(f"{kind}_norm")
    centered = z - z.mean(axis=axis, keepdims=True)
    var = (centered * centered).mean(axis=axis, keepdims=True)
    inv_std = 1 / np.sqrt(var + np.asarray(eps, dtype=z.dtype))
    return centered * inv_std, inv_std


def normalize_grad(
    kind: str, z_hat: np.ndarray, inv_std: np.ndarray, grad_hat: np.ndarray
) -> np.ndarray:
    """Back through :func:`normalize`: ``dL/dz`` from ``dL/dz_hat`` (the mean and the variance
    depend on every entry along the norm's axis)."""
    axis = NORM_AXIS[kind]
    op(f"{kind}_norm")
    mean_g = grad_hat.mean(axis=axis, keepdims=True)
    mean_gz = (grad_hat * z_hat).mean(axis=axis, keepdims=True)
    return inv_std * (grad_hat - mean_g - z_hat * mean_gz)


def affine(z_hat: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``gamma * z_hat + beta``; ``gamma, beta: (*R, units)``."""
    op("multiply")
    return z_hat * gamma[..., None, :] + beta[..., None, :]


def affine_grad(z_hat: np.ndarray, gamma: np.ndarray, grad_out: np.ndarray):
    """Back through :func:`affine`: ``(dL/dz_hat, dL/dgamma, dL/dbeta)``."""
    op("multiply")
    return grad_out * gamma[..., None, :], (grad_out * z_hat).sum(axis=-2), grad_out.sum(axis=-2)


# ---------------------------------------------------------------- dropout
def dropout_mask(p: float, shape: tuple, rng: np.random.Generator, dtype) -> np.ndarray:
    """Inverted dropout: each entry kept with probability ``1 - p`` and scaled by ``1 / (1 - p)``,
    so the expected output equals the input. ``shape = (batch, units)``, shared by replicas."""
    return (rng.random(shape) >= p).astype(dtype) * np.asarray(1 / (1 - p), dtype=dtype)


def dropout(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``a * mask``; its gradient is the same product (``dropout(grad, mask)``)."""
    op("dropout")
    return a * mask


# ---------------------------------------------------------------- losses
def loss_and_grad(
    loss: str,
    activation: str,
    z: np.ndarray,
    a: np.ndarray,
    y: np.ndarray | None,
    naive: bool,
    noise: np.ndarray | None = None,
    reduction: str = "mean",
    delta: float = 1.0,
    label_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The loss of the last layer and its gradient with respect to that layer's ``z``.

    ``z, a: (*R, batch, out)``; ``y: (batch, out)`` (mse, mae, huber, bce) or ``(batch,)`` int
    class indices (cross_entropy); ``noise: (batch, out)`` for ``random_gradient``. ``reduction``
    mean averages the terms (per element; per sample for cross_entropy), sum adds exactly those
    terms (torch's ``reduction``). Returns ``(loss: (*R,), grad_z: (*R, batch, out))``.
    """
    if loss == "random_gradient":
        # The loss whose gradient with respect to the output is exactly the noise: sum(g * a).
        op("multiply")
        value = (noise * a).sum(axis=(-2, -1))
        grad_a = np.empty_like(a)
        grad_a[...] = noise  # the same noise for every replica: (batch, out) -> (*R, batch, out)
        return value, activation_grad(activation, z, a, grad_a)
    if loss == "cross_entropy":
        n = z.shape[-2] if reduction == "mean" else 1
        return _cross_entropy(activation, z, a, y, naive, n, label_smoothing)
    size = z.shape[-1] * z.shape[-2] if reduction == "mean" else 1
    if loss == "bce":
        return _bce(activation, z, a, y, naive, size)
    if loss in ELEMENTWISE:
        op("subtract")
        diff = a - y
        terms, slope, factor = ELEMENTWISE[loss](diff, delta)
        value = _reduce(terms, (-2, -1), size)
        op("multiply")
        return value, activation_grad(activation, z, a, slope * (factor / size))
    raise ValueError(f"unknown loss {loss!r}")


def _reduce(terms: np.ndarray, axis, count: int) -> np.ndarray:
    """The mean of ``terms`` over ``axis`` (``count > 1``: it has that many) or, for
    ``reduction: sum`` (``count == 1``), their sum. The arithmetic of ``terms.mean(axis)`` (a
    float16 mean is summed in float32) without its Python wrapper, which costs more than the sum.
    Labelled ``sum``: a float16 sum of finite terms overflows on its own (1024 terms of 100)."""
    op("sum")
    if count == 1:
        return terms.sum(axis=axis)
    if terms.dtype == np.float16:
        return (np.add.reduce(terms, axis=axis, dtype=np.float32) / count).astype(np.float16)
    return np.add.reduce(terms, axis=axis) / count


def _squared(diff, _delta):
    op("square")
    return diff * diff, diff, 2  # d(diff^2) = 2 diff, the 2 folded into the 1/size factor


def _absolute(diff, _delta):
    op("abs")
    return np.abs(diff), np.sign(diff), 1


def _huber(diff, delta):
    """torch ``huber_loss``: ``0.5 d^2`` for ``|d| < delta``, ``delta (|d| - delta / 2)`` beyond."""
    op("square")
    mag = np.abs(diff)
    delta = np.asarray(delta, dtype=diff.dtype)
    inside = mag < delta
    terms = np.where(inside, 0.5 * diff * diff, delta * (mag - 0.5 * delta))
    return terms, np.clip(diff, -delta, delta), 1


# loss -> (terms, slope, factor): d terms / d a = slope * factor
ELEMENTWISE = {"mse": _squared, "mae": _absolute, "huber": _huber}


def l2_penalty(weights: list[np.ndarray], lam: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """``lam * sum(W**2)`` over the weight matrices ``W: (*R, in, out)`` and its gradients
    ``2 lam W``; returns ``(penalty: (*R,), grads)``."""
    op("l2")
    penalty = sum(lam * (W * W).sum(axis=(-2, -1)) for W in weights)
    return penalty, [(2 * lam) * W for W in weights]


def _cross_entropy(activation, z, a, y, naive, n, smoothing=0.0):
    """Mean (``n`` = batch) or sum (``n`` = 1) over samples of ``-sum_c q_c log p_c`` with ``q``
    the one-hot target smoothed as torch does: ``(1 - smoothing) onehot + smoothing / classes``."""
    rows = np.arange(z.shape[-2])
    target = np.zeros(z.shape[-2:], dtype=z.dtype)
    target[rows, y] = 1
    if smoothing:
        target = (1 - smoothing) * target + smoothing / z.shape[-1]
    if naive:
        # Textbook: p = softmax(z) (exp without the max), loss = -mean(log p[target]).
        p = a if activation == "softmax" else _softmax(z, naive=True)
        op("log")
        if smoothing:
            value = -_reduce((target * np.log(p)).sum(axis=-1), -1, n)
        else:
            value = -_reduce(np.log(p[..., rows, y]), -1, n)
        op("subtract")
        return value, (p - target) / n
    op("logsumexp")
    m = z.max(axis=-1, keepdims=True)
    shifted = z - m
    lse = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    logp = shifted - lse
    if smoothing:
        value = -_reduce((target * logp).sum(axis=-1), -1, n)
    else:
        value = -_reduce(logp[..., rows, y], -1, n)
    op("exp")
    return value, (np.exp(logp) - target) / n


def _bce(activation, z, a, y, naive, size):
    if naive:
        # Textbook: p = sigmoid(z); loss = -mean(y log p + (1-y) log(1-p));
        # dL/dp = -(y/p - (1-y)/(1-p)) / size, then back through the sigmoid.
        p = a if activation == "sigmoid" else _sigmoid(z, naive=True)
        op("log")
        value = -_reduce(y * np.log(p) + (1 - y) * np.log(1 - p), (-2, -1), size)
        op("divide")
        grad_p = -(y / p - (1 - y) / (1 - p)) / size
        op("multiply")
        return value, grad_p * (p * (1 - p))
    # Stable: BCE with logits, max(z, 0) - z*y + log1p(exp(-|z|)).
    op("log1p")
    value = _reduce(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))), (-2, -1), size)
    op("subtract")
    return value, (_sigmoid(z, naive=False) - y) / size


# ---------------------------------------------------------------- initialisation


def init_weights(
    init: str, n_in: int, n_out: int, scale: float, rng: np.random.Generator
) -> np.ndarray:
    """Initial ``W: (n_in, n_out)`` in float64 (xavier = N(0, 2/(in+out)), he = N(0,
    2/in), normal = N(0, 1); the uniform variants have the same variance; all times ``scale``)."""
    shape = (n_in, n_out)
    if init == "normal":
        w = rng.standard_normal(shape)
    elif init == "xavier":
        w = rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), shape)
    elif init == "he":
        w = rng.normal(0.0, np.sqrt(2.0 / n_in), shape)
    elif init == "xavier_uniform":
        limit = np.sqrt(6.0 / (n_in + n_out))
        w = rng.uniform(-limit, limit, shape)
    elif init == "he_uniform":
        limit = np.sqrt(6.0 / n_in)
        w = rng.uniform(-limit, limit, shape)
    elif init == "uniform":
        w = rng.uniform(-1.0, 1.0, shape)
    elif init == "zeros":
        w = np.zeros(shape)
    else:
        raise ValueError(f"unknown init {init!r}")
    return w * scale
