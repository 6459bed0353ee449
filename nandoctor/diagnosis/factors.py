"""What made a failure likelier: contributing-factor rules, every one tried, in order.

Each rule reads the run's :class:`~nandoctor.diagnosis.causes.Failure` and the cause already
found, and yields the factors it sees (a setting of the spec, implicated by the run's numbers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from nandoctor.diagnosis.catalogue import NAIVE_FACTOR_OF_OP
from nandoctor.diagnosis.causes import Failure, where
from nandoctor.diagnosis.findings import Finding, factor, fmt
from nandoctor.diagnosis.measures import history_offset
from nandoctor.engine.optim import schedule_factor

UNSCALED_INPUT = 100.0  # inputs (or targets) larger than this, unpreprocessed, are unscaled
REGRESSION_LOSSES = ("mse", "mae", "huber")  # losses of real-valued targets
# lr x weight_decay from which each step's factor 1 - lr x wd on the weights is 0 or below: the
# decay alone zeroes or flips them (past 2, it grows them). Optimisers whose step is lr x (raw
# gradient + wd x w), or decoupled (adamw); adam/rmsprop/adagrad rescale the decay term.
DECAY_PER_STEP = 1.0
DECAYING = ("sgd", "momentum", "nesterov", "adamw")
HIGH_UPDATE_RATIO = 0.1  # updates above 10% of the weights' norm per step are too large

Rule = Callable[[Failure, Finding], Iterator[Finding]]


def high_learning_rate(f: Failure, cause: Finding) -> Iterator[Finding]:
    """Updates over a tenth of the weights' norm in one step, before an explosion or saturation."""
    ratio = (f.outcome.history or {}).get("update_ratio")
    if ratio is None or len(ratio) <= 1 or cause.id not in ("exploding_gradient", "saturation"):
        return
    off = history_offset(f.outcome)
    r = ratio[: max(f.first.step - 1 - off, 1)]
    peak = float(np.nanmax(r)) if np.isfinite(r).any() else float("nan")
    if peak > HIGH_UPDATE_RATIO:
        step = int(np.nanargmax(np.nanmax(r, axis=1))) + 1 + off
        lr, rate = f.outcome.learning_rate, effective_rate(f, step)
        raised = (
            f" (the {f.spec.train.schedule} schedule had made it {fmt(rate)})"
            if (rate > 1.5 * lr)
            else ""
        )
        yield factor(
            "high_learning_rate",
            f"learning rate {fmt(lr)}{raised} moved weights by up to "
            f"{fmt(100 * peak)}% of their norm in one step",
            [f"update/weight ratio {fmt(peak)} at step {step} (well-behaved runs: ~1e-3)"],
        )


def effective_rate(f: Failure, step: int) -> float:
    """The learning rate in effect at ``step``: the spec's times its schedule's factor."""
    t = f.spec.train
    k = schedule_factor(t.schedule, step, t.steps, t.lr_step_size, t.lr_gamma, t.warmup_steps)
    return f.outcome.learning_rate * k


def growing_schedule(f: Failure, cause: Finding) -> Iterator[Finding]:
    """A step/exponential schedule with lr_gamma > 1 raised the rate until the run failed."""
    t = f.spec.train
    if t.schedule not in ("step", "exponential") or t.lr_gamma <= 1 or f.first.step is None:
        return
    lr, rate = f.outcome.learning_rate, effective_rate(f, max(f.first.step, 1))
    if rate <= 2 * lr:
        return
    yield factor(
        "growing_schedule",
        f"train.lr_gamma {fmt(t.lr_gamma)} > 1: the {t.schedule} schedule raised the rate from "
        f"{fmt(lr)} to {fmt(rate)} by step {f.first.step}",
        [f"lr x lr_gamma ^ ((step - 1) / {t.lr_step_size}) = {fmt(rate)} at the failure"],
    )


def unscaled_input_scale(outcome) -> float | None:
    """max |x| of inputs fed in with no preprocessing when beyond ``UNSCALED_INPUT``, else None."""
    raw = outcome.prepared.raw_max_abs
    if outcome.spec.data.preprocess == "none" and math.isfinite(raw) and raw > UNSCALED_INPUT:
        return raw
    return None


def unscaled_inputs(f: Failure, cause: Finding) -> Iterator[Finding]:
    """Inputs far from unit scale fed in with no preprocessing."""
    raw, spec = f.outcome.prepared.raw_max_abs, f.spec
    if unscaled_input_scale(f.outcome) is not None:
        yield factor(
            "unscaled_inputs",
            f"inputs reach |x| = {fmt(raw)} with no preprocessing",
            [f"max |x| = {fmt(raw)} (data.scale = {spec.data.scale}); standardized inputs are ~1"],
        )


def unscaled_target_scale(outcome) -> float | None:
    """max |y| of regression targets fed in with no preprocessing when beyond
    ``UNSCALED_INPUT``, else None."""
    y, spec = outcome.prepared.y, outcome.spec
    if spec.data.target_preprocess != "none" or y is None or y.dtype.kind != "f" or not y.size:
        return None
    if spec.loss.name not in REGRESSION_LOSSES:
        return None
    with np.errstate(all="ignore"):
        top = float(np.nanmax(np.abs(y))) if np.isfinite(y).any() else float("nan")
    return top if math.isfinite(top) and top > UNSCALED_INPUT else None


