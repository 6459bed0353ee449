"""Charts drawn as inline SVG, by hand: no library, no script, no font or file to fetch.

An SVG string goes straight into the HTML page, so the page opens anywhere (offline, in a bug
report's attachment) and the core install needs nothing more. Each chart's ``<svg>`` carries
``data-kind`` and ``data-points`` (how many values it drew), which the browser test reads.
"""

from __future__ import annotations

import math
from html import escape

import numpy as np

from nandoctor.diagnosis.findings import fmt
from nandoctor.report.charts.model import Bars, Chart, HeatMap, LineChart, Series, StatusMap

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
TONE = {
    "neutral": "#666666",
    "bad": "#d62728",
    "warn": "#d08c00",
    "good": "#2ca02c",
    "accent": "#1f77b4",
}
STATUS_COLOR = {"healthy": "#2ca02c", "warning": "#e6b400", "nonfinite": "#d62728", None: "#eeeeee"}
WIDTH, HEIGHT = 620, 250
LEFT, RIGHT, BOTTOM = 64, 16, 38
TITLE_H, LEGEND_H = 22, 18
FONT = "font-family='system-ui, sans-serif' font-size='11'"


def color(c: int | str) -> str:
    return TONE[c] if isinstance(c, str) else PALETTE[c % len(PALETTE)]


class Scale:
    """Values in ``[lo, hi]`` (log10 when ``log``) to pixels in ``[p0, p1]``."""

    def __init__(self, lo: float, hi: float, log: bool, p0: float, p1: float):
        self.log, self.p0, self.p1 = log, p0, p1
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            lo, hi = lo - 1, hi + 1
        self.lo, self.hi = lo, hi

    def __call__(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, dtype=float)
        with np.errstate(all="ignore"):
            t = np.log10(np.where(v > 0, v, np.nan)) if self.log else v
            return self.p0 + (t - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self, most: int = 6) -> list[float]:
        if self.log and self.hi - self.lo >= 1:
            a, b = math.ceil(self.lo), math.floor(self.hi)
            step = max(1, math.ceil((b - a + 1) / most))
            return [10.0**e for e in range(a, b + 1, step)]
        lo, hi = (10**self.lo, 10**self.hi) if self.log else (self.lo, self.hi)
        raw = (hi - lo) / most
        mag = 10 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
        first = math.ceil(lo / step) * step
        return [
            first + k * step
            for k in range(int((hi - first) / step) + 1)
            if first + k * step > 0 or not self.log
        ]


def domain(values: list[np.ndarray], log: bool) -> tuple[float, float]:
    """The range of the finite (and, on a log axis, positive) values, padded by 5%."""
    finite = [v[np.isfinite(v) & ((v > 0) if log else True)] for v in values if v is not None]
    allv = np.concatenate([np.ravel(v) for v in finite]) if finite else np.empty(0)
    if not allv.size:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(allv.min()), float(allv.max())
    if log:
        llo, lhi = math.log10(lo), math.log10(hi)
        pad = max(lhi - llo, 0.5) * 0.05
        return 10 ** (llo - pad), 10 ** (lhi + pad)
    pad = (hi - lo) * 0.05 or max(abs(hi) * 0.1, 0.5)
    return lo - pad, hi + pad


def _coords(xs: np.ndarray, ys: np.ndarray) -> list[list[tuple[float, float]]]:
    """Runs of consecutive drawable points (a NaN breaks the line)."""
    runs, cur = [], []
    for x, y in zip(xs, ys, strict=True):
        if np.isfinite(x) and np.isfinite(y):
            cur.append((round(float(x), 1), round(float(y), 1)))
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def _path(points: list[tuple[float, float]]) -> str:
    return "M" + " L".join(f"{x},{y}" for x, y in points)


def _text(
    x: float, y: float, s: str, anchor: str = "start", fill: str = "#333", extra: str = ""
) -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' fill='{fill}' {extra}>{escape(s)}</text>"


def _frame(kind: str, points: int, height: int, body: list[str], title: str, label: str) -> str:
    return (
        f"<svg class='chart' data-kind='{kind}' data-points='{points}' role='img' "
        f"aria-label='{escape(label, quote=True)}' xmlns='http://www.w3.org/2000/svg' "
        f"viewBox='0 0 {WIDTH} {height}' width='{WIDTH}' height='{height}' {FONT}>"
        f"<rect width='{WIDTH}' height='{height}' fill='white'/>"
        + _text(LEFT, 15, title, extra="font-size='13' font-weight='600'")
        + "".join(body)
        + "</svg>"
    )


