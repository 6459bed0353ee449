"""Shared pieces of the benchmarks that compare nandoctor with what a user would otherwise run.

A :class:`Work` is one training run's shape, which both sides do: as a nandoctor spec
(:meth:`Work.spec`) and as arguments of ``bare_loop.py`` (:meth:`Work.bare_args`), the NumPy loop
a user would write by hand. Each side is timed as whole processes from outside (start-up
included, as a user sees it), the sides alternating in one invocation (:func:`alternate`) so that
load from elsewhere on the machine lands on both alike, and the median of the rounds compared.

Both sides use the same BLAS thread count, one by default (``--blas-threads``; 0 leaves each
side its own default: NumPy's one thread per core, nandoctor's count per spec). On a shared
machine a second thread per process mostly spins waiting for a busy core: 200 steps of the
mid-size bare loop took 2.3 s with two OpenBLAS threads, 0.19 s with one, while another process
kept a core busy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BARE_LOOP = Path(__file__).resolve().parent / "bare_loop.py"


@dataclass(frozen=True)
class Work:
    """One training run: a dense network (``widths`` from input to output, ``act`` in the hidden
    layers, a linear output), MSE, plain SGD, synthetic regression data."""

    widths: tuple[int, ...]
    act: str
    dtype: str
    batch: int
    steps: int
    samples: int

    def with_steps(self, steps: int) -> Work:
        return Work(self.widths, self.act, self.dtype, self.batch, steps, self.samples)

    def spec(self, seed: int = 0, learning_rate: float = 0.01) -> dict:
        """The nandoctor spec of this work."""
        hidden = [{"units": w, "activation": self.act} for w in self.widths[1:-1]]
        return {
            "seed": seed,
            "data": {
                "source": "synthetic",
                "task": "regression",
                "samples": self.samples,
                "features": self.widths[0],
                "outputs": self.widths[-1],
            },
            "model": {"layers": [*hidden, {"units": self.widths[-1], "activation": "linear"}]},
            "loss": "mse",
            "numerics": {"dtype": self.dtype},
            "train": {
                "steps": self.steps,
                "batch_size": self.batch,
                "learning_rate": learning_rate,
            },
        }

    def bare_args(self, learning_rate: float = 0.01) -> list[str]:
        """``bare_loop.py``'s arguments for this work."""
        return [
            f"--widths={','.join(map(str, self.widths))}",
            f"--act={self.act}",
            f"--dtype={self.dtype}",
            f"--batch={self.batch}",
            f"--steps={self.steps}",
            f"--samples={self.samples}",
            f"--lr={learning_rate!r}",
        ]

    def describe(self) -> str:
        shape = "-".join(map(str, self.widths))
        return f"{shape} {self.act}, {self.dtype}, batch {self.batch}, {self.steps} steps"


SMALL = Work((10, 20, 5), "sigmoid", "float64", 32, 2_000, 256)
MID = Work((64, 256, 10), "relu", "float32", 256, 400, 2_048)


_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def options(doc: str) -> argparse.ArgumentParser:
    """A benchmark's argument parser with the options every one has: --rounds, --blas-threads."""
    ap = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median taken)")
    ap.add_argument(
        "--blas-threads",
        type=int,
        default=1,
        help="BLAS threads of every process on both sides (0: each side's own default)",
    )
    return ap


def same_blas_threads(n: int) -> list[str]:
    """Give every process started from here ``n`` BLAS threads (0: leave the defaults); the
    ``nandoctor`` options that make it use the same count."""
    if not n:
        return []
    os.environ.update({var: str(n) for var in _BLAS_ENV})
    return ["--threads", str(n)]


def nandoctor_command(*args: str) -> list[str]:
    """``nandoctor ARGS`` as a user runs it (this checkout's package)."""
    return [sys.executable, "-m", "nandoctor", *args]


def bare_loop_command(args: list[str]) -> list[str]:
    """One ``python bare_loop.py ARGS`` process: one hand-written training run."""
    return [sys.executable, str(BARE_LOOP), *args]


