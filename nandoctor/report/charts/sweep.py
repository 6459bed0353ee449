"""The charts of a sweep, built from its grid points (see :mod:`nandoctor.sweep`)."""

from __future__ import annotations

import numpy as np

from nandoctor.diagnosis.findings import fmt
from nandoctor.report.charts.model import Chart, LineChart, Marker, Series, StatusMap
from nandoctor.sweep import GridPoint

NONFINITE_ROW = 3.0  # non-finite runs are drawn this factor above the largest finite loss


def label(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "spec as written"


def bound(point: GridPoint) -> float | None:
    """The point's stability bound (``nandoctor.sweep.stability_bound``): 2/lambda_max, or the
    momentum-aware one its note compares with."""
    return point.bound


def bound_label(point: GridPoint) -> str:
    """``2/λmax``, ``2(1+0.99)/((1+2x0.99) λmax)``: the bound's formula as the note names it."""
    return point.bound_name.replace("lambda_max", "λmax")


def edge_markers(point: GridPoint) -> list[Marker]:
    out = []
    if point.edge:
        out.append(Marker("x", point.edge[0], f"measured edge {fmt(point.edge[0])}", "good"))
    elif point.max_stable_lr is not None:
        out.append(
            Marker("x", point.max_stable_lr, f"max stable {fmt(point.max_stable_lr)}", "good")
        )
    if (b := bound(point)) is not None:
        out.append(Marker("x", b, f"{bound_label(point)} = {fmt(b)}", "accent"))
    return out


def _runs(point: GridPoint, failed: bool):
    return [r for r in point.runs if (r.status == "nonfinite") == failed]


def loss_chart(points: list[GridPoint]) -> LineChart | None:
    """Final loss against the learning rate (log-log), one series per grid point; non-finite runs
    as crosses above the largest finite loss."""
    if not any(p.has_loss for p in points):
        return None
    finite = [
        r.final_loss for p in points for r in _runs(p, False) if r.final_loss and r.final_loss > 0
    ]
    top = max(finite) * NONFINITE_ROW if finite else 1.0
    series = []
    for i, p in enumerate(points):
        ok = [r for r in _runs(p, False) if r.final_loss is not None]
        name = label(p.settings) if len(points) > 1 else "final loss"
        series.append(
            Series(
                name,
                np.array([r.learning_rate for r in ok]),
                np.array([r.final_loss for r in ok], dtype=float),
                kind="points",
                color=i if len(points) > 1 else "accent",
            )
        )
    bad = [r.learning_rate for p in points for r in _runs(p, True)]
    if bad:
        series.append(
            Series("non-finite", np.array(bad), np.full(len(bad), top), kind="crosses", color="bad")
        )
    return LineChart(
        title="Final loss against learning rate",
        x_label="learning rate",
        y_label="final loss",
        series=series,
        markers=edge_markers(points[0]) if len(points) == 1 else [],
        x_log=True,
        y_log=all(v > 0 for v in finite) and bool(finite),
        note="× a run that went non-finite (drawn above the largest finite loss)" if bad else "",
    )


def failure_chart(points: list[GridPoint]) -> LineChart:
    """The step each rate first went non-finite at (crosses); finite runs at their last step."""
    series = []
    for i, p in enumerate(points):
        name = label(p.settings) if len(points) > 1 else ""
        bad, ok = _runs(p, True), _runs(p, False)
        tone = i if len(points) > 1 else "bad"
        series.append(
            Series(
                f"{name}: first non-finite step".lstrip(": "),
                np.array([r.learning_rate for r in bad]),
                np.array([r.steps_run for r in bad], dtype=float),
                kind="crosses",
                color=tone,
            )
        )
        series.append(
            Series(
                f"{name}: finite to the end".lstrip(": "),
                np.array([r.learning_rate for r in ok]),
                np.array([r.steps_run for r in ok], dtype=float),
                kind="points",
                color=i if len(points) > 1 else "good",
            )
        )
    steps = [r.steps_run for p in points for r in p.runs if r.steps_run > 0]
    return LineChart(
        title="First non-finite step against learning rate",
        x_label="learning rate",
        y_label="step",
        series=series,
        markers=edge_markers(points[0]) if len(points) == 1 else [],
        x_log=True,
        y_log=bool(steps) and max(steps) / min(steps) > 20,
    )


def stability_map(points: list[GridPoint]) -> StatusMap | None:
    """For a grid: outcome per (grid point, rate) over the rates of the --lr list."""
    if len(points) < 2:
        return None
    rates = sorted({r.learning_rate for p in points for r in p.runs if not r.probe})
    status = []
    for p in points:
        by_rate = {r.learning_rate: r.status for r in p.runs if not r.probe}
        status.append([by_rate.get(lr) for lr in rates])
    return StatusMap(
        title="Stability map",
        x_label="learning rate",
        rows=[label(p.settings) for p in points],
        x=rates,
        status=status,
    )


def sweep_charts(points: list[GridPoint]) -> list[Chart]:
    charts = [stability_map(points), loss_chart(points), failure_chart(points)]
    return [c for c in charts if c is not None]