def _legend(series: list[Series], y: float) -> list[str]:
    out, x = [], LEFT
    for s in series:
        out.append(f"<rect x='{x}' y='{y - 8}' width='10' height='10' fill='{color(s.color)}'/>")
        out.append(_text(x + 14, y, s.label))
        x += 22 + 6.2 * len(s.label)
    return out


def _tick_label(v: float) -> str:
    """A short axis label: 0.05, 250, 1e-7, 2.5e6."""
    if v == 0 or not math.isfinite(v):
        return fmt(v)
    e = math.floor(math.log10(abs(v)) + 1e-9)
    if abs(e) < 4:
        return f"{v:.3g}"
    m = v / 10**e
    return f"1e{e}" if abs(m - 1) < 1e-6 else f"{m:.2g}e{e}"


def line_chart(c: LineChart) -> str:
    labels = max(len(c.series) > 1, sum(m.axis == "x" for m in c.markers) - 1)
    top = TITLE_H + LEGEND_H * labels + 8
    bottom = HEIGHT - BOTTOM
    xs = [s.x for s in c.series] + [np.array([m.at for m in c.markers if m.axis == "x"])]
    ys = [v for s in c.series for v in (s.y, s.lo, s.hi)]
    ys.append(np.array([m.at for m in c.markers if m.axis == "y"]))
    sx = Scale(*domain(xs, c.x_log), c.x_log, LEFT, WIDTH - RIGHT)
    sy = Scale(*domain(ys, c.y_log), c.y_log, bottom, top)
    body = _axes(sx, sy, top, bottom, c.x_label, c.y_label)
    if len(c.series) > 1:
        body += _legend(c.series, TITLE_H + 12)
    drawn = 0
    for s in c.series:
        body += _series(s, sx, sy)
        drawn += int(np.isfinite(s.y).sum())
    vertical = [m for m in c.markers if m.axis == "x"]
    for m in c.markers:
        body += _marker(m, sx, sy, top, bottom, vertical.index(m) if m in vertical else 0)
    return _frame(
        "line", drawn, HEIGHT, body, c.title, f"{c.title}: {c.y_label} against {c.x_label}"
    )


def _axes(sx: Scale, sy: Scale, top: float, bottom: float, x_label: str, y_label: str) -> list[str]:
    out = [
        f"<rect x='{LEFT}' y='{top}' width='{WIDTH - LEFT - RIGHT}' height='{bottom - top}' fill='#fafafa' stroke='#ccc'/>"
    ]
    for v in sy.ticks():
        y = float(sy(v))
        out.append(
            f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e4e4e4'/>"
        )
        out.append(_text(LEFT - 5, y + 4, _tick_label(v), "end"))
    for v in sx.ticks(8):
        x = float(sx(v))
        out.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{bottom}' stroke='#eeeeee'/>")
        out.append(_text(x, bottom + 14, _tick_label(v), "middle"))
    out.append(
        _text(
            (LEFT + WIDTH - RIGHT) / 2,
            bottom + 31,
            x_label + (" (log)" if sx.log else ""),
            "middle",
        )
    )
    out.append(
        _text(
            14,
            (top + bottom) / 2,
            y_label + (" (log)" if sy.log else ""),
            "middle",
            extra=f"transform='rotate(-90 14 {(top + bottom) / 2:.1f})'",
        )
    )
    return out


