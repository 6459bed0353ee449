"""``nandoctor check``: run many specs and judge each by its ``check:`` policy (a CI gate).

A spec fails when its run went non-finite (``nonfinite``), when a warning id listed in
``check.fail_on`` fired, when its final loss exceeds ``check.max_final_loss``, or when it is invalid.
Specs run in worker processes; results come back in input order, identical to a serial run.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nandoctor.diagnose import fmt

WARNING_IDS = {
    "saturation": "sigmoid/tanh/softmax outputs within 1e-3 of their limits for a large share of units",
    "vanishing_gradient": "the first layer's gradient norm is orders of magnitude below the last layer's",
    "dead_relu": "over half of a ReLU layer's units output 0 for every sample of the batch",
    "exploding_gradient": "the gradient norm grows step over step (not yet overflowed), with a projection",
    "loss_not_decreasing": "the loss at the end is no lower than at the start",
}
CAUSE_IDS = {
    "exploding_gradient": "gradient norms grew step over step until values overflowed",
    "saturation": "outputs pinned at exactly 0 or 1 met a log or a division",
    "overflow": "a value left the dtype's range without a growth history",
    "bad_input": "the data held NaN/Inf, or preprocessing produced it",
    "division_by_zero": "a division by an exact zero (e.g. Adam/RMSprop with eps 0)",
}
# The spec key most responsible for each cause or warning: where an annotation points.
BLAME = {
    "exploding_gradient": "train.learning_rate",
    "saturation": "model.layers",
    "overflow": "numerics",
    "bad_input": "data",
    "division_by_zero": "train.eps",
    "vanishing_gradient": "model.layers",
    "dead_relu": "train.learning_rate",
    "loss_not_decreasing": "train.learning_rate",
    "max_final_loss": "check.max_final_loss",
}
CONTRIBUTOR_BLAME = {
    "high_learning_rate": "train.learning_rate",
    "unscaled_inputs": "data.scale",
    "low_precision": "numerics.dtype",
    "naive_softmax": "numerics.mode",
    "naive_log": "numerics.mode",
    "naive_sigmoid": "numerics.mode",
    "naive_division": "numerics.mode",
    "zero_eps": "train.eps",
}


@dataclass
class SpecResult:
    path: str
    passed: bool
    verdict: str  # one line: what happened
    status: str  # nonfinite | warning | healthy | invalid
    reasons: list[str] = field(default_factory=list)  # policy ids that failed
    cause: str | None = None
    first_nonfinite: dict | None = None
    line: int = 1  # the spec line most responsible
    col: int = 1
    problems: list[dict] = field(default_factory=list)  # for invalid specs: file/line/col/message
    final_loss: float | None = None
    steps_run: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict:
        return dict(self.__dict__)


def collect(paths: tuple[str, ...]) -> list[str]:
    """Files as given; folders -> every *.yaml/*.yml below, sorted; globs expanded. No repeats."""
    out: list[str] = []
    for p in paths:
        if any(ch in p for ch in "*?["):
            found = sorted(glob.glob(p, recursive=True))
        elif Path(p).is_dir():
            found = sorted(
                str(f) for f in Path(p).rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file()
            )
        else:
            found = [p]
        out += [f for f in found if f not in out]
    return out


def check_one(args) -> SpecResult:
    path, steps, fail_on = args
    import time

    from nandoctor.data import DataError
    from nandoctor.diagnose import diagnose
    from nandoctor.run import train
    from nandoctor.spec import SpecError, load_spec

    started = time.perf_counter()
    try:
        spec = load_spec(path)
        if steps is not None and steps < spec.train.steps:
            spec = spec.with_changes({"train.steps": steps})
    except SpecError as e:
        first = e.problems[0] if e.problems else None
        return SpecResult(
            path=path,
            passed=False,
            verdict=f"invalid spec: {first.message if first else e}",
            status="invalid",
            reasons=["invalid"],
            line=max(first.line, 1) if first else 1,
            col=max(first.col, 1) if first else 1,
            problems=[
                {"line": p.line, "col": p.col, "message": p.message, "key": p.key}
                for p in e.problems
            ],
        )
    try:
        outcome = train(spec)[0]
    except DataError as e:
        line = spec.line_of(e.key) or 1
        return SpecResult(
            path=path,
            passed=False,
            verdict=f"invalid data: {e.key}: {e}",
            status="invalid",
            reasons=["invalid"],
            line=line,
            problems=[{"line": line, "col": 1, "message": str(e), "key": e.key}],
        )
    d = diagnose(outcome)
    policy = set(fail_on) if fail_on is not None else set(spec.check.fail_on)
    reasons = []
    if d.status == "nonfinite" and "nonfinite" in policy:
        reasons.append("nonfinite")
    reasons += sorted({w.id for w in d.warnings} & policy)
    limit = spec.check.max_final_loss
    if (
        limit is not None
        and d.status != "nonfinite"
        and (d.loss_final is None or d.loss_final > limit)
    ):
        reasons.append("max_final_loss")
    verdict = _verdict(d, limit)
    blame = _blame_key(d, reasons)
    return SpecResult(
        path=path,
        passed=not reasons,
        verdict=verdict,
        status=d.status,
        reasons=reasons,
        cause=d.cause.id if d.cause else None,
        first_nonfinite=d.first.to_json() if d.first else None,
        line=spec.line_of(blame) or 1 if blame else 1,
        final_loss=d.loss_final,
        steps_run=d.steps_run,
        seconds=round(time.perf_counter() - started, 3),
    )


def _verdict(d, limit) -> str:
    if d.status == "nonfinite":
        f = d.first
        where = f"step {f.step}, " if f.step else ""
        layer = f" layer {f.layer}" if f.layer else ""
        return f"{f.value} at {where}{f.phase}{layer} {f.tensor} (op {f.op}); cause {d.cause.id}"
    text = f"finite over {d.steps_run} steps, final loss {fmt(d.loss_final)}"
    if d.warnings:
        text += f"; warnings: {', '.join(dict.fromkeys(w.id for w in d.warnings))}"
    if limit is not None:
        text += f" (max_final_loss {fmt(limit)})"
    return text


def _blame_key(d, reasons: list[str]) -> str | None:
    """The spec key an annotation should point at: a contributing setting, else the cause's key."""
    if "nonfinite" in reasons and d.cause:
        for c in d.contributing:
            if c.id in CONTRIBUTOR_BLAME:
                return CONTRIBUTOR_BLAME[c.id]
        return BLAME.get(d.cause.id)
    for r in reasons:
        if r in BLAME:
            return BLAME[r]
    return None


def run_checks(
    paths: list[str],
    steps: int | None = None,
    fail_on: list[str] | None = None,
    jobs: int | None = None,
    on_done: Callable[[SpecResult], None] | None = None,
) -> list[SpecResult]:
    """Check every spec in ``paths``, in parallel when ``jobs`` > 1; results in input order."""
    items = [(p, steps, fail_on) for p in paths]
    jobs = jobs or os.cpu_count() or 1
    results: list[SpecResult] = []
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            results.append(check_one(item))
            if on_done:
                on_done(results[-1])
        return results
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=min(jobs, len(items)), mp_context=ctx) as pool:
        for r in pool.map(check_one, items):
            results.append(r)
            if on_done:
                on_done(r)
    return results
