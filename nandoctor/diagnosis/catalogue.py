"""Every finding id nandoctor can report, declared once: what it means, what it blames, what proves it.

Four kinds of id, each in its own table:

- a **cause** (``cause.id``): why a run first produced a NaN or an Inf;
- a **contributing factor** (``contributing[].id``): a setting that made the failure likelier;
- a **warning** (``warnings[].id``): something wrong that has not (yet) gone non-finite;
- a **recommendation** (``recommendations[].id``): a change to try, and the sentence its
  confirming experiment adds to the cause's evidence when it alone removes the failure.

A ``check:`` policy fails on ``nonfinite`` or on any warning id (:data:`FAIL_ON_IDS`); the check
reports add their own outcomes (:data:`CHECK_OUTCOMES`). ``check --list-causes``, the spec's
``check.fail_on`` values, the SARIF rules, the spec line a GitHub annotation points at, the
diagnosis and the verification all read these tables; no id is spelled out anywhere else as a
list.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One id: its meaning (a line for ``--list-causes`` and SARIF), the spec key an annotation
    points at (None: nothing in the spec to point at), and for findings about one layer, whether
    the annotation points at that layer's entry of ``model.layers`` instead."""

    meaning: str
    blames: str | None = None
    per_layer: bool = False
    # factors: the recommendation that changes the setting the factor blames; when its re-run
    # still goes non-finite, the experiment refutes the factor (verify drops it)
    tested_by: str | None = None


@dataclass(frozen=True)
class Remedy:
    """A recommendation id: what it changes and the sentence its confirming experiment prints;
    ``unless``: per other remedy, the sentence instead when that one was tried and failed (its
    failure refutes the mechanism ``confirms`` names)."""

    meaning: str
    confirms: str
    unless: dict[str, str] = field(default_factory=dict)

    def confirmed(self, failed: set[str]) -> str:
        """The sentence a confirming experiment prints, given the remedies that failed."""
        return next((text for rid, text in self.unless.items() if rid in failed), self.confirms)


CAUSES: dict[str, Entry] = {
    "exploding_gradient": Entry(
        "gradient norms grew step over step until values overflowed", "train.learning_rate"
    ),
    "saturation": Entry(
        "outputs pinned at exactly 0 or 1 met a log or a division", "model.layers", per_layer=True
    ),
    "overflow": Entry("a value left the dtype's range without a growth history", "numerics"),
    "bad_input": Entry("the data held NaN/Inf, or preprocessing produced it", "data"),
    "division_by_zero": Entry(
        "a division by an exact zero (e.g. Adam/RMSprop with eps 0, or a batch/layer norm over "
        "a zero-variance batch with norm_eps 0)",
        "train.eps",
    ),
    "domain_error": Entry("a log or square root of a negative number (nandoctor trace)"),
}

FACTORS: dict[str, Entry] = {
    "high_learning_rate": Entry(
        "updates moved the weights by over a tenth of their norm in one step",
        "train.learning_rate",
        tested_by="lower_learning_rate",
    ),
    "unscaled_inputs": Entry(
        "inputs far from unit scale with no preprocessing",
        "data.scale",
        tested_by="standardize_inputs",
    ),
    "high_weight_decay": Entry(
        "learning rate x weight_decay of 1 or more: each step multiplies the weights by "
        "1 - lr x weight_decay, which zeroes, flips or grows them",
        "train.weight_decay",
        tested_by="lower_weight_decay",
    ),
    "growing_schedule": Entry(
        "a step/exponential schedule with lr_gamma > 1 raised the learning rate until it failed",
        "train.lr_gamma",
        tested_by="decay_schedule",
    ),
    "unscaled_targets": Entry(
        "regression targets far from unit scale with no preprocessing",
        "data.target_preprocess",
        tested_by="standardize_targets",
    ),
    "naive_softmax": Entry(
        "numerics.mode naive: softmax without the max", "numerics.mode", tested_by="stable_numerics"
    ),
    "naive_log": Entry(
        "numerics.mode naive: log of a probability unclipped",
        "numerics.mode",
        tested_by="stable_numerics",
    ),
    "naive_sigmoid": Entry(
        "numerics.mode naive: 1 / (1 + exp(-z))", "numerics.mode", tested_by="stable_numerics"
    ),
    "naive_division": Entry(
        "numerics.mode naive: a division with no guard",
        "numerics.mode",
        tested_by="stable_numerics",
    ),
    "low_precision": Entry(
        "float16's narrow range and coarse epsilon", "numerics.dtype", tested_by="use_float32"
    ),
    "poor_init": Entry(
        "a squashing layer starts from N(0, 1) weights", "model.layers", tested_by="use_xavier_init"
    ),
    "zero_eps": Entry(
        "train.eps = 0 leaves Adam/RMSprop's denominator unguarded",
        "train.eps",
        tested_by="add_eps",
    ),
}
# The naive-numerics factors: a textbook formula with no guard. The one for each failing op
# (the sigmoid's exp in a forward pass is told apart by the diagnosis).
NAIVE_FACTORS = tuple(k for k in FACTORS if k.startswith("naive_"))
NAIVE_FACTOR_OF_OP = {"exp": "naive_softmax", "log": "naive_log", "divide": "naive_division"}

