"""Renderers for sweep results: a rich table and terminal chart, JSON (docs/output.md), CSV."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import TYPE_CHECKING

from nandoctor.diagnosis.diagnose import fmt
from nandoctor.interrupt import StoppedTraining
from nandoctor.sweep import EDGE_RTOL, GridPoint, SweepSoFar

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text


def _label(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "spec as written"


def table(point: GridPoint, title: str | None = None) -> Table:
    """One row per rate: its status, the steps it ran, where and why it first went non-finite,
    and its final loss. Rates added by the --edge bisection are starred."""
    from rich import box  # on use: a JSON or CSV report never loads rich
    from rich.table import Table
    from rich.text import Text

    probes = any(r.probe for r in point.runs)
    t = Table(
        box=box.SIMPLE,
        title=title or _label(point.settings),
        title_justify="left",
        caption="* tried by the --edge bisection" if probes else None,
        caption_justify="left",
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    for col in ("learning rate", "status", "steps", "failed in", "cause", "final loss"):
        right = col in ("learning rate", "steps", "final loss")
        t.add_column(col, justify="right" if right else "left", no_wrap=col != "failed in")
    style = {"nonfinite": "red", "warning": "yellow", "healthy": "green"}
    for r in point.runs:
        f = r.first_nonfinite  # its step is the run's last: the steps column
        where = (f["phase"] + (f" layer {f['layer']}" if f["layer"] else "")) if f else "-"
        t.add_row(
            fmt(r.learning_rate) + ("*" if r.probe else " " if probes else ""),
            Text(r.status + (", diverging" if r.diverging else ""), style=style[r.status]),
            str(r.steps_run),
            where,
            r.cause or "-",
            fmt(r.final_loss) if r.final_loss is not None else "-",
        )
    return t


def _bound(point: GridPoint) -> float | None:
    """The point's stability bound (``nandoctor.sweep.stability_bound``): 2/lambda_max, or the
    momentum-aware one its note compares with."""
    return point.bound


def _tick(v: float) -> str:
    return f"{v:.2g}"


def chart(point: GridPoint, width: int = 60, height: int = 8) -> Text:
    """Final loss against learning rate, both on log scales: ``o`` a finite run, ``x`` a
    non-finite one (on the top row), ``|`` the max stable rate, ``:`` the bound 2/lambda_max.
    Without a loss to plot (random_gradient has none) the finite runs share one row."""
    from rich.text import Text

    rates = [r.learning_rate for r in point.runs]
    edge = point.max_stable_lr
    bound = _bound(point)
    xs = [math.log10(v) for v in (*rates, edge, bound) if v]
    lo, hi = min(xs), max(xs)
    span = hi - lo or 1.0

    def col(rate: float) -> int:
        return round((math.log10(rate) - lo) / span * (width - 1))

    finite = [r for r in point.runs if r.status != "nonfinite"]
    losses = [
        math.log10(r.final_loss)
        for r in finite
        if point.has_loss and r.final_loss and r.final_loss > 0
    ]
    rows = height if losses else 2  # row 0: non-finite; the rest: log final loss, top = largest
    lmin, lmax = (min(losses), max(losses)) if losses else (0.0, 0.0)
    lspan = lmax - lmin

    def row(log_loss: float) -> int:
        return 1 + (round((lmax - log_loss) / lspan * (rows - 2)) if lspan else 0)

    marks: dict[tuple[int, int], str] = {}
    for r in point.runs:
        if r.status == "nonfinite":
            marks[(0, col(r.learning_rate))] = "x"
        elif losses and r.final_loss and r.final_loss > 0:
            marks[(row(math.log10(r.final_loss)), col(r.learning_rate))] = "o"
        else:  # finite, but no positive loss to place on a log scale
            marks[(rows - 1, col(r.learning_rate))] = "o"
    labels = {0: "NaN/Inf"}
    if losses:
        labels[1] = _tick(10**lmax)
        if lspan:
            labels[rows - 1] = _tick(10**lmin)
            labels[1 + (rows - 2) // 2] = _tick(
                10 ** (lmax - ((rows - 2) // 2) / (rows - 2) * lspan)
            )
    else:
        labels[1] = "finite"
    pad = max(len(v) for v in labels.values())
    edge_col = col(edge) if edge else None
    bound_col = col(bound) if bound else None
    lines = [
        "final loss against learning rate (both log scale)"
        if losses
        else "finite or not, against learning rate (log scale)"
    ]
    for y in range(rows):
        chars = []
        for c in range(width):
            ch = marks.get((y, c))
            if ch is None:
                ch = "|" if c == edge_col else (":" if c == bound_col else " ")
            chars.append(ch)
        tick = "┤" if y in labels else "│"
        lines.append(f"{labels.get(y, ''):>{pad}} {tick}{''.join(chars).rstrip()}")
    lines.append(f"{'':>{pad}} └{'─' * width}")
    left, right, mid = _tick(10**lo), _tick(10**hi), "learning rate"
    gap = width - len(left) - len(right)
    middle = mid.center(gap) if gap >= len(mid) + 2 else " " * max(gap, 1)
    lines.append(f"{'':>{pad}}  {left}{middle}{right}")
    legend = "o finite   x non-finite"
    if edge:
        legend += f"   | max stable lr {fmt(edge)}"
    if bound:
        legend += f"   : {point.bound_name} = {fmt(bound)}"
    lines.append(f"{'':>{pad}}  {legend}")
    return Text("\n".join(lines))


class Chart:
    """:func:`chart` as wide as the console allows (at most 60 columns of plot)."""

    def __init__(self, point: GridPoint):
        self.point = point

    def __rich_console__(self, console, options):
        yield chart(self.point, width=max(20, min(60, options.max_width - 12)))


def render(spec, points: list[GridPoint]):
    from rich.console import Group

    parts = []
    for p in points:
        parts += _finished_point(p)
    return Group(*parts)


def _finished_point(p: GridPoint) -> list:
    """A grid point's table, chart, largest stable rate and lambda_max note."""
    from rich.text import Text

    stable = fmt(p.max_stable_lr) if p.max_stable_lr is not None else "none"
    edge = (
        f" (edge between {fmt(p.edge[0])} and {fmt(p.edge[1])}, within"
        f" {fmt(100 * (p.edge[1] / p.edge[0] - 1))}%)"
        if p.edge
        else ""
    )
    above = [
        r.learning_rate
        for r in p.runs
        if r.diverging and (p.max_stable_lr is None or r.learning_rate > p.max_stable_lr)
    ]
    why = (
        f" ({fmt(min(above))} stayed finite but its loss diverged: not stable)"
        if above and not p.edge
        else ""
    )
    return [
        table(p),
        Text(""),
        Chart(p),
        Text(f"max stable learning rate: {stable}{edge}{why}", style="bold"),
        Text(p.sharpness_note),
        Text(""),
    ]