def _series(s: Series, sx: Scale, sy: Scale) -> list[str]:
    col = color(s.color)
    px, py = sx(s.x), sy(s.y)
    out = []
    if s.lo is not None and s.hi is not None and not np.array_equal(s.lo, s.hi, equal_nan=True):
        plo, phi = sy(s.lo), sy(s.hi)
        for hi_run, lo_run in zip(_coords(px, phi), _coords(px, plo), strict=False):
            band = hi_run + lo_run[::-1]
            out.append(
                f"<path d='{_path(band)} Z' fill='{col}' fill-opacity='0.18' stroke='none'/>"
            )
    if s.kind == "line":
        for run in _coords(px, py):
            if len(run) == 1:
                out.append(f"<circle cx='{run[0][0]}' cy='{run[0][1]}' r='3' fill='{col}'/>")
            else:
                out.append(
                    f"<path d='{_path(run)}' fill='none' stroke='{col}' stroke-width='1.6'/>"
                )
        return out
    for k in np.flatnonzero(np.isfinite(px) & np.isfinite(py)):
        x, y = round(float(px[k]), 1), round(float(py[k]), 1)
        tip = f"<title>{escape(s.label)}: {fmt(float(s.x[k]))} → {fmt(float(s.y[k]))}</title>"
        if s.kind == "crosses":
            out.append(
                f"<path d='M{x - 4},{y - 4} L{x + 4},{y + 4} M{x - 4},{y + 4} L{x + 4},{y - 4}' "
                f"stroke='{col}' stroke-width='2'>{tip}</path>"
            )
        else:
            out.append(f"<circle cx='{x}' cy='{y}' r='3.5' fill='{col}'>{tip}</circle>")
    return out


def _marker(m, sx: Scale, sy: Scale, top: float, bottom: float, row: int = 0) -> list[str]:
    """A dashed reference line. A vertical one is labelled at the top right, above the plot
    (``row``: its line there), so labels never cover the data or each other."""
    col = TONE[m.tone]
    if m.axis == "x":
        x = float(sx(m.at))
        ly = 14 + 13 * row
        return [
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top}' y2='{bottom}' stroke='{col}' stroke-width='1.5' stroke-dasharray='5 3'/>",
            f"<line x1='{WIDTH - RIGHT - 20}' x2='{WIDTH - RIGHT}' y1='{ly - 4}' y2='{ly - 4}' stroke='{col}' stroke-width='1.5' stroke-dasharray='5 3'/>",
            _text(WIDTH - RIGHT - 24, ly, m.label, "end", col, "font-weight='600'"),
        ]
    y = float(sy(m.at))
    return [
        f"<line x1='{LEFT}' x2='{WIDTH - RIGHT}' y1='{y:.1f}' y2='{y:.1f}' stroke='{col}' stroke-width='1.2' stroke-dasharray='4 3'/>",
        _text(LEFT + 4, y - 4, m.label, "start", col),
    ]


def _shade(v: float) -> str:
    """0 -> pale yellow, 1 -> dark red; NaN -> grey."""
    if not math.isfinite(v):
        return "#eeeeee"
    stops = ((255, 255, 229), (254, 196, 79), (236, 112, 20), (153, 52, 4))
    t = min(max(v, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    rgb = [round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1], strict=True)]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def heat_map(c: HeatMap) -> str:
    label_w = 190
    row_h = 22
    top = TITLE_H + 8
    height = top + row_h * len(c.rows) + BOTTOM + 22
    bottom = top + row_h * len(c.rows)
    sx = Scale(float(c.x[0]) if len(c.x) else 1.0, c.x_end + 1, False, label_w, WIDTH - RIGHT)
    edges = np.append(c.x, c.x_end + 1)
    body = []
    drawn = 0
    for r, name in enumerate(c.rows):
        y = top + r * row_h
        body.append(_text(label_w - 6, y + row_h / 2 + 4, name, "end"))
        for k in range(len(c.x)):
            v = float(c.values[r, k])
            x0, x1 = float(sx(edges[k])), float(sx(edges[k + 1]))
            drawn += math.isfinite(v)
            body.append(
                f"<rect x='{x0:.1f}' y='{y}' width='{max(x1 - x0, 0.6):.1f}' height='{row_h - 2}' "
                f"fill='{_shade(v)}'><title>steps {int(edges[k])}-{int(edges[k + 1]) - 1}: "
                f"{fmt(100 * v) if math.isfinite(v) else 'n/a'}%</title></rect>"
            )
    for v in sx.ticks(8):
        x = float(sx(v))
        body.append(_text(x, bottom + 14, _tick_label(v), "middle"))
    body.append(_text((label_w + WIDTH - RIGHT) / 2, bottom + 29, c.x_label, "middle"))
    ly = bottom + 38
    for i, v in enumerate((0, 0.25, 0.5, 0.75, 1.0)):
        x = label_w + i * 56
        body.append(
            f"<rect x='{x}' y='{ly}' width='14' height='10' fill='{_shade(v)}' stroke='#bbb'/>"
        )
        body.append(_text(x + 18, ly + 9, f"{v:.0%}"))
    body.append(_text(label_w + 5 * 56 + 4, ly + 9, c.value_label))
    return _frame("heatmap", drawn, height + 8, body, c.title, f"{c.title}: {c.value_label}")