WARNINGS: dict[str, Entry] = {
    "saturation": Entry(
        "sigmoid/tanh/softmax outputs within 1e-3 of their limits for a large share of units",
        "model.layers",
        per_layer=True,
    ),
    "vanishing_gradient": Entry(
        "the first layer's gradient norm is orders of magnitude below the last layer's",
        "model.layers",
        per_layer=True,
    ),
    "dead_relu": Entry(
        "over half of a ReLU layer's units output 0 for every sample of the batch (dead from "
        "step 1, before any update: the layer's initial bias or weights are blamed instead)",
        "train.learning_rate",
    ),
    "exploding_gradient": Entry(
        "the gradient norm grows step over step (not yet overflowed), with a projection, or "
        "jumps by orders of magnitude and recovers",
        "train.learning_rate",
    ),
    "loss_not_decreasing": Entry(
        "the median loss at the end is no lower than at the start beyond its noise (and, within "
        "it, the loss over the training set did not fall), or is over 1000 times step 1's loss "
        "(diverging)",
        "train.learning_rate",
    ),
    "zero_gradient": Entry(
        "a layer's gradient is exactly 0 at every step of a stretch: its parameters never move",
        "model.layers",
        per_layer=True,
    ),
    "oscillating_loss": Entry(
        "the loss alternates up and down with a growing swing (a step size at the edge of "
        "stability)",
        "train.learning_rate",
    ),
    "skipped_steps": Entry(
        "loss scaling skipped many steps for inf/NaN gradients, or its scale collapsed below 1",
        "numerics.loss_scale",
    ),
    "exploding_activations": Entry(
        "max |z| multiplies layer after layer at the first step: the initial weights amplify "
        "each layer's output (N(0, 1) weights where He or Xavier scaling keeps it ~1)",
        "model.layers",
        per_layer=True,
    ),
}
# Warnings that belong to the story of a failure rather than beside it: a run that went
# non-finite reports them through its cause, not as warnings.
PART_OF_A_FAILURE = ("loss_not_decreasing", "exploding_gradient")

