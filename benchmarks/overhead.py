"""What the doctor costs: ``nandoctor run`` against the bare NumPy loop a user would write.

Four rows, each a whole process timed from outside (start-up, data, training, diagnosis, output),
the two sides alternating (the order reversed every other round) so that load from elsewhere
on the machine lands on both alike; the ratio reported is the median of the ``--repeat``
rounds' own ratios (each pair run side by side), with the lowest and highest round:

- small: 10-20-5 sigmoid, float64, batch 32, 20,000 steps      target <= 2.0x
- mid: 64-256-10 relu, float32, batch 256, 2,000 steps          target <= 1.3x
- large: 784-1024-1024-10 relu, float32, batch 512, 100 steps   target <= 1.15x
- sweep: ``nandoctor sweep`` of the small spec at 16 rates, against one ``run`` of it: <= 2.0x
  (and, with no target, against 16 bare loops: trying the rates by hand). Under it, the same
  ratio with nothing watched: the sweep's own replica groups, each a bare loop of its rates
  stacked as the sweep stacks them, the groups side by side, against the bare loop of one rate.
  Where that is over 2.0x, arithmetic alone puts the target out of reach on this machine.

The reference is ``bare_loop.py`` (same shapes, steps, batch and dtype; MSE and SGD; NumPy's
default threads). "per step" compares the training loops alone: the bare loop's own timer
against the ``seconds`` nandoctor reports (training and diagnosis), both divided by the steps.
"outside the loop" is the rest of each process (start-up, output, exit; the bare loop's data):
a fixed cost, the larger share of a short run.

On machines where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set, they slow a current NumPy:
benchmark with both unset (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...``); the
kernel OpenBLAS chose is printed first.

    python benchmarks/overhead.py [--repeat 5] [--only small,mid,large,sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml
from _common import (
    ROOT,
    bare_loop_command,
    in_turns,
    nandoctor_command,
    paired_ratio,
    side_by_side,
    verdict,
)

sys.path.insert(0, str(ROOT))  # the code under test, as the timed processes import it
from nandoctor.engine.setup import prepare  # noqa: E402
from nandoctor.spec.models import load_spec  # noqa: E402
from nandoctor.sweep import parse_rates, replica_groups  # noqa: E402 - how the sweep groups rates

CASES = {
    # name: (widths, hidden activation, dtype, batch, steps, samples, target)
    "small": ((10, 20, 5), "sigmoid", "float64", 32, 20_000, 256, 2.0),
    "mid": ((64, 256, 10), "relu", "float32", 256, 2_000, 2048, 1.3),
    "large": ((784, 1024, 1024, 10), "relu", "float32", 512, 100, 2048, 1.15),
}
SWEEP_RATES = "0.001:0.5:16"
SWEEP_TARGET = 2.0


def spec_dict(widths, act, dtype, batch, steps, samples) -> dict:
    hidden = [{"units": w, "activation": act} for w in widths[1:-1]]
    return {
        "seed": 0,
        "data": {
            "source": "synthetic",
            "task": "regression",
            "samples": samples,
            "features": widths[0],
            "outputs": widths[-1],
        },
        "model": {"layers": [*hidden, {"units": widths[-1], "activation": "linear"}]},
        "loss": "mse",
        "numerics": {"dtype": dtype},
        "train": {"steps": steps, "batch_size": batch, "learning_rate": 0.01},
    }


def bare(widths, act, dtype, batch, steps, samples) -> list[str]:
    """The bare loop of the same work (``bare_loop.py``)."""
    return bare_loop_command(
        [
            f"--widths={','.join(map(str, widths))}",
            f"--act={act}",
            f"--dtype={dtype}",
            f"--batch={batch}",
            f"--steps={steps}",
            f"--samples={samples}",
        ]
    )


def alternate(cmds: list[list[str]], repeat: int) -> list[list[tuple[float, str]]]:
    """Each command once per round, ``repeat`` rounds, after one untimed run of each
    (``_common.in_turns``): per command, every round's ``(wall seconds, stdout)``."""
    runs = in_turns({str(i): [cmd] for i, cmd in enumerate(cmds)}, repeat, warm_up=True)
    return [[(wall, out[0]) for wall, out in side] for side in runs.values()]


def median(xs) -> float:
    return statistics.median(xs)


