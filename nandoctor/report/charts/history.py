"""The one place the pictures read a run's history (see ``nandoctor.instrument.history``).

Everything that draws a run goes through :func:`run_history`, so a change in how the history is
kept (bounded, downsampled, with explicit step numbers) is absorbed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nandoctor.instrument.history import STATS


@dataclass
class RunHistory:
    """``steps: (n,)`` the 1-based step of each row; ``stats[name]: (n, layers)``; ``loss: (n,)``."""

    steps: np.ndarray
    loss: np.ndarray
    stats: dict[str, np.ndarray]

    @property
    def layers(self) -> int:
        return self.stats["grad_norm"].shape[1] if "grad_norm" in self.stats else 0


def run_history(history: dict | None) -> RunHistory | None:
    """A diagnosis's ``history`` dict as a :class:`RunHistory` (None when there is none).

    Rows are steps 1..n unless the history names its steps (a ``steps`` array)."""
    if not history or "loss" not in history or not len(history["loss"]):
        return None
    loss = np.asarray(history["loss"], dtype=float)
    steps = history.get("steps")
    steps = np.arange(1, len(loss) + 1) if steps is None else np.asarray(steps)
    stats = {name: np.asarray(history[name], dtype=float) for name in STATS if name in history}
    return RunHistory(steps=steps.astype(float), loss=loss, stats=stats)
