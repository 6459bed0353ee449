"""Downsampling long runs for pictures: fixed buckets, each keeping its mean, min and max.

A 10^6-step run becomes ``MAX_POINTS`` points whose envelope still shows every spike: a chart
stays small and fast to open, and nothing the run did disappears between two drawn points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_POINTS = 400  # points per series on a chart; a run this short or shorter is drawn whole


@dataclass
class Buckets:
    """``x``: the first step of each bucket; ``mean``, ``lo``, ``hi``: ``(buckets, ...)`` over
    the finite values of each bucket (NaN where a bucket holds none)."""

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    end: float  # the last step covered


def bucket_edges(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """Start indices of ``min(n, max_points)`` nearly equal buckets over ``n`` steps."""
    k = max(1, min(n, max_points))
    return np.linspace(0, n, k + 1).astype(int)[:-1]


def envelope(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS) -> Buckets:
    """Bucket ``values: (n, ...)`` observed at ``steps: (n,)``; non-finite values are left out.

    Short series come back as they are (``lo == hi == mean``)."""
    values = np.asarray(values, dtype=float)
    steps = np.asarray(steps, dtype=float)
    n = len(steps)
    if n == 0:
        empty = np.empty((0, *values.shape[1:]))
        return Buckets(steps, empty, empty, empty, 0.0)
    ok = np.isfinite(values)
    finite = np.where(ok, values, np.nan)
    if n <= max_points:
        return Buckets(steps, finite, finite, finite, float(steps[-1]))
    starts = bucket_edges(n, max_points)
    counts = np.add.reduceat(ok, starts, axis=0)
    lo = np.minimum.reduceat(np.where(ok, values, np.inf), starts, axis=0)
    hi = np.maximum.reduceat(np.where(ok, values, -np.inf), starts, axis=0)
    with np.errstate(all="ignore"):  # a sum of values near the dtype's limit may overflow
        sums = np.add.reduceat(np.where(ok, values, 0.0), starts, axis=0)
        mean = np.clip(sums / np.maximum(counts, 1), lo, hi)
    none = counts == 0
    mean[none] = lo[none] = hi[none] = np.nan
    return Buckets(steps[starts], mean, lo, hi, float(steps[-1]))
