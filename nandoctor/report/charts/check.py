"""The small loss curve each ``check`` result carries for its sparkline."""

from __future__ import annotations

import numpy as np

from nandoctor.report.charts.downsample import envelope

SPARK_POINTS = 60


def loss_curve(loss: np.ndarray, points: int = SPARK_POINTS) -> list[float | None]:
    """The loss downsampled to ``points`` bucket means (None where a bucket held no finite loss),
    small enough to travel with a result between processes."""
    loss = np.asarray(loss, dtype=float)
    b = envelope(np.arange(1, len(loss) + 1), loss, points)
    return [float(v) if np.isfinite(v) else None for v in b.mean]
