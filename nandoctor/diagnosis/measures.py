"""Numbers the diagnosis rules share: dtype limits, the whole-network gradient norm, growth.

Each threshold is a statement about numbers rather than about a spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.diagnosis.findings import fmt
from nandoctor.engine.nn import SATURATION_TOL, SOFTMAX_PINNED
from nandoctor.engine.optim import combine, norm

if TYPE_CHECKING:
    from nandoctor.engine.runs import Outcome

GROWTH_MIN_STEPS = 2  # complete steps (one update between them) growth can be seen over
GROWTH_FACTOR = 100.0  # gradient norm rise over those steps that counts as explosive growth
RISING_STEPS = 3  # the norm must rise step over step across the last this many steps
LOSS_MIN_STEPS = 20  # a loss trend needs at least this many steps
LOSS_WINDOW = 0.1  # the first and last tenth of the steps are compared, by their medians
LOSS_FELL = 0.99  # a loss that ends above this fraction of where it started did not fall
NOISE_Z = 2.0  # ... nor one whose fall is within this many standard errors of the medians
MAD_TO_STD = 1.4826  # median absolute deviation -> standard deviation, for normal noise
MEDIAN_SE = 1.2533  # standard error of a median / that of a mean (sqrt(pi / 2))
# A loss whose last tenth's median ends this many times above where it started -- the smaller of
# step 1's loss and the first tenth's median -- is diverging: heading for overflow, not learning
# too slowly. Step 1's loss counts because one huge update at step 2 can lift the whole first
# tenth (a loss of 6e10 at step 1, 1.6e23 at step 2, 5.8e17 after: it never came back down).
DIVERGE_FACTOR = 1e3
# a loss whose last tenth ends this far below step 1's loss fell, even when it had already
# fallen within its first tenth (a run that converges fast: first and last tenth alike)
FAST_FELL = 0.1

# z beyond which 1 / (1 + exp(-z)) rounds to exactly 1 (measured per dtype).
SIGMOID_EXACT_ONE = {"float64": 36.74, "float32": 16.64, "float16": 7.63}
DTYPE_MAX = {"float64": np.finfo(np.float64).max, "float32": 3.4e38, "float16": 65504.0}


def held_as_zero(value: float, dtype: str) -> bool:
    """``value`` is 0 once ``dtype`` holds it (0 itself, or norm_eps 1e-12 in float16)."""
    return float(np.asarray(value, dtype)) == 0


def history_offset(outcome: Outcome) -> int:
    """Steps before the first row of the history (0 unless the run outgrew its window)."""
    return outcome.history_start - 1


def total_norm(g: np.ndarray) -> np.ndarray:
    """Whole-network gradient norm per step from per-layer norms ``g: (steps, layers)``."""
    return combine(list(g.T))


def median(values: np.ndarray) -> float:
    """The median of ``values`` (NaN if one is NaN), as ``np.median`` gives it but without its
    first call importing ``numpy.ma`` (20 ms of start-up, for one number)."""
    s = np.sort(np.ravel(values))
    n = len(s)
    if not n or np.isnan(s[-1]):  # a sort puts NaN last
        return math.nan
    with np.errstate(invalid="ignore"):  # -inf and inf in the middle: NaN, without a warning
        return float((s[(n - 1) // 2] + s[n // 2]) / 2)


@dataclass(frozen=True)
class LossTrend:
    """The median loss over the first and the last ``window`` steps, and the noise a change
    between them must exceed (``NOISE_Z`` standard errors of the two medians)."""

    start: float
    end: float
    window: int
    noise: float
    initial: float = math.nan  # the loss of step 1, before any update
    # a run longer than the history's window: its first tenth is read from the run's summary,
    # one value (the last loss) per ``every`` steps, and its last from ``last_window`` steps
    every: int = 1
    last_window: int = 0

    @property
    def origin(self) -> float:
        """Where the loss started: the smaller of step 1's loss and the first window's median."""
        return min(self.start, self.initial) if math.isfinite(self.initial) else self.start

    @property
    def diverged(self) -> bool:
        """Ended ``DIVERGE_FACTOR`` times or more above where it started (:attr:`origin`)."""
        return self.origin > 0 and self.end > DIVERGE_FACTOR * self.origin

    @property
    def fell_fast(self) -> bool:
        """Ended an order of magnitude (``FAST_FELL``) below step 1's loss: it learned, however
        alike its first and last tenth are (it converged within the first)."""
        return (
            math.isfinite(self.initial)
            and self.initial > 0
            and self.end < FAST_FELL * self.initial
            and not self.diverged
        )

    @property
    def fell(self) -> bool:
        """Fell by more than the noise (and did not end orders of magnitude above step 1), or
        fast (:attr:`fell_fast`)."""
        return self.fell_fast or (
            self.end < self.start * LOSS_FELL
            and self.start - self.end > self.noise
            and not self.diverged
        )

    @property
    def flat(self) -> bool:
        """Did not fall at all (ended within 1% of where it started, or above, or diverged)."""
        return not self.fell_fast and (self.end >= self.start * LOSS_FELL or self.diverged)

    @property
    def noisy(self) -> bool:
        """The two windows differ, either way, by no more than their noise, and neither a fast
        fall nor a divergence settles it: the windows cannot tell whether it learned (a fall
        within the noise, or a rise within it, e.g. one-row batches)."""
        return not self.fell and not self.diverged and abs(self.end - self.start) <= self.noise

    @property
    def learned(self) -> bool | None:
        """True: fell beyond the noise; False: did not fall at all; None: a fall within noise."""
        return True if self.fell else False if self.flat else None

    def __str__(self) -> str:
        k, last = self.window, self.last_window or self.window
        sampled = f" (one value per {self.every} steps)" if self.every > 1 else ""
        said = (
            f"median loss over the first {k} steps {fmt(self.start)}{sampled}, over the last "
            f"{last} {fmt(self.end)}"
        )
        if self.fell_fast and not self.end < self.start * LOSS_FELL:
            said = f"loss {fmt(self.initial)} at step 1; {said}: it fell within the first {k}"
        return said

    def divergence(self) -> str:
        """The numbers that make it diverging: 'the loss grew from A to B (xC)'."""
        where = (
            "at step 1"
            if self.origin < self.start
            else f"(median of the first {self.window} steps)"
        )
        return (
            f"the loss grew from {fmt(self.origin)} {where} to {fmt(self.end)} (median of the "
            f"last {self.last_window or self.window}; x{fmt(self.end / self.origin)}, over "
            f"x{fmt(DIVERGE_FACTOR)})"
        )


def loss_trend(loss: np.ndarray) -> LossTrend | None:
    """Did ``loss`` (one value per step, from step 1) fall? Judged by medians, so one huge spike
    cannot move either end, and a fall smaller than the windows' step-to-step noise is no fall.
    None for fewer than ``LOSS_MIN_STEPS`` steps or a non-finite end."""
    n = len(loss)
    if n < LOSS_MIN_STEPS:
        return None
    k = max(1, int(n * LOSS_WINDOW))
    return _trend(loss[:k], loss[-k:], k, float(loss[0]))


def run_loss_trend(outcome, kept: int | None = None) -> LossTrend | None:
    """:func:`loss_trend` of a run, over its first ``kept`` rows of history (default all). A run
    longer than the history's window keeps full-resolution losses for its last steps only: its
    first tenth is then read from the run's summary (the last loss of each bucket wholly inside
    it), never from the window's first rows, which are late steps."""
    loss = outcome.loss if kept is None else outcome.loss[:kept]
    start = outcome.history_start
    summary = outcome.summary
    if start <= 1 or not summary or "loss_last" not in summary:
        return loss_trend(loss)
    n = start - 1 + len(loss)  # the steps the run had reached
    k = max(1, int(n * LOSS_WINDOW))
    steps = summary["step"]
    every = int(steps[1] - steps[0]) if len(steps) > 1 else 1
    first = summary["loss_last"][steps + every - 1 <= k]
    if len(first) < 3 or len(loss) < LOSS_MIN_STEPS:
        return None  # too coarse to say
    last = loss[-min(k, len(loss)) :]
    return _trend(first, last, k, outcome.loss_initial, every, len(last))


