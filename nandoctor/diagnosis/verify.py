"""Prove a diagnosis by experiment: re-run the spec with one change at a time.

Candidates come from the diagnosis (its recommendations), never a blind list. Every candidate is
*confirmed* by a run from step 1 over a horizon sized to the failure (:func:`verification_horizon`;
a lowered rate over :func:`rate_horizon`, longer as the rate is lower), which stops as soon as a
value goes non-finite (disproved early). A run that stays finite while its loss diverges, or
leaves a layer that never gets a gradient, is not a fix. A candidate that only changes training hyper-parameters is also
replayed from the snapshot taken shortly before the failure, which says whether the change would
have rescued the run there (evidence about the mechanism, reported beside the verdict). The lower
learning rate is found by halving, all halvings trained at once as replicas of one batched run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nandoctor.diagnosis.catalogue import FACTORS, RECOMMENDATIONS
from nandoctor.diagnosis.diagnose import Diagnosis, Recommendation, fmt
from nandoctor.diagnosis.measures import (
    LOSS_WINDOW,
    LossTrend,
    WholeDataLoss,
    run_loss_trend,
    whole_data_loss,
)
from nandoctor.engine.data import DataError
from nandoctor.engine.runs import Outcome, train
from nandoctor.parallel import pmap
from nandoctor.spec.limits import run_bytes

# Verification is sized to the failure, not the budget: a run that died at step 9 of 1,000,000
# is rescued when a fix keeps it finite well past where it died, so each candidate re-runs
# HORIZON_FACTOR times as many steps as the original survived, at least HORIZON_FLOOR (and at
# most the budget). `--verify-full` asks for the whole budget.
HORIZON_FACTOR = 10
HORIZON_FLOOR = 1000
HALVINGS = 16  # lower learning rates tried: lr/2 ... lr/2**16
# A rate k times lower moves the weights k times less per step, so it takes about k times as
# many steps to reach the state the original died in (0.3k to 1.7k measured on the tester's
# specs). A k-fold lower rate is verified over at least RATE_MARGIN x k x the failure step.
RATE_MARGIN = 2
SCREEN_MARGIN = 2  # a screen runs this many times as far past the snapshot as the failure was
# Changes a snapshot can be replayed with: same parameters, same optimiser state layout.
REPLAYABLE = ("train.learning_rate", "train.clip_grad_norm", "train.clip_grad_value", "train.eps")
# A layer whose gradient stays exactly 0 for at least this many steps in a row (and the run's last
# tenth) up to the end of a re-run has stopped training (as the zero_gradient warning counts)
FROZEN_MIN_ROWS = 10
# A re-run whose loss rose this many times above where it started, even at one step, exploded on
# the way (as a gradient norm rising x100 is explosive growth, measures.GROWTH_FACTOR): lr 0.125
# after lr 1 went 1.84 -> 278 at step 3 and left 81% of a ReLU layer dead; lr 0.0625 rose x18
BLOWUP_FACTOR = 100.0
# A re-run whose loss ends within this fraction of a constant prediction's loss (chance level for
# a classifier: ln 10 = 2.303 for ten balanced classes) learned nothing from its inputs
BASELINE_TOL = 0.02


@dataclass
class Trial:
    """The result of one confirmed candidate."""

    finite: bool
    steps_run: int
    final_loss: float | None
    failed_step: int | None
    lost: str | None = None  # why there is no result (its worker process died)
    trend: LossTrend | None = None  # did its loss fall (too few steps, a random loss: None)
    # layers (from 1) whose weight and bias gradients were exactly 0 at every recorded step from
    # step ``frozen_from`` to the end, and how many steps the run recorded: such a layer stopped
    # moving for good (batch norm over one row outputs beta; ReLU units all dead after a blow-up)
    frozen: tuple[int, ...] = ()
    frozen_steps: int = 0
    frozen_from: int = 1
    # the run's own failure mechanism, seen although it ended finite: the loss rose orders of
    # magnitude on the way (a sentence), or it ends no lower than a constant prediction would
    blowup: str | None = None
    baseline: str | None = None
    # the loss over the training set at its first and last weights, computed when the
    # mini-batch losses moved only within their noise (one-row batches): it decides then
    whole: WholeDataLoss | None = None

    @property
    def learns(self) -> bool | None:
        """True: its loss fell beyond the noise (or, where the mini-batches' windows differ only
        within their noise, over the whole training set), with every layer still training, no
        blow-up on the way and an end below a constant prediction's loss; False: one of these
        failed, or the loss did not fall at all; None: a fall within the noise with no whole-data
        loss to settle it, or too few steps to tell."""
        if not self.finite:
            return None
        if self.frozen or self.blowup or self.baseline:
            return False
        if self.trend is None:
            return None
        if self.whole is not None:  # the windows could not tell: the training set decides
            return self.whole.fell
        return self.trend.learned


def _trial(o: Outcome) -> Trial:
    last = o.loss[-1] if len(o.loss) else np.nan
    random = o.spec.loss.name == "random_gradient"  # a loss with nothing to learn
    g = (o.history or {}).get("grad_norm")
    rows = 0 if g is None or not o.finite else min(len(g), o.steps_run)
    frozen, since = _frozen(g[:rows]) if rows else ((), 0)
    trend = None if random or not o.finite else run_loss_trend(o)
    # mini-batch losses too noisy to compare: judge the weights on the whole training set
    whole = whole_data_loss(o) if trend is not None and trend.noisy else None
    return Trial(
        finite=o.finite,
        steps_run=o.steps_run,
        final_loss=float(last) if np.isfinite(last) else None,
        failed_step=o.first_nonfinite.step if o.first_nonfinite else None,
        trend=trend,
        frozen=frozen,
        frozen_steps=rows,
        frozen_from=o.history_start + since,
        blowup=_blowup(o, trend),
        baseline=None if trend is None else _at_baseline(o, trend, whole),
        whole=whole,
    )


def _frozen(g: np.ndarray) -> tuple[tuple[int, ...], int]:
    """Layers whose gradient norm ``g: (rows, layers)`` was exactly 0 at every row from some row
    to the last, over at least the run's last tenth and ``FROZEN_MIN_ROWS`` rows (all of a
    shorter run), and the first row of the shortest such stretch. One batch can zero a layer's
    gradient; a tenth of the run in a row is a layer that stopped for good."""
    rows = len(g)
    need = min(rows, max(FROZEN_MIN_ROWS, math.ceil(LOSS_WINDOW * rows)))
    zero = g == 0
    # trailing exact zeros per layer: rows since the last non-zero gradient
    moved = np.where(~zero.all(axis=0), rows - 1 - np.argmax(~zero[::-1], axis=0), -1)
    tail = rows - 1 - moved
    layers = np.flatnonzero(tail >= need)
    if not len(layers):
        return (), 0
    return tuple(int(i) + 1 for i in layers), int(rows - tail[layers].min())


def _blowup(o: Outcome, trend: LossTrend | None) -> str | None:
    """The loss rose ``BLOWUP_FACTOR`` times above where it started at some step, although the
    run ended finite: it exploded (and the explosion killed or reset the network) rather than
    trained. Where it started is the larger of step 1's loss and its first tenth's median, so
    a noisy start is not called an explosion."""
    if trend is None or not len(o.loss):
        return None
    start = max(trend.start, trend.initial) if math.isfinite(trend.initial) else trend.start
    peak, at = float(np.max(o.loss)), o.history_start + int(np.argmax(o.loss))
    summary = o.summary or {}
    if "loss_max" in summary and len(summary["loss_max"]):
        top = int(np.argmax(summary["loss_max"]))
        if summary["loss_max"][top] > peak:
            peak, at = float(summary["loss_max"][top]), int(summary["step"][top])
    if not (start > 0 and peak > BLOWUP_FACTOR * start):
        return None
    return (
        f"its loss rose to {fmt(peak)} at step {at}, x{fmt(peak / start)} where it started "
        f"({fmt(start)}): it blew up on the way"
    )


def _at_baseline(o: Outcome, trend: LossTrend, whole: WholeDataLoss | None = None) -> str | None:
    """The run's loss ends at the loss of a constant prediction that ignores the inputs (the
    class frequencies for cross-entropy: the chance level; the targets' mean for mse), within
    ``BASELINE_TOL``: it fell, but to where a network that outputs the same
    thing for every input sits, and stayed there. None when it ends elsewhere (below; or above
    and still on its way down from a bad start), or when the loss has no such baseline (a sum,
    an l2 term, smoothed labels, other losses). Where the whole-data loss was computed
    (``whole``), its end is compared: a mean over the rows, as the baseline is, where the median
    of one-row losses sits below their mean."""
    base = constant_prediction_loss(o)
    if base is None or not base > 0:
        return None
    full = whole is not None and math.isfinite(whole.end)
    end = whole.end if full else trend.end
    if abs(end - base) > BASELINE_TOL * base:
        return None
    what = {
        "cross_entropy": "always predicting the class frequencies (chance level)",
        "bce": "always predicting each output's frequency of 1 (chance level)",
        "mse": "always predicting the targets' mean",
    }[o.spec.loss.name]
    where = (
        "over the training set"
        if full
        else f"median of its last {trend.last_window or trend.window} steps"
    )
    return (
        f"its loss ends at {fmt(end)} ({where}), where {fmt(base)}, the loss of {what}, sits: it "
        "learned nothing from the inputs"
    )


def constant_prediction_loss(o: Outcome) -> float | None:
    """The loss of the best prediction that ignores the inputs, on the run's own targets: the
    entropy of the class frequencies (cross-entropy over integer labels), the mean binary entropy
    of each output's frequency (bce), the mean variance of the targets (mse); None for other
    losses, a sum reduction, an l2 term or smoothed labels."""
    loss, y = o.spec.loss, o.prepared.y
    if y is None or loss.reduction != "mean" or loss.l2 or loss.label_smoothing or not y.size:
        return None
    with np.errstate(all="ignore"):
        if loss.name == "cross_entropy" and y.dtype.kind in "iu":
            p = np.bincount(y.ravel()) / y.size
            p = p[p > 0]
            return float(-(p * np.log(p)).sum())
        if loss.name == "bce" and y.dtype.kind == "f" and np.isin(y, (0.0, 1.0)).all():
            p = y.reshape(len(y), -1).mean(axis=0)
            p = p[(p > 0) & (p < 1)]
            h = -(p * np.log(p) + (1 - p) * np.log(1 - p))
            return float(h.sum() / y.reshape(len(y), -1).shape[1])
        if loss.name == "mse" and y.dtype.kind == "f" and np.isfinite(y).all():
            return float(y.reshape(len(y), -1).var(axis=0).mean())
    return None


def verification_horizon(outcome: Outcome, full: bool = False) -> int:
    """Steps a candidate fix is re-run for: HORIZON_FACTOR x the failure step, at least
    HORIZON_FLOOR, at most the budget (the whole budget when ``full``)."""
    budget = outcome.steps_budget
    if full:
        return budget
    failed = outcome.first_nonfinite.step if outcome.first_nonfinite else budget
    return min(budget, max(HORIZON_FLOOR, HORIZON_FACTOR * (failed or 0)))


def rate_horizon(outcome: Outcome, until: int, factor: float) -> int:
    """Steps a rate ``factor`` times lower than the failing one is verified over: at least
    ``until`` (the horizon of every candidate) and RATE_MARGIN x ``factor`` x the failure step,
    at most the budget. A lower rate reaches the failing state later, not never: lr 5 died at
    step 50 and lr 5/32 at step 1,319, past a 1,000-step horizon."""
    failed = (outcome.first_nonfinite.step or 0) if outcome.first_nonfinite else 0
    return min(outcome.steps_budget, max(until, math.ceil(RATE_MARGIN * factor * failed)))


def _horizon_note(outcome: Outcome, horizon: int, factor: float | None = None) -> str:
    budget = outcome.steps_budget
    if horizon >= budget:
        return ""
    failed = outcome.first_nonfinite.step if outcome.first_nonfinite else 0
    if factor is not None and horizon > max(HORIZON_FLOOR, HORIZON_FACTOR * (failed or 0)):
        why = f"{RATE_MARGIN} x the rate's {fmt(factor)}-fold reduction x the failure step {failed}"
    else:
        why = f"{HORIZON_FACTOR}x the failure step {failed}, at least {HORIZON_FLOOR:,}"
    return f" (of a {budget:,}-step budget: verified over {why}; --verify-full runs it all)"


def _record(rec: Recommendation, trial: Trial, note: str = "") -> None:
    """Fill in ``rec``'s verdict from a run of it from step 1."""
    if trial.lost:
        rec.verified, rec.evidence = None, f"not verified: {trial.lost}"
        return
    rec.verified = trial.finite
    rec.final_loss = trial.final_loss
    rec.steps_verified = trial.steps_run
    trend = trial.trend
    if trial.finite and trend is not None and trend.diverged:
        # finite only because the budget ran out first: not a fix
        rec.verified, rec.diverging = False, True
        rec.evidence = (
            f"finite for {trial.steps_run} steps but {trend.divergence()}: diverging{note}"
        )
    elif trial.finite:
        rec.diverging = False
        last = trial.final_loss
        rec.learns = trial.learns
        loss = f", final loss {fmt(last)}" if last is not None else ""
        rec.evidence = f"{trial.steps_run} steps from step 1, all finite{loss}{note}"
        if trend is not None and trial.whole is not None:
            moved = (
                "fell"
                if trend.end < trend.start
                else "rose"
                if trend.end > trend.start
                else "stayed"
            )
            noisy = f"its mini-batch loss {moved} only within its step-to-step noise ({trend})"
            if trial.whole.fell:
                rec.evidence += f"; {noisy}, but over the training set it fell: {trial.whole}"
            else:
                rec.evidence += (
                    f"; {noisy}, and over the training set it did not fall, {trial.whole}: it "
                    "keeps the values finite by not learning"
                )
        elif trend is not None and trend.learned is False:
            rec.evidence += (
                f"; but its loss did not fall ({trend}): it keeps the values finite by not learning"
            )
        elif trend is not None and trend.learned is None:
            rec.evidence += f"; its loss fell only within its step-to-step noise ({trend})"
        if trial.blowup:  # finite at the end, but the failure happened on the way
            rec.evidence += f"; but {trial.blowup}"
        if trial.frozen:  # finite, but part of the network stopped training
            rec.frozen_layers = list(trial.frozen)
            layers = ", ".join(str(i) for i in trial.frozen)
            if trial.frozen_from <= 1:
                rec.evidence += (
                    f"; but layer {layers} had weight and bias gradients of exactly 0 at every one "
                    f"of its {trial.frozen_steps} steps: it never learns"
                )
            else:
                rec.evidence += (
                    f"; but layer {layers} had weight and bias gradients of exactly 0 at every "
                    f"step from {trial.frozen_from} to the last ({trial.steps_run}): it stopped "
                    "learning"
                )
        if trial.baseline:
            rec.evidence += f"; but {trial.baseline}"
    else:
        rec.evidence = f"still non-finite, at step {trial.failed_step}"


