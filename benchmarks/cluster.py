"""``check`` and ``sweep`` on a Dask cluster against running the same trainings locally by hand:
one python process that runs ``bare_loop.py`` once per spec (or per grid point and rate), one
after another.

- check: ``--specs`` (16) specs of the mid-size work (64-256-10 relu, float32, batch 256,
  ``--check-steps`` (200) steps), seeds 0..K-1, in a temporary folder;
  ``nandoctor check FOLDER --cluster ADDRESS``.
- sweep: the small work (10-20-5 sigmoid, float64, batch 32, ``--sweep-steps`` (1,000) steps) at
  16 rates (1e-3..0.5) for each of ``--seeds`` (8) seeds, a grid of 16 x seeds trainings;
  ``nandoctor sweep SPEC --lr ... --set seed=0,1,... --cluster ADDRESS``. The bare loop's data do
  not depend on the seed: the same work per grid point.

The cluster is a ``LocalCluster`` started here once (its start-up printed apart, as a running
cluster's is not paid per command) with one single-threaded worker process per core, its workers
importing this checkout. Whole processes timed from outside, alternating, the median of
``--rounds`` rounds, the same BLAS threads on both sides (see ``_common.py``). No target: on one
machine the cluster only moves the work between processes; the rows show what sending it through
Dask costs against doing it by hand.

    python benchmarks/cluster.py [--specs 16] [--seeds 8] [--rounds 3]   (needs nandoctor[dask])
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from _common import (
    MID,
    ROOT,
    SMALL,
    alternate,
    bare_loops_in_one_process,
    header,
    nandoctor_command,
    options,
    same_blas_threads,
    verdict,
)

RATES = 16


def report(name: str, t: dict[str, float]) -> None:
    ratio = t["dask"] / t["bare"]
    print(
        f"{name}: through Dask {t['dask']:6.2f} s vs by hand {t['bare']:6.2f} s"
        f" = {ratio:4.2f}x {verdict(ratio, None)}",
        flush=True,
    )


def main() -> None:
    ap = options(__doc__)
    ap.add_argument("--specs", type=int, default=16)
    ap.add_argument("--check-steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--sweep-steps", type=int, default=1_000)
    a = ap.parse_args()
    threads = same_blas_threads(a.blas_threads)
    os.environ["PYTHONPATH"] = str(ROOT)  # the workers unpickle units of this checkout
    from distributed import LocalCluster

    print(header(a), flush=True)
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    started = time.perf_counter()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
            silence_logs=logging.CRITICAL,
        ) as dask,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(
            f"local Dask cluster of {workers} workers up in {time.perf_counter() - started:.2f} s"
        )
        cluster = ["--cluster", dask.scheduler_address, *threads]

        work = MID.with_steps(a.check_steps)
        folder = Path(tmp) / "check"
        folder.mkdir()
        for seed in range(a.specs):
            path = folder / f"mid_{seed:02d}.yaml"
            path.write_text(yaml.safe_dump(work.spec(seed=seed), sort_keys=False))
        check = nandoctor_command("check", str(folder), "--format", "json", *cluster)
        by_hand = bare_loops_in_one_process([work.bare_args()] * a.specs)
        t = alternate({"dask": [check], "bare": [by_hand]}, a.rounds)
        report(f"check {a.specs} specs of {work.describe()}", t)

        work = SMALL.with_steps(a.sweep_steps)
        rates = [float(r) for r in np.geomspace(1e-3, 0.5, RATES)]
        path = Path(tmp) / "small.yaml"
        path.write_text(yaml.safe_dump(work.spec(), sort_keys=False))
        lr = ",".join(map(repr, rates))
        seeds = "seed=" + ",".join(map(str, range(a.seeds)))
        sweep = nandoctor_command(
            "sweep", str(path), "--lr", lr, "--set", seeds, "--format", "json", *cluster
        )
        by_hand = bare_loops_in_one_process([work.bare_args(r) for r in rates] * a.seeds)
        t = alternate({"dask": [sweep], "bare": [by_hand]}, a.rounds)
        report(f"sweep {RATES} rates x {a.seeds} seeds of {work.describe()}", t)


if __name__ == "__main__":
    main()
