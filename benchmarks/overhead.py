"""Instrumentation overhead: the instrumented training loop against the same loop with
instrumentation off, on a small (10-20-5, batch 32, float64) and a mid-size (64-256-10, batch
256, float32) spec, measured side by side in one process (best of 5, alternating), with BLAS
limited to one thread as the CLI runs it.

Targets (issue 3): <= 2x on the small spec, <= 1.3x on the mid-size one.

    python benchmarks/overhead.py
"""

from __future__ import annotations

from _common import MID, SMALL, best_of, spec

from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare


def main() -> None:
    from nandoctor.parallel import single_threaded_blas

    with single_threaded_blas():
        _measure()


def _measure() -> None:
    for name, d, target in (("small 10-20-5", SMALL, 2.0), ("mid 64-256-10 f32", MID, 1.3)):
        s = spec(d)
        prepared = prepare(s)
        train(s, prepared=prepared)  # warm-up
        off = on = float("inf")
        for _ in range(5):  # alternate, so drifting load from elsewhere hits both alike
            off = min(
                off, best_of(lambda s=s, p=prepared: train(s, prepared=p, instrument=False), 1)
            )
            on = min(on, best_of(lambda s=s, p=prepared: train(s, prepared=p, instrument=True), 1))
        steps = s.train.steps
        ratio = on / off
        verdict = "ok" if ratio <= target else "OVER TARGET"
        print(
            f"{name:20} off {1e6 * off / steps:7.1f} us/step   on {1e6 * on / steps:7.1f} us/step"
            f"   ratio {ratio:.2f}x (target <= {target}x) {verdict}"
        )


if __name__ == "__main__":
    main()
