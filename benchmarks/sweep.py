"""Batched sweep: 16 learning rates through ``nandoctor.sweep.run_rates`` (trained as replicas
of batched runs, then each diagnosed; no lambda_max) against the same 16 rates trained one after
another, each as ``train(spec.with_changes({"train.learning_rate": r}))``. The separate runs
include their per-run preparation (data, init), as running ``nandoctor run`` 16 times would, but
no diagnosis, which the sweep does include. Measured side by side in one process (best of 3,
alternating), on the blog-sized spec (10-20-5 sigmoid, one sample, 10 steps) and the mid-size one
(64-256-10, batch 256, float32, 200 of its 400 steps). The rates are log-spaced, so on the
mid-size spec a few go non-finite and drop out, as in a real sweep. BLAS runs on one thread, as
in the CLI (``nandoctor.parallel.single_threaded_blas``).

Targets (issue 5): the sweep >= 8x faster than the separate runs on the small spec, >= 2x on the
mid-size one.

The next lines split the sweep into its training (a few rates per batched run on large layers,
see ``nandoctor.sweep.chunk_size``; all 16 in one run for comparison) and its 16 diagnoses.

    python benchmarks/sweep.py
"""

from __future__ import annotations

import time

import numpy as np
from _common import BLOG, MID, spec

from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare
from nandoctor.parallel import single_threaded_blas
from nandoctor.sweep import chunk_size, run_rates

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


def chunked(s, rates, size: int) -> None:
    """The training part of ``run_rates``: ``size`` rates per batched run."""
    for i in range(0, len(rates), size):
        train(s, lrs=rates[i : i + size])


def main() -> None:
    cases = (
        ("small (blog 10-20-5)", spec(BLOG), np.geomspace(1e-2, 1e3, RATES), 8.0),
        ("mid 64-256-10 f32", spec(MID, steps=200), np.geomspace(1e-4, 1.0, RATES), 2.0),
    )
    for name, s, rates, target in cases:
        rates = [float(r) for r in rates]
        runs = run_rates(s, rates, {})  # warm-up
        finite = sum(r.status != "nonfinite" for r in runs)
        size = chunk_size(s, prepare(s), RATES)
        outcomes = train(s, lrs=rates)
        separate, swept, trained, at_once, diagnosed = side_by_side(
            lambda s=s, rates=rates: [
                train(s.with_changes({"train.learning_rate": r})) for r in rates
            ],
            lambda s=s, rates=rates: run_rates(s, rates, {}),
            lambda s=s, rates=rates, k=size: chunked(s, rates, k),
            lambda s=s, rates=rates: train(s, lrs=rates),
            lambda o=outcomes: [diagnose(x) for x in o],
        )
        ratio = separate / swept
        verdict = "ok" if ratio >= target else "UNDER TARGET"
        print(
            f"{name} ({finite}/{RATES} rates finite, {s.train.steps} steps):"
            f" {RATES} separate runs {1e3 * separate:.1f} ms, sweep {1e3 * swept:.1f} ms:"
            f" {ratio:.2f}x (target >= {target:g}x) {verdict}"
        )
        print(
            f"    sweep = training {1e3 * trained:.1f} ms ({size} rates per batched run;"
            f" all {RATES} at once {1e3 * at_once:.1f} ms) + {RATES} diagnoses"
            f" {1e3 * diagnosed:.1f} ms"
        )
        print(
            f"    training alone: {separate / trained:.2f}x the separate runs;"
            f" separate runs diagnosed too: {(separate + diagnosed) / swept:.2f}x the sweep"
        )


if __name__ == "__main__":
    with single_threaded_blas():
        main()
