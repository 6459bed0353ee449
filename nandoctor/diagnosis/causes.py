"""Why a run first went non-finite: root-cause rules, tried in order until one applies.

Every rule reads the same :class:`Failure` -- the first non-finite value with the op and the
finite inputs that made it, and the per-step history before it -- and returns a cause finding
carrying the numbers that show it, or None to let the next rule look. The last rule always
applies, so every failure gets a cause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.diagnosis import networks
from nandoctor.diagnosis.findings import Finding, cause, fmt
from nandoctor.diagnosis.measures import (
    DTYPE_MAX,
    GROWTH_MIN_STEPS,
    SIGMOID_EXACT_ONE,
    growth,
    saturated_what,
)
from nandoctor.engine.optim import SQUARED_STATE, split_state_tensor

if TYPE_CHECKING:
    from nandoctor.engine.runs import Outcome
    from nandoctor.instrument.events import NonFinite
    from nandoctor.spec.models import Spec


def where(first: NonFinite) -> str:
    """``step 7, forward of layer 2, pre activation``: where a value went non-finite."""
    layer = f" of layer {first.layer}" if first.layer else ""
    step = f"step {first.step}, " if first.step else ""
    return f"{step}{first.phase}{layer}, {first.tensor.replace('_', ' ')}"


@dataclass
class Failure:
    """A run's first non-finite value, with what every cause rule reads about it."""

    outcome: Outcome
    first: NonFinite
    head: str  # the opening evidence line: what, where, which op
    ops: str  # the events in the failing group of ops: "exp (overflow), ..."
    kinds: set[str]  # overflow | divide | invalid
    input_lines: list[str]  # the finite inputs of the failing op, as one evidence line (or none)
    growth_lines: list[str]  # evidence of step-over-step gradient growth before it (or none)

    @property
    def spec(self) -> Spec:
        return self.outcome.spec

    @classmethod
    def of(cls, outcome: Outcome) -> Failure:
        first = outcome.first_nonfinite
        inputs = _inputs_line(first)
        return cls(
            outcome=outcome,
            first=first,
            head=f"first non-finite value: {first.value} at {where(first)} (op {first.op})",
            ops=", ".join(f"{o} ({k})" for o, k in first.events) or first.op,
            kinds={k for _, k in first.events},
            input_lines=[f"finite inputs of the failing op: {inputs}"] if inputs else [],
            growth_lines=growth(outcome),
        )


def _inputs_line(first: NonFinite) -> str:
    parts = []
    for name, st in first.inputs.items():
        bits = [f"max |{name}| = {fmt(st['max_abs'])}"]
        if st["exact_zeros"]:
            bits.append(f"{st['exact_zeros']} of {st['size']} exactly 0")
        if st["nonfinite"]:
            bits.append(f"{st['nonfinite']} non-finite")
        parts.append(", ".join(bits))
    return "; ".join(parts)


# ------------------------------------------------------------------ the rules, in order
def cast_overflow(f: Failure) -> Finding | None:
    """Finite values that became inf when cast to the run's dtype (float16's 65504): the data
    were fine, the dtype's range was not."""
    first, spec = f.first, f.spec
    if first.phase != "data" or "overflow" not in {kind for _, kind in first.events}:
        return None
    prepared = f.outcome.prepared  # the arrays as cast: the targets in the loss's dtype
    dtype = str(prepared.y.dtype if first.tensor == "y" else np.dtype(prepared.dtype))
    top = float(np.finfo(dtype).max)
    what = {"x": "inputs", "y": "targets"}.get(first.tensor, "initial weights")
    method = {"x": spec.data.preprocess, "y": spec.data.target_preprocess}.get(first.tensor)
    done = f"after {method} (in float64)" if method not in (None, "none") else "as loaded"
    lines = [
        f.head,
        f"{fmt(100 * first.fraction)}% of the {what} ({first.tensor}) are beyond {dtype}'s largest"
        f" value {fmt(top)}: finite {done}, inf once cast to {dtype}",
    ]
    if spec.data.scale != 1:
        lines.append(f"data.scale = {fmt(spec.data.scale)} multiplies every input")
    return cause(
        "overflow", f"casting the {what} to {dtype} overflowed (values beyond {fmt(top)})", lines
    )