def unscaled_targets(f: Failure, cause: Finding) -> Iterator[Finding]:
    """Regression targets far from unit scale fed in with no preprocessing: the loss and its
    gradient grow with them (squared, for mse)."""
    spec, top = f.spec, unscaled_target_scale(f.outcome)
    if top is not None:
        yield factor(
            "unscaled_targets",
            f"regression targets reach |y| = {fmt(top)} with no preprocessing",
            [
                f"max |y| = {fmt(top)}: the {spec.loss.name} loss and its gradient grow with "
                "the targets; standardized targets are ~1"
            ],
        )


def high_weight_decay(f: Failure, cause: Finding) -> Iterator[Finding]:
    """Weight decay so strong for the rate that the decay term alone zeroes, flips or grows
    the weights each step (w <- (1 - lr x wd) w - lr x step)."""
    t, lr = f.spec.train, f.outcome.learning_rate
    if not t.weight_decay or t.optimizer not in DECAYING or lr * t.weight_decay < DECAY_PER_STEP:
        return
    factor_ = 1 - lr * t.weight_decay
    does = "grows" if factor_ < -1 else "flips" if factor_ < 0 else "zeroes"
    lines = [f"1 - lr x weight_decay = 1 - {fmt(lr)} x {fmt(t.weight_decay)} = {fmt(factor_)}"]
    w = (f.outcome.history or {}).get("weight_norm")
    off = history_offset(f.outcome)
    if w is not None and len(w) > 1:
        k = max(f.first.step - 1 - off, 1)  # the complete steps before the failure
        first, last = np.nansum(w[0] ** 2) ** 0.5, np.nansum(w[k - 1] ** 2) ** 0.5
        lines.append(f"weight norm {fmt(first)} at step {off + 1}, {fmt(last)} at step {off + k}")
    yield factor(
        "high_weight_decay",
        f"train.weight_decay {fmt(t.weight_decay)} at lr {fmt(lr)}: each step the decay {does} "
        f"the weights (x{fmt(factor_)})",
        lines,
    )


def naive_numerics(f: Failure, cause: Finding) -> Iterator[Finding]:
    """The failing op is a textbook formula with no guard (numerics.mode naive)."""
    first, spec = f.first, f.spec
    if spec.numerics.mode != "naive" or first.op not in NAIVE_FACTOR_OF_OP:
        return
    naive_id = NAIVE_FACTOR_OF_OP[first.op]
    if first.phase == "forward" and spec.model.layers[(first.layer or 1) - 1].activation == (
        "sigmoid"
    ):
        naive_id = "naive_sigmoid"
    yield factor(
        naive_id,
        f"numerics.mode naive: the failing {first.op} has no guard",
        [f"stable mode computes it from logits / with the max subtracted ({where(first)})"],
    )


def low_precision(f: Failure, cause: Finding) -> Iterator[Finding]:
    """float16's narrow range and coarse epsilon."""
    if f.spec.numerics.dtype != "float16" or f.first.phase == "data":
        return
    mags = [st["max_abs"] for st in f.first.inputs.values() if st["max_abs"] is not None]
    yield factor(
        "low_precision",
        "float16's range ends at 65504 and its epsilon is 9.8e-4",
        [f"largest finite input to the failing op: {fmt(max(mags))}"] if mags else [],
    )


def poor_init(f: Failure, cause: Finding) -> Iterator[Finding]:
    """Layers started from N(0, 1) weights, already saturated at step 1: one finding, with the
    evidence of each such layer."""
    sat = (f.outcome.history or {}).get("saturated")
    if sat is None or not len(sat) or cause.id != "saturation":
        return
    layers = f.spec.model.layers
    poor = [i for i, layer in enumerate(layers) if layer.init == "normal" and sat[0, i] > 0]
    if not poor:
        return
    first_row = history_offset(f.outcome) + 1
    names = ", ".join(str(i + 1) for i in poor)
    acts = ", ".join(layers[i].activation for i in poor)
    yield factor(
        "poor_init",
        f"layer {names} starts with N(0, 1) weights ({acts})"
        if len(poor) == 1
        else f"layers {names} start with N(0, 1) weights ({acts})",
        [
            f"layer {i + 1}: {fmt(100 * sat[0, i])}% of its units saturated at step {first_row}"
            for i in poor
        ],
    )


def zero_eps(f: Failure, cause: Finding) -> Iterator[Finding]:
    """Adam/RMSprop with eps = 0: nothing guards the division by sqrt(v)."""
    train = f.spec.train
    if train.optimizer in ("adam", "rmsprop") and train.eps == 0:
        yield factor("zero_eps", "train.eps = 0 leaves sqrt(v) + eps unguarded", [])


FACTOR_RULES: tuple[Rule, ...] = (
    high_learning_rate,
    unscaled_inputs,
    unscaled_targets,
    high_weight_decay,
    growing_schedule,
    naive_numerics,
    low_precision,
    poor_init,
    zero_eps,
)


def contributing_factors(failure: Failure, cause: Finding) -> list[Finding]:
    """Every factor every rule sees, in rule order, each id once (evidence merged)."""
    merged: dict[str, Finding] = {}
    for rule in FACTOR_RULES:
        for found in rule(failure, cause):
            if found.id in merged:
                merged[found.id].evidence += [
                    e for e in found.evidence if e not in merged[found.id].evidence
                ]
            else:
                merged[found.id] = found
    return list(merged.values())