def _trend(first, last, k: int, initial: float, every: int = 1, last_window: int = 0):
    start, end = median(first), median(last)
    if not (np.isfinite(start) and np.isfinite(end)):
        return None
    noise = NOISE_Z * math.hypot(_median_error(first), _median_error(last))
    return LossTrend(start, end, k, noise, float(initial), every, last_window)


def _median_error(window: np.ndarray) -> float:
    """Standard error of a window's median, from its median absolute deviation (robust)."""
    mad = median(np.abs(window - median(window)))
    return MEDIAN_SE * MAD_TO_STD * mad / math.sqrt(len(window))


@dataclass(frozen=True)
class WholeDataLoss:
    """The loss over the training set (``engine.evaluate``: all its rows, or ``rows`` of
    ``samples``) at the weights a run started and ended with. It decides what mini-batch losses
    too noisy to compare cannot (one-row batches): it fell when it ended more than 1% below
    where it started (``LOSS_FELL``, the mini-batch windows' own margin) and by more than
    ``noise``: ``NOISE_Z`` standard errors of the rows' own changes (each row's loss at the last
    weights minus at the first, paired), so a fall that a few rows carry while the rest stayed
    put is no fall (one input row of 1e4 whose loss fell 13% moved the mean as much)."""

    start: float
    end: float
    rows: int
    samples: int
    noise: float = 0.0

    @property
    def fell(self) -> bool:
        # NaN at either end, or in the noise (a row's loss overflowed): no fall
        return bool(self.end < LOSS_FELL * self.start and self.start - self.end > self.noise)

    def __str__(self) -> str:
        of = (
            f"all {self.samples} rows"
            if self.rows >= self.samples
            else f"{self.rows} of its {self.samples} rows"
        )
        return (
            f"whole-data loss {fmt(self.start)} -> {fmt(self.end)} ({of}, at the weights it "
            f"started and ended with; noise over its rows ±{fmt(self.noise)})"
        )


