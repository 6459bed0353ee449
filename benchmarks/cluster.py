"""Throughput of ``sweep`` and ``check`` on the local backend and on a local Dask cluster with the
same number of workers (the cores), measured side by side in one run (alternating, best of
``REPEAT``), and Dask's overhead per unit.

- sweep: a 256-point grid, 16 learning rates x 16 settings (4 optimizers x 4 inits) of the small
  spec (10-20-5 relu, batch 32, ``SWEEP_STEPS`` steps). Its units are replica groups: all 16 rates
  of a grid point train together (``nandoctor.sweep.replica_groups``), so 16 units. Local: what a
  user runs today, ``sweep_points`` without ``--cluster`` (grid points one after another in this
  process); Dask: the same call under ``--cluster`` (every unit submitted at once).
- check: 200 specs (the small spec, seeds 0-199, ``CHECK_STEPS`` steps) written to a temporary
  folder; one spec per unit. Local: ``run_checks`` on the process pool (``--jobs`` = cores);
  Dask: the same call under ``--cluster``.
- overhead: ``EMPTY`` units that do nothing, through the local pool and through Dask: the cost of
  sending a unit and getting its result back, per unit.

Results through Dask must be identical to the local ones (asserted, timings aside). The local
cluster's start-up (once per command) is reported apart from the throughput.

    python benchmarks/cluster.py        (needs nandoctor[dask])
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import yaml
from _common import SMALL, spec

from nandoctor import cluster
from nandoctor.check import run_checks
from nandoctor.parallel import available_cores, pmap, single_threaded_blas
from nandoctor.sweep import parse_grid, parse_rates, sweep_points

SWEEP_STEPS = 200
CHECK_STEPS = 50
CHECK_SPECS = 200
EMPTY = 200
REPEAT = 2
GRID = (
    "train.optimizer=sgd,momentum,adam,rmsprop",
    "model.layers.0.init=he,xavier,he_uniform,xavier_uniform",
)


def write_specs(folder: Path) -> list[str]:
    paths = []
    for seed in range(CHECK_SPECS):
        d = {**SMALL, "seed": seed, "train": {**SMALL["train"], "steps": CHECK_STEPS}}
        path = folder / f"small_{seed:03d}.yaml"
        path.write_text(yaml.safe_dump(d, sort_keys=False))
        paths.append(str(path))
    return paths


def untimed(results) -> list[dict]:
    return [{k: v for k, v in r.to_json().items() if k != "seconds"} for r in results]


def sweep_json(points) -> list:
    return [[r.to_json() for r in p.runs] for p in points]


def timed(fn, backend=None):
    """Wall time and result of ``fn()``, on ``backend`` when one is given."""
    t = time.perf_counter()
    if backend is None:
        out = fn()
    else:
        with cluster.using(backend):
            out = fn()
    return time.perf_counter() - t, out


def side_by_side(fn, backend, check_same) -> tuple[float, float]:
    """Best of ``REPEAT`` wall times of ``fn`` locally and on ``backend``, alternating."""
    local, dask = float("inf"), float("inf")
    for _ in range(REPEAT):
        t_local, a = timed(fn)
        t_dask, b = timed(fn, backend)
        assert check_same(a) == check_same(b), "Dask's results differ from the local ones"
        local, dask = min(local, t_local), min(dask, t_dask)
    return local, dask


def report(name: str, units: int, local: float, dask: float) -> None:
    print(
        f"{name}: {units} units; local {local:6.2f} s = {units / local:7.1f} units/s;"
        f" Dask {dask:6.2f} s = {units / dask:7.1f} units/s ({local / dask:.2f}x the local"
        f" rate; {1e3 * (dask - local) / units:+.1f} ms per unit)"
    )


def noop(x):
    return x


def main() -> None:
    workers = available_cores()
    s = spec(SMALL, steps=SWEEP_STEPS)
    rates = parse_rates("1e-4:10:16")
    grid = parse_grid(GRID)
    started = time.perf_counter()
    with cluster.connect("local", workers) as backend:
        startup = time.perf_counter() - started
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"{workers} workers each side; local Dask cluster start-up {startup:.2f} s;"
            f" load average before {load:.2f}"
        )
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_specs(Path(tmp))
            # warm-up: imports and BLAS start-up in the pool and on the workers
            side_by_side(lambda: run_checks(paths[:4], jobs=workers), backend, untimed)
            local, dask = side_by_side(
                lambda: sweep_points(s, rates, grid), backend, check_same=sweep_json
            )
            report(f"sweep {len(rates)} rates x {len(grid)} settings", len(grid), local, dask)
            local, dask = side_by_side(
                lambda: run_checks(paths, jobs=workers), backend, check_same=untimed
            )
            report(f"check {CHECK_SPECS} specs x {CHECK_STEPS} steps", CHECK_SPECS, local, dask)
        items = list(range(EMPTY))
        local, dask = side_by_side(lambda: pmap(noop, items, jobs=workers), backend, list)
        report(f"empty units, {EMPTY}", EMPTY, local, dask)
        print(
            f"Dask overhead per unit: {1e3 * dask / EMPTY:.1f} ms to send one unit and collect"
            f" its result (the local pool: {1e3 * local / EMPTY:.1f} ms, its start-up included)"
        )


if __name__ == "__main__":
    with single_threaded_blas():
        main()
