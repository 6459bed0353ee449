"""Batched sweep: 16 learning rates trained as one batched run (``nandoctor.sweep.run_rates``:
train every rate together, then diagnose each; no lambda_max) against the same 16 rates trained
one after another, each as ``train(spec.with_changes({"train.learning_rate": r}))``. The
separate runs include their per-run preparation (data, init), as running ``nandoctor run`` 16
times would, but not a diagnosis, which the sweep does include. Measured side by side in one
process (best of 3, alternating), on the blog-sized spec (10-20-5 sigmoid, one sample, 10 steps)
and the mid-size one (64-256-10, batch 256, float32, 200 of its 400 steps). The rates are
log-spaced so that on the mid-size spec a few go non-finite and drop out, as in a real sweep.

Targets (issue 5): the sweep >= 8x faster than the separate runs on the small spec, >= 2x on the
mid-size one.

The last columns split the sweep into its batched training and its 16 diagnoses. A machine with
other load and a threaded BLAS gives noisy numbers; ``OPENBLAS_NUM_THREADS=1`` steadies them.

    python benchmarks/sweep.py
"""

from __future__ import annotations

import time

import numpy as np
from _common import BLOG, MID, spec

from nandoctor.diagnose import diagnose
from nandoctor.run import train
from nandoctor.sweep import run_rates

RATES = 16


def side_by_side(*fns, repeat: int = 3) -> list[float]:
    """Best of ``repeat`` wall times of each of ``fns``, taken in turn, so that a burst of other
    load on the machine does not land on one side only."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    cases = (
        ("small (blog 10-20-5)", spec(BLOG), np.geomspace(1e-2, 1e3, RATES), 8.0),
        ("mid 64-256-10 f32", spec(MID, steps=200), np.geomspace(1e-4, 1.0, RATES), 2.0),
    )
    for name, s, rates, target in cases:
        rates = [float(r) for r in rates]
        runs = run_rates(s, rates, {})  # warm-up
        finite = sum(r.status != "nonfinite" for r in runs)
        outcomes = train(s, lrs=rates)
        separate, swept, trained, diagnosed = side_by_side(
            lambda s=s, rates=rates: [
                train(s.with_changes({"train.learning_rate": r})) for r in rates
            ],
            lambda s=s, rates=rates: run_rates(s, rates, {}),
            lambda s=s, rates=rates: train(s, lrs=rates),
            lambda o=outcomes: [diagnose(x) for x in o],
        )
        ratio = separate / swept
        verdict = "ok" if ratio >= target else "UNDER TARGET"
        print(
            f"{name:21} {RATES} separate runs {1e3 * separate:7.1f} ms   sweep {1e3 * swept:7.1f} ms"
            f"   {ratio:5.2f}x (target >= {target:g}x) {verdict}"
        )
        print(
            f"{'':21} sweep = batched training {1e3 * trained:7.1f} ms"
            f" ({separate / trained:.1f}x the separate runs) + {RATES} diagnoses"
            f" {1e3 * diagnosed:6.1f} ms   [{finite}/{RATES} rates finite, {s.train.steps} steps]"
        )


if __name__ == "__main__":
    main()
