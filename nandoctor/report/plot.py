"""``--plot FILE.png|.svg``: the charts of a run or a sweep as one image, drawn by matplotlib.

matplotlib is an optional extra (``pip install 'nandoctor[plot]'``): it draws the same chart
objects as the HTML page (:mod:`nandoctor.report.charts.model`), in the same colours.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nandoctor.errors import UsageProblem
from nandoctor.report.charts.model import Bars, Chart, HeatMap, LineChart, StatusMap
from nandoctor.report.charts.svg import STATUS_COLOR, TONE, color

SUFFIXES = (".png", ".svg")
COLUMNS = 2


def require_matplotlib(option: str = "--plot") -> None:
    """Raise a one-line :class:`UsageProblem` when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageProblem(f"{option} needs matplotlib: pip install 'nandoctor[plot]'") from None


def check_target(path: str, option: str = "--plot") -> None:
    """Refuse, before any work, an image name nandoctor cannot write."""
    if Path(path).suffix.lower() not in SUFFIXES:
        raise UsageProblem(f"{option} {path}: the file must end in .png or .svg")
    require_matplotlib(option)


def _line(ax, c: LineChart) -> None:
    for s in c.series:
        col = color(s.color)
        if s.lo is not None and s.hi is not None and not np.array_equal(s.lo, s.hi, equal_nan=True):
            ax.fill_between(s.x, s.lo, s.hi, color=col, alpha=0.18, linewidth=0)
        if s.kind == "line":
            ax.plot(s.x, s.y, color=col, linewidth=1.4, label=s.label)
        elif len(s.x):
            mark = "x" if s.kind == "crosses" else "o"
            ax.scatter(s.x, s.y, color=col, marker=mark, s=28, label=s.label, zorder=3)
    for k, m in enumerate(c.markers):
        col = TONE[m.tone]
        if m.axis == "x":
            ax.axvline(m.at, color=col, linestyle="--", linewidth=1.2)
            ax.annotate(
                m.label,
                (m.at, 1),
                xycoords=("data", "axes fraction"),
                xytext=(-3, -12 - 11 * k),
                textcoords="offset points",
                color=col,
                fontsize=8,
                ha="right",
            )
        else:
            ax.axhline(m.at, color=col, linestyle=":", linewidth=1.2)
            ax.annotate(
                m.label,
                (1, m.at),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 3),
                textcoords="offset points",
                color=col,
                fontsize=8,
                ha="right",
            )
    # a log axis needs a positive value to show (a run that failed at step 1 may have none)
    if c.x_log and _any_positive([s.x for s in c.series]):
        ax.set_xscale("log")
    if c.y_log and _any_positive([s.y for s in c.series]):
        ax.set_yscale("log")
    ax.set_xlabel(c.x_label)
    ax.set_ylabel(c.y_label)
    if len(c.series) > 1:
        ax.legend(fontsize=7, loc="best")


def _any_positive(arrays) -> bool:
    return any(bool(np.any(np.isfinite(a) & (a > 0))) for a in arrays if len(a))


def _heat(ax, c: HeatMap) -> None:
    edges = np.append(c.x, c.x_end + 1)
    mesh = ax.pcolormesh(
        edges,
        np.arange(len(c.rows) + 1),
        np.ma.masked_invalid(c.values),
        cmap="YlOrBr",
        vmin=0,
        vmax=1,
    )
    ax.set_yticks(np.arange(len(c.rows)) + 0.5, c.rows, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(c.x_label)
    ax.figure.colorbar(mesh, ax=ax, label="share", fraction=0.05)


def _status(ax, c: StatusMap) -> None:
    from matplotlib.colors import ListedColormap

    order = ["healthy", "warning", "nonfinite"]
    grid = np.array([[order.index(s) if s in order else np.nan for s in row] for row in c.status])
    cmap = ListedColormap([STATUS_COLOR[s] for s in order])
    ax.pcolormesh(np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=2.5, edgecolors="white")
    every = max(1, math.ceil(len(c.x) / 8))
    ticks = list(range(0, len(c.x), every))
    ax.set_xticks([t + 0.5 for t in ticks], [f"{c.x[t]:.2g}" for t in ticks], fontsize=7)
    ax.set_yticks(np.arange(len(c.rows)) + 0.5, c.rows, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(c.x_label + "  (green healthy, yellow warning, red non-finite)")


def _bars(ax, c: Bars) -> None:
    ax.barh(c.labels, c.values, color=[TONE[t] for t in c.tones])
    ax.invert_yaxis()
    ax.set_xlabel(c.value_label)


DRAW = {"line": _line, "heatmap": _heat, "statusmap": _status, "bars": _bars}


def save_plot(charts: list[Chart], path: str, title: str) -> None:
    """Draw ``charts`` in a grid of two columns and write the image whole to ``path``."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    rows = max(1, math.ceil(len(charts) / COLUMNS))
    fig = Figure(figsize=(6.4 * COLUMNS, 3.3 * rows), layout="constrained")
    fig.suptitle(title, fontsize=12)
    axes = fig.subplots(rows, COLUMNS, squeeze=False).ravel()
    for ax, chart in zip(axes, charts, strict=False):
        with np.errstate(all="ignore"):
            DRAW[chart.kind](ax, chart)
        ax.set_title(chart.title, fontsize=10)
    for ax in axes[len(charts) :]:
        ax.set_visible(False)
    from nandoctor.report.output import open_output

    try:
        with open_output(path, binary=True) as f:
            fig.savefig(f, format=Path(path).suffix.lower().lstrip("."), dpi=100)
    except OSError as e:
        raise UsageProblem(f"--plot {path}: {e.strerror}") from None
