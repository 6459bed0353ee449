"""Prove a diagnosis by experiment: re-run the spec with one change at a time.

Candidates come from the diagnosis (its recommendations), never a blind list. A candidate that
only changes the training hyper-parameters is first *screened*: replayed from the snapshot taken
shortly before the failure, past the failing step; if it still fails there it is disproved without
a full run. Every surviving candidate is then *confirmed* by a run from step 1 over the spec's whole
budget, which stops as soon as a value goes non-finite. The lower learning rate is found by
halving, all halvings trained at once as replicas of one batched run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nandoctor.diagnose import Diagnosis, Recommendation, fmt
from nandoctor.parallel import pmap
from nandoctor.run import Outcome, train

HALVINGS = 16  # lower learning rates tried: lr/2 ... lr/2**16
SCREEN_MARGIN = 2  # a screen runs this many times as far past the snapshot as the failure was
# Changes a snapshot can be replayed with: same parameters, same optimiser state layout.
REPLAYABLE = ("train.learning_rate", "train.clip_grad_norm", "train.clip_grad_value", "train.eps")


@dataclass
class Trial:
    """The result of one confirmed candidate."""

    finite: bool
    steps_run: int
    final_loss: float | None
    failed_step: int | None


def _run(spec, changes: dict, until: int | None = None, problem=None, start=None) -> Trial:
    variant = spec.with_changes(changes) if changes else spec
    o = train(variant, problem=problem, start=start, until=until)[0]
    last = o.loss[-1] if len(o.loss) else np.nan
    return Trial(
        finite=o.finite,
        steps_run=o.steps_run,
        final_loss=float(last) if np.isfinite(last) else None,
        failed_step=o.first.step if o.first else None,
    )


def _confirm(args) -> Trial:
    spec, changes = args
    return _run(spec, changes)


def screen(outcome: Outcome, changes: dict) -> bool | None:
    """Replay from the last snapshot with ``changes``: False if it still fails, None if unknown."""
    if not outcome.snapshots or not set(changes) <= set(REPLAYABLE) or outcome.first is None:
        return None
    snap = outcome.snapshots[-1]
    fail = outcome.first.step or 1
    until = min(outcome.steps_budget, snap.step + SCREEN_MARGIN * max(fail - snap.step, 1))
    variant = outcome.spec.with_changes(changes)
    o = train(variant, problem=outcome.problem, start=snap, until=until)[0]
    return False if not o.finite else None


def largest_finite_lr(outcome: Outcome) -> tuple[float | None, int]:
    """Halve the learning rate until a run stays finite, all halvings in one batched run.

    Returns the largest finite rate (or None) and the number of rates tried."""
    lr = outcome.learning_rate
    rates = lr / 2.0 ** np.arange(1, HALVINGS + 1)
    runs = train(outcome.spec, lrs=rates, problem=outcome.problem)
    for rate, o in zip(rates, runs, strict=True):
        if o.finite:
            return float(rate), len(rates)
    return None, len(rates)


CONFIRMS = {
    "lower_learning_rate": "a lower learning rate alone removes it: the step size drives the failure",
    "clip_gradients": "clipping the gradient norm alone removes it: the gradient explosion is the mechanism",
    "use_float32": "float32 alone removes it: a float16 range problem",
    "use_float64": "float64 alone removes it: a precision range problem",
    "stable_numerics": "stable numerics alone remove it: the naive formula is the mechanism",
    "add_eps": "a non-zero eps alone removes it: the unguarded division is the mechanism",
    "standardize_inputs": "standardized inputs alone remove it: the input scale is the mechanism",
    "use_xavier_init": "Xavier init alone removes it: the initial weight scale is the mechanism",
    "use_he_init": "He init alone removes it: the initial weight scale is the mechanism",
    "remove_nan_inputs": "removing the NaN inputs removes it: the data are the cause",
    "use_tanh": "tanh instead of sigmoid removes it: the saturating output is the mechanism",
}


def verify(
    diagnosis: Diagnosis,
    outcome: Outcome,
    jobs: int | None = None,
    on_done: Callable[[str], None] | None = None,
) -> list[Recommendation]:
    """Try each recommendation; fill in ``verified`` and ``evidence``; return them ranked.

    Also appends the experiments' verdicts to the cause's evidence."""
    recs = list(diagnosis.recommendations)
    if outcome.first is None or not recs:
        return recs
    spec = outcome.spec
    todo: list[Recommendation] = []
    for rec in recs:
        if rec.id == "lower_learning_rate":
            rate, tried = largest_finite_lr(outcome)
            if rate is None:
                rec.verified = False
                rec.evidence = f"still non-finite at lr {fmt(outcome.learning_rate / 2**tried)} ({tried} halvings)"
                _done(on_done, rec)
                continue
            rec.changes = {"train.learning_rate": rate}
            rec.summary = (
                f"lower the learning rate to {fmt(rate)} (the largest finite rate found by halving)"
            )
        verdict = screen(outcome, rec.changes)
        if verdict is False:
            rec.verified = False
            rec.evidence = "still non-finite when replayed from the snapshot before the failure"
            _done(on_done, rec)
            continue
        todo.append(rec)
    # pmap reports results in input order, so the n-th report is todo[n]
    order = iter(todo)
    trials = pmap(
        _confirm, [(spec, r.changes) for r in todo], jobs, lambda _t: _done(on_done, next(order))
    )
    for rec, trial in zip(todo, trials, strict=True):
        rec.verified = trial.finite
        if trial.finite:
            loss = f", final loss {fmt(trial.final_loss)}" if trial.final_loss is not None else ""
            rec.evidence = f"{trial.steps_run} steps from step 1, all finite{loss}"
        else:
            rec.evidence = f"still non-finite, at step {trial.failed_step}"
        rec.final_loss = trial.final_loss
    if diagnosis.cause is not None:
        for rec in recs:
            if rec.verified and rec.id in CONFIRMS:
                diagnosis.cause.evidence.append(f"experiment: {CONFIRMS[rec.id]} ({rec.evidence})")
            elif rec.verified is False:
                diagnosis.cause.evidence.append(
                    f"experiment: {rec.id} does not remove it ({rec.evidence})"
                )
    return rank(recs)


def rank(recs: list[Recommendation]) -> list[Recommendation]:
    """Verified first, then the smallest change, then the lowest final loss."""

    def key(r: Recommendation):
        loss = r.final_loss
        return (
            {True: 0, None: 1, False: 2}[r.verified],
            len(r.changes),
            loss if loss is not None else float("inf"),
        )

    return sorted(recs, key=key)


def _done(cb, rec) -> None:
    if cb:
        cb(rec.id)