def whole_data_loss(outcome: Outcome) -> WholeDataLoss | None:
    """:class:`WholeDataLoss` of a finite run from step 1 (a replay started elsewhere; a run
    that went non-finite has no final weights); None for a loss with no data to fit."""
    if outcome.final_params is None or outcome.resumed:
        return None
    if outcome.spec.loss.name == "random_gradient":
        return None
    from nandoctor.engine.evaluate import data_losses, evaluated_count

    prepared, spec = outcome.prepared, outcome.spec
    start, before = data_losses(prepared, spec, prepared.init_params)
    end, after = data_losses(prepared, spec, outcome.final_params)
    n = len(prepared.x)
    return WholeDataLoss(start, end, evaluated_count(n), n, _paired_noise(before, after, spec))


def _paired_noise(before: np.ndarray, after: np.ndarray, spec) -> float:
    """``NOISE_Z`` standard errors of the whole-data loss's change, from each row's change:
    of their mean (mean reduction) or their sum (sum). NaN when a row's loss is not finite
    or there are fewer than two rows."""
    d = after - before
    k = len(d)
    if k < 2 or not np.isfinite(d).all():
        return math.nan
    with np.errstate(all="ignore"):
        se = float(np.std(d, ddof=1)) / math.sqrt(k)
    return NOISE_Z * se * (k if spec.loss.reduction == "sum" else 1)


def column_median(g: np.ndarray) -> np.ndarray:
    """Column medians of ``g: (steps, layers)`` ignoring NaN, NaN for a column of NaN only (as
    ``np.nanmedian``, which is slow on small data and imports ``numpy.ma``)."""
    if not len(g):
        return np.full(g.shape[1:], np.nan)
    s = np.sort(g, axis=0)  # NaN sort last
    counts = len(s) - np.isnan(s).sum(axis=0)
    cols = np.arange(s.shape[1])
    lo, hi = np.maximum(counts - 1, 0) // 2, counts // 2
    with np.errstate(invalid="ignore"):
        out = (s[lo, cols] + s[hi, cols]) / 2
    return np.where(counts > 0, out, np.nan)


