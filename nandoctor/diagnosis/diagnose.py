"""From a run's own numbers to a diagnosis: status, root cause, contributing factors, warnings.

Every rule reads the :class:`~nandoctor.engine.runs.Outcome` -- the first non-finite value with the op and
inputs that made it, and the per-step history -- and each finding carries the numbers that show
it. Nothing here looks at which spec was loaded beyond the settings the numbers implicate.
"""

from __future__ import annotations

import math

import numpy as np

from nandoctor.diagnosis.catalogue import NAIVE_FACTOR_OF_OP, PART_OF_A_FAILURE
from nandoctor.diagnosis.findings import (  # noqa: F401 (re-exported)
    Diagnosis,
    Finding,
    Recommendation,
    fmt,
    fmt_projected_steps,
)
from nandoctor.diagnosis.recommend import recommend
from nandoctor.engine.nn import SATURATION_TOL, activation
from nandoctor.engine.optim import combine

# Thresholds, each a statement about numbers rather than about a spec.
GROWTH_MIN_STEPS = 3  # steps of history an explosion needs before the failure
GROWTH_FACTOR = 100.0  # gradient norm rise over those steps that counts as explosive growth
SATURATED_WARN = 0.25  # share of a layer's units saturated (at some step) that warrants a warning
DEAD_WARN = 0.5  # share of a ReLU layer's units dead for the whole batch
VANISH_RATIO = 1e-4  # first layer's gradient norm below this times the last layer's
UNSCALED_INPUT = 100.0  # inputs larger than this in magnitude, unpreprocessed, are unscaled
HIGH_UPDATE_RATIO = 0.1  # updates above 10% of the weights' norm per step are too large

# z beyond which 1 / (1 + exp(-z)) rounds to exactly 1 (measured per dtype).
SIGMOID_EXACT_ONE = {"float64": 36.74, "float32": 16.64, "float16": 7.63}
DTYPE_MAX = {"float64": np.finfo(np.float64).max, "float32": 3.4e38, "float16": 65504.0}


