"""What a chart shows, independent of how it is drawn: plain dataclasses every renderer reads.

The SVG renderer (:mod:`nandoctor.report.charts.svg`) and the matplotlib one
(:mod:`nandoctor.report.plot`) draw the same objects, so the HTML page and the ``--plot`` image
never disagree about the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# tones: a renderer maps each to a colour
TONES = ("neutral", "bad", "warn", "good", "accent")


@dataclass
class Series:
    """One line (or set of points) on a :class:`LineChart`.

    ``x``, ``y``: ``(n,)``; ``lo``, ``hi``: ``(n,)`` min/max envelope of the steps each point
    stands for (downsampled runs), drawn as a band. ``kind``: ``line`` | ``points`` | ``crosses``.
    ``color``: an index into the renderer's palette (layer i -> i), or a tone name.
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    kind: str = "line"
    color: int | str = 0


@dataclass
class Marker:
    """A reference line: ``axis='x'`` a vertical line at ``at``, ``'y'`` a horizontal one."""

    axis: str
    at: float
    label: str
    tone: str = "neutral"


@dataclass
class LineChart:
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    markers: list[Marker] = field(default_factory=list)
    x_log: bool = False
    y_log: bool = False
    note: str = ""  # one sentence under the chart (e.g. the headroom to the dtype's limit)
    kind: str = "line"


@dataclass
class HeatMap:
    """``values[row, col]`` in [0, 1] (NaN: not run), one row per label, columns at ``x``."""

    title: str
    x_label: str
    value_label: str
    rows: list[str]
    x: np.ndarray  # (cols,) the step each column starts at
    x_end: float  # the last step covered
    values: np.ndarray  # (rows, cols)
    note: str = ""
    kind: str = "heatmap"


@dataclass
class StatusMap:
    """A grid of outcomes: ``status[row][col]`` (``healthy`` | ``warning`` | ``nonfinite`` | None
    where that combination was not run) for the learning rates ``x`` and the ``rows``."""

    title: str
    x_label: str
    rows: list[str]
    x: list[float]
    status: list[list[str | None]]
    note: str = ""
    kind: str = "statusmap"


@dataclass
class Bars:
    """Horizontal bars: one per label, its ``value``, coloured by ``tones``."""

    title: str
    labels: list[str]
    values: list[float]
    tones: list[str]
    value_label: str = ""
    note: str = ""
    kind: str = "bars"


Chart = LineChart | HeatMap | StatusMap | Bars