def growth(outcome: Outcome) -> list[str]:
    """Evidence lines when the gradient norm grew step over step up to the failure, else [].

    Update-driven growth needs two steps with an update between them: a short, violent explosion
    (x1e7 in one update, then an overflow) is growth as much as a slow climb over hundreds of
    steps is. The failing step counts when its own gradient is still finite (the loss overflowed,
    the backward pass did not) and came from a finished forward pass: a forward pass that went
    non-finite leaves a gradient row computed from inf (ReLU turns -inf into 0), which can look
    finite and small but measures nothing.
    """
    first = outcome.first_nonfinite
    g = outcome.history.get("grad_norm") if outcome.history else None
    if g is None or first is None or first.step is None:
        return []
    off = history_offset(outcome)
    rows = first.step - 1 - off  # steps whose history is complete
    if first.phase != "forward" and 0 <= rows < len(g) and np.isfinite(g[rows]).all():
        rows += 1
    if rows < GROWTH_MIN_STEPS:
        return []
    g = g[:rows]
    total = total_norm(g)
    if not (np.isfinite(total).all() and total[0] > 0):
        return []
    rise = total[-1] / total[0]
    recent = total[-RISING_STEPS:]
    rising = bool(np.all(np.diff(recent) > 0))
    if rise < GROWTH_FACTOR or not rising:
        return []
    last = off + rows
    layer = int(np.argmax(g[-1])) + 1
    per_step = rise ** (1 / max(rows - 1, 1))
    lines = [
        f"gradient norm rose from {fmt(total[0])} at step {off + 1} to {fmt(total[-1])} "
        f"at step {last} (x{fmt(rise)}, about x{fmt(per_step)} per step)",
        f"layer {layer} carried the largest gradient: {fmt(g[-1, layer - 1])} at step {last}",
    ]
    # a row's weight norm is after that step's update: the failing step ran with the weights of
    # the step before it (its own update, from its huge gradient, came after the failing op)
    used = first.step - 1 - off
    w = outcome.history["weight_norm"][: max(used, 0)]
    steps = off + 1 + np.flatnonzero(np.isfinite(w).all(axis=1))
    w = w[np.isfinite(w).all(axis=1)]
    if len(w) >= 2:
        lines.append(
            f"weight norms went from {', '.join(fmt(v) for v in w[0])} after step {steps[0]} to "
            f"{', '.join(fmt(v) for v in w[-1])} after step {steps[-1]}, the weights step "
            f"{first.step} ran with (layers 1..{w.shape[1]})"
        )
    return lines


def weights_ran_with(outcome: Outcome) -> list[float] | None:
    """Per-layer norms of the weights the failing step ran with, or None (no failing step).

    A history row's weight norm is taken after that step's update, so the failing step's own row
    holds the weights its update made from the failure (inf, NaN): the step ran with those of the
    row before it, or, at step 1, with the initial weights."""
    first = outcome.first_nonfinite
    if first is None or first.step is None:
        return None
    row = first.step - outcome.history_start
    w = (outcome.history or {}).get("weight_norm")
    if w is not None and 1 <= row <= len(w):
        return [float(v) for v in w[row - 1]]
    if first.step != 1:
        return None
    prepared = outcome.prepared
    norms = [math.nan] * len(outcome.spec.model.layers)
    for slot, values in zip(prepared.slots, prepared.init_params, strict=True):
        if slot.name == "W":
            with np.errstate(all="ignore"):  # optim.norm rescales a sum that overflows
                norms[slot.layer] = float(norm(np.asarray(values, dtype=np.float64)[None])[0])
    return norms


def saturated_what(act: str) -> str:
    """What the ``saturated`` statistic of a layer of ``act`` is a share of, in words."""
    if act == "softmax":
        return f"rows whose top probability is above 1 - {_short_exponent(1 - SOFTMAX_PINNED)} (pinned)"
    return f"outputs within {SATURATION_TOL} of their limits"


def _short_exponent(x: float) -> str:
    return f"{x:.0e}".replace("e-0", "e-")