SHOWN_UNFINISHED = 8  # unfinished rates listed by name; the rest are counted


def _rates(rates: list[float]) -> str:
    shown = ", ".join(fmt(r) for r in rates[:SHOWN_UNFINISHED])
    more = len(rates) - SHOWN_UNFINISHED
    return shown + (f" and {more} more" if more > 0 else "")


def render_interrupted(spec, so_far: SweepSoFar, training: StoppedTraining | None = None):
    """An interrupted sweep (text, for stderr): each finished grid point as the whole sweep
    shows it; the finished rates of a grid point that was under way, with the rates it had not
    finished; then one line saying where it stopped and that the report is partial.
    ``training``: where the run training in this process stood, if one was."""
    from rich.console import Group
    from rich.text import Text

    n = len(so_far.grid)
    parts = []
    for p in range(n):
        if p in so_far.points:
            parts += _finished_point(so_far.points[p])
            continue
        point = so_far.partial_point(p)
        if not point.runs:
            continue
        left = so_far.unfinished_rates(p)
        done = len(so_far.rates) - len(left)
        title = f"{_label(point.settings)} — partial: {done} of {len(so_far.rates)} rates finished"
        parts.append(table(point, title))
        if left:
            parts.append(Text(f"not finished: {_rates(left)} (their batched run had not ended)"))
        else:
            stable = fmt(point.max_stable_lr) if point.max_stable_lr is not None else "none"
            doing = so_far.activity.get(p, "its last part")
            parts.append(
                Text(
                    f"max stable learning rate: {stable} (every rate finished; stopped in {doing})"
                )
            )
        parts.append(Text(""))
    parts.append(Text(interrupted_line(so_far, training), style="bold"))
    return Group(*parts)


