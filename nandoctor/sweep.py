"""The stability map of a spec: the same run at many learning rates (and grids of other keys).

The rates of one grid point train together as replicas of a batched run -- the weights stacked
along a leading axis, one matmul call for all rates -- and a rate that goes non-finite drops out
without disturbing the others. Each rate is diagnosed exactly as ``nandoctor run`` would. Large
layers are trained a few rates at a time, so that the element-wise work stays in cache.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nandoctor.cluster import active_backend
from nandoctor.diagnosis.diagnose import diagnose, fmt
from nandoctor.diagnosis.findings import Status
from nandoctor.diagnosis.measures import run_loss_trend
from nandoctor.engine.runs import train
from nandoctor.engine.setup import prepare
from nandoctor.engine.trainer import Trainer
from nandoctor.errors import UsageProblem
from nandoctor.parallel import available_cores, pmap, threads_for
from nandoctor.spec.limits import memory_budget, run_bytes

EDGE_RTOL = 0.05  # --edge stops when the finite and non-finite rates are this close (relative)
EDGE_MAX_ROUNDS = 12
CHUNK_BYTES = 2**20  # replicas per batched run: one layer's activations for all fit in this
SHARPNESS_BASIS_BYTES = 64 * 2**20  # memory for lambda_max's Krylov basis (float64 vectors)


class SweepError(UsageProblem):
    """A bad --lr or --set list; the message says what to write instead."""


def parse_rates(text: str) -> list[float]:
    """``0.001,0.01,0.1`` or ``START:STOP:NUM`` (NUM rates, log-spaced, both ends included)."""
    text = text.strip()
    usage = f"--lr {text!r}: expected a list like 0.001,0.01,0.1 or START:STOP:NUM like 1e-4:1:16"
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise SweepError(usage)
        try:
            start, stop, n = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise SweepError(usage) from None
        if not (0 < start < math.inf and 0 < stop < math.inf) or n < 1:
            raise SweepError(
                f"--lr {text!r}: START and STOP must be finite numbers > 0 and NUM an integer >= 1"
            )
        _cap(text, n)
        return [float(r) for r in np.geomspace(start, stop, n)]  # the ends exactly as written
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SweepError(usage) from None
    if not rates or any(not (r > 0 and math.isfinite(r)) for r in rates):
        raise SweepError(f"--lr {text!r}: every rate must be a finite number > 0")
    _cap(text, len(rates))
    return rates


MAX_RATES = 1000  # rates in one sweep: each is a replica trained in one batch


def _cap(text: str, n: int) -> None:
    if n > MAX_RATES:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise SweepError(
            f"--lr {shown!r}: {n:,} rates is more than a sweep takes ({MAX_RATES:,});"
            " use fewer (START:STOP:NUM with NUM <= 1000), or --edge to refine the edge"
        )


def parse_grid(items: tuple[str, ...]) -> list[dict]:
    """``("model.layers.0.init=xavier,he", "train.clip_grad_norm=null,1")`` -> every combination,
    in order (the first key varies slowest). Values are read as YAML here and typed by the schema
    when the spec is built (:func:`sweep`)."""
    import yaml

    axes, seen = [], set()
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SweepError(
                f"--set {item!r}: expected KEY=V1,V2,... like train.optimizer=sgd,adam"
            )
        if key == "train.learning_rate":
            raise SweepError(f"--set {item!r}: give the learning rates with --lr")
        if key in seen:
            raise SweepError(f"--set {item!r}: {key} is set twice; list all its values once")
        seen.add(key)
        texts = [v.strip() for v in values.split(",")]
        if any(not t for t in texts):
            raise SweepError(f"--set {item!r}: an empty value; write null for none")
        try:
            axes.append([(key, yaml.safe_load(t)) for t in texts])
        except yaml.YAMLError as e:
            raise SweepError(
                f"--set {item!r}: cannot read a value as YAML ({getattr(e, 'problem', e)})"
            ) from None
    points = math.prod(len(axis) for axis in axes)
    if points > MAX_GRID_POINTS:
        raise SweepError(
            f"--set: the grid has {points:,} points (the product of the value counts), more than"
            f" a sweep takes ({MAX_GRID_POINTS}); sweep fewer values or fewer keys"
        )
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


MAX_GRID_POINTS = 256  # combinations of --set values in one sweep (each a batched run)


def typed_settings(spec, settings: dict) -> dict:
    """``settings`` with each value as the built ``spec`` holds it (typed by the schema, so
    ``train.eps=1e-8`` is the float 1e-08, not YAML 1.1's string)."""
    resolved = spec.resolved()
    out = {}
    for key, value in settings.items():
        cur = resolved
        try:
            for part in key.split("."):
                cur = cur[int(part)] if isinstance(cur, list) else cur[part]
        except (KeyError, IndexError, ValueError, TypeError):
            cur = value
        out[key] = cur
    return out


@dataclass
class RateRun:
    learning_rate: float
    status: Status
    steps_run: int
    first_nonfinite: dict | None
    cause: str | None
    final_loss: float | None
    settings: dict = field(default_factory=dict)
    probe: bool = False  # tried by the --edge bisection, not in the --lr list
    threads: int = 1  # BLAS threads it trained with (nandoctor.parallel.threads_for)
    # finite, but its loss grew by orders of magnitude (measures.LossTrend.diverged): heading
    # for overflow, not stable
    diverging: bool = False

    @property
    def stable(self) -> bool:
        """Stayed finite without diverging."""
        return self.status != "nonfinite" and not self.diverging

    def to_json(self) -> dict:
        return {
            **self.settings,
            "learning_rate": self.learning_rate,
            "status": self.status,
            "steps_run": self.steps_run,
            "first_nonfinite": self.first_nonfinite,
            "cause": self.cause,
            "final_loss": self.final_loss,
            "diverging": self.diverging,
        }


@dataclass
class GridPoint:
    settings: dict
    runs: list[RateRun]
    max_stable_lr: float | None
    edge: tuple[float, float] | None = None  # (last stable, first non-finite or diverging), --edge
    sharpness: float | None = None  # lambda_max of the loss Hessian at initialisation
    sharpness_note: str = ""
    has_loss: bool = True  # False for random_gradient: its "loss" is not one to plot
    samples: int = 0  # rows in the training data
    # the stability bound of the point's optimizer at initialisation (stability_bound): its
    # formula ("2/lambda_max", "2(1+0.9)/lambda_max", ...) and value; None when not measured
    bound_name: str = "2/lambda_max"
    lr_bound: float | None = None

    @property
    def bound(self) -> float | None:
        """:attr:`lr_bound`, or 2/lambda_max for a point made without it (its ``bound_name``)."""
        if self.lr_bound is not None:
            return self.lr_bound
        b = 2 / self.sharpness if self.sharpness is not None and self.sharpness > 0 else None
        return b if b is not None and math.isfinite(b) else None


def chunk_size(spec, prepared, n: int) -> int:
    """How many replicas train together: as many as keep one layer's activations for all of them
    within ``CHUNK_BYTES``, so the element-wise work stays in cache. Small specs batch every
    rate; the mid-size one (batch 256, 256 units, float32) trains 4 at a time, which measured
    about 1.2x faster than 16 at once (and 1.6x faster than one at a time)."""
    rows = len(prepared.x)
    batch = rows if spec.train.batch_size == "full" else min(spec.train.batch_size, rows)
    widest = max(layer.units for layer in spec.model.layers)
    per_replica = batch * widest * np.dtype(prepared.dtype).itemsize
    size = max(1, min(n, CHUNK_BYTES // max(per_replica, 1)))
    # Never fewer groups than the worker processes the cores hold: on two cores a 16-rate
    # sweep of a small spec trains two groups of 8 side by side instead of 16 on one core.
    # (Replicas are independent: how rates are grouped changes no number.)
    workers = max(1, available_cores() // threads_for(spec, prepared.x.shape))
    # Each replica holds a run's weights, gradients and optimizer state: no more of them in a
    # group than the memory available holds (whatever the activations allow).
    fits = memory_budget() // run_bytes(spec, *prepared.x.shape)
    return max(1, min(size, -(-n // workers), fits))


def replica_groups(spec, prepared, rates: list[float]) -> list[list[float]]:
    """``rates`` cut into the groups that train together (:func:`chunk_size`), in order: the
    work units of a sweep, wherever they run."""
    size = chunk_size(spec, prepared, len(rates))
    return [rates[i : i + size] for i in range(0, len(rates), size)]


def run_rates(
    spec, rates: list[float], settings: dict, prepared=None, on_step=None, on_group=None
) -> list[RateRun]:
    """Every rate of ``rates`` trained as replicas of batched runs (see :func:`chunk_size`); one
    diagnosis per rate. ``on_step(k)`` reports progress as steps 1..budget over all the chunks;
    ``on_group(runs)`` each replica group's diagnosed runs as soon as that group has finished
    (in worker processes, in the order they finish)."""
    prepared = prepared or prepare(spec)
    parts = replica_groups(spec, prepared, rates)
    chunks = len(parts)
    budget = spec.train.steps
    shown = [0]

    def progress(c: int):
        def tick(step: int) -> None:
            k = max(1, (c * budget + step) // chunks)
            if on_step and k > shown[0]:
                shown[0] = k
                on_step(k)

        return tick

    threads = threads_for(spec, prepared.x.shape)
    if chunks > 1 and available_cores() // threads > 1:
        # Several batched chunks: spread them over worker processes as well.
        done = iter(range(1, chunks + 1))
        if on_step:
            on_step(1)  # started (the CLI counts a grid point at its step 1)

        def arrived(_i: int, group: list[RateRun]) -> None:  # in the order groups finish
            if on_group:
                on_group(group)
            if on_step:
                on_step(min(budget, max(2, next(done) * budget // chunks)))

        runs = pmap(
            _chunk,
            [(spec, part, settings, prepared) for part in parts],
            threads=threads,
            on_arrival=arrived,
            item_bytes=max(map(len, parts)) * run_bytes(spec, *prepared.x.shape),
        )
        return [r for chunk in runs for r in chunk]
    out = []
    for c, part in enumerate(parts):
        group = _chunk((spec, part, settings, prepared), progress(c))
        out += group
        if on_group:
            on_group(group)
    return out


def _chunk(args, on_step=None) -> list[RateRun]:
    """One batched run of some rates, each diagnosed (runs in a worker process too)."""
    spec, rates, settings, prepared = args
    out = []
    for o in train(spec, lrs=rates, prepared=prepared, on_step=on_step, snapshots=False):
        d = diagnose(o)
        out.append(
            RateRun(
                learning_rate=o.learning_rate,
                status=d.status,
                steps_run=d.steps_run,
                first_nonfinite=d.first_nonfinite.to_json() if d.first_nonfinite else None,
                cause=d.cause.id if d.cause else None,
                final_loss=d.loss_final,
                settings=settings,
                threads=o.threads,
                diverging=diverging(o),
            )
        )
    return out


def diverging(o) -> bool:
    """``o`` stayed finite while its loss grew by orders of magnitude (a loss to learn only)."""
    if not o.finite or o.spec.loss.name == "random_gradient":
        return False
    trend = run_loss_trend(o)
    return bool(trend is not None and trend.diverged)


def max_stable(runs: list[RateRun]) -> float | None:
    """The largest rate that stayed finite without diverging, with no failing or diverging
    rate below it (docs/output.md)."""
    best = None
    for r in sorted(runs, key=lambda r: r.learning_rate):
        if not r.stable:
            break
        best = r.learning_rate
    return best


def refine_edge(
    spec, runs: list[RateRun], settings: dict, prepared, on_probe=None
) -> tuple[float, float] | None:
    """Bisect (geometrically) between the last finite and the first non-finite rate;
    ``on_probe([run])`` as each probe finishes."""
    bracket = edge_bracket(runs)
    for _ in range(EDGE_MAX_ROUNDS):
        mid = bisection_rate(bracket)
        if mid is None:
            break
        probe = run_rates(spec, [mid], settings, prepared)[0]
        bracket = _narrowed(bracket, runs, probe)
        if on_probe:
            on_probe([probe])
    return bracket


def edge_bracket(runs: list[RateRun]) -> tuple[float, float] | None:
    """(the largest stable rate, the first failing rate above it), or None when either is missing."""
    ordered = sorted(runs, key=lambda r: r.learning_rate)
    lo = max_stable(ordered)
    above = [
        r.learning_rate for r in ordered if not r.stable and (lo is None or r.learning_rate > lo)
    ]
    if lo is None or not above:
        return None
    return lo, above[0]


def bisection_rate(bracket: tuple[float, float] | None) -> float | None:
    """The next rate to probe (the geometric mean), or None once the bracket is narrow enough."""
    if bracket is None or bracket[1] / bracket[0] - 1 <= EDGE_RTOL:
        return None
    return math.sqrt(bracket[0] * bracket[1])


def _narrowed(bracket, runs: list[RateRun], probe: RateRun) -> tuple[float, float]:
    """The bracket after ``probe`` (which joins ``runs``)."""
    probe.probe = True
    runs.append(probe)
    lo, hi = bracket
    return (probe.learning_rate, hi) if probe.stable else (lo, probe.learning_rate)


def sharpness(
    spec, prepared, max_iter: int = 40, rtol: float = 1e-5, eps: float = 1e-4
) -> tuple[float | None, str]:
    """lambda_max, the largest eigenvalue of the full-batch loss Hessian at initialisation.

    Hessian-vector products are central differences of gradients, ``Hv = (g(w + eps v) -
    g(w - eps v)) / (2 eps)`` in float64. The eigenvalue comes from power iteration accelerated by
    Lanczos: the largest Ritz value of the Krylov space the power iterates span (fully
    reorthogonalised), stopped when its residual is below ``rtol`` of it. Plain power iteration
    keeps only the last iterate and stalls when the top two eigenvalues are close (percent errors
    after 20 products on a linear regression); this reaches ``rtol`` in tens. Returns
    ``(value, note)``; value is None, with the reason in note, when there is no loss surface or a
    product was not finite.
    """
    if spec.loss.name == "random_gradient":
        return None, "random_gradient has no loss surface, so no Hessian"
    trainer = Trainer(prepared, [spec.train.learning_rate], instrument=False)
    params = [p.astype(np.float64) for p in trainer.state.params]
    shapes = [p.shape for p in params]
    cuts = np.cumsum([p.size for p in params])[:-1]
    w0 = np.concatenate([p.ravel() for p in params])
    x = prepared.x.astype(np.float64)
    y = prepared.y
    if y is not None and y.dtype.kind == "f":
        y = y.astype(np.float64)

    def grad(w: np.ndarray) -> np.ndarray:
        ps = [a.reshape(s) for a, s in zip(np.split(w, cuts), shapes, strict=True)]
        with np.errstate(all="ignore"):
            gs = trainer.forward_backward(ps, x, y)[1]
        return np.concatenate([g.ravel() for g in gs])

    n = w0.size
    steps = min(max_iter, n, max(10, SHARPNESS_BASIS_BYTES // (8 * n)))  # the basis is kept
    basis = np.zeros((steps, n))
    q = np.random.default_rng(0).standard_normal(n)
    basis[0] = q / np.linalg.norm(q)
    alphas: list[float] = []
    betas: list[float] = []
    lam = None
    for k in range(steps):
        hv = (grad(w0 + eps * basis[k]) - grad(w0 - eps * basis[k])) / (2 * eps)
        if not np.isfinite(hv).all():
            return None, "the Hessian-vector product was not finite"
        alphas.append(float(basis[k] @ hv))
        for _ in range(2):  # full reorthogonalisation (twice is enough)
            hv -= basis[: k + 1].T @ (basis[: k + 1] @ hv)
        beta = float(np.linalg.norm(hv))
        tri = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        vals, vecs = np.linalg.eigh(tri)
        lam = float(vals[-1])
        residual = beta * abs(vecs[-1, -1])  # ||H u - lam u|| for the Ritz vector u
        if residual <= rtol * max(abs(vals).max(), 1e-300) or k + 1 == steps:
            break
        betas.append(beta)
        basis[k + 1] = hv / beta
    return lam, ""


def stability_bound(point: GridPoint, spec) -> tuple[str, float] | None:
    """The learning rate above which gradient descent with ``spec``'s optimizer diverges on a
    quadratic of curvature lambda_max, and its formula: 2 / lambda_max, with heavy-ball momentum
    m (torch's SGD momentum) 2 (1 + m) / lambda_max, with torch's Nesterov momentum
    2 (1 + m) / ((1 + 2 m) lambda_max). Adam and RMSprop get the plain one, which the note says
    does not apply to them. None without a positive, finite lambda_max."""
    if point.sharpness is None or not point.sharpness > 0:
        return None
    bound, m = 2 / point.sharpness, spec.train.momentum
    if not math.isfinite(bound):
        return None
    if spec.train.optimizer == "momentum":
        return f"2(1+{fmt(m)})/lambda_max", bound * (1 + m)
    if spec.train.optimizer == "nesterov":  # on a quadratic: lr lambda < 2(1+m)/(1+2m)
        return f"2(1+{fmt(m)})/((1+2x{fmt(m)}) lambda_max)", bound * (1 + m) / (1 + 2 * m)
    return "2/lambda_max", bound


def compare_note(point: GridPoint, spec) -> str:
    """One sentence comparing the measured edge with the classic bound 2 / lambda_max.

    Gradient descent on a quadratic with curvature lambda diverges above lr = 2 / lambda; with
    heavy-ball momentum m (torch's SGD momentum) above 2 (1 + m) / lambda, with torch's Nesterov
    momentum above 2 (1 + m) / ((1 + 2 m) lambda). Adam and RMSprop divide
    each step by a running gradient scale, so no such bound holds for their learning rate.
    """
    if point.sharpness is None or point.sharpness <= 0:
        return (
            point.sharpness_note or "no positive curvature at initialisation: no 2/lambda_max bound"
        )
    t = spec.train
    bound = 2 / point.sharpness
    if t.optimizer in ("adam", "rmsprop"):
        return (
            f"2/lambda_max = {fmt(bound)} bounds plain gradient descent; {t.optimizer} divides"
            " each step by a running gradient scale, so the bound does not apply to its rate"
        )
    edge = point.edge[0] if point.edge else point.max_stable_lr
    if edge is None:
        return f"2/lambda_max = {fmt(bound)}; no rate stayed finite"
    name, ref = stability_bound(point, spec) or ("2/lambda_max", bound)
    what = "measured edge" if point.edge else "max stable lr"
    ratio = edge / ref
    open_ended = all(r.stable for r in point.runs)
    if open_ended:
        return (
            f"every rate tried stayed finite without diverging: the edge is above {fmt(edge)}, which is"
            f" {fmt(ratio)}x the bound {name} = {fmt(ref)}"
        )
    full = t.batch_size == "full" or t.batch_size >= (point.samples or spec.data.samples)
    kind = (
        "full-batch training, where the bound should hold at the start"
        if full
        else "mini-batch training, where the bound is only a guide"
    )
    trend = (
        "close to the bound"
        if 0.5 <= ratio <= 2
        else ("above the bound" if ratio > 2 else "below the bound")
    )
    tail = ""
    if ratio < 0.5:
        tail = (
            "; the loss sharpens as training goes on (progressive sharpening), so the edge can"
            " sit below the bound at initialisation"
        )
    elif ratio > 2:
        tail = (
            "; between the bound and the edge the loss first spikes and the sharpness falls until"
            " training settles (the catapult phase): unstable at the start is not yet overflow"
        )
    return (
        f"{what} {fmt(edge)} is {fmt(ratio)}x the bound {name} = {fmt(ref)} ({trend}; {kind}){tail}"
    )


def sweep(
    spec,
    rates: list[float],
    grid: list[dict],
    edge: bool = False,
    on_step=None,
    on_units=None,
    so_far: SweepSoFar | None = None,
) -> list[GridPoint]:
    """Every grid point (``spec`` with one combination of ``grid`` applied) at every rate: one
    batched run per point, the edge refined with ``edge``, and lambda_max at initialisation.
    ``on_step(step)`` is called after each step of each point's batched run; on a cluster,
    ``on_units(done, total)`` as each replica group finishes instead. ``so_far`` is kept up to
    date with what has finished (for a report of an interrupted sweep)."""
    so_far = so_far if so_far is not None else SweepSoFar(rates, grid)
    if active_backend() is not None:
        return _sweep_on_cluster(spec, rates, grid, edge, on_units, so_far)
    points = []
    hessians: dict[str, tuple[float | None, str]] = {}
    for p, settings in enumerate(grid):
        so_far.begin(p, TRAINING)
        variant, settings, prepared = _grid_point(spec, settings)
        finished = so_far.recorder(p)
        runs = run_rates(variant, rates, settings, prepared, on_step, on_group=finished)
        bracket = None
        if edge:
            so_far.begin(p, BISECTING)
            bracket = refine_edge(variant, runs, settings, prepared, on_probe=finished)
        so_far.begin(p, MEASURING)
        point = _finish_point(variant, settings, prepared, runs, bracket, hessians)
        so_far.finish(p, point)
        points.append(point)
    return points


# What a grid point of a sweep is busy with (SweepSoFar.activity), in the words of a report.
TRAINING = "the training of the rates"
BISECTING = "the --edge bisection"
MEASURING = "the lambda_max measurement"


@dataclass
class SweepSoFar:
    """What a sweep has finished, kept up to date as it runs: what an interrupted one reports.

    Finished means what the whole sweep would have reported, unchanged:

    - a *rate* is finished once the batched run of its replica group has ended and been
      diagnosed. Groups that run in worker processes or as cluster units finish one by one, in
      any order; the rates of one group finish together, because a batched run diagnoses its
      replicas only when it ends. A group still training when the sweep stops gives no per-rate
      result, not even for a replica that already went non-finite (its cause is decided from the
      whole run): its rates are reported as unfinished, with the step the run had reached when it
      trained in this process (``Interrupted.training``; a worker's progress is not sent back);
    - an ``--edge`` probe is finished once its run is;
    - a *grid point* is finished once its rates, its bisection and its lambda_max are.

    The largest stable rate of an unfinished grid point is given only when all its ``--lr``
    rates finished: a rate not yet run could fail below the ones that did.
    """

    rates: list[float]
    grid: list[dict]  # the --set combinations as written
    points: dict[int, GridPoint] = field(default_factory=dict)  # finished grid points
    runs: dict[int, list[RateRun]] = field(default_factory=dict)  # finished runs of the others
    activity: dict[int, str] = field(default_factory=dict)  # begun, unfinished point -> doing

    def begin(self, p: int, activity: str) -> None:
        self.activity[p] = activity

    def add(self, p: int, runs: list[RateRun]) -> None:
        self.runs.setdefault(p, []).extend(runs)

    def recorder(self, p: int) -> Callable[[list[RateRun]], None]:
        return lambda runs: self.add(p, runs)

    def finish(self, p: int, point: GridPoint) -> None:
        self.points[p] = point
        self.runs.pop(p, None)
        self.activity.pop(p, None)

    def unfinished_rates(self, p: int) -> list[float]:
        """The ``--lr`` rates of grid point ``p`` without a finished run."""
        done = {r.learning_rate for r in self.runs.get(p, []) if not r.probe}
        return [] if p in self.points else [r for r in self.rates if r not in done]

    def partial_point(self, p: int) -> GridPoint:
        """Grid point ``p`` (unfinished) as far as it got: its finished runs, in rate order,
        and its largest stable rate when every ``--lr`` rate has finished."""
        runs = sorted(self.runs.get(p, []), key=lambda r: r.learning_rate)
        settings = runs[0].settings if runs else self.grid[p]
        point = GridPoint(settings=settings, runs=runs, max_stable_lr=None)
        if not self.unfinished_rates(p):
            point.max_stable_lr = max_stable(runs)
        return point


def _grid_point(spec, settings: dict) -> tuple:
    """``(variant, typed settings, prepared run)`` of one grid point."""
    variant = spec.with_changes(settings) if settings else spec
    return variant, typed_settings(variant, settings), prepare(variant)


def _sweep_on_cluster(spec, rates, grid, edge, on_units, so_far: SweepSoFar) -> list[GridPoint]:
    """:func:`sweep` with every replica group of every grid point sent at once to the active
    cluster (``nandoctor.cluster``), each unit carrying its spec and prepared arrays (the data
    are read here, once per grid point); with ``edge``, each bisection round's probes of every
    point go together too. ``on_units(done, total)`` counts finished units. The groups and the
    probes are those of the local sweep, so the results are the same bits. ``so_far`` records
    each unit's runs as it finishes."""
    points = [_grid_point(spec, settings) for settings in grid]
    for p in range(len(points)):
        so_far.begin(p, TRAINING)
    units, owner = [], []
    for p, (variant, settings, prepared) in enumerate(points):
        for group in replica_groups(variant, prepared, rates):
            units.append((variant, group, settings, prepared))
            owner.append(p)
    counts = [0, 0]  # units done, units sent

    def unit_done(_result) -> None:
        counts[0] += 1
        if on_units:
            on_units(*counts)

    def run_units(batch: list, owners: list[int], probes: bool = False) -> list[list[RateRun]]:
        counts[1] += len(batch)

        def arrived(i: int, group_runs: list[RateRun]) -> None:
            for run in group_runs:
                run.probe = probes
            so_far.add(owners[i], group_runs)

        return pmap(_chunk, batch, on_done=unit_done, on_arrival=arrived)

    runs: list[list[RateRun]] = [[] for _ in points]
    for p, group_runs in zip(owner, run_units(units, owner), strict=True):
        runs[p] += group_runs
    brackets = [edge_bracket(point_runs) if edge else None for point_runs in runs]
    for _ in range(EDGE_MAX_ROUNDS if edge else 0):
        probes = [(p, mid) for p, b in enumerate(brackets) if (mid := bisection_rate(b))]
        if not probes:
            break
        for p, _mid in probes:
            so_far.begin(p, BISECTING)
        batch = [(points[p][0], [mid], points[p][1], points[p][2]) for p, mid in probes]
        for (p, _mid), (probe,) in zip(
            probes, run_units(batch, [p for p, _ in probes], probes=True), strict=True
        ):
            brackets[p] = _narrowed(brackets[p], runs[p], probe)
    hessians: dict[str, tuple[float | None, str]] = {}
    finished = []
    for p, ((variant, settings, prepared), point_runs, bracket) in enumerate(
        zip(points, runs, brackets, strict=True)
    ):
        so_far.begin(p, MEASURING)
        finished.append(_finish_point(variant, settings, prepared, point_runs, bracket, hessians))
        so_far.finish(p, finished[-1])
    return finished


def _finish_point(variant, settings, prepared, runs, bracket, hessians: dict) -> GridPoint:
    """One grid point from its runs (probes included) and its refined edge ``bracket``: the
    largest stable rate, and lambda_max at initialisation (once per model, cached in
    ``hessians``)."""
    point = GridPoint(
        settings=settings,
        runs=runs,
        max_stable_lr=None,
        has_loss=variant.loss.name != "random_gradient",
        samples=len(prepared.x),
    )
    point.edge = bracket
    point.runs.sort(key=lambda r: r.learning_rate)
    point.max_stable_lr = max_stable(point.runs)
    if prepared.first_nonfinite is None:
        # the Hessian at initialisation does not depend on the train keys: one per model
        resolved = variant.resolved()
        key = json.dumps({k: v for k, v in resolved.items() if k not in ("train", "check")})
        if key not in hessians:
            hessians[key] = sharpness(variant, prepared)
        point.sharpness, point.sharpness_note = hessians[key]
    else:
        point.sharpness_note = "no lambda_max: the data are not finite"
    point.sharpness_note = compare_note(point, variant)
    point.bound_name, point.lr_bound = stability_bound(point, variant) or ("2/lambda_max", None)
    return point


def plan(spec, lr_text: str, grid_items: tuple[str, ...]) -> tuple[list[float], list[dict], int]:
    """Parse and validate ``--lr`` and ``--set`` for ``spec`` before any work: the rates, the grid
    combinations and the total number of batched steps (for a progress bar)."""
    rates = parse_rates(lr_text)
    combos = parse_grid(grid_items)
    variants = [spec.with_changes(c) if c else spec for c in combos]  # raises SpecError early
    return rates, combos, sum(v.train.steps for v in variants)


def sweep_points(
    spec,
    rates: list[float],
    grid: list[dict],
    edge: bool = False,
    on_progress: Callable[[int], None] | None = None,
    so_far: SweepSoFar | None = None,
) -> list[GridPoint]:
    """:func:`sweep`, with data problems as usage problems and progress counted in steps over
    every grid point's batched run (``on_progress(done)``), or on a cluster in replica groups
    (``on_progress(done, total)``); ``so_far`` follows what has finished."""
    from nandoctor.engine.data import DataError
    from nandoctor.examine import data_problem

    finished = 0  # steps of the grid points already done
    last = 0

    def tick(step: int) -> None:
        nonlocal finished, last
        if step < last:  # a new grid point's run began
            finished += last
        last = step
        if on_progress:
            on_progress(finished + step)

    try:
        return sweep(
            spec, rates, grid, edge=edge, on_step=tick, on_units=on_progress, so_far=so_far
        )
    except DataError as e:
        raise data_problem(spec, e) from None
