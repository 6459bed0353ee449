"""``nandoctor check`` of K specs against the CI script a user would otherwise run: the same K
trainings as ``python bare_loop.py`` processes, one after another.

The specs are the mid-size work (64-256-10 relu, float32, batch 256; ``--steps``, default 600),
seeds 0..K-1, written to a temporary folder. nandoctor's side is one ``nandoctor check FOLDER``
process as a CI job runs it: its default workers (one per core), every step of every spec
watched, each diagnosed and judged. The reference runs the same shapes, steps, batch and dtype by
hand, nothing watched. Both are whole processes timed from outside, alternating, the median of
``--rounds`` rounds, with the same BLAS threads (one by default, see ``_common.py``).

Target, with one BLAS thread (the default) on a machine of at least 2 cores: <= 0.8x, i.e.
checking K specs takes at most 0.8 of the time their bare loops take one after another. (A
watched mid-size run may cost 1.3x its bare loop, ``overhead.py``, and two workers were to do
the work of >= 1.7 processes: 1.3 / 1.7 = 0.76.)

    python benchmarks/check.py [--specs 16] [--steps 600] [--rounds 3] [--blas-threads 1]
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from _common import (
    MID,
    alternate,
    bare_loop_command,
    header,
    nandoctor_command,
    options,
    same_blas_threads,
    verdict,
)

TARGET = 0.8


def main() -> None:
    ap = options(__doc__)
    ap.add_argument("--specs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    a = ap.parse_args()
    threads = same_blas_threads(a.blas_threads)
    work = MID.with_steps(a.steps)
    print(header(a), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(a.specs):
            path = Path(tmp) / f"mid_{seed:02d}.yaml"
            path.write_text(yaml.safe_dump(work.spec(seed=seed), sort_keys=False))
        check = nandoctor_command("check", tmp, "--format", "json", *threads)
        by_hand = [bare_loop_command(work.bare_args())] * a.specs
        t = alternate({"check": [check], "bare": by_hand}, a.rounds)
    ratio = t["check"] / t["bare"]
    print(
        f"{a.specs} specs of {work.describe()}: nandoctor check {t['check']:6.2f} s vs"
        f" {a.specs} bare loops one after another {t['bare']:6.2f} s"
        f" = {ratio:4.2f}x {verdict(ratio, TARGET)}"
    )


if __name__ == "__main__":
    main()
