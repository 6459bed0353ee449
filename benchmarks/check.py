"""Parallel ``nandoctor check``: 16 mid-size specs (64-256-10, batch 256, float32, 600 steps,
about 0.6 s each, seeds 0-15) written to a temporary folder, checked with ``run_checks(paths,
jobs=1)`` and with ``jobs=2``, measured side by side in one process (best of 3, alternating).
The two runs' results must be identical apart from their timings.

Target (issue 6): a speed-up of >= 1.7x with 2 jobs (on a machine with at least 2 cores).

BLAS runs single-threaded while checking (see ``run_checks``): with OpenBLAS's default of one
thread per core, two workers oversubscribed 2 cores and jobs=2 was slower than jobs=1 (0.57x).

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
STEPS = 600
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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_specs(Path(tmp))
        run_checks(paths[:2], jobs=1)  # warm-up: imports, BLAS start-up
        serial, parallel = [], []
        for _ in range(3):
            serial.append(timed(paths, jobs=1))
            parallel.append(timed(paths, jobs=2))
            assert untimed(serial[-1][1]) == untimed(parallel[-1][1]), "parallel != serial"
    (one, r1), (two, r2) = min(serial, key=lambda t: t[0]), min(parallel, key=lambda t: t[0])
    speedup = one / two
    verdict = "ok" if speedup >= TARGET else "UNDER TARGET"
    print(
        f"{SPECS} specs x {STEPS} steps on {cores} cores: jobs=1 {one:6.2f} s "
        f"({one / SPECS:.2f} s/spec)   jobs=2 {two:6.2f} s   speed-up {speedup:.2f}x "
        f"(target >= {TARGET}x) {verdict}"
    )
    # A spec's own time is the same in a worker as in a serial run unless the cores are shared
    # with other processes; the rest of the gap is the pool's start-up and hand-over.
    per1, per2 = (sum(r.seconds for r in rs) / SPECS for rs in (r1, r2))
    overhead = two - per2 * SPECS / 2
    print(
        f"time per spec: {per1:.3f} s serial, {per2:.3f} s in a worker "
        f"({per2 / per1:.2f}x; load average before {load:.2f}); pool overhead {overhead:.2f} s"
    )


if __name__ == "__main__":
    main()
