"""Specs too big for this machine, refused before anything is allocated.

A spec is a few numbers, and ``units: 1e9``, ``samples: 1e9`` or ``steps: 1e12`` are valid numbers: without an
estimate, the first allocation fails deep inside NumPy (a MemoryError traceback) or, worse, the
run trains for a minute and the OOM killer ends it (exit 137, no message). So the estimate must
not undercount: its constants are measured peaks (``/usr/bin/time -v``, ``run --no-verify``, two
hidden layers of 1,000 to 3,000 units, extrapolated linearly: they are linear in the sizes), and a
margin covers what they miss. It is compared with the memory available when nandoctor started
(:func:`memory_budget`), not with the machine's total, which other processes share.

Per parameter, a run keeps the weights, their gradients, the update, the flat buffers the
optimizer works on, the history's snapshots and the temporaries of the update rule: 9 float64
copies with sgd, 20 with adam (measured), more with amsgrad or clipping. Per activation (batch x
units), the forward and backward keep z, the activation and their gradients (3.2 measured).
"""

from __future__ import annotations

from functools import cache

from nandoctor.engine.memory import available_memory, show_bytes

BYTES = 8  # float64, the widest dtype a run uses (data are loaded and initialised in float64)
DATA_COPIES = 4  # the inputs as generated, scaled, cast and preprocessed
# float64 copies of every parameter at a run's peak, by optimizer (measured: 8.9 sgd, 13.6
# momentum, 14.6 nesterov/rmsprop/adagrad, 19.9 adam; amsgrad +5.0, clip_grad_norm +1.0)
PARAM_COPIES = {
    "sgd": 9,
    "momentum": 14,
    "nesterov": 15,
    "rmsprop": 15,
    "adagrad": 15,
    "adam": 20,
    "adamw": 20,
}
AMSGRAD_COPIES = 5  # the running maximum and its temporaries
CLIP_COPIES = 2  # the clipped gradients (1.0 measured for clip_grad_norm)
ACTIVATION_COPIES = 6  # z, activation and their gradients per layer, for one batch (3.2 measured)
BASE_BYTES = 100 * 2**20  # python, NumPy, pydantic and rich themselves (64 MB measured)
MARGIN = 1.25  # what the measured constants miss: allocator slack, norm and dropout buffers
MAX_STEPS = 10**9  # a step takes at least a microsecond: beyond this a run takes days
FASTEST_STEP = 1e-6  # seconds: a lower bound on one step, for the message
FIX = {  # what to do about the key blamed (default: make it smaller)
    "data.path": "use a smaller file (fewer rows or columns)",
    "train.batch_size": "use a smaller batch",
}


@cache
def memory_budget() -> int:
    """Bytes available to this process's runs, measured once, before any run allocates (forked
    workers inherit it): a spec is judged the same however much a run in progress holds."""
    return available_memory()


def param_copies(train) -> int:
    """float64 copies of each parameter a run of ``train`` (the spec's section) holds at once."""
    copies = PARAM_COPIES.get(train.optimizer, max(PARAM_COPIES.values()))
    if train.amsgrad and train.optimizer in ("adam", "adamw"):
        copies += AMSGRAD_COPIES
    if train.clip_grad_norm or train.clip_grad_value:
        copies += CLIP_COPIES
    return copies


def memory_terms(
    spec, samples: int | None = None, features: int | None = None, loading: int = 0
) -> dict[str, tuple[int, str]]:
    """The spec key most responsible for each part of a run's memory -> (bytes, what it is).

    Synthetic data's shape is the spec's. A data file's is ``samples x features`` when the
    caller read it from the file's header (``loading``: what its loader holds while it reads),
    and is blamed on ``data.path``; without them only the model is counted (one feature)."""
    d, layers = spec.data, spec.model.layers
    synthetic = d.source == "synthetic"
    if synthetic:
        samples, features = d.samples, d.features
    last = f"model.layers.{len(layers) - 1}.units"
    terms: dict[str, tuple[int, str]] = {}
    if synthetic or samples is not None:
        samples, features = samples or 1, features or 1
        outputs = (d.outputs if synthetic else None) or layers[-1].units
        # a file's loader frees what it read before the copies are made: the larger counts
        size = max(samples * (features + outputs) * BYTES * DATA_COPIES, loading)
        what = f"the data: {samples:,} samples x ({features:,} features + {outputs:,} outputs)"
        if synthetic:
            # the inputs and the targets: blame the largest of their factors (an omitted
            # data.outputs is the last layer's width: that is the key to change)
            factors = {"data.samples": d.samples, "data.features": d.features, last: outputs}
            key = max(factors, key=factors.__getitem__)
        else:
            key = "data.path"
            if loading == size:
                what += f", {show_bytes(loading)} while the file is read"
        terms[key] = (size, what)
    fan_in, sizes, copies = features or 1, [], param_copies(spec.train)
    for layer in layers:
        sizes.append((fan_in + 1) * layer.units * BYTES * copies)
        fan_in = layer.units
    params = sum(sizes) // (BYTES * copies)
    widest = max(range(len(layers)), key=sizes.__getitem__)
    batch = spec.train.batch_size
    if samples is not None:
        batch = samples if batch == "full" else min(batch, samples)
    elif batch == "full":
        batch = 1  # a file's samples are not known yet
    activations = batch * sum(layer.units for layer in layers) * BYTES * ACTIVATION_COPIES
    key = f"model.layers.{widest}.units"
    widest_units = max(layer.units for layer in layers)
    if activations > sum(sizes) and batch > widest_units and spec.train.batch_size != "full":
        key = "train.batch_size"  # the batch's activations, not the weights, are the bulk
    size, what = terms.get(key, (0, ""))
    model = (
        f"{params:,} parameters x {copies} float64 copies (weights, gradients, {spec.train.optimizer}"
        f" state, snapshots, temporaries) and the activations of a {batch:,}-sample batch"
    )
    terms[key] = (size + sum(sizes) + activations, f"{what} and {model}" if what else model)
    return terms


def run_bytes(spec, samples: int | None = None, features: int | None = None, loading: int = 0):
    """The estimated peak memory of one run of ``spec``, margin included (see :func:`memory_terms`)."""
    terms = memory_terms(spec, samples, features, loading)
    return int(BASE_BYTES + MARGIN * sum(size for size, _ in terms.values()))


def size_problems(
    spec,
    memory: int | None = None,
    samples: int | None = None,
    features: int | None = None,
    loading: int = 0,
) -> list[tuple[str, str]]:
    """(key, message) when a run would need more memory than is available (``memory``, default
    :func:`memory_budget`), and when it has more steps than could finish (the per-step history
    is bounded: steps cost time, not memory). ``samples``, ``features``, ``loading``: a data
    file's shape and the bytes its loader needs, once read from its header."""
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
    memory = memory or memory_budget()
    total = run_bytes(spec, samples, features, loading)
    if total <= memory:
        return problems
    terms = memory_terms(spec, samples, features, loading)
    key, (size, what) = max(terms.items(), key=lambda kv: kv[1][0])
    return problems + [
        (
            key,
            f"this run would need about {show_bytes(total)} of memory"
            f" ({show_bytes(MARGIN * size)} for {what}; a {MARGIN:g}x margin included), more"
            f" than the {show_bytes(memory)} available; {FIX.get(key, 'make it smaller')}",
        )
    ]