def bare_loops_in_one_process(runs: list[list[str]]) -> list[str]:
    """One python process that runs ``bare_loop.py`` once per argument list, one after another:
    a user's script calling its training function in a loop (one start-up for all runs)."""
    code = (
        "import runpy, sys\n"
        f"for args in {runs!r}:\n"
        f"    sys.argv = [{str(BARE_LOOP)!r}, *args]\n"
        f"    runpy.run_path({str(BARE_LOOP)!r}, run_name='__main__')\n"
    )
    return [sys.executable, "-c", code]


def side_by_side(commands: list[list[str]]) -> list[str]:
    """One python process that starts ``commands`` all at once and waits for them: work split
    over the cores as a sweep's worker processes split it. Their stdouts, in order, one after
    another; it fails if any of them does."""
    code = (
        "import subprocess, sys\n"
        f"procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in {commands!r}]\n"
        "outs = [p.communicate()[0] for p in procs]\n"
        "sys.stdout.write(''.join(outs))\n"
        "sys.exit(max(p.returncode for p in procs))\n"
    )
    return [sys.executable, "-c", code]


def timed(cmd: list[str]) -> tuple[float, str]:
    """Wall seconds and stdout of ``cmd``, a whole process (exit 0 or 1, as nandoctor's
    verdicts; anything else ends the benchmark with the command's stderr). Both sides run with
    compiled bytecode cached, as on a user's machine: ``PYTHONDONTWRITEBYTECODE`` (set on some CI
    images) would make every start of nandoctor compile its modules and pydantic's again, a
    cost the bare side, one small script, hardly pays."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return wall, done.stdout


def wall_seconds(*commands: list[str]) -> float:
    """Wall seconds of ``commands`` run one after another (see :func:`timed`)."""
    return sum(timed(cmd)[0] for cmd in commands)


def in_turns(
    sides: dict[str, list[list[str]]], rounds: int, warm_up: bool = False
) -> dict[str, list[tuple[float, list[str]]]]:
    """Each side's commands (run one after another) once per round, the sides in turn, for
    ``rounds`` rounds: per side, every round's wall seconds and its commands' stdout. The order
    of the sides reverses every other round (A B, B A, ...), so a machine that speeds up or slows
    down during a round favours neither side. With ``warm_up`` each side first runs once untimed
    (bytecode compiled and cached, files in the page cache)."""
    if warm_up:
        for commands in sides.values():
            wall_seconds(*commands)
    runs: dict[str, list[tuple[float, list[str]]]] = {name: [] for name in sides}
    for i in range(rounds):
        for name in list(sides)[:: -1 if i % 2 else 1]:
            done = [timed(cmd) for cmd in sides[name]]
            runs[name].append((sum(wall for wall, _ in done), [out for _, out in done]))
    return runs


def paired_ratio(ours: list[float], ref: list[float]) -> tuple[float, float, float]:
    """The median of the rounds' ratios ``ours[i] / ref[i]`` (each pair run side by side, so a
    slow spell of the machine lands on both), with the lowest and the highest."""
    ratios = sorted(o / r for o, r in zip(ours, ref, strict=True))
    return statistics.median(ratios), ratios[0], ratios[-1]


def alternate(sides: dict[str, list[list[str]]], rounds: int) -> dict[str, float]:
    """The median wall seconds of each side, its commands run in turns (:func:`in_turns`)."""
    return {
        name: statistics.median(wall for wall, _ in runs)
        for name, runs in in_turns(sides, rounds).items()
    }


def verdict(ratio: float, target: float | None) -> str:
    """``(target <= 1.5x)`` with ``, OVER`` when missed, or ``(no target)``."""
    if target is None:
        return "(no target)"
    return f"(target <= {target}x{'' if ratio <= target else ', OVER'})"


def header(a: argparse.Namespace) -> str:
    """The first line of every benchmark: machine, load, BLAS, how the numbers were taken."""
    import numpy  # noqa: F401 - loads OpenBLAS so threadpoolctl can see it
    from threadpoolctl import threadpool_info

    blas = [(i["internal_api"], i.get("architecture")) for i in threadpool_info()]
    threads = a.blas_threads or "each side's default"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()} cores, load average {load:.2f}; BLAS {blas}, threads: {threads};"
        f" median of {a.rounds} alternating rounds; code under test: {ROOT}"
    )
