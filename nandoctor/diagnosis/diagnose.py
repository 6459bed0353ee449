"""From a run's own numbers to a diagnosis: status, root cause, contributing factors, warnings.

The rules live in their own rooms -- :mod:`~nandoctor.diagnosis.causes` (why a run went
non-finite), :mod:`~nandoctor.diagnosis.factors` (what made it likelier) and
:mod:`~nandoctor.diagnosis.symptoms` (warnings, finite or not) -- and every one reads the
:class:`~nandoctor.engine.runs.Outcome`: the first non-finite value with the op and inputs that
made it, and the per-step history. Each finding carries the numbers that show it. Nothing here
looks at which spec was loaded beyond the settings the numbers implicate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from nandoctor.diagnosis import networks
from nandoctor.diagnosis.catalogue import PART_OF_A_FAILURE
from nandoctor.diagnosis.causes import Failure, root_cause
from nandoctor.diagnosis.factors import contributing_factors
from nandoctor.diagnosis.findings import (  # noqa: F401 (re-exported)
    Diagnosis,
    Finding,
    Recommendation,
    fmt,
)
from nandoctor.diagnosis.measures import SIGMOID_EXACT_ONE, history_offset, weights_ran_with
from nandoctor.diagnosis.recommend import recommend
from nandoctor.diagnosis.symptoms import Observed, confident_output, find_warnings
from nandoctor.engine.nn import activation

if TYPE_CHECKING:
    from nandoctor.engine.runs import Outcome


def _finite_or_none(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


# ------------------------------------------------------------------ entry point
def diagnose(outcome: Outcome) -> Diagnosis:
    """The diagnosis of one run: its status, cause, contributing factors, warnings and notes."""
    spec = outcome.spec
    hist = outcome.history or {}
    loss = outcome.loss
    first = outcome.first_nonfinite
    acts = [layer.activation for layer in spec.model.layers]
    cause, contributing = (None, [])
    if first is not None:
        failure = Failure.of(outcome)
        cause = root_cause(failure)
        contributing = contributing_factors(failure, cause)
    warnings = find_warnings(outcome)
    if first is not None:  # growth and a flat loss are part of the failure's story, not warnings
        warnings = [w for w in warnings if w.id not in PART_OF_A_FAILURE]
    status = "nonfinite" if first else ("warning" if warnings else "healthy")
    return Diagnosis(
        spec=str(spec.path) if spec.path else "<spec>",
        name=spec.name or "spec",
        status=status,
        steps_run=outcome.steps_run,
        steps_budget=outcome.steps_budget,
        learning_rate=outcome.learning_rate,
        first_nonfinite=first,
        cause=cause,
        contributing=contributing,
        warnings=warnings,
        recommendations=recommend(outcome, cause, contributing, warnings),
        loss_initial=_finite_or_none(outcome.loss_initial) if len(loss) else None,
        loss_final=_finite_or_none(loss[-1]) if len(loss) else None,
        notes=notes(outcome, warnings),
        history=hist,
        history_start=getattr(outcome, "history_start", 1),
        summary=getattr(outcome, "summary", None),
        layers=acts,
        threads=getattr(outcome, "threads", 1),
        weights_ran_with=weights_ran_with(outcome) if first is not None else None,
    )


# ------------------------------------------------------------------ notes
def notes(outcome: Outcome, warnings: list[Finding]) -> list[str]:
    """Plain sentences on what the run saw and, when it stayed finite, how far it was from NaN."""
    spec, h = outcome.spec, outcome.history
    out: list[str] = networks.data_notes(outcome)
    if outcome.first_nonfinite is not None or not h:
        return out
    n, off = outcome.steps_run, history_offset(outcome)
    out.append(f"every value stayed finite over {n} steps: no NaN, no Inf")
    acts = [layer.activation for layer in spec.model.layers]
    squashing = [i for i, a in enumerate(acts) if activation(a).squashing]
    if squashing:

        def shares(k):
            return ", ".join(f"layer {i + 1} {fmt(100 * h['weak'][k, i])}%" for i in squashing)

        out.append(
            "units whose derivative was under a tenth of its peak (partly saturated): "
            f"step {off + 1}: {shares(0)}; step {n}: {shares(n - off - 1)}"
        )
    sig = [i for i, a in enumerate(acts) if a == "sigmoid"]
    if sig:
        zmax = h["max_abs_z"][: n - off, sig]
        k, j = np.unravel_index(np.nanargmax(zmax), zmax.shape)
        top, lim, dtype = (
            float(zmax[k, j]),
            SIGMOID_EXACT_ONE[spec.numerics.dtype],
            spec.numerics.dtype,
        )
        tail = (
            "so a log(p) or log(1 - p) on these outputs (naive BCE) would give -inf"
            if top > lim
            else f"{fmt(lim - top)} short of it, so even a naive log(p) on them would stay finite"
        )
        out.append(
            f"sigmoid |z| peaked at {fmt(top)} (layer {sig[j] + 1}, step {k + 1 + off}); a {dtype} sigmoid "
            f"returns exactly 0 or 1 only beyond |z| = {lim}: {tail}"
        )
    confident = confident_output(Observed.of(outcome))
    if confident:
        out.append(confident)
    if any(w.id == "saturation" for w in warnings):
        out.append(
            "saturated units have near-zero derivatives: learning stalls, but saturation alone "
            "does not make NaN"
        )
    return out