def bad_input(f: Failure) -> Finding | None:
    """The data held NaN/Inf as loaded, or preprocessing made it (before any step ran)."""
    first, spec = f.first, f.spec
    if first.phase not in ("data", "preprocess"):
        return None
    lines = [f.head]
    if first.phase == "data":
        lines.append(
            f"{fmt(100 * first.fraction)}% of {first.tensor} entries are non-finite as loaded"
        )
        lines += _nonfinite_as_loaded(f)
        if spec.data.nan_fraction:
            lines.append(f"data.nan_fraction = {spec.data.nan_fraction} injects them on purpose")
        summary = f"the data held {first.value} before any step ran"
        if first.tensor not in ("x", "y"):  # W1, b1, ...: the initial weights
            source = f"the weights file {spec.model.weights}" if spec.model.weights else "init"
            summary = f"the initial weights ({first.tensor}, from {source}) held {first.value}"
    else:
        stds = f.outcome.prepared.col_std
        zero = np.flatnonzero(stds == 0)
        names = f.outcome.prepared.feature_names
        columns = ", ".join(
            f"{c + 1} ({names[c]})" if names and c < len(names) else str(c + 1) for c in zero[:8]
        )
        lines.append(
            f"{len(zero)} feature(s) have zero variance "
            f"({'column' if len(zero) == 1 else 'columns'} {columns}); "
            f"{spec.numerics.mode} {spec.data.preprocess} divided by their std (or range) of 0"
            if len(zero)
            else f"{spec.data.preprocess} produced {first.value}"
        )
        summary = f"preprocessing ({spec.data.preprocess}) produced {first.value}"
    return cause("bad_input", summary, lines)


def _nonfinite_as_loaded(f: Failure) -> list[str]:
    """Where the data's non-finite entries are: the columns of the inputs and of the targets
    that hold any (named when the CSV named them), the targets too when the inputs came first."""
    prepared, data = f.outcome.prepared, f.spec.data
    targets = [data.target] if isinstance(data.target, str) else list(data.target or [])
    lines = []
    for tensor, values, names in (
        ("x", prepared.x, prepared.feature_names),
        ("y", prepared.y, tuple(targets) or None),
    ):
        if values is None or not np.issubdtype(values.dtype, np.floating):
            continue
        bad = ~np.isfinite(values.reshape(len(values), -1))
        counts = bad.sum(axis=0)
        if not counts.any():
            continue
        where = np.flatnonzero(counts)
        columns = [
            f"{int(counts[c])} in column {c + 1}"
            + (f" ({names[c]})" if names and c < len(names) else "")
            for c in where[:8]
        ]
        if len(where) > 8:
            columns.append(f"{len(where) - 8} more column(s)")
        label = {"x": "inputs (x)", "y": "targets (y)"}[tensor]
        lines.append(f"{label}: non-finite entries: {', '.join(columns)}")
    return lines


def norm_division(f: Failure) -> Finding | None:
    """A batch/layer norm divided by the std of a zero-variance batch with norm_eps 0."""
    return networks.norm_division(f.outcome, f.head)


