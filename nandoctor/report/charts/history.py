"""The one place the pictures read a run's history (see ``nandoctor.instrument.history``).

A run keeps two records: the *window*, every step of the last few thousand at full resolution,
and the *summary*, the whole run in at most a few hundred buckets (min, max and last value of
each). A picture of the whole run reads the window while it still holds every step; once the run
has outgrown it, the summary's buckets of the earlier steps come first. Everything that draws a
run goes through :func:`run_history`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nandoctor.instrument.history import STATS
from nandoctor.report.charts.downsample import MAX_POINTS, Buckets, envelope


@dataclass
class RunHistory:
    """The whole run: ``steps: (n,)`` the first step each row stands for; ``values[name]``:
    ``(n, layers)`` (``loss``: ``(n,)``); ``lo`` / ``hi``: the smallest and largest value each
    row stands for (the same arrays as ``values`` when every row is one step)."""

    steps: np.ndarray
    values: dict[str, np.ndarray]
    lo: dict[str, np.ndarray]
    hi: dict[str, np.ndarray]
    end: int  # the last step

    @property
    def loss(self) -> np.ndarray:
        return self.values["loss"]

    def envelope(self, name: str, max_points: int = MAX_POINTS) -> Buckets:
        """``name`` downsampled to ``max_points`` rows, each with its min/max envelope."""
        return envelope(
            self.steps, self.values[name], max_points, self.lo[name], self.hi[name], self.end
        )

    @property
    def layers(self) -> int:
        return self.values["grad_norm"].shape[1] if "grad_norm" in self.values else 0


def run_history(
    history: dict | None, history_start: int = 1, summary: dict | None = None
) -> RunHistory | None:
    """A run's window (``history``, its first row at step ``history_start``), preceded, when the
    run outgrew the window, by its ``summary``'s buckets of the earlier steps, as one
    :class:`RunHistory` (None with no history)."""
    if not history or "loss" not in history or not len(history["loss"]):
        return None
    names = [n for n in ("loss", *STATS) if n in history]
    window = {n: np.asarray(history[n], dtype=float) for n in names}
    steps = history_start + np.arange(len(window["loss"]), dtype=float)
    end = int(steps[-1])
    if history_start == 1 or not summary or not len(summary.get("step", ())):
        return RunHistory(steps, window, window, window, end)
    # the steps before the window, from the summary's buckets; then the window, step by step
    early = np.asarray(summary["step"]) < history_start

    def joined(kind: str | None) -> dict[str, np.ndarray]:
        return {
            n: np.concatenate([np.asarray(summary[f"{n}_{kind}"], dtype=float)[early], window[n]])
            for n in names
        }

    steps = np.concatenate([np.asarray(summary["step"], dtype=float)[early], steps])
    return RunHistory(steps, joined("last"), joined("min"), joined("max"), end)


def diagnosis_history(d) -> RunHistory | None:
    """:func:`run_history` of a :class:`~nandoctor.diagnosis.findings.Diagnosis`."""
    return run_history(d.history, getattr(d, "history_start", 1), getattr(d, "summary", None))
