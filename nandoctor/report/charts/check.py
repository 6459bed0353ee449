"""The small loss curve each ``check`` result carries for its sparkline."""

from __future__ import annotations

import numpy as np

from nandoctor.report.charts.history import run_history

SPARK_POINTS = 60


def loss_curve(outcome, points: int = SPARK_POINTS) -> list[float | None]:
    """The run's loss downsampled to ``points`` bucket means (None where a bucket held no finite
    loss), small enough to travel with a result between processes."""
    h = run_history(outcome.history, outcome.history_start, outcome.summary)
    if h is None:
        return []
    return [float(v) if np.isfinite(v) else None for v in h.envelope("loss", points).mean]
