"""The reference of ``overhead.py``: the NumPy training loop a user would write by hand.

A dense network (``x @ W + b``), MSE, plain SGD, shuffled mini-batches, NumPy's default threads,
nothing watched. It prints its in-loop seconds on stdout so the caller can also compare per step.

``--replicas R`` trains R copies of the network side by side, each at its own rate (log-spaced
from ``--lr`` to ``--lr-high``): the weights stacked along a leading axis, one matmul call for all,
as a sweep's replica group is trained. Nothing else changes; it is the arithmetic a sweep cannot
do without, watched or not.

    python benchmarks/bare_loop.py --widths 10,20,5 --act sigmoid --dtype float64 \
        --batch 32 --steps 20000 --samples 256 [--replicas 8 --lr-high 0.5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", required=True)  # input,hidden...,output
    ap.add_argument("--act", required=True)  # relu | sigmoid (hidden layers; output linear)
    ap.add_argument("--dtype", default="float64")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--lr-high", type=float, default=None)  # the last replica's rate
    a = ap.parse_args()
    widths = [int(w) for w in a.widths.split(",")]
    dt = np.dtype(a.dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((a.samples, widths[0])).astype(dt)
    y = rng.standard_normal((a.samples, widths[-1])).astype(dt)
    Ws = [
        (rng.standard_normal((i, o)) * np.sqrt(2 / i)).astype(dt)
        for i, o in zip(widths, widths[1:], strict=False)
    ]
    bs = [np.zeros(o, dt) for o in widths[1:]]
    lr, stacked = a.lr, a.replicas > 1
    if stacked:  # the same start for every replica, a rate each
        Ws = [np.repeat(W[None], a.replicas, axis=0) for W in Ws]
        bs = [np.zeros((a.replicas, 1, len(b)), dt) for b in bs]
        rates = np.geomspace(a.lr, a.lr_high or a.lr, a.replicas)
        lr = rates.astype(dt)[:, None, None]
    started = time.perf_counter()
    order, pos = np.arange(0), 0
    with np.errstate(all="ignore"):  # a replica at a high rate may overflow; the others go on
        for _ in range(a.steps):
            if pos >= len(order):
                order, pos = rng.permutation(a.samples), 0
            idx = order[pos : pos + a.batch]
            pos += a.batch
            xb, yb = x[idx], y[idx]
            acts = [xb]
            for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
                z = acts[-1] @ W + b
                if i < len(Ws) - 1:
                    z = np.maximum(z, 0) if a.act == "relu" else 1 / (1 + np.exp(-z))
                acts.append(z)
            diff = acts[-1] - yb
            # a user would log it (one per replica)
            losses = np.mean(diff * diff, axis=(-2, -1) if stacked else None)
            loss = losses if stacked else float(losses)  # noqa: F841
            g = diff * (2 / (diff.shape[-2] * diff.shape[-1]))  # a replica's mean
            for i in reversed(range(len(Ws))):
                gW = acts[i].swapaxes(-1, -2) @ g
                gb = g.sum(axis=-2, keepdims=stacked)
                if i:
                    g = g @ Ws[i].swapaxes(-1, -2)
                    h = acts[i]
                    g = g * (h > 0) if a.act == "relu" else g * h * (1 - h)
                Ws[i] -= lr * gW
                bs[i] -= lr * gb
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main()
