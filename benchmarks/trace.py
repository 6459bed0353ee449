"""Cost of leaving ``nandoctor trace`` on: ``python script.py`` against ``nandoctor trace
script.py`` on the same script, alternating, ``--repeat`` pairs, in one run (start-up included,
as a user would see it). Wall and CPU time are both printed; the verdict uses the median of the
pairwise CPU ratios, which load from other processes on a shared machine disturbs least.

- the shortest NumPy program: the fixed start-up cost, in seconds;
- a healthy NumPy training script (no floating-point event at all): target <= 1.1x;
- a finite script raising about 1.2 million underflow events: target <= 1.5x (trace counts the
  first 100,000 underflows, then stops paying for them).

Both sides run with compiled bytecode, as an installed package does (pip compiles it; numpy's
is already there): a private bytecode cache in a temporary folder, filled by one untimed warm-up
run of each side, so that ``PYTHONDONTWRITEBYTECODE`` in the environment does not make only
nandoctor's side compile its modules at every start. ``--no-bytecode-cache`` measures that case.

On a machine shared with other work, times vary by tens of percent from run to run;
``--instructions`` counts the instructions each side executes instead (valgrind, one run each,
about 50 times slower, so best with ``--quick``): the same count on a busy machine as on a quiet
one.

    python benchmarks/trace.py                # default sizes, 7 pairs (about a minute)
    python benchmarks/trace.py --repeat 15    # more pairs, steadier medians on a busy machine
    python benchmarks/trace.py --quick        # smaller runs, 3 pairs, noisier ratios
    python benchmarks/trace.py --quick --instructions   # needs valgrind; about 15 minutes
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The code under test: this checkout's nandoctor, on PYTHONPATH and as the working directory
# (``python -m`` looks in the working directory first: started elsewhere, it could find another).
ROOT = HERE.parent
PROGRAMS = HERE / "trace_programs"
# One BLAS thread for both arms: on a shared machine idle BLAS threads spinning would swamp
# what is measured (the same setting for python and for nandoctor trace).
BLAS_ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CASES = [
    # name, script, arguments, --quick arguments, target ratio (None: report the seconds)
    ("start-up only", "import_only.py", [], [], None),
    ("healthy MLP", "healthy_mlp.py", ["3000"], ["400"], 1.1),
    ("1.2M underflows", "underflowing_sigmoid.py", ["400000"], ["60000"], 1.5),
]


def environment(bytecode_cache: str | None) -> dict[str, str]:
    env = {**os.environ, **BLAS_ONE_THREAD, "PYTHONPATH": str(ROOT)}
    if bytecode_cache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = bytecode_cache
    return env


def seconds(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv`` in a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(argv, check=True, env=env, cwd=ROOT, **quiet)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions executed by one run of ``argv``, as valgrind counts them."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONHASHSEED": "0"},
        cwd=ROOT,
    )
    return int(re.findall(r"Collected : (\d+)", done.stderr)[-1])


def commands(script: str, args: list[str]) -> tuple[list[str], list[str]]:
    path = str(PROGRAMS / script)
    return [sys.executable, path, *args], [sys.executable, "-m", "nandoctor", "trace", path, *args]


def verdict(ratio: float, target: float | None) -> str:
    return f" (target <= {target}x) {'ok' if ratio <= target else 'OVER TARGET'}" if target else ""


def count(name, script, args, target, env: dict[str, str]) -> str:
    plain_cmd, traced_cmd = commands(script, args)
    seconds(plain_cmd, env), seconds(traced_cmd, env)  # warm-up: bytecode cache
    plain, traced = instructions(plain_cmd, env), instructions(traced_cmd, env)
    line = (
        f"{name:16} python {plain / 1e6:8.1f} M instructions | nandoctor trace "
        f"{traced / 1e6:8.1f} M | ratio {traced / plain:.3f}x (+{(traced - plain) / 1e6:.1f} M)"
    )
    return line + verdict(traced / plain, target)


def measure(name, script, args, target, rounds: int, env: dict[str, str]) -> str:
    plain_cmd, traced_cmd = commands(script, args)
    seconds(plain_cmd, env), seconds(traced_cmd, env)  # warm-up: bytecode cache, file cache
    plain, traced = [], []
    for _ in range(rounds):  # alternate, so drifting load from elsewhere hits both alike
        plain.append(seconds(plain_cmd, env))
        traced.append(seconds(traced_cmd, env))
    med = statistics.median
    p_wall, p_cpu = med(w for w, _ in plain), med(c for _, c in plain)
    t_wall, t_cpu = med(w for w, _ in traced), med(c for _, c in traced)
    pairwise = med(t[1] / p[1] for p, t in zip(plain, traced, strict=True))
    best = min(c for _, c in traced) / min(c for _, c in plain)
    line = (
        f"{name:16} medians: python {p_wall:5.2f} s wall {p_cpu:5.2f} s CPU | nandoctor trace "
        f"{t_wall:5.2f} s wall {t_cpu:5.2f} s CPU | ratio {t_wall / p_wall:.2f}x wall; "
        f"pairwise CPU {pairwise:.2f}x (best-of {best:.2f}x)"
    )
    if target is None:
        return line + f" (+{t_cpu - p_cpu:.3f} s CPU of start-up)"
    return line + verdict(pairwise, target)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs, 3 pairs by default")
    ap.add_argument("--repeat", type=int, help="alternating pairs per case (default 7; quick 3)")
    ap.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep the environment's bytecode setting (PYTHONDONTWRITEBYTECODE: compile each run)",
    )
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions with valgrind instead of timing (one run per side)",
    )
    a = ap.parse_args()
    if a.instructions and shutil.which("valgrind") is None:
        ap.error("--instructions needs valgrind on the PATH (e.g. apt-get install valgrind)")
    rounds = a.repeat or (3 if a.quick else 7)
    with tempfile.TemporaryDirectory(prefix="nandoctor-trace-bench-") as cache:
        env = environment(None if a.no_bytecode_cache else cache)
        cached = "own bytecode cache" if not a.no_bytecode_cache else "environment's bytecode"
        how = "instructions" if a.instructions else f"median of {rounds} alternating pairs"
        print(f"{how}; {cached}; code under test: {ROOT}", flush=True)
        for name, script, args, quick_args, target in CASES:
            args = quick_args if a.quick else args
            if a.instructions:
                print(count(name, script, args, target, env), flush=True)
            else:
                print(measure(name, script, args, target, rounds, env), flush=True)


if __name__ == "__main__":
    main()
