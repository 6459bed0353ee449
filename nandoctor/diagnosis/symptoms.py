"""What was wrong with a run even where it stayed finite: warning rules, every one tried, in order.

Each rule reads the :class:`Observed` steps -- the per-step, per-layer history up to the last
complete step -- and yields the warnings it sees, each with the numbers that show it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.diagnosis import networks
from nandoctor.diagnosis.findings import Finding, fmt, fmt_projected_steps, warning
from nandoctor.diagnosis.measures import (
    DTYPE_MAX,
    GROWTH_FACTOR,
    column_median,
    history_offset,
    median,
    run_loss_trend,
    saturated_what,
    total_norm,
    whole_data_loss,
)
from nandoctor.engine.nn import activation

if TYPE_CHECKING:
    from nandoctor.engine.runs import Outcome

SATURATED_WARN = 0.25  # share of a layer's units saturated (at some step) that warrants a warning
# an output layer saturated while the loss fell to at most this share of where it started is
# confident, not stalled (a note, not a warning)
CONFIDENT_FELL = 0.5
DEAD_WARN = 0.5  # share of a ReLU layer's units dead for the whole batch
VANISH_RATIO = 1e-4  # first layer's gradient norm below this times the last layer's
EXPLOSION_MIN_STEPS = 5  # a growth projection needs at least this many steps
SPIKE_FACTOR = 1e3  # a gradient norm this many times its median before is an explosion
ZERO_GRADIENT_STEPS = 10  # consecutive steps of exactly zero gradient that warrant a warning
AMPLIFY = 4.0  # max |z| multiplied by at least this from one layer to the next ...
AMPLIFY_LAYERS = 3  # ... at this many consecutive layers or more ...
AMPLIFY_TOTAL = 1e3  # ... and by this much in all, at the first step: exploding activations


@dataclass
class Observed:
    """The complete steps of a run: ``n`` of them, the history cut to them, the activations.

    A long run keeps only a window of its history: row ``k`` is step ``k + 1 + offset``.
    """

    outcome: Outcome
    n: int
    offset: int
    history: dict[str, np.ndarray]  # name -> (n, layers)
    activations: list[str]

    @classmethod
    def of(cls, outcome: Outcome) -> Observed:
        # the failing step's history is incomplete: leave it out
        off = history_offset(outcome)
        n = outcome.steps_run - (1 if outcome.first_nonfinite else 0) - off
        history = {k: v[:n] for k, v in (outcome.history or {}).items()}
        acts = [layer.activation for layer in outcome.spec.model.layers]
        return cls(outcome, n, off, history, acts)

    def step(self, row: int) -> int:
        """The training step of history row ``row``."""
        return row + 1 + self.offset


Rule = Callable[[Observed], Iterator[Finding]]


def saturation(run: Observed) -> Iterator[Finding]:
    """A large share of a sigmoid/tanh/softmax layer's outputs pinned near their limits. The
    output layer of a finite run whose loss fell a lot is confident, not stalled: a note
    (:func:`confident_output`), not a warning."""
    sat = run.history["saturated"]
    confident = confident_output(run) is not None
    for i, act in enumerate(run.activations):
        col = sat[:, i]
        if not activation(act).saturates or np.nanmax(col) < SATURATED_WARN:
            continue
        if confident and i == len(run.activations) - 1:
            continue
        k = int(np.nanargmax(col))
        yield warning(
            "saturation",
            f"{_saturated_share(run, i)}",
            layer=i + 1,
            step=run.step(k),
        )


def _saturated_share(run: Observed, i: int) -> str:
    """``layer 2 (sigmoid): 97% of outputs within 1e-3 of their limits at step 180 (step 1:
    0%, last: 95%)``: where layer ``i`` (from 0) was most saturated."""
    col, act = run.history["saturated"][:, i], run.activations[i]
    k = int(np.nanargmax(col))
    return (
        f"layer {i + 1} ({act}): {fmt(100 * col[k])}% of {saturated_what(act)} at step "
        f"{run.step(k)} (step {run.step(0)}: {fmt(100 * col[0])}%, last: {fmt(100 * col[-1])}%)"
    )


def confident_output(run: Observed) -> str | None:
    """A sentence when the output layer of a finite run saturated while the loss fell to at most
    ``CONFIDENT_FELL`` of where it started: confident outputs (a classifier that learned its
    labels), not saturation that stalls learning. None otherwise."""
    i = len(run.activations) - 1
    sat = run.history.get("saturated")
    if (
        run.outcome.first_nonfinite is not None
        or sat is None
        or not len(sat)
        or not activation(run.activations[i]).saturates
        or not np.nanmax(sat[:, i]) >= SATURATED_WARN
    ):
        return None
    trend = run_loss_trend(run.outcome, run.n)
    if trend is None or not trend.fell or not trend.end <= CONFIDENT_FELL * trend.origin:
        return None
    return (
        f"{_saturated_share(run, i)}, while the loss fell from {fmt(trend.origin)} to "
        f"{fmt(trend.end)} (median of the last {trend.last_window or trend.window} steps): a "
        "confident output layer on a falling loss, not a stall"
    )


def dead_relu(run: Observed) -> Iterator[Finding]:
    """Over half of a ReLU layer's units output 0 for every sample at the end. Dead from the
    first step of the run, before any update, the initial weights and bias killed them (no
    learning rate did): the finding blames that layer's init. Behind a batch norm over one row
    they are dead because the norm outputs beta (0 at the start) whatever the input."""
    dead = run.history["dead"]
    for i, act in enumerate(run.activations):
        if activation(act).can_die and dead[-1, i] >= DEAD_WARN:
            first_dead = run.step(int(np.argmax(dead[:, i] >= DEAD_WARN)))
            said = (
                f"layer {i + 1}: {fmt(100 * dead[-1, i])}% of ReLU units output 0 for every "
                f"sample (over {fmt(100 * DEAD_WARN)}% since step {first_dead})"
            )
            blames = None
            frozen = _frozen_by_batch_norm(run, i + 1)
            if frozen:
                said += f": {frozen}, and relu(beta) is 0 for beta <= 0"
            elif first_dead == 1:
                key, what = init_key(run.outcome.spec, i)
                blames = key
                said += (
                    f": dead at step 1, before any update, so the initial weights and bias "
                    f"({what}) killed them, not the learning rate"
                )
            yield warning("dead_relu", said, layer=i + 1, step=first_dead, blames=blames)


def init_key(spec, index: int) -> tuple[str, str]:
    """The spec key that set layer ``index``'s (from 0) initial weights or bias, and its value in
    words: its bias, else its init, else its init_scale, whichever differs from the default;
    else the layer's entry (its default init)."""
    layer = spec.model.layers[index]
    at = f"model.layers.{index}"
    if layer.use_bias and layer.bias != 0:
        return f"{at}.bias", f"bias {fmt(layer.bias)}"
    default = activation(layer.activation).default_init
    if layer.init != default:
        return f"{at}.init", f"init {layer.init}"
    if layer.init_scale != 1:
        return f"{at}.init_scale", f"init_scale {fmt(layer.init_scale)}"
    return at, f"init {layer.init}"