def _confirm(args) -> Trial:
    """A run of ``spec`` with ``changes`` from step 1 to ``until`` (in a worker process)."""
    spec, changes, until = args
    try:
        return _trial(train(spec.with_changes(changes), until=until, snapshots=False)[0])
    except DataError as e:  # the change leaves no usable data (drop_rows dropped every row)
        return Trial(False, 0, None, None, lost=f"the changed spec cannot run: {e}")


def screen(outcome: Outcome, changes: dict) -> str | None:
    """Replay from the last snapshot before the failure with ``changes``: a sentence saying
    whether the failure comes back, or None when the change cannot be replayed.

    This is evidence about the mechanism near the failure, not the verdict: a state already
    pushed towards overflow can fail under a change that keeps a run from step 1 finite, so only
    the run from step 1 decides ``verified``.
    """
    if (
        not outcome.snapshots
        or not set(changes) <= set(REPLAYABLE)
        or outcome.first_nonfinite is None
    ):
        return None
    snap = outcome.snapshots[-1]
    fail = outcome.first_nonfinite.step or 1
    until = min(outcome.steps_budget, snap.step + SCREEN_MARGIN * max(fail - snap.step, 1))
    variant = outcome.spec.with_changes(changes)
    o = train(variant, prepared=outcome.prepared, start=snap, until=until, snapshots=False)[0]
    where = f"replayed from the step {snap.step} snapshot"
    if o.finite:
        return f"{where}: finite through step {until} (the original failed at step {fail})"
    return f"{where}: non-finite again at step {o.first_nonfinite.step}"


