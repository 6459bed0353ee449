"""``nandoctor sweep`` of 16 learning rates against the sweep a user would otherwise write: the same
16 trainings by hand, one after another, in one python process (``bare_loop.py`` once per rate).

Two rows, each the same rates on both sides (log-spaced, so on the mid-size work a few go
non-finite, as in a real sweep; the bare loop trains on through the NaNs, nandoctor stops those
replicas):

- small: 10-20-5 sigmoid, float64, batch 32, ``--small-steps`` (2,000) steps, rates 1e-3..0.5:
  target <= 2.0x;
- mid: 64-256-10 relu, float32, batch 256, ``--mid-steps`` (200) steps, rates 1e-4..1:
  target <= 1.3x.

nandoctor's side is one ``nandoctor sweep SPEC --lr ...`` process (the 16 rates trained as
replicas of batched runs, every step watched, each rate diagnosed); the reference is one python
process running the bare loop 16 times. Whole processes timed from outside, alternating, the
median of ``--rounds`` rounds, the same BLAS threads on both sides (see ``_common.py``).

The targets are those of one watched run against its bare loop (``overhead.py``): watching a
sweep may cost what watching a run does. Training the rates as replicas of one batched run saves
Python's per-step cost on small layers; it cannot save arithmetic, which the mid-size work is
made of (16 rates are 16 times the multiply-adds either way).

    python benchmarks/sweep.py [--small-steps 2000] [--mid-steps 200] [--rounds 3]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import yaml
from _common import (
    MID,
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


def main() -> None:
    ap = options(__doc__)
    ap.add_argument("--small-steps", type=int, default=2_000)
    ap.add_argument("--mid-steps", type=int, default=200)
    a = ap.parse_args()
    threads = same_blas_threads(a.blas_threads)
    print(header(a), flush=True)
    cases = (
        ("small", SMALL.with_steps(a.small_steps), (1e-3, 0.5), 2.0),
        ("mid", MID.with_steps(a.mid_steps), (1e-4, 1.0), 1.3),
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, work, (low, high), target in cases:
            rates = [float(r) for r in np.geomspace(low, high, RATES)]
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(yaml.safe_dump(work.spec(), sort_keys=False))
            lr = ",".join(map(repr, rates))
            sweep = nandoctor_command("sweep", str(path), "--lr", lr, "--format", "json", *threads)
            by_hand = bare_loops_in_one_process([work.bare_args(r) for r in rates])
            t = alternate({"sweep": [sweep], "bare": [by_hand]}, a.rounds)
            ratio = t["sweep"] / t["bare"]
            print(
                f"{name:5} {work.describe()}, {RATES} rates {low:g}..{high:g}: nandoctor sweep"
                f" {t['sweep']:6.2f} s vs {RATES} bare loops {t['bare']:6.2f} s"
                f" = {ratio:4.2f}x {verdict(ratio, target)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