def unguarded_optimizer_division(f: Failure) -> Finding | None:
    """Adam/RMSprop divided by sqrt(v) + eps where both were 0 (eps 0, or lost to float16)."""
    first, spec = f.first, f.spec
    if not (first.phase == "update" and first.op == "divide" and f.kinds & {"divide", "invalid"}):
        return None
    eps = spec.train.eps
    g = first.inputs.get("gradient", {})
    v = first.inputs.get("exp_avg_sq_prev") or first.inputs.get("square_avg_prev") or {}
    lines = [f.head, f"events in that op: {f.ops}"]
    if g.get("exact_zeros"):
        v_all_zero = v.get("exact_zeros") == v.get("size")
        lines.append(
            f"the gradient of layer {first.layer}'s {first.tensor} had {g['exact_zeros']} of "
            f"{g['size']} entries exactly 0, so {spec.train.optimizer}'s running averages were "
            "exactly 0 there"
            + (f" (v was all zero before the step-{first.step} update)" if v_all_zero else "")
        )
        lines += _dead_units_behind(f)
    held = float(np.asarray(eps, dtype=f.outcome.prepared.dtype))
    lines.append(
        f"the denominator sqrt(v) + eps had no guard: eps = {fmt(eps)}"
        + (f", which is {fmt(held)} in {spec.numerics.dtype}" if held != eps else "")
    )
    return cause(
        "division_by_zero",
        f"{spec.train.optimizer} divided by sqrt(v) + eps where both were 0",
        lines,
        first.layer,
        first.step,
    )


def _dead_units_behind(f: Failure) -> list[str]:
    """Why a gradient was exactly 0: ReLU layers dead for the whole batch at the failing step
    (their units pass no gradient), read from that step's history row."""
    dead = (f.outcome.history or {}).get("dead")
    row = f.first.step - f.outcome.history_start if f.first.step else None
    if dead is None or row is None or not 0 <= row < len(dead):
        return []
    return [
        f"layer {i + 1}: {fmt(100 * share)}% of its ReLU units output 0 for every sample at step "
        f"{f.first.step}, so no gradient reaches them"
        for i, share in enumerate(dead[row])
        if np.isfinite(share) and share >= 0.5
    ]


def pinned_outputs_in_loss(f: Failure) -> Finding | None:
    """A log or division in the loss met outputs pinned at exactly 0 or 1 (a saturated output)."""
    first, spec = f.first, f.spec
    if not (first.phase == "loss" and first.op in ("log", "divide")):
        return None
    out = first.inputs.get("output", {})
    z = first.inputs.get("z", {})
    lines = [f.head, f"events in the loss: {f.ops}"]
    pinned = _pinned_outputs(f.outcome)
    if pinned:
        lines.append(pinned)
    if z:
        lim = SIGMOID_EXACT_ONE[spec.numerics.dtype]
        lines.append(
            f"max |z| of the last layer = {fmt(z['max_abs'])}; beyond |z| = {lim} a "
            f"{spec.numerics.dtype} sigmoid rounds to exactly 1"
            if spec.model.layers[-1].activation == "sigmoid" or spec.loss.name == "bce"
            else f"max |z| of the last layer = {fmt(z['max_abs'])}"
        )
    lines += f.growth_lines
    if not (out or pinned):
        return None
    return cause(
        "saturation",
        f"{_last_activation(spec)} outputs pinned at exactly 0 or 1 met {first.op} in the loss",
        lines,
        None,
        first.step,
    )


def optimizer_state_overflow(f: Failure) -> Finding | None:
    """The optimiser's running state overflowed (Adam's second moment from a squared gradient
    beyond the dtype's square root): an inf there makes every later step exactly 0, so the
    weights freeze silently. After growth it is an explosion, else a plain overflow."""
    first, spec = f.first, f.spec
    parts = split_state_tensor(first.tensor) if first.phase == "update" else None
    if parts is None or "overflow" not in f.kinds:
        return None
    param, state = parts
    dtype, optimizer = spec.numerics.dtype, spec.train.optimizer
    top = float(np.finfo(f.outcome.prepared.dtype).max)  # the state's own dtype
    lines = [f.head, f"events in that op: {f.ops}"]
    g = first.inputs.get("gradient", {}).get("max_abs")
    if first.op == "square" and g is not None:
        lines.append(
            f"the gradient of layer {first.layer}'s {param} reached |g| = {fmt(g)}; squared that "
            f"is {fmt(g * g)}, beyond the largest value {fmt(top)}: any |g| above "
            f"{fmt(np.sqrt(top))} overflows when squared"
        )
    if state in SQUARED_STATE:
        lines.append(
            f"with {state} = inf, {optimizer} divides the step by sqrt({state}) = inf: the update"
            " is exactly 0 there and those weights stop moving, with no NaN to show it"
        )
    if f.growth_lines:
        return cause(
            "exploding_gradient",
            f"gradient norms grew step over step until {optimizer}'s {state} overflowed",
            [*lines, *f.growth_lines],
            first.layer,
            first.step,
        )
    lines += _no_growth_lines(f)[2:]
    return cause(
        "overflow",
        f"{optimizer}'s {state} overflowed {dtype}: the gradient was too large to square"
        if first.op == "square"
        else f"{optimizer}'s {state} overflowed {dtype}",
        lines,
        first.layer,
        first.step,
    )