@dataclass
class Halving:
    """What halving the learning rate found: the largest rate that stayed finite over its own
    horizon (:func:`rate_horizon`), did not diverge and learned (:attr:`Trial.learns`), with its
    run (or None); how many rates were tried; the last one rejected for diverging while finite,
    with its run; and the largest one rejected for staying finite without learning (a rate so
    high the network blew up and died on the way, or so low it never moved), with its run."""

    rate: float | None
    run: Outcome | None
    tried: int
    diverging: tuple[float, Outcome] | None = None
    kept: tuple[float, Outcome] | None = None


def largest_finite_lr(outcome: Outcome, until: int | None = None) -> Halving:
    """Halve the learning rate until a run stays finite through its :func:`rate_horizon` (at
    least ``until``, default the whole budget) without diverging, and learns: a rate whose run
    stays finite only because it exploded and killed the network on the way (lr 0.5 after lr
    1: a loss of 6.7e182 at step 7, every ReLU dead after it) is no fix, and halving goes on
    below it. All halvings are trained from step 1 at once as replicas of one batched run.

    The horizon grows with the reduction, so the halvings are decided in stages: each stage
    trains the rates still undecided up to the horizon of the largest of them, which is then
    accepted (finite, not diverging) or rejected; rates that went non-finite before it are
    rejected with it (their own horizons are longer). A 1,000,000-step spec whose rate lr/2
    holds trains one stage of ``until`` steps, as before.

    Only rates the run's dtype holds as normal numbers are tried: a rate that rounds to 0 (or to
    a subnormal) would "stay finite" by not training at all."""
    lr = outcome.learning_rate
    rates = lr / 2.0 ** np.arange(1, HALVINGS + 1)
    rates = rates[rates >= np.finfo(outcome.prepared.dtype).tiny]
    if not len(rates):
        return Halving(None, None, 0)
    until = until or outcome.steps_budget
    horizons = [rate_horizon(outcome, until, lr / r) for r in rates]
    pending = list(range(len(rates)))
    diverging = kept = None
    while pending:
        stage = horizons[pending[0]]
        runs = train(
            outcome.spec,
            lrs=rates[pending],
            prepared=outcome.prepared,
            until=stage,
            snapshots=False,
        )
        alive = []
        for i, o in zip(pending, runs, strict=True):
            if not o.finite:
                continue  # non-finite before ``stage``, within its own horizon
            if horizons[i] > stage or alive:
                alive.append(i)  # decided at a later stage
                continue
            trial = _trial(o)
            if trial.trend is not None and trial.trend.diverged:
                diverging = (float(rates[i]), o)
                continue
            if trial.learns is not True:  # finite, but not by training: look lower
                kept = kept or (float(rates[i]), o)
                continue
            return Halving(float(rates[i]), o, len(rates), diverging, kept)
        pending = alive
    return Halving(None, None, len(rates), diverging, kept)


