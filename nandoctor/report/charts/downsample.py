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


def envelope(
    steps: np.ndarray,
    values: np.ndarray,
    max_points: int = MAX_POINTS,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
    end: float | None = None,
) -> Buckets:
    """Bucket ``values: (n, ...)`` observed at ``steps: (n,)``; non-finite values are left out.

    ``lo`` / ``hi``: the extremes each row already stands for (a summary's buckets); by default
    the values themselves. Short series come back as they are."""
    values = np.asarray(values, dtype=float)
    steps = np.asarray(steps, dtype=float)
    lo = values if lo is None else np.asarray(lo, dtype=float)
    hi = values if hi is None else np.asarray(hi, dtype=float)
    n = len(steps)
    if n == 0:
        empty = np.empty((0, *values.shape[1:]))
        return Buckets(steps, empty, empty, empty, 0.0)
    end = float(steps[-1]) if end is None else float(end)

    def finite(a: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(a), a, np.nan)

    if n <= max_points:
        return Buckets(steps, finite(values), finite(lo), finite(hi), end)
    starts = bucket_edges(n, max_points)
    ok = np.isfinite(values)
    counts = np.add.reduceat(ok, starts, axis=0)
    low = np.minimum.reduceat(np.where(np.isfinite(lo), lo, np.inf), starts, axis=0)
    high = np.maximum.reduceat(np.where(np.isfinite(hi), hi, -np.inf), starts, axis=0)
    with np.errstate(all="ignore"):  # a sum of values near the dtype's limit may overflow
        sums = np.add.reduceat(np.where(ok, values, 0.0), starts, axis=0)
        mean = np.clip(sums / np.maximum(counts, 1), low, high)
    mean[counts == 0] = np.nan
    low[~np.isfinite(low)] = np.nan
    high[~np.isfinite(high)] = np.nan
    return Buckets(steps[starts], mean, low, high, end)
