"""Diagnosis rules for the parts of real networks: normalization, loss scaling, missing data and
the edge of stability.

Each rule reads a run's own numbers (the failing op and its inputs, the loss curve, the loss
scale and the skipped steps) and returns a finding with the numbers that show it, or None.
"""

from __future__ import annotations

import numpy as np

from nandoctor.diagnosis.findings import Finding, fmt
from nandoctor.diagnosis.measures import DTYPE_MAX, held_as_zero

NORM_OPS = ("batch_norm", "layer_norm")

OSCILLATION_WINDOW = 40  # last steps examined for an oscillating loss
OSCILLATION_MIN_STEPS = 12  # fewer steps than this say nothing about a trend of swings
OSCILLATION_FLIPS = 0.6  # share of consecutive loss changes that reverse direction
OSCILLATION_GROWTH = 2.0  # the swing at the end of the window over the swing at its start
SKIPPED_WARN = 0.1  # share of the steps run that loss scaling skipped
SCALE_COLLAPSED = 1.0  # a loss scale below this: gradients overflow even unscaled


# ------------------------------------------------------------------ causes
def norm_division(outcome, head: str) -> Finding | None:
    """A batch/layer norm that divided by ``sqrt(var + norm_eps) = 0``: ``division_by_zero``
    located in that layer's norm op."""
    first = outcome.first_nonfinite
    if first.phase != "forward" or first.op not in NORM_OPS:
        return None
    layer = outcome.spec.model.layers[first.layer - 1]
    kind = first.op.removesuffix("_norm")
    z = first.inputs.get("pre_activation", {})
    inv = first.inputs.get("inv_std", {})
    rows = z["size"] // layer.units if z.get("size") else None
    over = "unit over the batch" if kind == "batch" else "sample over the layer's units"
    lines = [head, f"{first.op} normalizes each {over}: (z - mean) / sqrt(var + norm_eps)"]
    if inv.get("nonfinite"):
        groups = "units" if kind == "batch" else "samples"
        lines.append(
            f"{inv['nonfinite']} of {inv['size']} {groups} had a variance of exactly 0"
            + (f" (this step's batch held {rows} row{'s' if rows != 1 else ''})" if rows else "")
        )
    dtype = outcome.spec.numerics.dtype
    lost = (
        f" ({fmt(layer.norm_eps)} is 0 in {dtype})"
        if layer.norm_eps != 0 and held_as_zero(layer.norm_eps, dtype)
        else ""
    )
    lines.append(
        f"model.layers.{first.layer - 1}.norm_eps = {fmt(layer.norm_eps)}{lost}: nothing keeps "
        "sqrt(var + norm_eps) away from 0, so 0 / 0 gave NaN"
    )
    return Finding(
        "division_by_zero",
        f"layer {first.layer}'s {kind} norm divided by sqrt(var + norm_eps) = 0 "
        "(a zero-variance batch with norm_eps 0)",
        lines,
        first.layer,
        first.step,
    )


# ------------------------------------------------------------------ warnings
def rows_per_batch(outcome) -> int:
    """Rows in each of the run's batches (the samples, for ``batch_size: full``)."""
    rows = len(outcome.prepared.x)
    size = outcome.spec.train.batch_size
    return rows if size == "full" else min(size, rows)


def constant_batch_norm(outcome, layer: int) -> str | None:
    """Why batch norm froze ``layer`` (from 1) when it normalizes each unit over batches of one
    row: ``z - mean`` is then exactly 0, so the norm outputs beta whatever the input and no
    gradient reaches the weights before it. A sentence, or None when that layer has no batch
    norm or its batches hold more than one row."""
    spec = outcome.spec.model.layers[layer - 1]
    if spec.norm != "batch" or rows_per_batch(outcome) != 1:
        return None
    return (
        f"its batch norm normalizes each unit over a batch of 1 row (train.batch_size = "
        f"{outcome.spec.train.batch_size}): z - mean is exactly 0, so it outputs beta whatever "
        "the input and no gradient reaches the weights before it"
    )


def oscillating_loss(loss: np.ndarray) -> Finding | None:
    """The loss alternates up and down with a growing swing: a step size at the edge of
    stability (gradient descent on a quadratic with lr just above 2/lambda_max does this)."""
    window = loss[-OSCILLATION_WINDOW:]
    if len(window) < OSCILLATION_MIN_STEPS or not np.isfinite(window).all():
        return None
    change = np.diff(window)
    direction = np.sign(change)
    flips = float((direction[1:] * direction[:-1] < 0).mean())  # signs: no overflow
    swing = np.abs(change)
    q = max(2, len(swing) // 4)
    start, end = float(swing[:q].mean()), float(swing[-q:].mean())
    if flips < OSCILLATION_FLIPS or start <= 0 or end < OSCILLATION_GROWTH * start:
        return None
    steps = len(window)
    return Finding(
        "oscillating_loss",
        f"over the last {steps} steps the loss reversed direction on {fmt(100 * flips)}% of steps "
        f"and its swing grew x{fmt(end / start)} (from {fmt(start)} to {fmt(end)} per step): a "
        "step size at the edge of stability",
        [
            f"loss over the last steps: {', '.join(fmt(v) for v in window[-6:])}",
            f"mean |change| over the first {q} steps of the window {fmt(start)}, "
            f"over the last {q} {fmt(end)}",
        ],
    )


def skipped_steps(outcome, n: int) -> Finding | None:
    """Loss scaling skipped many steps once its scale had settled, skipped every step, or its
    scale collapsed below 1. The skips before the first applied update are the scaler finding
    its scale (torch's GradScaler does the same) and do not count against the run."""
    log = outcome.scaling
    if not log or not log["skipped"] or n < 1:
        return None
    collapsed = log["scale_min"] < SCALE_COLLAPSED
    if log["first_applied"] and log["later"] <= SKIPPED_WARN * n and not collapsed:
        return None
    settled = (
        f"{log['later']} after the first applied update at step {log['first_applied']}"
        if log["first_applied"]
        else "no update was ever applied"
    )
    return Finding(
        "skipped_steps",
        # of the steps the scaler saw: the failing step too, when it got that far
        f"loss scaling skipped {log['skipped']} of {log.get('seen') or n} steps for inf/NaN "
        f"gradients ({settled}); "
        f"the scale went from {fmt(log['scale_first'])} to {fmt(log['scale_last'])}"
        + (" - it collapsed: gradients overflow even unscaled" if collapsed else ""),
        [
            f"skipped steps: first {log['first_skip']}, last {log['last_skip']}",
            f"the smallest scale was {fmt(log['scale_min'])}; {outcome.spec.numerics.dtype} "
            f"gradients overflow at {fmt(DTYPE_MAX.get(outcome.spec.numerics.dtype, np.inf))} "
            "once multiplied by it",
        ],
        step=log["first_skip"],
    )


# ------------------------------------------------------------------ notes
def data_notes(outcome) -> list[str]:
    dropped = getattr(outcome.prepared, "dropped_rows", 0)
    if not dropped:
        return []
    total = dropped + len(outcome.prepared.x)
    return [
        f"data.missing drop_rows dropped {dropped} of {total} rows holding a non-finite input or "
        f"target; {total - dropped} rows trained"
    ]