def verify(
    diagnosis: Diagnosis,
    outcome: Outcome,
    jobs: int | None = None,
    on_done: Callable[[str], None] | None = None,
    full: bool = False,
) -> list[Recommendation]:
    """Try each recommendation over :func:`verification_horizon` steps (the whole budget when
    ``full``); fill in ``verified``, ``evidence`` and ``steps_verified``; return them ranked.

    A finite run's recommendations (from its warnings) are confirmed the same way, over its
    budget; a rate is then confirmed as proposed (halving looks for a finite rate, and every
    rate of a finite run may be one). Also appends the experiments' verdicts to the cause's
    evidence."""
    recs = list(diagnosis.recommendations)
    if not recs:
        return recs
    spec = outcome.spec
    lr = outcome.learning_rate
    until = verification_horizon(outcome, full)
    note = _horizon_note(outcome, until)
    todo: list[Recommendation] = []
    for rec in recs:
        if rec.id == "lower_learning_rate" and outcome.first_nonfinite is not None:
            halving = largest_finite_lr(outcome, until)
            rate, run, tried = halving.rate, halving.run, halving.tried
            if not tried:  # no halving is a normal number of the dtype: confirm its own rate
                todo.append(rec)
                continue
            if rate is None and halving.kept:  # finite, but none learned: not a fix
                rate, run = halving.kept
                rec.changes = {"train.learning_rate": rate}
                rec.summary = (
                    f"lower the learning rate to {fmt(rate)} (the largest rate found by halving "
                    "that stayed finite; no halving learned)"
                )
                _record(rec, _trial(run), _horizon_note(outcome, run.steps_run, lr / rate))
                rec.evidence = (
                    f"no halving down to lr {fmt(lr / 2**tried)} stayed finite and learned; "
                    f"lr {fmt(rate)}: {rec.evidence}"
                )
            elif rate is None and halving.diverging:  # finite, but heading for overflow
                rate, run = halving.diverging
                rec.changes = {"train.learning_rate": rate}
                _record(rec, _trial(run), _horizon_note(outcome, run.steps_run, lr / rate))
                rec.evidence = (
                    f"no halving down to lr {fmt(lr / 2**tried)} stayed finite without "
                    f"diverging; lr {fmt(rate)}: {rec.evidence}"
                )
            elif rate is None:  # the change shown is the last one tried, as its evidence says
                smallest = lr / 2**tried
                rec.verified = False
                rec.changes = {"train.learning_rate": smallest}
                rec.evidence = f"still non-finite at lr {fmt(smallest)} ({tried} halvings)"
            else:  # the halving run was a full run from step 1: it is the confirmation
                rec.changes = {"train.learning_rate": rate}
                rec.summary = (
                    f"lower the learning rate to {fmt(rate)} (the largest rate found by halving "
                    "that stayed finite and learned)"
                )
                _record(rec, _trial(run), _horizon_note(outcome, run.steps_run, lr / rate))
            _done(on_done, rec)
            continue
        todo.append(rec)

    def arrived(i: int, trial: Trial) -> None:
        # each verdict recorded (and counted) as its run finishes, in any order: an interrupted
        # verification keeps every verdict it has
        _record(todo[i], trial, note)
        _done(on_done, todo[i])

    pmap(
        _confirm,
        [(spec, r.changes, until) for r in todo],
        jobs,
        lost=lambda _item, reason: Trial(False, 0, None, None, lost=reason),
        threads=outcome.threads,
        on_arrival=arrived,
        item_bytes=run_bytes(spec, *outcome.prepared.x.shape),
    )
    for rec in todo:
        near = screen(outcome, rec.changes)
        if near:
            rec.evidence += f"; {near}"
    if diagnosis.cause is not None:
        failed = {rec.id for rec in recs if rec.verified is False}
        budget = outcome.steps_budget
        for rec in recs:
            if rec.verified and rec.learns is not True:  # finite, but no evidence of a fix
                does = "does not learn" if rec.learns is False else "shows no clear learning"
                diagnosis.cause.evidence.append(
                    f"experiment: {rec.id} keeps the values finite, but its re-run {does}, so "
                    f"it does not show what removes the failure ({rec.evidence})"
                )
            elif rec.verified:
                confirms = RECOMMENDATIONS[rec.id].confirmed(failed)
                steps = rec.steps_verified or 0
                if steps < budget:  # no claim past what was run
                    confirms = f"over the {steps:,} steps verified (of {budget:,}), {confirms}"
                diagnosis.cause.evidence.append(f"experiment: {confirms} ({rec.evidence})")
            elif rec.verified is False:
                diagnosis.cause.evidence.append(
                    f"experiment: {rec.id} does not remove it ({rec.evidence})"
                )
        _drop_refuted_factors(diagnosis, recs)
    return rank(recs)