def exploding_gradient(f: Failure) -> Finding | None:
    """The gradient norm grew step over step until a value overflowed."""
    if not f.growth_lines:
        return None
    return cause(
        "exploding_gradient",
        "gradient norms grew step over step until values overflowed",
        [f.head, *f.growth_lines, *f.input_lines],
        f.first.layer,
        f.first.step,
    )


def overflow(f: Failure) -> Finding | None:
    """A value left the dtype's range with no update-driven growth before it."""
    first, dtype = f.first, f.spec.numerics.dtype
    if not ("overflow" in f.kinds or first.value in ("inf", "-inf")):
        return None
    summary = f"{first.op} overflowed {dtype}'s range without a growth history"
    return cause("overflow", summary, _no_growth_lines(f), first.layer, first.step)


def invalid_from_finite_inputs(f: Failure) -> Finding:
    """An invalid op (0/0, inf - inf) outside the optimiser, with no overflow and no growth."""
    first = f.first
    return cause(
        "division_by_zero" if first.op == "divide" else "overflow",
        f"{first.op} produced {first.value} from finite inputs",
        _no_growth_lines(f),
        first.layer,
        first.step,
    )


CAUSE_RULES: tuple[Callable[[Failure], Finding | None], ...] = (
    cast_overflow,
    bad_input,
    norm_division,
    unguarded_optimizer_division,
    pinned_outputs_in_loss,
    optimizer_state_overflow,
    exploding_gradient,
    overflow,
    invalid_from_finite_inputs,
)


def root_cause(failure: Failure) -> Finding:
    """The cause of a run's first non-finite value: the first rule that applies."""
    for rule in CAUSE_RULES:
        found = rule(failure)
        if found is not None:
            return found
    raise AssertionError("invalid_from_finite_inputs always applies")


# ------------------------------------------------------------------ helpers
def _no_growth_lines(f: Failure) -> list[str]:
    first, dtype = f.first, f.spec.numerics.dtype
    lines = [f.head, f"events in that op: {f.ops}", *f.input_lines]
    if first.step is not None and first.step <= GROWTH_MIN_STEPS:
        lines.append(f"no growth history: it failed at step {first.step}")
    else:
        lines.append("no sustained growth of the gradient norm before the failure")
    lines.append(f"{dtype}'s largest finite value is {fmt(DTYPE_MAX[dtype])}")
    return lines


def _last_activation(spec: Spec) -> str:
    act = spec.model.layers[-1].activation
    if act == "linear":
        return {"bce": "sigmoid", "cross_entropy": "softmax"}.get(spec.loss.name, act)
    return act


def _pinned_outputs(outcome: Outcome) -> str | None:
    first = outcome.first_nonfinite
    out = first.inputs.get("output")
    if not out:
        return None
    sat = outcome.history.get("saturated") if outcome.history else None
    share = ""
    if sat is not None and len(sat) and np.isfinite(sat[-1, -1]):
        act = outcome.spec.model.layers[-1].activation
        share = f"; {fmt(100 * sat[-1, -1])}% of last-layer {saturated_what(act)}"
    ones = f", {out['exact_ones']} exactly 1" if "exact_ones" in out else ""
    return (
        f"last-layer outputs at step {first.step}: {out['exact_zeros']} of {out['size']} exactly 0"
        f"{ones}{share}"
    )