def _frozen_by_batch_norm(run: Observed, layer: int) -> str | None:
    """The batch-norm mechanism of :func:`networks.constant_batch_norm`, when the run's numbers
    show it: ``layer``'s gradient exactly 0 at every step."""
    g = run.history["grad_norm"][:, layer - 1]
    if not len(g) or (g != 0).any():
        return None
    return networks.constant_batch_norm(run.outcome, layer)


def vanishing_gradient(run: Observed) -> Iterator[Finding]:
    """The first layer's gradient norm is orders of magnitude below the last layer's."""
    if len(run.activations) < 2:
        return
    med = column_median(run.history["grad_norm"])
    if med[-1] > 0 and med[0] < VANISH_RATIO * med[-1]:
        yield warning(
            "vanishing_gradient",
            _vanishing_summary(med[0], med[-1], len(run.activations)),
            layer=1,
        )


def exploding_gradient(run: Observed) -> Iterator[Finding]:
    """The gradient norm grows step over step (when, at this rate, it would overflow), or it
    jumped by orders of magnitude and the run recovered: both are explosions."""
    g = run.history["grad_norm"]
    total = total_norm(g)
    found = _growth_projection(run, g, total) or _transient_spike(run, g, total)
    if found is not None:
        yield found


def _growth_projection(run: Observed, g: np.ndarray, total: np.ndarray) -> Finding | None:
    n = len(total)
    if n < EXPLOSION_MIN_STEPS or not np.isfinite(total).all() or total[0] <= 0:
        return None
    rise = total[-1] / total[0]
    if rise < GROWTH_FACTOR:
        return None
    w = max(3, n // 5)
    slope = np.polyfit(np.arange(w), np.log(total[-w:]), 1)[0]  # log growth per step
    if slope <= 0.01:
        return None
    layer = int(np.argmax(g[-1])) + 1
    dtype = run.outcome.spec.numerics.dtype
    steps_left = (math.log(DTYPE_MAX[dtype]) - math.log(total[-1])) / slope
    return warning(
        "exploding_gradient",
        f"gradient norm grew x{fmt(rise)} over {n} steps (x{fmt(math.exp(slope))} per step "
        f"lately); at this rate layer {layer} overflows {dtype} in "
        f"{fmt_projected_steps(steps_left)}",
        layer=layer,
    )


def _transient_spike(run: Observed, g: np.ndarray, total: np.ndarray) -> Finding | None:
    """The largest gradient norm, against the median of the steps before it."""
    if len(total) < 2 or not np.isfinite(total).all():
        return None
    peak = int(np.argmax(total))
    if peak == 0:
        return None
    before = median(total[:peak])
    if not before > 0 or total[peak] < SPIKE_FACTOR * before:
        return None
    layer = int(np.argmax(g[peak])) + 1
    loss = run.outcome.loss
    return warning(
        "exploding_gradient",
        f"gradient norm jumped to {fmt(total[peak])} at step {run.step(peak)}, "
        f"x{fmt(total[peak] / before)} its median of {fmt(before)} before (loss {fmt(loss[peak])}"
        f"), largest in layer {layer}; by step {run.step(len(total) - 1)} it was {fmt(total[-1])}",
        layer=layer,
        step=run.step(peak),
    )


DIVERGING = "diverging: "  # how a loss_not_decreasing warning of a diverging loss begins


def diverging_loss(warnings: list[Finding]) -> Finding | None:
    """The ``loss_not_decreasing`` warning that says the loss diverged, if one is there."""
    return next(
        (w for w in warnings if w.id == "loss_not_decreasing" and w.summary.startswith(DIVERGING)),
        None,
    )


def loss_not_decreasing(run: Observed) -> Iterator[Finding]:
    """The loss over the last tenth of the steps is no lower than over the first tenth, judged
    by medians (``measures.loss_trend``): one huge spike cannot move either end, and a fall
    smaller than the windows' step-to-step noise is no fall. Where they differ only within that
    noise, either way, the loss over the training set at a finite run's first and last weights
    (``measures.whole_data_loss``) decides. A loss that
    ended orders of magnitude above where it started (step 1's loss, or the first tenth's
    median) is diverging, whatever it did between."""
    if run.outcome.spec.loss.name == "random_gradient":
        return
    trend = run_loss_trend(run.outcome, run.n)
    if trend is None or trend.fell:
        return
    if trend.diverged:  # a jump at step 2 can lift the whole first tenth: judged from step 1
        yield warning("loss_not_decreasing", f"{DIVERGING}{trend.divergence()}")
        return
    # windows that differ only within their noise (one-row batches): the training set decides
    whole = whole_data_loss(run.outcome) if trend.noisy else None
    if whole is not None and whole.fell:
        return
    noise = trend.noise
    yield warning(
        "loss_not_decreasing",
        str(trend)
        + (
            f" (a change within its step-to-step noise, ±{fmt(noise)})"
            if trend.end < trend.start or trend.noisy
            else ""
        )
        + (f"; {whole}" if whole is not None else ""),
    )


def zero_gradient(run: Observed) -> Iterator[Finding]:
    """A layer whose gradient was exactly zero at every step of a stretch: it never moved."""
    g = run.history["grad_norm"]
    for i in range(g.shape[1]):
        row, length = _longest_zero_stretch(g[:, i])
        if length and length >= min(ZERO_GRADIENT_STEPS, run.n):
            first, last = run.step(row), run.step(row + length - 1)
            frozen = _frozen_by_batch_norm(run, i + 1)
            yield warning(
                "zero_gradient",
                f"layer {i + 1} ({run.activations[i]}): weight and bias gradients exactly 0 at "
                f"every step from {first} to {last} ({length} of {run.n} steps); its parameters "
                "did not move" + (f": {frozen}" if frozen else ""),
                layer=i + 1,
                step=first,
            )


def _longest_zero_stretch(column: np.ndarray) -> tuple[int, int]:
    """(first row, length) of the longest run of exact zeros in ``column`` (0, 0 if none)."""
    return _longest_run(column == 0)


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(first index, length) of the longest run of True in ``mask`` (the first such; 0, 0 if
    none)."""
    zero = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    if not len(edges):
        return 0, 0
    starts, ends = edges[0::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int(starts[longest]), int(ends[longest] - starts[longest])


def oscillating_loss(run: Observed) -> Iterator[Finding]:
    """The loss alternates up and down with a growing swing."""
    found = networks.oscillating_loss(run.outcome.loss[: run.n])
    if found is not None:
        yield found


def exploding_activations(run: Observed) -> Iterator[Finding]:
    """At the first step, before any update, max |z| multiplies from layer to layer: the
    initial weights amplify what each layer passes on (N(0, 1) weights over a fan-in of 128
    multiply a ReLU layer's output by about 8)."""
    every = (run.outcome.history or {}).get("max_abs_z")
    if every is None or not len(every):
        return
    # the first step's forward pass, even when that step failed later (in its backward pass or
    # update) or in a deeper layer: the layers before the first non-finite z
    z = every[0]
    bad = np.flatnonzero(~np.isfinite(z) | (z <= 0))
    z = z[: bad[0]] if len(bad) else z
    if len(z) <= AMPLIFY_LAYERS:
        return
    start, length = _longest_run(z[1:] >= AMPLIFY * z[:-1])  # the longest stretch of growth
    end = start + length
    if length < AMPLIFY_LAYERS or z[end] < AMPLIFY_TOTAL * z[start]:
        return
    per = (z[end] / z[start]) ** (1 / length)
    yield warning(
        "exploding_activations",
        f"at step {run.step(0)} max |z| grows x{fmt(per)} per layer from layer {start + 1} "
        f"({fmt(z[start])}) to layer {end + 1} ({fmt(z[end])}): the initial weights amplify "
        "each layer's output",
        layer=end + 1,
        step=run.step(0),
    )


def skipped_steps(run: Observed) -> Iterator[Finding]:
    """Dynamic loss scaling skipped many steps, or its scale collapsed."""
    found = networks.skipped_steps(run.outcome, run.n)
    if found is not None:
        yield found


WARNING_RULES: tuple[Rule, ...] = (
    saturation,
    dead_relu,
    vanishing_gradient,
    zero_gradient,
    exploding_gradient,
    exploding_activations,
    oscillating_loss,
    skipped_steps,
    loss_not_decreasing,
)


def find_warnings(outcome: Outcome) -> list[Finding]:
    """Every warning every rule sees over the run's complete steps, in rule order. A run that
    failed at its first step has none complete, but its forward pass may still show
    exploding activations."""
    run = Observed.of(outcome)
    if not outcome.history:
        return []
    if run.n < 1:
        return list(exploding_activations(run))
    return [found for rule in WARNING_RULES for found in rule(run)]


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
