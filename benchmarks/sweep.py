"""Batched sweep: 16 learning rates trained as one batched run (``nandoctor.sweep.run_rates``,
no sharpness estimate) against the same 16 rates trained one after another, each as
``train(spec.with_changes({"train.learning_rate": r}))`` -- which includes the per-run
preparation (data, init), as running ``nandoctor run`` 16 times would. Measured side by side in
one process, best of 3, on the blog-sized spec (10-20-5 sigmoid, one sample, 10 steps) and the
mid-size one (64-256-10, batch 256, float32).

The rates are log-spaced from well inside the stable range to well past the edge, so part of
the batch drops out along the way, as in a real sweep.

Targets (issue 5): the sweep >= 8x faster than the separate runs on the small spec, >= 2x on the
mid-size one.

    python benchmarks/sweep.py
"""

from __future__ import annotations

import numpy as np
from _common import BLOG, MID, best_of, spec

from nandoctor.run import train
from nandoctor.sweep import run_rates

RATES = 16


def separate(s, rates) -> None:
    for r in rates:
        train(s.with_changes({"train.learning_rate": r}))


def batched(s, rates) -> None:
    run_rates(s, rates, {})


def side_by_side(a, b, repeat: int = 3) -> tuple[float, float]:
    """Best of ``repeat`` wall times of ``a`` and of ``b``, alternating, so that a burst of other
    load on the machine does not land on one side only."""
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(best_of(a, 1))
        tb.append(best_of(b, 1))
    return min(ta), min(tb)


def main() -> None:
    cases = (
        ("small (blog 10-20-5)", spec(BLOG), np.geomspace(1e-2, 1e3, RATES), 8.0),
        ("mid 64-256-10 f32", spec(MID, steps=200), np.geomspace(1e-4, 1.0, RATES), 2.0),
    )
    for name, s, rates, target in cases:
        rates = [float(r) for r in rates]
        batched(s, rates)  # warm-up
        finite = sum(r.status != "nonfinite" for r in run_rates(s, rates, {}))
        one, many = side_by_side(
            lambda s=s, r=rates: separate(s, r), lambda s=s, r=rates: batched(s, r)
        )
        ratio = one / many
        verdict = "ok" if ratio >= target else "UNDER TARGET"
        print(
            f"{name:22} {RATES} separate runs {1e3 * one:8.1f} ms   sweep {1e3 * many:8.1f} ms"
            f"   speed-up {ratio:5.2f}x (target >= {target}x) {verdict}"
            f"   [{finite}/{RATES} rates finite, {s.train.steps} steps]"
        )


if __name__ == "__main__":
    main()
