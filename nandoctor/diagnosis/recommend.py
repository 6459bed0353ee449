"""What to change, from the diagnosis: candidate changes as ``--set``-style dotted keys.

Each candidate follows from a cause, a contributing setting or a warning the run's numbers showed;
``nandoctor.diagnosis.verify`` then proves or disproves it by re-running.
"""

from __future__ import annotations

from nandoctor.diagnosis.catalogue import NAIVE_FACTORS, RECOMMENDATIONS
from nandoctor.diagnosis.findings import Recommendation, fmt
from nandoctor.engine.nn import activation


def recommend(outcome, cause, contributing, warnings) -> list[Recommendation]:
    spec = outcome.spec
    ids = {f.id for f in contributing}
    lr = outcome.learning_rate
    recs: list[Recommendation] = []

    def add(rid: str, changes: dict, summary: str | None = None) -> None:
        if not any(r.id == rid for r in recs):
            recs.append(Recommendation(rid, summary or RECOMMENDATIONS[rid].meaning, changes))

    def lower_lr() -> None:
        add(
            "lower_learning_rate",
            {"train.learning_rate": lr / 10},
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

    if cause is not None:
        c = cause.id
        if c in ("exploding_gradient", "overflow", "saturation") or "high_learning_rate" in ids:
            lower_lr()
        if c == "exploding_gradient":
            add("clip_gradients", {"train.clip_grad_norm": 1.0})
        if spec.numerics.mode == "naive" and (
            c in ("overflow", "saturation", "bad_input") or ids & set(NAIVE_FACTORS)
        ):
            add("stable_numerics", {"numerics.mode": "stable"})
        if "unscaled_inputs" in ids:
            add("standardize_inputs", {"data.preprocess": "standardize"})
        if spec.numerics.dtype == "float16":
            add("use_float32", {"numerics.dtype": "float32"})
        if c == "division_by_zero":
            add("add_eps", {"train.eps": 1e-8})
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
    for w in warnings:
        if w.id == "saturation":
            add_xavier()
        if w.id == "exploding_gradient":
            lower_lr()
            add("clip_gradients", {"train.clip_grad_norm": 1.0})
        if w.id == "dead_relu":
            add("use_leaky_relu", {f"model.layers.{w.layer - 1}.activation": "leaky_relu"})
            lower_lr()
    return recs
