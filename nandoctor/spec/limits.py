"""Specs too big for this machine, refused before anything is allocated.

A spec is a few numbers, and ``units: 1e9``, ``samples: 1e9`` or ``steps: 1e12`` are valid numbers: without an
estimate, the first allocation fails deep inside NumPy (a MemoryError traceback) or the machine
swaps. The estimate below counts the float64 arrays a run keeps; it is rough (within a small
factor), which is plenty to tell a spec that fits from one that needs a thousand times the memory.
"""

from __future__ import annotations

import os

BYTES = 8  # float64, the widest dtype a run uses (data are loaded and initialised in float64)
DATA_COPIES = 4  # the inputs as generated, scaled, cast and preprocessed
PARAM_COPIES = 6  # weights, gradients, deltas, the initial copy and two optimizer moments
ACTIVATION_COPIES = 6  # z, activation and their gradients per layer, for one batch
MAX_STEPS = 10**9  # a step takes at least a microsecond: beyond this a run takes days
FASTEST_STEP = 1e-6  # seconds: a lower bound on one step, for the message
FALLBACK_MEMORY = 16 * 2**30  # when the OS does not say how much memory there is


def machine_memory() -> int:
    """Bytes of physical memory (``FALLBACK_MEMORY`` when the OS does not tell)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_MEMORY


def memory_terms(spec) -> dict[str, tuple[int, str]]:
    """The spec key most responsible for each part of a run's memory -> (bytes, what it is)."""
    d, layers = spec.data, spec.model.layers
    synthetic = d.source == "synthetic"
    features = d.features if synthetic else 1  # a file's width is known only once it is read
    last = f"model.layers.{len(layers) - 1}.units"
    terms: dict[str, tuple[int, str]] = {}
    if synthetic:
        outputs = d.outputs or layers[-1].units
        # the inputs and the targets: blame the largest of their factors (an omitted
        # data.outputs is the last layer's width: that is the key to change)
        factors = {"data.samples": d.samples, "data.features": d.features, last: outputs}
        key = max(factors, key=factors.__getitem__)
        size = d.samples * (d.features + outputs) * BYTES * DATA_COPIES
        terms[key] = (
            size,
            f"the data: {d.samples:,} samples x ({d.features:,} features + {outputs:,} outputs)",
        )
    sizes = []
    fan_in = features
    for layer in layers:
        sizes.append((fan_in + 1) * layer.units * BYTES * PARAM_COPIES)
        fan_in = layer.units
    widest = max(range(len(layers)), key=sizes.__getitem__)
    batch = d.samples if spec.train.batch_size == "full" else spec.train.batch_size
    batch = min(batch, d.samples) if synthetic else batch
    activations = batch * sum(layer.units for layer in layers) * BYTES * ACTIVATION_COPIES
    key = f"model.layers.{widest}.units"
    size, what = terms.get(key, (0, ""))
    model = (
        f"the weights of {len(layers)} layer(s) with their gradients and optimizer state, and "
        f"the activations of a {batch:,}-sample batch"
    )
    terms[key] = (size + sum(sizes) + activations, f"{what} and {model}" if what else model)
    return terms


def size_problems(spec, memory: int | None = None) -> list[tuple[str, str]]:
    """(key, message) when the run would need more memory than the machine has, and when it has
    more steps than could finish (the per-step history is bounded: steps cost time, not memory)."""
    problems = []
    steps = spec.train.steps
    if steps > MAX_STEPS:
        days = steps * FASTEST_STEP / 86400
        problems.append(
            (
                "train.steps",
                f"{steps:,} steps would take at least {days:,.0f} days even at a microsecond a"
                f" step; at most {MAX_STEPS:,}",
            )
        )
    memory = memory or machine_memory()
    terms = memory_terms(spec)
    total = sum(size for size, _ in terms.values())
    if total <= memory:
        return problems
    key, (size, what) = max(terms.items(), key=lambda kv: kv[1][0])
    return problems + [
        (
            key,
            f"this run would need about {_bytes(total)} of memory ({_bytes(size)} for {what}),"
            f" more than this machine's {_bytes(memory)}; make it smaller",
        )
    ]


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} PB"
