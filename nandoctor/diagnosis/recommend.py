"""What to change, from the diagnosis: candidate changes as ``--set``-style dotted keys.

Each candidate follows from a cause, a contributing setting or a warning the run's numbers showed;
``nandoctor.diagnosis.verify`` then proves or disproves it by re-running.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nandoctor.diagnosis import networks
from nandoctor.diagnosis.catalogue import NAIVE_FACTORS, RECOMMENDATIONS
from nandoctor.diagnosis.factors import unscaled_input_scale, unscaled_target_scale
from nandoctor.diagnosis.findings import Recommendation, fmt
from nandoctor.diagnosis.measures import held_as_zero
from nandoctor.diagnosis.networks import NORM_OPS
from nandoctor.engine.nn import activation
from nandoctor.engine.optim import split_state_tensor

ADAM_EPS = 1e-8  # torch.optim's default eps, proposed when the dtype can hold it
NORM_EPS = 1e-5  # torch's BatchNorm1d / LayerNorm default eps
BATCH = 32  # Keras' default batch size, proposed when batch norm sees one row per batch
MIXED_PRECISION = {"numerics.master_dtype": "float32", "numerics.loss_scale": "dynamic"}
PLAIN_SGD = ("sgd", "momentum", "nesterov")  # step = lr * raw gradient: no per-parameter scaling


def complete_rows(outcome) -> int:
    """Rows whose inputs and targets are all finite: what ``data.missing: drop_rows`` keeps."""
    x, y = outcome.prepared.x, outcome.prepared.y
    with np.errstate(all="ignore"):
        keep = np.isfinite(x).all(axis=1)
        if y is not None and y.dtype.kind == "f":
            keep &= np.isfinite(y.reshape(len(y), -1)).all(axis=1)
    return int(keep.sum())


def norm_failure(outcome) -> bool:
    first = outcome.first_nonfinite
    return first is not None and first.phase == "forward" and first.op in NORM_OPS


def state_overflow(outcome) -> bool:
    """The first inf is the optimiser's state (a squared gradient too large for the dtype): a
    bounded gradient norm keeps it finite."""
    first = outcome.first_nonfinite
    return (
        first is not None
        and first.phase == "update"
        and split_state_tensor(first.tensor) is not None
    )


# changes that act only through the weight updates
UPDATE_ONLY = ("lower_learning_rate", "clip_gradients", "use_adamw", "decay_schedule")


def recommend(outcome, cause, contributing, warnings) -> list[Recommendation]:
    spec = outcome.spec
    ids = {f.id for f in contributing}
    lr = outcome.learning_rate
    dtype = spec.numerics.dtype
    recs: list[Recommendation] = []
    # went non-finite in step 1 before its update: the initial weights did it, and no change
    # of how the weights are updated (rate, clipping, optimizer) can
    first = outcome.first_nonfinite
    untrained = (
        first is not None and first.step == 1 and first.phase in ("forward", "loss", "backward")
    )

    def add(rid: str, changes: dict, summary: str | None = None) -> None:
        """Propose ``changes`` with every number as the run's dtype holds it, unless they would
        leave the spec as it is (a recommendation never repeats the current value) or change
        only how weights are updated when none had been."""
        if untrained and rid in UPDATE_ONLY:
            return
        changes = {key: holdable(value, dtype) for key, value in changes.items()}
        if changes_nothing(spec, changes):
            return
        if not any(r.id == rid for r in recs):
            recs.append(Recommendation(rid, summary or RECOMMENDATIONS[rid].meaning, changes))

    def lower_lr() -> None:
        """A tenth of the rate, or the smallest the dtype holds when that is still lower."""
        lower = holdable(float(f"{lr / 10:.6g}"), dtype)  # 0.11, not 0.11000000000000001
        if lower < lr:
            add(
                "lower_learning_rate",
                {"train.learning_rate": lower},
                f"lower the learning rate below {fmt(lr)}",
            )

    def add_xavier():
        """Xavier init for every sigmoid/tanh/softmax layer drawn from N(0, 1)."""
        changes = {
            f"model.layers.{i}.init": "xavier"
            for i, layer in enumerate(spec.model.layers)
            if layer.init == "normal" and activation(layer.activation).saturates
        }
        if changes:
            add("use_xavier_init", changes)

    def larger_batch():
        """Batches of several rows, for batch norm over one row (when the data have several)."""
        rows = len(outcome.prepared.x)
        if rows > 1:
            add("larger_batch", {"train.batch_size": min(BATCH, rows)})

    def add_scaled_init():
        """He init for the relu-family and linear layers, Xavier for the saturating ones
        (sigmoid, tanh, softmax), where the init is unscaled (normal or uniform: spread 1 whatever
        the fan-in), and init_scale 1 where it multiplies the init's spread (Xavier x 100 is as
        oversized as N(0, 1) x 100)."""
        changes = {}
        for i, layer in enumerate(spec.model.layers):
            if layer.init in ("normal", "uniform"):
                scaled = "xavier" if activation(layer.activation).saturates else "he"
                changes[f"model.layers.{i}.init"] = scaled
            if layer.init != "zeros" and layer.init_scale > 1:
                changes[f"model.layers.{i}.init_scale"] = 1.0
        if changes:
            add("use_he_init", changes)

    def add_batch_norm():
        """Batch norm for a deep stack (two or more) of saturating hidden layers without one."""
        hidden = [
            i
            for i, layer in enumerate(spec.model.layers[:-1])
            if activation(layer.activation).squashing and layer.norm == "none"
        ]
        if len(hidden) >= 2:
            add("use_batch_norm", {f"model.layers.{i}.norm": "batch" for i in hidden})

    if cause is not None:
        c = cause.id
        # a value the dtype could not hold as the data were cast: nothing has trained yet, so
        # neither the learning rate nor master weights (the inputs stay float16) can change it
        cast = outcome.first_nonfinite.phase == "data" and c == "overflow"
        if not cast and (
            c in ("exploding_gradient", "overflow", "saturation") or "high_learning_rate" in ids
        ):
            lower_lr()
        if untrained and c in ("overflow", "saturation"):
            # before any update, the overflowing values came from the data and the initial
            # weights: an oversized init is one of the two
            add_scaled_init()
        if c == "exploding_gradient" or state_overflow(outcome):
            add("clip_gradients", {"train.clip_grad_norm": 1.0})
        if spec.numerics.mode == "naive" and (
            c in ("overflow", "saturation", "bad_input") or ids & set(NAIVE_FACTORS)
        ):
            add("stable_numerics", {"numerics.mode": "stable"})
        if "unscaled_inputs" in ids:
            add("standardize_inputs", {"data.preprocess": "standardize"})
        if "growing_schedule" in ids:
            add("decay_schedule", {"train.lr_gamma": 0.1})
        if "high_weight_decay" in ids:
            add("lower_weight_decay", {"train.weight_decay": 0.01})
        if "unscaled_targets" in ids or (cast and outcome.first_nonfinite.tensor == "y"):
            add("standardize_targets", {"data.target_preprocess": "standardize"})
        if spec.numerics.dtype == "float16":
            add("use_float32", {"numerics.dtype": "float32"})
            if spec.numerics.master_dtype is None and c != "bad_input" and not cast:
                add("use_mixed_precision", MIXED_PRECISION)
        if c == "division_by_zero" and norm_failure(outcome):
            # the failing layer's norm, and every other one as unguarded: fixing only the first
            # to fail lets the next one fail the same way
            failed = outcome.first_nonfinite.layer - 1
            unguarded = {  # norm_eps 0 as the dtype holds it (1e-12 is 0 in float16)
                i
                for i, layer in enumerate(spec.model.layers)
                if layer.norm != "none" and held_as_zero(layer.norm_eps, dtype)
            }
            layers = sorted(unguarded | {failed})
            eps = holdable(NORM_EPS, dtype)
            where = ", ".join(str(i + 1) for i in layers)
            why = (
                "torch's default" if eps == NORM_EPS else f"{fmt(NORM_EPS)} is subnormal in {dtype}"
            )
            add(
                "add_norm_eps",
                {f"model.layers.{i}.norm_eps": eps for i in layers},
                f"use norm_eps = {fmt(eps)} ({why}) in the norm of layer"
                f"{'s' if len(layers) > 1 else ''} {where}",
            )
            if networks.constant_batch_norm(outcome, failed + 1):
                # one row per batch: its variance is 0 at every step, with or without eps
                larger_batch()
        elif c == "division_by_zero":
            eps = holdable(ADAM_EPS, dtype)
            held = float(np.asarray(ADAM_EPS, dtype))
            lost = "0" if held == 0 else "subnormal"
            why = "" if eps == ADAM_EPS else f" ({fmt(ADAM_EPS)} is {lost} in {dtype})"
            add(
                "add_eps",
                {"train.eps": eps},
                f"use eps = {fmt(eps)} in the optimizer's denominator{why}",
            )
        if c == "saturation" or "poor_init" in ids:
            add_xavier()
        if c == "saturation":
            hidden = {
                f"model.layers.{i}.activation": "relu"
                for i, layer in enumerate(spec.model.layers[:-1])
                if activation(layer.activation).squashing
            }
            hidden |= {k.replace("activation", "init"): "he" for k in hidden}
            add("use_relu", hidden)
        if c == "bad_input" and outcome.first_nonfinite.phase == "data" and spec.data.nan_fraction:
            add("remove_nan_inputs", {"data.nan_fraction": 0.0})
        if c == "bad_input" and outcome.first_nonfinite.phase == "data" and complete_rows(outcome):
            add("drop_missing_rows", {"data.missing": "drop_rows"})
        if c == "saturation":
            add_batch_norm()
        if c == "exploding_gradient" and spec.train.optimizer in PLAIN_SGD:
            add("use_adamw", {"train.optimizer": "adamw", "train.learning_rate": min(lr, 1e-3)})
    for w in warnings:
        if w.id == "saturation":
            add_xavier()
            add_batch_norm()
        if w.id == "exploding_activations":
            add_scaled_init()
        if w.id == "oscillating_loss":
            lower_lr()
        if w.id in ("loss_not_decreasing", "exploding_gradient") and unscaled_input_scale(outcome):
            add("standardize_inputs", {"data.preprocess": "standardize"})
        if w.id in ("skipped_steps", "loss_not_decreasing") and unscaled_target_scale(outcome):
            add("standardize_targets", {"data.target_preprocess": "standardize"})
        if w.id == "skipped_steps" and spec.numerics.dtype == "float16":
            add("use_float32", {"numerics.dtype": "float32"})
        if w.id == "exploding_gradient":
            lower_lr()
            add("clip_gradients", {"train.clip_grad_norm": 1.0})
        if w.id in ("dead_relu", "zero_gradient") and networks.constant_batch_norm(
            outcome, w.layer
        ):
            # the norm outputs beta whatever the input: only batches of several rows let a
            # gradient through; leaky_relu or a rate leave the layer frozen
            larger_batch()
        elif w.id == "dead_relu" and w.step == 1:
            # dead before any update: the initial weights and bias did it, no update rule can
            add("reset_init", fresh_init(spec, w.layer - 1))
            add("use_leaky_relu", {f"model.layers.{w.layer - 1}.activation": "leaky_relu"})
        elif w.id == "dead_relu":
            add("use_leaky_relu", {f"model.layers.{w.layer - 1}.activation": "leaky_relu"})
            lower_lr()
    return recs


def fresh_init(spec, index: int) -> dict[str, Any]:
    """The changes that start layer ``index`` (from 0) as its activation's default does: bias 0,
    its default init, init_scale 1 (only the keys that differ)."""
    layer = spec.model.layers[index]
    default = {
        "bias": 0.0,
        "init": activation(layer.activation).default_init,
        "init_scale": 1.0,
    }
    return {
        f"model.layers.{index}.{key}": value
        for key, value in default.items()
        if getattr(layer, key) != value and (key != "bias" or layer.use_bias)
    }


def holdable(value: Any, dtype: str) -> Any:
    """``value`` as a normal number of ``dtype``: a non-zero float that ``dtype`` would round to 0
    or to a subnormal becomes the smallest power of ten that is a normal number there (1e-8 in
    float16 -> 1e-4); whole numbers, zero, strings and booleans are returned unchanged."""
    if not isinstance(value, float) or value == 0 or not math.isfinite(value):
        return value
    tiny = float(np.finfo(dtype).tiny)
    if abs(value) >= tiny:
        return value
    return math.copysign(10.0 ** math.ceil(math.log10(tiny)), value)


def changes_nothing(spec, changes: dict[str, Any]) -> bool:
    """True when every dotted key of ``changes`` already has that value in ``spec`` (numbers
    compared as the run's dtype holds them: eps 1e-8 and eps 0 are the same in float16)."""
    dtype = spec.numerics.dtype
    return all(_same(current_value(spec, key), value, dtype) for key, value in changes.items())


def current_value(spec, dotted_key: str) -> Any:
    """The value of ``dotted_key`` (``model.layers.0.init``) in a validated spec."""
    node = spec
    for part in dotted_key.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def _same(current: Any, proposed: Any, dtype: str) -> bool:
    numbers = (int, float)
    if isinstance(current, numbers) and isinstance(proposed, numbers):
        if isinstance(current, bool) or isinstance(proposed, bool):
            return current == proposed
        with np.errstate(over="ignore"):
            return bool(np.asarray(current, dtype) == np.asarray(proposed, dtype))
    return current == proposed