RECOMMENDATIONS: dict[str, Remedy] = {
    "lower_learning_rate": Remedy(
        "a lower learning rate (the largest finite one found by halving)",
        "a lower learning rate alone removes it: the step size drives the failure",
    ),
    "clip_gradients": Remedy(
        "clip the global gradient norm at 1.0",
        "clipping the gradient norm alone removes it: the gradient explosion is the mechanism",
    ),
    "stable_numerics": Remedy(
        "compute softmax/BCE/CE from logits and guard divisions",
        "stable numerics alone remove it: the naive formula is the mechanism",
    ),
    "standardize_inputs": Remedy(
        "standardize the inputs",
        "standardized inputs alone remove it: the input scale is the mechanism",
    ),
    "use_float32": Remedy("train in float32", "float32 alone removes it: a float16 range problem"),
    "add_eps": Remedy(
        "use eps = 1e-8 in the optimizer's denominator",
        "a non-zero eps alone removes it: the unguarded division is the mechanism",
    ),
    "use_xavier_init": Remedy(
        "initialise the N(0, 1) squashing layers with Xavier scaling",
        "Xavier init alone removes it: the initial weight scale is the mechanism",
    ),
    "use_he_init": Remedy(
        "initialise the amplifying layers with He (relu family) or Xavier (squashing) scaling, "
        "at init_scale 1",
        "scaled init alone removes it: the initial weights' scale is the mechanism",
    ),
    "use_relu": Remedy(
        "use relu in the saturating hidden layers (He init)",
        "relu hidden layers alone remove it: the saturating activations are the mechanism",
    ),
    "use_leaky_relu": Remedy(
        "use leaky_relu so units cannot die",
        "leaky_relu alone removes it: units that stopped passing gradient are the mechanism",
    ),
    "add_norm_eps": Remedy(
        "use norm_eps = 1e-5 (torch's default) in the failing norm and every norm whose eps is 0",
        "a non-zero norm_eps alone removes it: the norm's unguarded division is the mechanism",
    ),
    "decay_schedule": Remedy(
        "let the schedule decay the rate (lr_gamma 0.1, torch's StepLR default) instead of "
        "raising it",
        "a decaying schedule alone removes it: the rate the schedule grew is the mechanism",
    ),
    "lower_weight_decay": Remedy(
        "use weight_decay = 0.01 (torch AdamW's default)",
        "a smaller weight decay alone removes it: the decay multiplying the weights by "
        "1 - lr x weight_decay each step is the mechanism",
    ),
    "standardize_targets": Remedy(
        "standardize the regression targets (data.target_preprocess: standardize)",
        "standardized targets alone remove it: the targets' scale, which the loss and its "
        "gradient grow with, is the mechanism",
    ),
    "drop_missing_rows": Remedy(
        "drop the rows holding a non-finite input or target (data.missing: drop_rows)",
        "dropping the rows with missing values removes it: the data are the cause",
    ),
    "use_mixed_precision": Remedy(
        "keep float32 master weights and scale the loss dynamically (torch.amp's recipe)",
        "float32 master weights with dynamic loss scaling remove it: float16's range is the "
        "mechanism, and the float16 forward pass can stay",
        unless={
            "use_float32": "float32 master weights with dynamic loss scaling keep it finite, yet "
            "float32 alone does not remove it: the scaler skips the steps whose gradients "
            "overflow, so float16's range is not the mechanism"
        },
    ),
    "use_batch_norm": Remedy(
        "batch-normalize the saturating hidden layers",
        "batch norm alone removes it: the drift of the pre-activations into saturation is the "
        "mechanism",
    ),
    "use_adamw": Remedy(
        "AdamW (per-parameter step sizes, decoupled weight decay) at a rate of at most 1e-3",
        "AdamW alone removes it: the raw gradient's size driving the step is the mechanism",
    ),
    "larger_batch": Remedy(
        "train on batches of more than one row: batch norm over one row has variance exactly 0 "
        "and outputs beta whatever the input",
        "batches of more than one row alone remove it: batch norm over a single row, whose "
        "variance is exactly 0, is the mechanism",
    ),
    "reset_init": Remedy(
        "start the layer whose ReLUs were dead before any update from bias 0 and its default "
        "init, so its units start alive",
        "a fresh init alone removes it: the initial weights and bias killed the units",
    ),
    "remove_nan_inputs": Remedy(
        "stop injecting NaN into the inputs",
        "removing the NaN inputs removes it: the data are the cause",
    ),
}

# Ids a check: policy (or --fail-on) may list, in the order they are documented.
NONFINITE = "nonfinite"
FAIL_ON_IDS: tuple[str, ...] = (NONFINITE, *WARNINGS)
# What else a check can report about a spec, beside the policy ids (each a SARIF rule).
CHECK_OUTCOMES: dict[str, Entry] = {
    NONFINITE: Entry("a NaN or Inf appeared during training"),
    "invalid": Entry("the spec or its data is invalid"),
    "error": Entry("nandoctor itself failed on the spec"),
    "max_final_loss": Entry("final loss above check.max_final_loss", "check.max_final_loss"),
}


def blamed_key(entry: Entry, layer: int | None) -> str | None:
    """The spec key an annotation about a finding of ``entry`` points at: for a per-layer id
    with a known (1-based) ``layer``, that layer's entry of ``model.layers``."""
    if entry.per_layer and layer:
        return f"model.layers.{layer - 1}"
    return entry.blames