def interrupted_line(so_far: SweepSoFar, training: StoppedTraining | None = None) -> str:
    """``interrupted at step 4,512 of 1,000,000 in the training of the rates (grid point 2 of
    4) — partial: 1 of 4 grid points finished, 3 of 8 rates of grid point 2 finished; ...``."""
    n, rates = len(so_far.grid), len(so_far.rates)
    active = sorted(so_far.activity)
    doing = so_far.activity[active[0]] if active else "the writing of the report"
    where = f"{training.describe()} in {doing}" if training is not None else doing
    if n > 1 and active:
        where += f" (grid point {active[0] + 1} of {n})" if len(active) == 1 else ""
    finished = [f"{len(so_far.points)} of {n} grid points finished"] if n > 1 else []
    left = sum(len(so_far.unfinished_rates(p)) for p in active)
    if len(active) == 1:
        of_point = f" of grid point {active[0] + 1}" if n > 1 else ""
        finished.append(f"{rates - left} of {rates} rates{of_point} finished")
    elif active:  # on a cluster every grid point is under way at once
        total = rates * len(active)
        finished.append(f"{total - left} of {total} rates of the unfinished grid points finished")
    if not finished:
        finished.append("every rate finished")
    return f"interrupted at {where} — partial: {', '.join(finished)}; no report written"


def _same(values: list):
    """The value every grid point shares, else None (a grid over train keys shares lambda_max)."""
    return values[0] if values and all(v == values[0] for v in values) else None


def to_json(spec, points: list[GridPoint]) -> str:
    """The sweep JSON of docs/output.md: runs, max_stable_lr, lambda_max, lr_bound (the note's bound),
    edge, note and one entry per grid point. With a grid, max_stable_lr is the largest over its points, and lambda_max / lr_bound
    are given when every point shares them (null otherwise; see ``grid``)."""
    single = len(points) == 1
    stable = [p.max_stable_lr for p in points if p.max_stable_lr is not None]
    doc = {
        "spec": str(spec.path) if spec.path else None,
        "runs": [r.to_json() for p in points for r in p.runs],
        "max_stable_lr": max(stable) if stable else None,
        "threads": _same([r.threads for p in points for r in p.runs]),  # BLAS threads per run
        "lambda_max": _same([p.sharpness for p in points]),
        "lr_bound": _same([_bound(p) for p in points]),
        "lr_bound_formula": _same([p.bound_name for p in points]),
        "edge": list(points[0].edge) if single and points[0].edge else None,
        "edge_rtol": EDGE_RTOL,
        "note": points[0].sharpness_note if single else None,
        "grid": [
            {
                "settings": p.settings,
                "max_stable_lr": p.max_stable_lr,
                "edge": list(p.edge) if p.edge else None,
                "lambda_max": p.sharpness,
                "lr_bound": _bound(p),
                "lr_bound_formula": p.bound_name,
                "note": p.sharpness_note,
            }
            for p in points
        ],
    }
    return json.dumps(doc, indent=2, allow_nan=False)


def to_csv(spec, points: list[GridPoint]) -> str:
    keys = list(points[0].settings) if points else []
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            *keys,
            "learning_rate",
            "status",
            "steps_run",
            "step",
            "phase",
            "layer",
            "cause",
            "final_loss",
        ]
    )
    for p in points:
        for r in p.runs:
            f = r.first_nonfinite or {}
            w.writerow(
                [
                    *(p.settings[k] for k in keys),
                    r.learning_rate,
                    r.status,
                    r.steps_run,
                    f.get("step", ""),
                    f.get("phase", ""),
                    f.get("layer", ""),
                    r.cause or "",
                    "" if r.final_loss is None else r.final_loss,
                ]
            )
    return out.getvalue()


# format name -> renderer(spec, points): a string, or a rich renderable for the terminal.
RENDERERS = {"text": render, "json": to_json, "csv": to_csv}
