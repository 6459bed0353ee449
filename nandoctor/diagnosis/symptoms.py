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

from nandoctor.diagnosis.findings import Finding, fmt, fmt_projected_steps, warning
from nandoctor.diagnosis.measures import DTYPE_MAX, GROWTH_FACTOR, column_median, total_norm
from nandoctor.engine.nn import SATURATION_TOL, activation

if TYPE_CHECKING:
    from nandoctor.engine.runs import Outcome

SATURATED_WARN = 0.25  # share of a layer's units saturated (at some step) that warrants a warning
DEAD_WARN = 0.5  # share of a ReLU layer's units dead for the whole batch
VANISH_RATIO = 1e-4  # first layer's gradient norm below this times the last layer's
LOSS_MIN_STEPS = 20  # a loss trend needs at least this many steps
EXPLOSION_MIN_STEPS = 5  # a growth projection needs at least this many steps


@dataclass
class Observed:
    """The complete steps of a run: ``n`` of them, the history cut to them, the activations."""

    outcome: Outcome
    n: int
    history: dict[str, np.ndarray]  # name -> (n, layers)
    activations: list[str]

    @classmethod
    def of(cls, outcome: Outcome) -> Observed:
        # the failing step's history is incomplete: leave it out
        n = outcome.steps_run - (1 if outcome.first_nonfinite else 0)
        history = {k: v[:n] for k, v in (outcome.history or {}).items()}
        acts = [layer.activation for layer in outcome.spec.model.layers]
        return cls(outcome, n, history, acts)


Rule = Callable[[Observed], Iterator[Finding]]


def saturation(run: Observed) -> Iterator[Finding]:
    """A large share of a sigmoid/tanh/softmax layer's outputs pinned near their limits."""
    sat = run.history["saturated"]
    for i, act in enumerate(run.activations):
        col = sat[:, i]
        if not activation(act).saturates or np.nanmax(col) < SATURATED_WARN:
            continue
        k = int(np.nanargmax(col))
        yield warning(
            "saturation",
            f"layer {i + 1} ({act}): {fmt(100 * col[k])}% of outputs within "
            f"{SATURATION_TOL} of their limits at step {k + 1}"
            f" (step 1: {fmt(100 * col[0])}%, last: {fmt(100 * col[-1])}%)",
            layer=i + 1,
            step=k + 1,
        )


def dead_relu(run: Observed) -> Iterator[Finding]:
    """Over half of a ReLU layer's units output 0 for every sample at the end."""
    dead = run.history["dead"]
    for i, act in enumerate(run.activations):
        if activation(act).can_die and dead[-1, i] >= DEAD_WARN:
            first_dead = int(np.argmax(dead[:, i] >= DEAD_WARN)) + 1
            yield warning(
                "dead_relu",
                f"layer {i + 1}: {fmt(100 * dead[-1, i])}% of ReLU units output 0 for every "
                f"sample (over {fmt(100 * DEAD_WARN)}% since step {first_dead})",
                layer=i + 1,
                step=first_dead,
            )


def vanishing_gradient(run: Observed) -> Iterator[Finding]:
    """The first layer's gradient norm is orders of magnitude below the last layer's."""
    if len(run.activations) < 2:
        return
    med = column_median(run.history["grad_norm"])
    if med[-1] > 0 and med[0] < VANISH_RATIO * med[-1]:
        yield warning(
            "vanishing_gradient",
            f"layer 1's gradient norm (median {fmt(med[0])}) is "
            f"{fmt(med[-1] / max(med[0], 1e-300))}x smaller than layer "
            f"{len(run.activations)}'s ({fmt(med[-1])})",
            layer=1,
        )


def exploding_gradient(run: Observed) -> Iterator[Finding]:
    """The gradient norm grows step over step: when, at this rate, it would overflow."""
    g = run.history["grad_norm"]
    total = total_norm(g)
    n = len(total)
    if n < EXPLOSION_MIN_STEPS or not np.isfinite(total).all() or total[0] <= 0:
        return
    rise = total[-1] / total[0]
    if rise < GROWTH_FACTOR:
        return
    w = max(3, n // 5)
    slope = np.polyfit(np.arange(w), np.log(total[-w:]), 1)[0]  # log growth per step
    if slope <= 0.01:
        return
    layer = int(np.argmax(g[-1])) + 1
    dtype = run.outcome.spec.numerics.dtype
    steps_left = (math.log(DTYPE_MAX[dtype]) - math.log(total[-1])) / slope
    yield warning(
        "exploding_gradient",
        f"gradient norm grew x{fmt(rise)} over {n} steps (x{fmt(math.exp(slope))} per step "
        f"lately); at this rate layer {layer} overflows {dtype} in "
        f"{fmt_projected_steps(steps_left)}",
        layer=layer,
    )


def loss_not_decreasing(run: Observed) -> Iterator[Finding]:
    """The loss over the last tenth of the steps is no lower than over the first tenth."""
    if run.outcome.spec.loss == "random_gradient" or run.n < LOSS_MIN_STEPS:
        return
    loss = run.outcome.loss[: run.n]
    k = max(1, run.n // 10)
    start, end = float(np.mean(loss[:k])), float(np.mean(loss[-k:]))
    if np.isfinite(start) and np.isfinite(end) and end >= start * 0.99:
        yield warning(
            "loss_not_decreasing",
            f"mean loss over the first {k} steps {fmt(start)}, over the last {k} {fmt(end)}",
        )


WARNING_RULES: tuple[Rule, ...] = (
    saturation,
    dead_relu,
    vanishing_gradient,
    exploding_gradient,
    loss_not_decreasing,
)


def find_warnings(outcome: Outcome) -> list[Finding]:
    """Every warning every rule sees over the run's complete steps, in rule order."""
    run = Observed.of(outcome)
    if run.n < 1 or not run.history:
        return []
    return [found for rule in WARNING_RULES for found in rule(run)]
