"""What to change, from the diagnosis: candidate changes as ``--set``-style dotted keys.

Each candidate follows from a cause, a contributing setting or a warning the run's numbers showed;
``nandoctor.diagnosis.verify`` then proves or disproves it by re-running.
"""

from __future__ import annotations

from nandoctor.diagnosis.findings import Recommendation, fmt


def recommend(outcome, cause, contributing, warnings) -> list[Recommendation]:
    spec = outcome.spec
    ids = {f.id for f in contributing}
    lr = outcome.learning_rate
    recs: list[Recommendation] = []

    def add(rid, summary, changes):
        if not any(r.id == rid for r in recs):
            recs.append(Recommendation(rid, summary, changes))

    def add_xavier():
        """Xavier init for every sigmoid/tanh/softmax layer drawn from N(0, 1)."""
        changes = {
            f"model.layers.{i}.init": "xavier"
            for i, layer in enumerate(spec.model.layers)
            if layer.init == "normal" and layer.activation in ("sigmoid", "tanh", "softmax")
        }
        if changes:
            add(
                "use_xavier_init",
                "initialise the N(0, 1) squashing layers with Xavier scaling",
                changes,
            )

    if cause is not None:
        c = cause.id
        if c in ("exploding_gradient", "overflow", "saturation") or "high_learning_rate" in ids:
            add(
                "lower_learning_rate",
                f"lower the learning rate below {fmt(lr)}",
                {"train.learning_rate": lr / 10},
            )
        if c == "exploding_gradient":
            add(
                "clip_gradients",
                "clip the global gradient norm at 1.0",
                {"train.clip_grad_norm": 1.0},
            )
        if spec.numerics.mode == "naive" and (
            c in ("overflow", "saturation", "bad_input")
            or ids & {"naive_softmax", "naive_log", "naive_sigmoid", "naive_division"}
        ):
            add(
                "stable_numerics",
                "compute softmax/BCE/CE from logits and guard divisions",
                {"numerics.mode": "stable"},
            )
        if "unscaled_inputs" in ids:
            add("standardize_inputs", "standardize the inputs", {"data.preprocess": "standardize"})
        if spec.numerics.dtype == "float16":
            add("use_float32", "train in float32", {"numerics.dtype": "float32"})
        if c == "division_by_zero":
            add("add_eps", "use eps = 1e-8 in the optimizer's denominator", {"train.eps": 1e-8})
        if c == "saturation" or "poor_init" in ids:
            add_xavier()
        if c == "saturation":
            hidden = {
                f"model.layers.{i}.activation": "relu"
                for i, layer in enumerate(spec.model.layers[:-1])
                if layer.activation in ("sigmoid", "tanh")
            }
            hidden |= {k.replace("activation", "init"): "he" for k in hidden}
            add("use_relu", "use relu in the saturating hidden layers (He init)", hidden)
        if c == "bad_input" and outcome.first_nonfinite.phase == "data" and spec.data.nan_fraction:
            add(
                "remove_nan_inputs",
                "stop injecting NaN into the inputs",
                {"data.nan_fraction": 0.0},
            )
    for w in warnings:
        if w.id == "saturation":
            add_xavier()
        if w.id == "exploding_gradient":
            add(
                "lower_learning_rate",
                f"lower the learning rate below {fmt(lr)}",
                {"train.learning_rate": lr / 10},
            )
            add(
                "clip_gradients",
                "clip the global gradient norm at 1.0",
                {"train.clip_grad_norm": 1.0},
            )
        if w.id == "dead_relu":
            add(
                "use_leaky_relu",
                "use leaky_relu so units cannot die",
                {f"model.layers.{w.layer - 1}.activation": "leaky_relu"},
            )
            add(
                "lower_learning_rate",
                f"lower the learning rate below {fmt(lr)}",
                {"train.learning_rate": lr / 10},
            )
    return recs
