"""The stability map of a spec: the same run at many learning rates (and grids of other keys).

All rates of one grid point train together as replicas of one batched run -- the weights stacked
along a leading axis, one matmul for all rates -- and a rate that goes non-finite drops out without
disturbing the others. Each rate is diagnosed exactly as ``nandoctor run`` would.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from nandoctor.diagnose import diagnose, fmt
from nandoctor.problem import prepare
from nandoctor.run import train
from nandoctor.train import Trainer

EDGE_RTOL = 0.05  # --edge stops when the finite and non-finite rates are this close (relative)
EDGE_MAX_ROUNDS = 12


class SweepError(ValueError):
    """A bad --lr or --set list; the message says what to write instead."""


def parse_rates(text: str) -> list[float]:
    """``0.001,0.01,0.1`` or ``START:STOP:NUM`` (NUM rates, log-spaced, both ends included)."""
    text = text.strip()
    try:
        if ":" in text:
            start, stop, num = text.split(":")
            start, stop, n = float(start), float(stop), int(num)
            if start <= 0 or stop <= 0 or n < 1:
                raise SweepError("START and STOP must be > 0 and NUM >= 1")
            return [float(r) for r in np.geomspace(start, stop, n)]
        rates = [float(v) for v in text.split(",") if v.strip()]
    except SweepError:
        raise
    except ValueError:
        raise SweepError(
            f"--lr {text!r}: expected a list like 0.001,0.01,0.1 or START:STOP:NUM like 1e-4:1:16"
        ) from None
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise SweepError(f"--lr {text!r}: every rate must be a finite number > 0")
    return rates


def parse_grid(items: tuple[str, ...]) -> list[dict]:
    """``("model.layers.0.init=xavier,he", "train.clip_grad_norm=null,1")`` -> every combination."""
    import yaml

    axes = []
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip():
            raise SweepError(
                f"--set {item!r}: expected KEY=V1,V2,... like train.optimizer=sgd,adam"
            )
        axes.append([(key.strip(), yaml.safe_load(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


@dataclass
class RateRun:
    learning_rate: float
    status: str
    steps_run: int
    first_nonfinite: dict | None
    cause: str | None
    final_loss: float | None
    settings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            **self.settings,
            "learning_rate": self.learning_rate,
            "status": self.status,
            "steps_run": self.steps_run,
            "first_nonfinite": self.first_nonfinite,
            "cause": self.cause,
            "final_loss": self.final_loss,
        }


@dataclass
class GridPoint:
    settings: dict
    runs: list[RateRun]
    max_stable_lr: float | None
    edge: tuple[float, float] | None = None  # (last finite, first non-finite) after --edge
    sharpness: float | None = None  # lambda_max of the loss Hessian at initialisation
    sharpness_note: str = ""


def run_rates(
    spec, rates: list[float], settings: dict, problem=None, on_step=None
) -> list[RateRun]:
    """Every rate of ``rates`` as one batched run; one diagnosis per rate."""
    outcomes = train(spec, lrs=rates, problem=problem, on_step=on_step)
    out = []
    for o in outcomes:
        d = diagnose(o)
        out.append(
            RateRun(
                learning_rate=o.learning_rate,
                status=d.status,
                steps_run=d.steps_run,
                first_nonfinite=d.first.to_json() if d.first else None,
                cause=d.cause.id if d.cause else None,
                final_loss=d.loss_final,
                settings=settings,
            )
        )
    return out


def max_stable(runs: list[RateRun]) -> float | None:
    """The largest rate that stayed finite with no failing rate below it (CONTRACT §4)."""
    best = None
    for r in sorted(runs, key=lambda r: r.learning_rate):
        if r.status == "nonfinite":
            break
        best = r.learning_rate
    return best


def refine_edge(spec, runs: list[RateRun], settings: dict, problem) -> tuple[float, float] | None:
    """Bisect (geometrically) between the last finite and the first non-finite rate."""
    ordered = sorted(runs, key=lambda r: r.learning_rate)
    lo = max_stable(ordered)
    above = [
        r.learning_rate
        for r in ordered
        if r.status == "nonfinite" and (lo is None or r.learning_rate > lo)
    ]
    if lo is None or not above:
        return None
    hi = above[0]
    for _ in range(EDGE_MAX_ROUNDS):
        if hi / lo - 1 <= EDGE_RTOL:
            break
        mid = math.sqrt(lo * hi)
        r = run_rates(spec, [mid], settings, problem)[0]
        runs.append(r)
        if r.status == "nonfinite":
            hi = mid
        else:
            lo = mid
    return lo, hi


def sharpness(spec, problem, iters: int = 20, eps: float = 1e-4) -> tuple[float | None, str]:
    """Largest eigenvalue of the full-batch loss Hessian at initialisation, by power iteration on
    Hessian-vector products from central differences of gradients. Returns (value, note)."""
    if spec.loss == "random_gradient":
        return None, "random_gradient has no loss surface, so no Hessian"
    trainer = Trainer(problem, [spec.train.learning_rate], instrument=False)
    params = [p.astype(np.float64) for p in trainer.state.params]
    x = problem.x.astype(np.float64)
    y = (
        problem.y.astype(np.float64)
        if problem.y is not None and problem.y.dtype.kind == "f"
        else problem.y
    )

    def grad(ps):
        with np.errstate(all="ignore"):
            return trainer.forward_backward(ps, x, y)[1]

    rng = np.random.default_rng(0)
    v = [rng.standard_normal(p.shape) for p in params]
    lam = None
    for _ in range(iters):
        nv = math.sqrt(sum(float(np.vdot(a, a)) for a in v))
        if not nv or not math.isfinite(nv):
            return None, "the Hessian-vector product was not finite"
        v = [a / nv for a in v]
        gp = grad([p + eps * a for p, a in zip(params, v, strict=True)])
        gm = grad([p - eps * a for p, a in zip(params, v, strict=True)])
        hv = [(a - b) / (2 * eps) for a, b in zip(gp, gm, strict=True)]
        new = sum(float(np.vdot(a, b)) for a, b in zip(v, hv, strict=True))
        if not math.isfinite(new):
            return None, "the Hessian-vector product was not finite"
        if lam is not None and abs(new - lam) <= 1e-3 * abs(new):
            lam = new
            break
        lam, v = new, hv
    return lam, ""


def compare_note(point: GridPoint, spec) -> str:
    """One sentence comparing the measured edge with the classic bound 2 / lambda_max."""
    if point.sharpness is None or point.sharpness <= 0:
        return (
            point.sharpness_note or "no positive curvature at initialisation: no 2/lambda_max bound"
        )
    bound = 2 / point.sharpness
    edge = point.edge[0] if point.edge else point.max_stable_lr
    if edge is None:
        return f"2/lambda_max = {fmt(bound)}; no rate stayed finite"
    ratio = edge / bound
    full = spec.train.batch_size == "full" and spec.train.optimizer == "sgd"
    kind = (
        "full-batch SGD, where the bound should hold at the start"
        if full
        else ("mini-batch or adaptive training, where the bound is only a guide")
    )
    trend = (
        "close to the bound"
        if 0.5 <= ratio <= 2
        else ("above the bound" if ratio > 2 else "below the bound")
    )
    tail = ""
    if ratio < 0.5:
        tail = "; training sharpens the loss (edge of stability), so the edge can sit below 2/lambda_max"
    elif ratio > 2:
        tail = (
            "; between 2/lambda_max and the edge the loss first spikes and the sharpness falls until"
            " training settles (the catapult phase): unstable at the start is not yet overflow"
        )
    return (
        f"measured edge {fmt(edge)} is {fmt(ratio)}x the bound 2/lambda_max = {fmt(bound)} "
        f"({trend}; {kind}){tail}"
    )


def sweep(
    spec, rates: list[float], grid: list[dict], edge: bool = False, on_step=None
) -> list[GridPoint]:
    points = []
    for settings in grid:
        variant = spec.with_changes(settings) if settings else spec
        problem = prepare(variant)
        runs = run_rates(variant, rates, settings, problem, on_step)
        point = GridPoint(settings=settings, runs=runs, max_stable_lr=None)
        if edge:
            point.edge = refine_edge(variant, runs, settings, problem)
        point.runs.sort(key=lambda r: r.learning_rate)
        point.max_stable_lr = max_stable(point.runs)
        if problem.first is None:
            point.sharpness, point.sharpness_note = sharpness(variant, problem)
        else:
            point.sharpness_note = "the data are not finite"
        point.sharpness_note = compare_note(point, variant)
        points.append(point)
    return points