def _finite_or_none(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


# ------------------------------------------------------------------ entry point
def diagnose(outcome) -> Diagnosis:
    spec = outcome.spec
    hist = outcome.history or {}
    loss = outcome.loss
    first = outcome.first_nonfinite
    acts = [layer.activation for layer in spec.model.layers]
    cause, contributing = (None, [])
    if first is not None:
        cause = root_cause(outcome)
        contributing = contributing_factors(outcome, cause)
    warnings = find_warnings(outcome) if hist else []
    if first is not None:  # growth and a flat loss are part of the failure's story, not warnings
        warnings = [w for w in warnings if w.id not in PART_OF_A_FAILURE]
    status = "nonfinite" if first else ("warning" if warnings else "healthy")
    return Diagnosis(
        spec=str(spec.path) if spec.path else "<spec>",
        name=spec.name or "spec",
        status=status,
        steps_run=outcome.steps_run,
        steps_budget=outcome.steps_budget,
        learning_rate=outcome.learning_rate,
        first_nonfinite=first,
        cause=cause,
        contributing=contributing,
        warnings=warnings,
        recommendations=recommend(outcome, cause, contributing, warnings),
        loss_initial=_finite_or_none(outcome.loss_initial) if len(loss) else None,
        loss_final=_finite_or_none(loss[-1]) if len(loss) else None,
        notes=notes(outcome, warnings),
        history=hist,
        layers=acts,
    )


# ------------------------------------------------------------------ root cause
def _where(first) -> str:
    layer = f" of layer {first.layer}" if first.layer else ""
    step = f"step {first.step}, " if first.step else ""
    return f"{step}{first.phase}{layer}, {first.tensor.replace('_', ' ')}"


def _inputs_line(first) -> str:
    parts = []
    for name, st in first.inputs.items():
        bits = [f"max |{name}| = {fmt(st['max_abs'])}"]
        if st["exact_zeros"]:
            bits.append(f"{st['exact_zeros']} of {st['size']} exactly 0")
        if st["nonfinite"]:
            bits.append(f"{st['nonfinite']} non-finite")
        parts.append(", ".join(bits))
    return "; ".join(parts)


def _off(outcome) -> int:
    """Steps before the first row of the history (0 unless the run outgrew its window)."""
    return getattr(outcome, "history_start", 1) - 1


def total_norm(g: np.ndarray) -> np.ndarray:
    """Whole-network gradient norm per step from per-layer norms ``g: (steps, layers)``."""
    return combine(list(g.T))


def growth(outcome) -> tuple[bool, list[str]]:
    """Did the gradient norm grow step over step before the failure? Evidence lines if so."""
    g = outcome.history.get("grad_norm") if outcome.history else None
    if g is None or outcome.first_nonfinite is None or outcome.first_nonfinite.step is None:
        return False, []
    before = outcome.first_nonfinite.step - 1  # steps whose history is complete
    off = _off(outcome)
    if before - off < GROWTH_MIN_STEPS:
        return False, []
    g = g[: before - off]
    total = total_norm(g)
    if not (np.isfinite(total).all() and total[0] > 0):
        return False, []
    rise = total[-1] / total[0]
    recent = total[-GROWTH_MIN_STEPS:]
    rising = bool(np.all(np.diff(recent) > 0))
    if rise < GROWTH_FACTOR or not rising:
        return False, []
    layer = int(np.argmax(g[-1])) + 1
    per_step = rise ** (1 / max(before - off - 1, 1))
    lines = [
        f"gradient norm rose from {fmt(total[0])} at step {off + 1} to {fmt(total[-1])} at step {before} "
        f"(x{fmt(rise)}, about x{fmt(per_step)} per step)",
        f"layer {layer} carried the largest gradient: {fmt(g[-1, layer - 1])} at step {before}",
    ]
    w = outcome.history["weight_norm"][: before - off]
    lines.append(
        f"weight norms went from {', '.join(fmt(v) for v in w[0])} to "
        f"{', '.join(fmt(v) for v in w[-1])} (layers 1..{w.shape[1]})"
    )
    return True, lines


def root_cause(outcome):
    first = outcome.first_nonfinite
    spec = outcome.spec
    where = _where(first)
    ops = ", ".join(f"{o} ({k})" for o, k in first.events) or first.op
    head = f"first non-finite value: {first.value} at {where} (op {first.op})"

    if first.phase == "data" and "overflow" in {k for _, k in first.events}:
        return _cast_overflow(outcome, head)
    if first.phase in ("data", "preprocess"):
        return _bad_input(outcome, head)

    exploded, grow_lines = growth(outcome)
    kinds = {k for _, k in first.events}
    inputs = _inputs_line(first)
    in_line = [f"finite inputs of the failing op: {inputs}"] if inputs else []

    # A division by an exact zero in the optimiser (eps 0, or eps lost to float16).
    if first.phase == "update" and first.op == "divide" and kinds & {"divide", "invalid"}:
        eps = spec.train.eps
        g = first.inputs.get("gradient", {})
        v = first.inputs.get("v_prev", {})
        lines = [head, f"events in that op: {ops}"]
        if g.get("exact_zeros"):
            lines.append(
                f"the gradient of layer {first.layer}'s {first.tensor} had {g['exact_zeros']} of "
                f"{g['size']} entries exactly 0, so {spec.train.optimizer}'s running averages were "
                "exactly 0 there"
                + (
                    f" (v was all zero before the step-{first.step} update)"
                    if v.get("exact_zeros") == v.get("size")
                    else ""
                )
            )
        eff = float(np.asarray(eps, dtype=outcome.prepared.dtype))
        lines.append(
            f"the denominator sqrt(v) + eps had no guard: eps = {fmt(eps)}"
            + (f", which is {fmt(eff)} in {spec.numerics.dtype}" if eff != eps else "")
        )
        return Finding(
            "division_by_zero",
            f"{spec.train.optimizer} divided by sqrt(v) + eps where both were 0",
            lines,
            first.layer,
            first.step,
        )

    # log or division meeting an exact 0 or 1 from a pinned sigmoid/softmax.
    if first.phase == "loss" and first.op in ("log", "divide"):
        out = first.inputs.get("output", {})
        z = first.inputs.get("z", {})
        lines = [head, f"events in the loss: {ops}"]
        pinned = _pinned_outputs(outcome)
        if pinned:
            lines.append(pinned)
        if z:
            lim = SIGMOID_EXACT_ONE[spec.numerics.dtype]
            lines.append(
                f"max |z| of the last layer = {fmt(z['max_abs'])}; beyond |z| = {lim} a "
                f"{spec.numerics.dtype} sigmoid rounds to exactly 1"
                if spec.model.layers[-1].activation == "sigmoid" or spec.loss == "bce"
                else f"max |z| of the last layer = {fmt(z['max_abs'])}"
            )
        if exploded:
            lines += grow_lines
        if out or pinned:
            return Finding(
                "saturation",
                f"{_last_act(spec)} outputs pinned at exactly 0 or 1 met {first.op} in the loss",
                lines,
                None,
                first.step,
            )

    if exploded:
        return Finding(
            "exploding_gradient",
            "gradient norms grew step over step until values overflowed",
            [head, *grow_lines, *in_line],
            first.layer,
            first.step,
        )

    lines = [head, f"events in that op: {ops}", *in_line]
    if first.step is not None and first.step <= GROWTH_MIN_STEPS:
        lines.append(f"no growth history: it failed at step {first.step}")
    else:
        lines.append("no sustained growth of the gradient norm before the failure")
    dmax = DTYPE_MAX[spec.numerics.dtype]
    lines.append(f"{spec.numerics.dtype}'s largest finite value is {fmt(dmax)}")
    if "overflow" in kinds or first.value in ("inf", "-inf"):
        summary = f"{first.op} overflowed {spec.numerics.dtype}'s range without a growth history"
        return Finding("overflow", summary, lines, first.layer, first.step)
    # An invalid op with no overflow and no growth: a 0/0 or inf-inf outside the optimiser.
    return Finding(
        "division_by_zero" if first.op == "divide" else "overflow",
        f"{first.op} produced {first.value} from finite inputs",
        lines,
        first.layer,
        first.step,
    )


def _last_act(spec) -> str:
    act = spec.model.layers[-1].activation
    if act == "linear":
        return {"bce": "sigmoid", "cross_entropy": "softmax"}.get(spec.loss, act)
    return act


def _pinned_outputs(outcome) -> str | None:
    first = outcome.first_nonfinite
    out = first.inputs.get("output")
    if not out:
        return None
    sat = outcome.history.get("saturated") if outcome.history else None
    share = ""
    if sat is not None and len(sat):
        share = (
            f"; {fmt(100 * sat[-1, -1])}% of last-layer outputs within {SATURATION_TOL} of a limit"
        )
    return (
        f"last-layer outputs at step {first.step}: {out['exact_zeros']} of {out['size']} exactly 0"
        f"{share}"
    )


def _cast_overflow(outcome, head: str) -> Finding:
    """Finite values that became inf when cast to the run's dtype (float16's 65504): the data
    were fine, the dtype's range was not."""
    first, spec = outcome.first_nonfinite, outcome.spec
    dtype = spec.numerics.dtype
    top = float(np.finfo(dtype).max)
    what = "initial weights" if first.tensor[:1] in "Wb" and first.tensor != "x" else "inputs"
    lines = [
        head,
        f"{fmt(100 * first.fraction)}% of the {what} ({first.tensor}) are beyond {dtype}'s largest"
        f" value {fmt(top)}: finite as loaded, inf once cast to {dtype}",
    ]
    if spec.data.scale != 1:
        lines.append(f"data.scale = {fmt(spec.data.scale)} multiplies every input")
    summary = f"casting the {what} to {dtype} overflowed (values beyond {fmt(top)})"
    return Finding("overflow", summary, lines, None, None)


def _bad_input(outcome, head: str) -> Finding:
    first = outcome.first_nonfinite
    spec = outcome.spec
    lines = [head]
    if first.phase == "data":
        lines.append(
            f"{fmt(100 * first.fraction)}% of {first.tensor} entries are non-finite as loaded"
        )
        if spec.data.nan_fraction:
            lines.append(f"data.nan_fraction = {spec.data.nan_fraction} injects them on purpose")
        summary = f"the data held {first.value} before any step ran"
        if first.tensor not in ("x", "y"):  # W1, b1, ...: the initial weights
            source = f"the weights file {spec.model.weights}" if spec.model.weights else "init"
            summary = f"the initial weights ({first.tensor}, from {source}) held {first.value}"
    else:
        stds = outcome.prepared.col_std
        zero = np.flatnonzero(stds == 0)
        lines.append(
            f"{len(zero)} feature(s) have zero variance (columns {', '.join(str(c + 1) for c in zero[:8])}); "
            f"{spec.numerics.mode} {spec.data.preprocess} divided by their std (or range) of 0"
            if len(zero)
            else f"{spec.data.preprocess} produced {first.value}"
        )
        summary = f"preprocessing ({spec.data.preprocess}) produced {first.value}"
    return Finding("bad_input", summary, lines, None, None)


# ------------------------------------------------------------------ contributing factors
def contributing_factors(outcome, cause: Finding) -> list[Finding]:
    spec, first, hist = outcome.spec, outcome.first_nonfinite, outcome.history or {}
    out: list[Finding] = []
    ratio = hist.get("update_ratio")
    if ratio is not None and len(ratio) > 1 and cause.id in ("exploding_gradient", "saturation"):
        r = ratio[: max(first.step - 1 - _off(outcome), 1)]
        peak = float(np.nanmax(r)) if np.isfinite(r).any() else float("nan")
        if peak > HIGH_UPDATE_RATIO:
            step = int(np.nanargmax(np.nanmax(r, axis=1))) + 1 + _off(outcome)
            out.append(
                Finding(
                    "high_learning_rate",
                    f"learning rate {fmt(outcome.learning_rate)} moved weights by up to "
                    f"{fmt(100 * peak)}% of their norm in one step",
                    [f"update/weight ratio {fmt(peak)} at step {step} (well-behaved runs: ~1e-3)"],
                )
            )
    raw = outcome.prepared.raw_max_abs
    if spec.data.preprocess == "none" and math.isfinite(raw) and raw > UNSCALED_INPUT:
        out.append(
            Finding(
                "unscaled_inputs",
                f"inputs reach |x| = {fmt(raw)} with no preprocessing",
                [
                    f"max |x| = {fmt(raw)} (data.scale = {spec.data.scale}); standardized inputs are ~1"
                ],
            )
        )
    if spec.numerics.mode == "naive" and first.op in NAIVE_FACTOR_OF_OP:
        naive_id = NAIVE_FACTOR_OF_OP[first.op]
        if (
            first.phase == "forward"
            and spec.model.layers[(first.layer or 1) - 1].activation == "sigmoid"
        ):
            naive_id = "naive_sigmoid"
        out.append(
            Finding(
                naive_id,
                f"numerics.mode naive: the failing {first.op} has no guard",
                [
                    f"stable mode computes it from logits / with the max subtracted ({_where(first)})"
                ],
            )
        )
    if spec.numerics.dtype == "float16" and first.phase != "data":
        mags = [st["max_abs"] for st in first.inputs.values() if st["max_abs"] is not None]
        out.append(
            Finding(
                "low_precision",
                "float16's range ends at 65504 and its epsilon is 9.8e-4",
                [f"largest finite input to the failing op: {fmt(max(mags))}"] if mags else [],
            )
        )
    sat = hist.get("saturated")
    if sat is not None and len(sat) and cause.id == "saturation":
        layers = spec.model.layers
        init = [i for i, layer in enumerate(layers) if layer.init == "normal" and sat[0, i] > 0]
        for i in init:
            out.append(
                Finding(
                    "poor_init",
                    f"layer {i + 1} starts with N(0, 1) weights ({layers[i].activation})",
                    [f"{fmt(100 * sat[0, i])}% of its units saturated at step {_off(outcome) + 1}"],
                )
            )
    if spec.train.optimizer in ("adam", "rmsprop") and spec.train.eps == 0:
        out.append(Finding("zero_eps", "train.eps = 0 leaves sqrt(v) + eps unguarded", []))
    return out


# ------------------------------------------------------------------ warnings
def find_warnings(outcome) -> list[Finding]:
    spec, h = outcome.spec, outcome.history
    acts = [layer.activation for layer in spec.model.layers]
    off = _off(outcome)
    n = (
        outcome.steps_run - (1 if outcome.first_nonfinite else 0) - off
    )  # complete rows of the window
    if n < 1:
        return []
    out: list[Finding] = []
    sat = h["saturated"][:n]
    for i, act in enumerate(acts):
        if not activation(act).saturates:
            continue
        col = sat[:, i]
        if np.nanmax(col) >= SATURATED_WARN:
            k = int(np.nanargmax(col))
            out.append(
                Finding(
                    "saturation",
                    f"layer {i + 1} ({act}): {fmt(100 * col[k])}% of outputs within "
                    f"{SATURATION_TOL} of their limits at step {k + 1 + off}"
                    f" (step {off + 1}: {fmt(100 * col[0])}%, last: {fmt(100 * col[-1])}%)",
                    layer=i + 1,
                    step=k + 1 + off,
                )
            )
    dead = h["dead"][:n]
    for i, act in enumerate(acts):
        if activation(act).can_die and dead[-1, i] >= DEAD_WARN:
            first_dead = int(np.argmax(dead[:, i] >= DEAD_WARN)) + 1 + off
            out.append(
                Finding(
                    "dead_relu",
                    f"layer {i + 1}: {fmt(100 * dead[-1, i])}% of ReLU units output 0 for every "
                    f"sample (over {fmt(100 * DEAD_WARN)}% since step {first_dead})",
                    layer=i + 1,
                    step=first_dead,
                )
            )
    g = h["grad_norm"][:n]
    if len(acts) >= 2:
        med = _median(g)
        if med[-1] > 0 and med[0] < VANISH_RATIO * med[-1]:
            out.append(
                Finding(
                    "vanishing_gradient",
                    _vanishing_summary(med[0], med[-1], len(acts)),
                    layer=1,
                )
            )
    ex = _explosion_projection(outcome, g)
    if ex:
        out.append(ex)
    if spec.loss != "random_gradient" and n >= 20:
        loss = outcome.loss[:n]
        k = max(1, n // 10)
        start, end = float(np.mean(loss[:k])), float(np.mean(loss[-k:]))
        if np.isfinite(start) and np.isfinite(end) and end >= start * 0.99:
            out.append(
                Finding(
                    "loss_not_decreasing",
                    f"mean loss over the first {k} steps {fmt(start)}, over the last {k} {fmt(end)}",
                )
            )
    return out


def _median(g: np.ndarray) -> np.ndarray:
    """Column medians of ``g: (steps, layers)`` ignoring NaN (np.nanmedian is slow on small data)."""
    if not np.isfinite(g).all():
        return np.nanmedian(g, axis=0)
    s = np.sort(g, axis=0)
    n = len(s)
    return (s[(n - 1) // 2] + s[n // 2]) / 2


def _explosion_projection(outcome, g: np.ndarray) -> Finding | None:
    total = total_norm(g)
    n = len(total)
    if n < 5 or not np.isfinite(total).all() or total[0] <= 0:
        return None
    rise = total[-1] / total[0]
    if rise < GROWTH_FACTOR:
        return None
    w = max(3, n // 5)
    tail = np.log(total[-w:])
    slope = np.polyfit(np.arange(w), tail, 1)[0]  # log growth per step
    if slope <= 0.01:
        return None
    layer = int(np.argmax(g[-1])) + 1
    dmax = DTYPE_MAX[outcome.spec.numerics.dtype]
    steps_left = (math.log(dmax) - math.log(total[-1])) / slope
    return Finding(
        "exploding_gradient",
        f"gradient norm grew x{fmt(rise)} over {n} steps (x{fmt(math.exp(slope))} per step lately); "
        f"at this rate layer {layer} overflows {outcome.spec.numerics.dtype} in "
        f"{fmt_projected_steps(steps_left)}",
        layer=layer,
    )


# ------------------------------------------------------------------ notes
def notes(outcome, warnings: list[Finding]) -> list[str]:
    """Plain sentences on what the run saw and, when it stayed finite, how far it was from NaN."""
    spec, h = outcome.spec, outcome.history
    out: list[str] = []
    if outcome.first_nonfinite is not None or not h:
        return out
    n, off = outcome.steps_run, _off(outcome)
    out.append(f"every value stayed finite over {n} steps: no NaN, no Inf")
    acts = [layer.activation for layer in spec.model.layers]
    squashing = [i for i, a in enumerate(acts) if activation(a).squashing]
    if squashing:

        def shares(k):
            return ", ".join(f"layer {i + 1} {fmt(100 * h['weak'][k, i])}%" for i in squashing)

        out.append(
            "units whose derivative was under a tenth of its peak (partly saturated): "
            f"step {off + 1}: {shares(0)}; step {n}: {shares(n - off - 1)}"
        )
    sig = [i for i, a in enumerate(acts) if a == "sigmoid"]
    if sig:
        zmax = h["max_abs_z"][: n - off, sig]
        k, j = np.unravel_index(np.nanargmax(zmax), zmax.shape)
        top, lim, dtype = (
            float(zmax[k, j]),
            SIGMOID_EXACT_ONE[spec.numerics.dtype],
            spec.numerics.dtype,
        )
        tail = (
            "so a log(p) or log(1 - p) on these outputs (naive BCE) would give -inf"
            if top > lim
            else f"{fmt(lim - top)} short of it, so even a naive log(p) on them would stay finite"
        )
        out.append(
            f"sigmoid |z| peaked at {fmt(top)} (layer {sig[j] + 1}, step {k + 1 + off}); a {dtype} sigmoid "
            f"returns exactly 0 or 1 only beyond |z| = {lim}: {tail}"
        )
    if any(w.id == "saturation" for w in warnings):
        out.append(
            "saturated units have near-zero derivatives: learning stalls, but saturation alone "
            "does not make NaN"
        )
    return out


def _vanishing_summary(first: float, last: float, layers: int) -> str:
    """Layer 1's gradient norm against the last layer's, without an 'infx' ratio."""
    if first == 0:
        return (
            f"layer 1's gradient norm is exactly 0 (median) while layer {layers}'s is {fmt(last)}"
        )
    ratio = float(last) / float(first)  # Python floats: inf, not a warning, past 1e308
    times = f"{fmt(ratio)}x" if math.isfinite(ratio) else "over 1e300 times"
    return (
        f"layer 1's gradient norm (median {fmt(first)}) is {times} "
        f"smaller than layer {layers}'s ({fmt(last)})"
    )
