"""Parallel ``nandoctor check``: 16 mid-size specs (64-256-10, batch 256, float32, 200 steps,
about 0.8 s each, seeds 0-15) written to a temporary folder, checked with ``run_checks(paths,
jobs=1)`` and with ``jobs=2``, measured side by side in one process (best of 3, alternating).
The two runs' results must be identical apart from their timings.

Target (issue 6): a speed-up of >= 1.7x with 2 jobs (on a machine with at least 2 cores).

    python benchmarks/check.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import yaml
from _common import MID

from nandoctor.check import run_checks

SPECS = 16
STEPS = 200
TARGET = 1.7


def write_specs(folder: Path) -> list[str]:
    paths = []
    for seed in range(SPECS):
        d = {**MID, "seed": seed, "train": {**MID["train"], "steps": STEPS}}
        path = folder / f"mid_{seed:02d}.yaml"
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        paths.append(str(path))
    return paths


def timed(paths: list[str], jobs: int):
    t = time.perf_counter()
    results = run_checks(paths, jobs=jobs)
    return time.perf_counter() - t, results


def untimed(results) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in results]


def main() -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_specs(Path(tmp))
        run_checks(paths[:2], jobs=1)  # warm-up: imports, BLAS start-up
        serial, parallel = [], []
        for _ in range(3):
            t1, r1 = timed(paths, jobs=1)
            t2, r2 = timed(paths, jobs=2)
            serial.append(t1)
            parallel.append(t2)
            assert untimed(r1) == untimed(r2), "parallel results differ from serial ones"
    one, two = min(serial), min(parallel)
    speedup = one / two
    verdict = "ok" if speedup >= TARGET else "UNDER TARGET"
    print(
        f"{SPECS} specs x {STEPS} steps on {cores} cores: jobs=1 {one:6.2f} s "
        f"({one / SPECS:.2f} s/spec)   jobs=2 {two:6.2f} s   speed-up {speedup:.2f}x "
        f"(target >= {TARGET}x) {verdict}"
    )


if __name__ == "__main__":
    main()