def row(name: str, case, folder: Path, repeat: int) -> None:
    *shape, target = case
    steps = shape[4]
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec_dict(*shape)))
    ours, ref = alternate(
        [nandoctor_command("run", str(path), "--format", "json"), bare(*shape)], repeat
    )
    whole, low, high = paired_ratio([w for w, _ in ours], [w for w, _ in ref])
    loops_ours = [json.loads(out)["seconds"] for _, out in ours]
    loops_ref = [float(out) for _, out in ref]
    loop_ours, loop_ref = median(loops_ours), median(loops_ref)
    print(
        f"{name:6} whole {median(w for w, _ in ours):6.2f}s vs {median(w for w, _ in ref):6.2f}s"
        f" = {whole:4.2f}x {verdict(whole, target)} (rounds {low:4.2f}-{high:4.2f}x)   per step"
        f" {1e6 * loop_ours / steps:8.1f} vs {1e6 * loop_ref / steps:8.1f} us"
        f" = {paired_ratio(loops_ours, loops_ref)[0]:4.2f}x",
        flush=True,
    )
    # what each process spends outside its timer, whatever the steps: start-up (imports, the
    # spec), output and exit; the bare loop's data too (nandoctor's ``seconds`` holds its
    # data preparation and diagnosis)
    outside_ours = median(w - json.loads(out)["seconds"] for w, out in ours)
    outside_ref = median(w - float(out) for w, out in ref)
    print(
        f"{'':6} outside the loop {outside_ours:5.2f}s vs {outside_ref:5.2f}s"
        f" (+{outside_ours - outside_ref:4.2f}s whatever the steps)",
        flush=True,
    )


def sweep_row(folder: Path, repeat: int) -> None:
    """The issue's measure: the sweep against one ``run`` of the small spec. Beside it, the honest
    reference: what trying 16 rates by hand costs, 16 bare loops of the small spec one after
    another (one bare loop timed in the same rounds, times 16). And the ratio the sweep would
    have if watching cost nothing: the sweep's own replica groups (``sweep.replica_groups``: one
    per core here), each a bare loop training its rates stacked (``bare_loop.py --replicas``),
    the groups' processes side by side, against the bare loop of one rate."""
    case = CASES["small"][:-1]
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(spec_dict(*case)))
    rates = parse_rates(SWEEP_RATES)
    spec = load_spec(path)
    groups = replica_groups(spec, prepare(spec), rates)  # the sweep's own groups
    stacked = side_by_side(
        [
            [
                *bare(*case),
                f"--replicas={len(g)}",
                f"--lr={g[0]!r}",
                f"--lr-high={g[-1]!r}",
            ]
            for g in groups
        ]
    )
    sweep, one, ref, grouped = alternate(
        [
            nandoctor_command("sweep", str(path), "--lr", SWEEP_RATES, "--format", "json"),
            nandoctor_command("run", str(path), "--format", "json"),
            bare(*case),
            stacked,
        ],
        repeat,
    )
    s, o, b, g = (median(w for w, _ in side) for side in (sweep, one, ref, grouped))
    w_sweep, w_one, w_ref, w_grouped = ([w for w, _ in side] for side in (sweep, one, ref, grouped))
    ratio, low, high = paired_ratio(w_sweep, w_one)
    by_hand = paired_ratio(w_sweep, [len(rates) * w for w in w_ref])[0]
    print(
        f"sweep  {len(rates)} rates {s:6.2f}s vs one run {o:6.2f}s = {ratio:4.2f}x"
        f" {verdict(ratio, SWEEP_TARGET)} (rounds {low:4.2f}-{high:4.2f}x);"
        f" vs {len(rates)} bare loops {len(rates) * b:6.2f}s = {by_hand:4.2f}x",
        flush=True,
    )
    loops_one = [float(out) for _, out in ref]
    loops_groups = [max(map(float, out.split())) for _, out in grouped]
    floor, low, high = paired_ratio(w_grouped, w_ref)
    widest = max(map(len, groups))
    print(
        f"       unwatched: {len(groups)} bare loops of {widest} stacked rates side by side"
        f" {g:6.2f}s vs one rate {b:6.2f}s = {floor:4.2f}x (rounds {low:4.2f}-{high:4.2f}x;"
        f" per step {paired_ratio(loops_groups, loops_one)[0]:4.2f}x): the sweep's ratio if"
        " watching cost nothing",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="small,mid,large,sweep")
    a = ap.parse_args()
    import numpy  # noqa: F401 - loads OpenBLAS so threadpoolctl can see it
    from threadpoolctl import threadpool_info

    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    print(
        f"BLAS {blas}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; "
        f"median of {a.repeat} alternating pairs; code under test: {ROOT}",
        flush=True,
    )
    wanted = a.only.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        for name, case in CASES.items():
            if name in wanted:
                row(name, case, Path(tmp), a.repeat)
        if "sweep" in wanted:
            sweep_row(Path(tmp), a.repeat)


if __name__ == "__main__":
    main()
