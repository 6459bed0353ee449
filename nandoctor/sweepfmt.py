"""Renderers for sweep results: a rich table and terminal chart, JSON (CONTRACT §4), CSV."""

from __future__ import annotations

import csv
import io
import json
import math

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from nandoctor.diagnose import fmt
from nandoctor.sweep import GridPoint


def _label(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items()) or "spec as written"


def table(point: GridPoint) -> Table:
    t = Table(box=box.SIMPLE, title=_label(point.settings), title_justify="left")
    for col in ("learning rate", "status", "steps", "first failure", "cause", "final loss"):
        t.add_column(
            col, justify="right" if col in ("learning rate", "steps", "final loss") else "left"
        )
    style = {"nonfinite": "red", "warning": "yellow", "healthy": "green"}
    for r in point.runs:
        f = r.first_nonfinite
        where = (
            f"step {f['step']} {f['phase']}" + (f" layer {f['layer']}" if f["layer"] else "")
            if f
            else "-"
        )
        t.add_row(
            fmt(r.learning_rate),
            Text(r.status, style=style[r.status]),
            str(r.steps_run),
            where,
            r.cause or "-",
            fmt(r.final_loss) if r.final_loss is not None else "-",
        )
    return t


def chart(point: GridPoint, width: int = 60, height: int = 8) -> Text:
    """Final loss against rate (both log scale): ``o`` finite, ``x`` non-finite (top row),
    ``|`` the measured edge, ``:`` the bound 2/lambda_max."""
    rates = [r.learning_rate for r in point.runs]
    marks = {}
    edge = point.max_stable_lr
    bound = 2 / point.sharpness if point.sharpness and point.sharpness > 0 else None
    lo, hi = (
        math.log10(min(rates + [v for v in (edge, bound) if v])),
        math.log10(max(rates + [v for v in (edge, bound) if v])),
    )
    span = hi - lo or 1.0

    def col(rate):
        return round((math.log10(rate) - lo) / span * (width - 1))

    losses = [math.log10(r.final_loss) for r in point.runs if r.final_loss and r.final_loss > 0]
    lmin, lmax = (min(losses), max(losses)) if losses else (0.0, 1.0)
    lspan = lmax - lmin or 1.0
    for r in point.runs:
        if r.status == "nonfinite" or not r.final_loss or r.final_loss <= 0:
            row = 0 if r.status == "nonfinite" else height - 1
            marks[(row, col(r.learning_rate))] = "x" if r.status == "nonfinite" else "o"
        else:
            row = 1 + round((lmax - math.log10(r.final_loss)) / lspan * (height - 2))
            marks[(row, col(r.learning_rate))] = "o"
    lines = []
    for row in range(height):
        chars = []
        for c in range(width):
            ch = marks.get((row, c))
            if ch is None and edge and c == col(edge):
                ch = "|"
            elif ch is None and bound and c == col(bound):
                ch = ":"
            chars.append(ch or " ")
        label = (
            "NaN  "
            if row == 0
            else (f"{fmt(10 ** (lmax - (row - 1) / (height - 2) * lspan)):>5}"[:5])
        )
        lines.append(f"{label} {''.join(chars)}")
    lines.append(f"      {fmt(10**lo):<{width // 2}}{fmt(10**hi):>{width - width // 2}}")
    legend = "      o finite   x non-finite   | max stable lr"
    if bound:
        legend += f"   : 2/lambda_max = {fmt(bound)}"
    lines.append(legend)
    return Text("\n".join(lines))


def render(spec, points: list[GridPoint]):
    parts = []
    for p in points:
        parts.append(table(p))
        parts.append(chart(p))
        stable = fmt(p.max_stable_lr) if p.max_stable_lr is not None else "none"
        edge = f" (edge between {fmt(p.edge[0])} and {fmt(p.edge[1])})" if p.edge else ""
        parts.append(Text(f"max stable learning rate: {stable}{edge}", style="bold"))
        parts.append(Text(p.sharpness_note))
    return Group(*parts)


def to_json(spec, points: list[GridPoint]) -> str:
    first = points[0]
    doc = {
        "spec": str(spec.path) if spec.path else None,
        "runs": [r.to_json() for p in points for r in p.runs],
        "max_stable_lr": first.max_stable_lr if len(points) == 1 else None,
        "lambda_max": first.sharpness,
        "lr_bound": 2 / first.sharpness if first.sharpness and first.sharpness > 0 else None,
        "edge": list(first.edge) if first.edge else None,
        "note": first.sharpness_note,
        "grid": [
            {
                "settings": p.settings,
                "max_stable_lr": p.max_stable_lr,
                "edge": list(p.edge) if p.edge else None,
                "lambda_max": p.sharpness,
                "lr_bound": 2 / p.sharpness if p.sharpness and p.sharpness > 0 else None,
                "note": p.sharpness_note,
            }
            for p in points
        ],
    }
    if len(points) > 1:
        stable = [p.max_stable_lr for p in points if p.max_stable_lr is not None]
        doc["max_stable_lr"] = max(stable) if stable else None
    return json.dumps(doc, indent=2)


def to_csv(points: list[GridPoint]) -> str:
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
