"""The charts of one run, built from its :class:`~nandoctor.diagnosis.findings.Diagnosis`."""

from __future__ import annotations

import math

import numpy as np

from nandoctor.diagnosis.findings import Diagnosis, fmt
from nandoctor.diagnosis.measures import DTYPE_MAX
from nandoctor.report.charts.downsample import MAX_POINTS, envelope
from nandoctor.report.charts.history import RunHistory, diagnosis_history
from nandoctor.report.charts.model import Chart, HeatMap, LineChart, Marker, Series

TYPICAL_UPDATE_RATIO = 1e-3  # |dW|/|W| around this is the classic rule of thumb for a healthy lr
LIMIT_SHOWN_WITHIN = 1e8  # draw the dtype's limit when the largest |z| is within this factor
SQUASHING = ("sigmoid", "tanh", "softmax")


def failure_marker(d: Diagnosis) -> Marker | None:
    """The step of the first non-finite value, labelled with the value and the cause."""
    f = d.first_nonfinite
    if f is None or not f.step:
        return None
    why = f": {d.cause.id.replace('_', ' ')}" if d.cause else ""
    return Marker("x", f.step, f"{f.value.upper()} at step {f.step}{why}", "bad")


def _positive(a: np.ndarray) -> bool:
    ok = a[np.isfinite(a)]
    return bool(ok.size) and bool((ok > 0).all())


def _layer_series(h: RunHistory, stat: str, acts: list[str], max_points: int) -> list[Series]:
    b = h.envelope(stat, max_points)
    return [
        Series(
            f"layer {i + 1} ({act})",
            b.x,
            b.mean[:, i],
            b.lo[:, i],
            b.hi[:, i],
            color=i,
        )
        for i, act in enumerate(acts)
        if i < b.mean.shape[1]
    ]


def loss_chart(d: Diagnosis, h: RunHistory, max_points: int = MAX_POINTS) -> LineChart:
    b = h.envelope("loss", max_points)
    lo = np.nanmin(b.lo) if np.isfinite(b.lo).any() else 1.0
    hi = np.nanmax(b.hi) if np.isfinite(b.hi).any() else 1.0
    log = _positive(h.loss) and hi / max(lo, 1e-300) > 100
    marker = failure_marker(d)
    note = ""
    if d.status == "nonfinite" and not np.isfinite(h.loss[-1]):
        note = (
            f"the loss is {fmt(float(h.loss[-1]))} at step {int(h.steps[-1])}: the line ends there"
        )
    return LineChart(
        title="Loss",
        x_label="step",
        y_label="loss",
        series=[Series("loss", b.x, b.mean, b.lo, b.hi, color="accent")],
        markers=[marker] if marker else [],
        y_log=log,
        note=note,
    )


def norm_chart(
    d: Diagnosis, h: RunHistory, stat: str, title: str, max_points: int = MAX_POINTS
) -> LineChart:
    marker = failure_marker(d)
    return LineChart(
        title=title,
        x_label="step",
        y_label=title.lower(),
        series=_layer_series(h, stat, d.layers, max_points),
        markers=[marker] if marker else [],
        y_log=True,
    )


def max_z_chart(d: Diagnosis, h: RunHistory, dtype: str, max_points: int = MAX_POINTS) -> LineChart:
    """max |pre-activation| per layer against the dtype's overflow limit (and exp's, ln(max))."""
    chart = norm_chart(d, h, "max_abs_z", "max |pre-activation|", max_points)
    limit = DTYPE_MAX.get(dtype, float(np.finfo(np.float64).max))
    z = h.hi["max_abs_z"]
    top = float(np.nanmax(z[np.isfinite(z)])) if np.isfinite(z).any() else 1.0
    if top * LIMIT_SHOWN_WITHIN >= limit:
        chart.markers.append(Marker("y", limit, f"{dtype} max {fmt(limit)}", "bad"))
    else:
        decades = math.log10(limit / max(top, 1e-300))
        chart.note = (
            f"{dtype} overflows at {fmt(limit)}, {decades:.0f} decades above the largest |z| "
            f"({fmt(top)})"
        )
    exp_limit = math.log(limit)
    if any(a in SQUASHING or a == "elu" for a in d.layers) and top * 10 >= exp_limit:
        chart.markers.append(
            Marker("y", exp_limit, f"exp overflows: ln(max) = {fmt(exp_limit)}", "warn")
        )
    return chart


def share_map(d: Diagnosis, h: RunHistory, max_points: int = 200) -> HeatMap | None:
    """Saturated share of squashing layers and dead share of ReLU layers, per layer over steps."""
    rows, cols = [], []
    for i, act in enumerate(d.layers):
        if act in SQUASHING and "saturated" in h.hi:
            rows.append(f"layer {i + 1} {act}: saturated")
            cols.append(h.hi["saturated"][:, i])
        elif act == "relu" and "dead" in h.hi:
            rows.append(f"layer {i + 1} relu: dead")
            cols.append(h.hi["dead"][:, i])
    if not rows:
        return None
    b = envelope(h.steps, np.column_stack(cols), max_points, end=h.end)
    return HeatMap(
        title="Saturated / dead units",
        x_label="step",
        value_label="share of units",
        rows=rows,
        x=b.x,
        x_end=b.end,
        values=b.hi.T,
    )


def update_chart(d: Diagnosis, h: RunHistory, max_points: int = MAX_POINTS) -> LineChart:
    chart = norm_chart(d, h, "update_ratio", "update / weight", max_points)
    chart.markers.append(Marker("y", TYPICAL_UPDATE_RATIO, "1e-3, a typical ratio", "neutral"))
    return chart


def run_charts(d: Diagnosis, dtype: str = "float64", max_points: int = MAX_POINTS) -> list[Chart]:
    """Every chart of a run's page, in reading order (none when the run has no history)."""
    h = diagnosis_history(d)
    if h is None:
        return []
    charts: list[Chart] = [loss_chart(d, h, max_points)]
    if h.layers:
        charts += [
            norm_chart(d, h, "grad_norm", "Gradient norm", max_points),
            norm_chart(d, h, "weight_norm", "Weight norm", max_points),
            max_z_chart(d, h, dtype, max_points),
        ]
        heat = share_map(d, h)
        if heat is not None:
            charts.append(heat)
        charts.append(update_chart(d, h, max_points))
    return charts