def _drop_refuted_factors(diagnosis: Diagnosis, recs: list[Recommendation]) -> None:
    """A contributing factor whose own test (the recommendation that changes the setting it
    blames) still went non-finite did not make the failure likelier: the run fails the same
    without it. It is taken out of ``contributing`` and the cause's evidence says why (a rate
    16 halvings lower failing too refutes "learning rate 0.001 moved weights by 100%")."""
    failed = {r.id: r for r in recs if r.verified is False and not r.diverging}
    kept = []
    for f in diagnosis.contributing:
        test = failed.get(FACTORS[f.id].tested_by or "")
        if test is None:
            kept.append(f)
            continue
        diagnosis.cause.evidence.append(
            f"experiment: refutes the factor {f.id} ({f.summary}): {test.id} changes that "
            f"setting and the run still fails ({test.evidence}), so it is not contributing"
        )
    diagnosis.contributing = kept


def rank(recs: list[Recommendation]) -> list[Recommendation]:
    """Verified first; among them those whose loss fell, then those whose fall was within its
    noise, then those whose loss did not fall; then the smallest change (a setting changed in
    several layers counts once: He init for every layer is one idea), then the lowest final
    loss."""

    def key(r: Recommendation):
        loss = r.final_loss
        settings = {re.sub(r"\.\d+\.", ".*.", k) for k in r.changes}
        return (
            {True: 0, None: 1, False: 2}[r.verified],
            {True: 0, None: 1, False: 2}[r.learns],  # fell, within noise, did not fall
            len(settings),
            loss if loss is not None else float("inf"),
        )

    return sorted(recs, key=key)


def _done(cb, rec) -> None:
    if cb:
        cb(rec.id)
