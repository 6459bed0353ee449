"""Findings are data: what a diagnosis found, as plain dataclasses every reporter reads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

from nandoctor.diagnosis.catalogue import CAUSES, FACTORS, WARNINGS

if TYPE_CHECKING:
    from nandoctor.instrument.events import NonFinite

Status = Literal["nonfinite", "warning", "healthy"]  # of a run: what its diagnosis says


@dataclass
class Finding:
    id: str
    summary: str
    evidence: list[str] = field(default_factory=list)
    layer: int | None = None
    step: int | None = None
    # the spec key this finding blames, when the run's numbers point at another than the
    # catalogue's (ReLUs dead before any update: the layer's bias or init, not the rate)
    blames: str | None = None


def cause(id: str, summary: str, evidence: list[str], layer=None, step=None) -> Finding:
    """A root-cause finding; ``id`` must be a cause of the catalogue."""
    return Finding(_declared(CAUSES, id), summary, evidence, layer, step)


def factor(id: str, summary: str, evidence: list[str]) -> Finding:
    """A contributing-factor finding; ``id`` must be a factor of the catalogue."""
    return Finding(_declared(FACTORS, id), summary, evidence)


def warning(id: str, summary: str, layer=None, step=None, blames=None) -> Finding:
    """A warning; ``id`` must be a warning of the catalogue. ``blames``: the spec key it points
    at when the numbers implicate another than the catalogue's."""
    return Finding(_declared(WARNINGS, id), summary, layer=layer, step=step, blames=blames)


def _declared(table: dict, id: str) -> str:
    if id not in table:
        raise KeyError(f"{id!r} is not declared in nandoctor.diagnosis.catalogue")
    return id


@dataclass
class Recommendation:
    id: str
    summary: str
    changes: dict
    verified: bool | None = None
    evidence: str = ""
    final_loss: float | None = None  # of the confirming run, when it stayed finite
    steps_verified: int | None = None  # steps the confirming run ran from step 1 (its horizon)
    # did the confirming run's loss fall (measures.LossTrend: true beyond its noise, false not
    # at all)? None: not verified, or too few or too noisy steps to tell. A change can keep
    # every value finite by stopping the learning (a rate too small to move the weights).
    learns: bool | None = None
    # did the confirming run stay finite while its loss grew orders of magnitude
    # (measures.LossTrend.diverged)? Such a change is not verified. None: not verified.
    diverging: bool | None = None
    # layers (from 1) whose gradients were exactly 0 at every step of the confirming run: the
    # change keeps the values finite but those layers never learn (learns is then false)
    frozen_layers: list[int] | None = None


@dataclass
class Diagnosis:
    spec: str
    name: str
    status: Status
    steps_run: int
    steps_budget: int
    learning_rate: float
    first_nonfinite: NonFinite | None
    cause: Finding | None
    contributing: list[Finding]
    warnings: list[Finding]
    recommendations: list[Recommendation]
    loss_initial: float | None
    loss_final: float | None
    notes: list[str] = field(default_factory=list)  # what the run saw, in plain words
    history: dict | None = None  # per-step arrays, for the report (not serialised)
    history_start: int = 1  # the step of history's first row (> 1 once a run outgrew its window)
    summary: dict | None = None  # the whole run downsampled (History.summary), for pictures
    layers: list[str] = field(default_factory=list)  # activation per layer
    seconds: float = 0.0
    threads: int = 1  # BLAS threads the run trained with (part of its identity)
    # per-layer norms of the weights the failing step ran with (its history row holds those after
    # its update, made from the failure), for the report; None for a finite run
    weights_ran_with: list[float] | None = None

    def to_json(self) -> dict:
        def finding(f: Finding, keys=("id", "summary", "evidence")) -> dict:
            d = asdict(f)
            return {k: d[k] for k in (*keys, "layer", "step") if k in keys or d[k] is not None}

        return {
            "spec": self.spec,
            "name": self.name,
            "status": self.status,
            "steps_run": self.steps_run,
            "steps_budget": self.steps_budget,
            "learning_rate": self.learning_rate,
            "first_nonfinite": self.first_nonfinite.to_json() if self.first_nonfinite else None,
            "cause": finding(self.cause) if self.cause else None,
            "contributing": [finding(f) for f in self.contributing],
            "warnings": [finding(f, ("id", "summary")) for f in self.warnings],
            "recommendations": [asdict(r) for r in self.recommendations],
            "loss": {"initial": self.loss_initial, "final": self.loss_final},
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "threads": self.threads,
        }


def fmt(x: float) -> str:
    """A number for a sentence: 3 significant digits, exponent when large or small."""
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    return f"{x:.2e}"


def fmt_projected_steps(x: float) -> str:
    """A projected number of steps as a reader counts them: 'about 4 more steps' (not 3.84).

    At least 1 (a projection is never "0 more steps"); two significant figures from 100 on, since
    an extrapolation is no more precise than that (1234.5 -> 'about 1,200 more steps')."""
    if not math.isfinite(x):
        return "an unknown number of steps"
    n = max(1, round(x))
    if n >= 100:
        n = round(n, 2 - len(str(n)))
    return f"about {n:,} more step{'s' if n != 1 else ''}"
