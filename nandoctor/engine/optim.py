"""Optimisers, gradient clipping and learning-rate schedules, following ``torch.optim``.

Every parameter carries a leading replica axis ``(n, ...)``; the learning rate is one value per
replica, ``lr: (n,)``. Updates are returned as new arrays (``p_new = p - delta``) so the caller can
measure the update-to-weight ratio and keep snapshots without copies.
"""

from __future__ import annotations

import math

import numpy as np

from nandoctor.instrument.events import op


def schedule_factor(kind: str, t: int, steps: int, step_size: int, gamma: float, warmup: int):
    """Multiplier of the base learning rate at step ``t`` (1-based); inf once ``gamma > 1``
    has grown it past float64 (the run then meets that rate, which is what the spec asked)."""
    if kind == "constant":
        return 1.0
    if kind in ("step", "exponential"):
        power = (t - 1) // step_size if kind == "step" else (t - 1) / step_size
        try:
            return gamma**power
        except OverflowError:
            return math.inf
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (t - 1) / max(steps, 1)))
    if kind == "warmup":
        return min(1.0, t / warmup)
    raise ValueError(f"unknown schedule {kind!r}")


def per_replica(v: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Reshape ``v: (n,)`` to broadcast against ``like: (n, ...)``."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


def norm(a: np.ndarray) -> np.ndarray:
    """Per-replica L2 norm of ``a: (n, ...)`` -> ``(n,)`` float64, safe from overflow.

    The plain sum of squares of values near 1e160 is inf in float64 a step before the network's own
    values are, so an overflowing sum is recomputed scaled by the largest magnitude.
    Call it with floating-point events ignored or muted: its own overflow is bookkeeping.
    """
    # One BLAS dot per replica in a's own dtype: fast, and the same arithmetic whether a replica
    # trains alone or beside others. A float32/16 overflow falls through to the scaled path.
    s = [float(np.vdot(r, r)) for r in a]
    if all(math.isfinite(v) for v in s):
        return np.sqrt(s)
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    m = np.abs(a).max(axis=1)
    m[~np.isfinite(m) | (m == 0)] = 1.0
    scaled = a / m[:, None]
    return m * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))


def _squares(a: np.ndarray) -> np.ndarray:
    """Per-replica sum of squares of ``a: (n, ...)`` in its own dtype (summed in the same order
    for a replica alone or beside others)."""
    flat = a.reshape(len(a), math.prod(a.shape[1:]))
    return np.einsum("ij,ij->i", flat, flat)


def norms(arrays: list[np.ndarray]) -> np.ndarray:
    """Per-replica L2 norms of several arrays at once, ``(len(arrays), n)``: the same numbers as
    :func:`norm` of each up to rounding, one call per array whatever the replicas (the per-step
    history's fast path; a sweep's 16 replicas cost what one does)."""
    s = np.array([_squares(a) for a in arrays], dtype=np.float64)
    if np.isfinite(s).all():
        return np.sqrt(s)
    return np.array([norm(a) for a in arrays])


def combine(norms: list[np.ndarray]) -> np.ndarray:
    """The norm of several arrays together from their norms, ``(n,)``, without overflow."""
    stacked = np.stack(norms)
    m = stacked.max(axis=0)
    safe = np.where(np.isfinite(m) & (m > 0), m, 1.0)
    return np.where(np.isfinite(m), safe * np.sqrt(((stacked / safe) ** 2).sum(axis=0)), m)


def global_norm(arrays: list[np.ndarray]) -> np.ndarray:
    """Per-replica L2 norm over every array together, ``(n,)`` (inf only if truly so)."""
    with np.errstate(all="ignore"):
        return combine([norm(a) for a in arrays])


def clip_by_norm(grads: list[np.ndarray], bound: float) -> list[np.ndarray]:
    """``torch.nn.utils.clip_grad_norm_``: scale all by ``bound / (norm + 1e-6)`` when over."""
    norm = global_norm(grads)
    coef = np.minimum(bound / (norm + 1e-6), 1.0)
    op("multiply")
    return [g * per_replica(coef, g).astype(g.dtype) for g in grads]


def clip_by_value(grads: list[np.ndarray], bound: float) -> list[np.ndarray]:
    op("clip")
    return [np.clip(g, -bound, bound) for g in grads]


STATE = {
    "sgd": (),
    "momentum": ("buf",),
    "nesterov": ("buf",),
    "rmsprop": ("v",),
    "adam": ("m", "v"),
    "adamw": ("m", "v"),
    "adagrad": ("sum",),
}