def status_map(c: StatusMap) -> str:
    label_w = 190
    row_h = 24
    top = TITLE_H + 8
    bottom = top + row_h * len(c.rows)
    height = bottom + 62
    n = max(len(c.x), 1)
    cell_w = (WIDTH - RIGHT - label_w) / n
    body = []
    drawn = 0
    every = max(1, math.ceil(n / 10))
    for r, name in enumerate(c.rows):
        y = top + r * row_h
        body.append(_text(label_w - 6, y + row_h / 2 + 4, name, "end"))
        for k, rate in enumerate(c.x):
            st = c.status[r][k]
            drawn += st is not None
            body.append(
                f"<rect x='{label_w + k * cell_w:.1f}' y='{y}' width='{cell_w - 1:.1f}' height='{row_h - 2}' "
                f"fill='{STATUS_COLOR[st]}'><title>lr {fmt(rate)}, {escape(name)}: {st or 'not run'}</title></rect>"
            )
    for k, rate in enumerate(c.x):
        if k % every == 0:
            body.append(_text(label_w + (k + 0.5) * cell_w, bottom + 14, fmt(rate), "middle"))
    body.append(_text((label_w + WIDTH - RIGHT) / 2, bottom + 29, c.x_label, "middle"))
    ly = bottom + 40
    for i, st in enumerate(("healthy", "warning", "nonfinite")):
        x = label_w + i * 90
        body.append(f"<rect x='{x}' y='{ly}' width='14' height='10' fill='{STATUS_COLOR[st]}'/>")
        body.append(_text(x + 18, ly + 9, st))
    return _frame("statusmap", drawn, height, body, c.title, c.title)


def bars(c: Bars) -> str:
    label_w = 220
    row_h = 20
    top = TITLE_H + 8
    bottom = top + row_h * len(c.labels)
    height = bottom + 30
    most = max([v for v in c.values if v > 0] or [1])
    body = []
    for r, (name, v, tone) in enumerate(zip(c.labels, c.values, c.tones, strict=True)):
        y = top + r * row_h
        w = (WIDTH - RIGHT - label_w - 60) * v / most
        body.append(_text(label_w - 6, y + 14, name, "end"))
        body.append(
            f"<rect x='{label_w}' y='{y + 3}' width='{max(w, 1):.1f}' height='{row_h - 6}' fill='{TONE[tone]}'>"
            f"<title>{escape(name)}: {v:g}</title></rect>"
        )
        body.append(_text(label_w + max(w, 1) + 5, y + 14, f"{v:g}"))
    body.append(_text(label_w, bottom + 18, c.value_label))
    return _frame("bars", len(c.values), height, body, c.title, c.title)


def sparkline(values: np.ndarray, failed: bool = False, width: int = 120, height: int = 24) -> str:
    """A tiny loss curve for a table cell (log scale when positive and wide); a red dot marks a
    run that ended non-finite."""
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(v)
    if not ok.any():
        return "<svg class='spark' data-points='0' width='0' height='0'></svg>"
    log = bool((v[ok] > 0).all() and v[ok].max() / v[ok].min() > 100)
    sx = Scale(0, max(len(v) - 1, 1), False, 2, width - 6)
    sy = Scale(*domain([v], log), log, height - 3, 3)
    runs = _coords(sx(np.arange(len(v))), sy(v))
    body = "".join(
        f"<path d='{_path(r)}' fill='none' stroke='#1f77b4' stroke-width='1.2'/>" for r in runs
    )
    if failed:
        x, y = runs[-1][-1]
        body += f"<circle cx='{x}' cy='{y}' r='2.5' fill='{TONE['bad']}'/>"
    return (
        f"<svg class='spark' data-points='{int(ok.sum())}' xmlns='http://www.w3.org/2000/svg' "
        f"width='{width}' height='{height}' viewBox='0 0 {width} {height}'>{body}</svg>"
    )


# chart kind -> SVG renderer
RENDERERS = {"line": line_chart, "heatmap": heat_map, "statusmap": status_map, "bars": bars}


def render(chart: Chart) -> str:
    return RENDERERS[chart.kind](chart)
