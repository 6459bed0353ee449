"""Shared pieces of the benchmarks: the small and mid-size specs, and a best-of timer."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nandoctor.spec.models import spec_from_dict  # noqa: E402

SMALL = {
    "data": {
        "source": "synthetic",
        "task": "regression",
        "samples": 256,
        "features": 10,
        "outputs": 5,
    },
    "model": {
        "layers": [{"units": 20, "activation": "relu"}, {"units": 5, "activation": "linear"}]
    },
    "loss": "mse",
    "train": {"steps": 2000, "batch_size": 32, "learning_rate": 0.01},
}
MID = {
    "data": {
        "source": "synthetic",
        "task": "regression",
        "samples": 2048,
        "features": 64,
        "outputs": 10,
    },
    "model": {
        "layers": [{"units": 256, "activation": "relu"}, {"units": 10, "activation": "linear"}]
    },
    "loss": "mse",
    "numerics": {"dtype": "float32"},
    "train": {"steps": 400, "batch_size": 256, "learning_rate": 0.01},
}
BLOG = {
    "data": {"source": "synthetic", "task": "random", "samples": 1, "features": 10},
    "model": {
        "layers": [
            {"units": 20, "activation": "sigmoid", "init": "normal"},
            {"units": 5, "activation": "sigmoid", "init": "normal"},
        ]
    },
    "loss": "random_gradient",
    "numerics": {"mode": "naive"},
    "train": {"steps": 10, "batch_size": "full", "learning_rate": 0.1},
}


def spec(d: dict, **train):
    d = {**d, "train": {**d["train"], **train}}
    return spec_from_dict(d)


def best_of(fn, repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)
