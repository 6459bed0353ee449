"""Cost of leaving ``nandoctor trace`` on: ``python script.py`` against ``nandoctor trace
script.py`` on the same script, alternating, best of N, in one run (start-up included, as a user
would see it). Wall and CPU time are both printed; the verdict uses CPU time, which load from
other processes on a shared machine disturbs least.

- the shortest NumPy program: the fixed start-up cost, in seconds;
- a healthy NumPy training script (no floating-point event at all): target <= 1.1x;
- a finite script raising about 1.2 million underflow events: target <= 1.5x (trace counts the
  first 100,000 underflows, then stops paying for them).

    python benchmarks/trace.py            # default sizes (about a minute)
    python benchmarks/trace.py --quick    # smaller runs, noisier ratios
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "trace_programs"
# One BLAS thread for both arms: on a shared machine idle BLAS threads spinning would swamp
# what is measured (the same setting for python and for nandoctor trace).
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CASES = [
    ("start-up only", "import_only.py", [], [], None),
    ("healthy MLP", "healthy_mlp.py", ["3000"], ["400"], 1.1),
    ("1.2M underflows", "underflowing_sigmoid.py", ["400000"], ["60000"], 1.5),
]


def seconds(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    quick = "--quick" in sys.argv
    rounds = 3 if quick else 7
    for name, script, args, quick_args, target in CASES:
        path = str(PROGRAMS / script)
        args = quick_args if quick else args
        plain_cmd = [sys.executable, path, *args]
        traced_cmd = [sys.executable, "-m", "nandoctor", "trace", path, *args]
        plain, traced, pairs = [float("inf")] * 2, [float("inf")] * 2, []
        for _ in range(rounds):  # alternate, so drifting load from elsewhere hits both alike
            p, t = seconds(plain_cmd), seconds(traced_cmd)
            plain = [min(a, b) for a, b in zip(plain, p, strict=True)]
            traced = [min(a, b) for a, b in zip(traced, t, strict=True)]
            pairs.append(t[1] / p[1])
        wall, cpu = traced[0] / plain[0], traced[1] / plain[1]
        line = (
            f"{name:16} python {plain[0]:5.2f} s wall {plain[1]:5.2f} s CPU | nandoctor trace "
            f"{traced[0]:5.2f} s wall {traced[1]:5.2f} s CPU | best-of ratio {wall:.2f}x wall, "
            f"{cpu:.2f}x CPU; median pairwise CPU ratio {statistics.median(pairs):.2f}x"
        )
        if target is None:
            line += f" (+{traced[1] - plain[1]:.3f} s CPU of start-up)"
        else:
            line += f" (target <= {target}x) {'ok' if cpu <= target else 'OVER TARGET'}"
        print(line)


if __name__ == "__main__":
    main()