# torch.optim's name for each piece of state (``optimizer.state[p][name]``): what the watch calls
# it in the update phase, after the parameter's own name (``weight_exp_avg_sq``)
TORCH_STATE = {
    "buf": "momentum_buffer",
    "m": "exp_avg",
    "v": "exp_avg_sq",
    "v_max": "max_exp_avg_sq",
    "sum": "sum",
}
# state that accumulates squared gradients: sqrt of it divides the step, so inf there makes the
# step exactly 0 (the weights freeze) instead of making a NaN
SQUARED_STATE = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum")


def state_name(kind: str, key: str) -> str:
    """torch's name of optimiser ``kind``'s state ``key`` (rmsprop's ``v`` is ``square_avg``)."""
    return "square_avg" if kind == "rmsprop" and key == "v" else TORCH_STATE[key]


def split_state_tensor(tensor: str) -> tuple[str, str] | None:
    """``weight_exp_avg_sq`` -> ``("weight", "exp_avg_sq")``: the parameter and the optimiser
    state an update-phase tensor name is made of; None for a parameter's own name."""
    for name in sorted({*TORCH_STATE.values(), "square_avg"}, key=len, reverse=True):
        if tensor.endswith(f"_{name}"):
            return tensor[: -len(name) - 1], name
    return None


def init_state(kind: str, params: list[np.ndarray], amsgrad: bool = False) -> dict:
    """Zeroed optimiser state for ``params`` (adagrad: torch's initial_accumulator_value 0)."""
    names = STATE[kind] + (("v_max",) if amsgrad and kind in ("adam", "adamw") else ())
    return {name: [np.zeros_like(p) for p in params] for name in names}


def delta(
    kind: str,
    i: int,
    p: np.ndarray,
    g: np.ndarray,
    state: dict[str, list[np.ndarray]],
    t,
    lr: np.ndarray,
    hp,
) -> np.ndarray:
    """The update of parameter ``i`` at step ``t`` (1-based): ``p_new = p - delta``.

    Updates ``state`` in place. ``lr`` is already broadcast to ``p``'s shape, and so is ``t`` when
    it is an array (one step count per replica: loss scaling skips steps per replica); ``hp`` has
    the spec's ``momentum, beta1, beta2, eps, weight_decay, amsgrad``.
    """
    decoupled = kind == "adamw" and hp.weight_decay
    if hp.weight_decay and not decoupled:
        op("add")
        g = g + hp.weight_decay * p
    if kind == "sgd":
        op("multiply")
        return lr * g
    if kind in ("momentum", "nesterov"):
        op("multiply")
        first = np.all(t == 1)  # torch starts the buffer as the gradient (no dampening)
        buf = g.copy() if first else hp.momentum * state["buf"][i] + g
        state["buf"][i] = buf
        return lr * (g + hp.momentum * buf if kind == "nesterov" else buf)
    if kind == "rmsprop":
        op("square")
        v = hp.beta2 * state["v"][i] + (1 - hp.beta2) * (g * g)
        state["v"][i] = v
        op("sqrt")
        denom = np.sqrt(v) + hp.eps
        op("divide")
        return lr * g / denom
    if kind == "adagrad":
        op("square")
        acc = state["sum"][i] + g * g
        state["sum"][i] = acc
        op("sqrt")
        denom = np.sqrt(acc) + hp.eps
        op("divide")
        return lr * g / denom
    if kind in ("adam", "adamw"):
        step = _adam(i, g, state, t, lr, hp)
        if decoupled:  # torch AdamW: p *= 1 - lr * wd before the Adam step
            op("multiply")
            return lr * hp.weight_decay * p + step
        return step
    raise ValueError(f"unknown optimizer {kind!r}")


def _adam(i, g, state, t, lr, hp):
    """torch Adam's step ``lr / bc1 * m / (sqrt(v_hat) + eps)``, amsgrad with the running max."""
    op("multiply")
    m = hp.beta1 * state["m"][i] + (1 - hp.beta1) * g
    op("square")
    v = hp.beta2 * state["v"][i] + (1 - hp.beta2) * (g * g)
    state["m"][i], state["v"][i] = m, v
    if getattr(hp, "amsgrad", False):
        v = np.maximum(state["v_max"][i], v)
        state["v_max"][i] = v
    if isinstance(t, np.ndarray):  # per-replica counts: keep the parameters' dtype
        bc1 = (1 - hp.beta1**t).astype(g.dtype)
        bc2 = np.sqrt(1 - hp.beta2**t).astype(g.dtype)
    else:
        bc1, bc2 = 1 - hp.beta1**t, math.sqrt(1 - hp.beta2**t)
    op("sqrt")
    denom = np.sqrt(v) / bc2 + hp.eps
    op("divide")
    return (lr / bc1) * m / denom
