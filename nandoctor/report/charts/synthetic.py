"""A made-up long run (any number of steps), to measure and test pictures of runs too long to
train in a test: a falling, noisy loss, growing gradient norms with one spike, dead and
saturated shares, and an Inf loss at the last step."""

from __future__ import annotations

import numpy as np

from nandoctor.diagnosis.findings import Diagnosis, Finding
from nandoctor.instrument.events import NonFinite
from nandoctor.instrument.history import STATS

LAYERS = ("relu", "sigmoid")


def long_run(steps: int, seed: int = 0) -> Diagnosis:
    rng = np.random.default_rng(seed)
    t = np.arange(1, steps + 1, dtype=float)
    noise = rng.lognormal(0.0, 0.3, (steps, len(LAYERS)))
    history = {name: noise * (1 + t[:, None] / steps) for name in STATS}
    history["grad_norm"][steps // 3, 0] = 1e6  # one spike the envelope must keep
    history["dead"] = np.clip(rng.random((steps, len(LAYERS))) * t[:, None] / steps, 0, 1)
    history["saturated"] = history["dead"][:, ::-1].copy()
    history["loss"] = 1 / np.sqrt(t) * rng.lognormal(0.0, 0.2, steps)
    history["loss"][-1] = np.inf
    first = NonFinite(steps, "loss", None, "loss", "log", "inf", 1.0)
    return Diagnosis(
        spec="synthetic.yaml",
        name=f"synthetic {steps} steps",
        status="nonfinite",
        steps_run=steps,
        steps_budget=steps,
        learning_rate=0.1,
        first_nonfinite=first,
        cause=Finding("overflow", "made up", ["a made-up run"]),
        contributing=[],
        warnings=[],
        recommendations=[],
        loss_initial=float(history["loss"][0]),
        loss_final=None,
        history=history,
        layers=list(LAYERS),
    )
