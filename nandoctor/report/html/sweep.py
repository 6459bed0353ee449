"""The page of a sweep: the stable rates, 2/λ_max beside the measured edge, the charts and the
table of every rate tried."""

from __future__ import annotations

from nandoctor.diagnosis.findings import fmt
from nandoctor.report.charts.sweep import bound, bound_label, label, sweep_charts
from nandoctor.report.html.page import charts, document, e, table
from nandoctor.sweep import GridPoint


def point_summary(p: GridPoint) -> str:
    stable = fmt(p.max_stable_lr) if p.max_stable_lr is not None else "none"
    edge = f", edge between {fmt(p.edge[0])} and {fmt(p.edge[1])}" if p.edge else ""
    b = bound(p)
    lam = f", {bound_label(p)} = {fmt(b)}" if b is not None else ""
    return (
        f"<li><b>{e(label(p.settings))}</b>: max stable learning rate {e(stable)}{e(edge)}"
        f"{e(lam)}<br><span class='sub'>{e(p.sharpness_note)}</span></li>"
    )


def runs_table(points: list[GridPoint]) -> str:
    keys = list(points[0].settings) if points else []
    rows = []
    for p in points:
        for r in p.runs:
            f = r.first_nonfinite or {}
            where = (f.get("phase", "") + (f" layer {f['layer']}" if f.get("layer") else "")) or "–"
            rows.append(
                [
                    *(e(p.settings[k]) for k in keys),
                    e(fmt(r.learning_rate)) + (" *" if r.probe else ""),
                    f"<span class='tag {r.status}'>{e(r.status)}</span>"
                    + (" <span class='tag nonfinite'>diverging</span>" if r.diverging else ""),
                    e(r.steps_run),
                    e(where),
                    e(r.cause),
                    e(fmt(r.final_loss) if r.final_loss is not None else None),
                ]
            )
    n = len(keys)
    headers = [*keys, "learning rate", "status", "steps", "failed in", "cause", "final loss"]
    return table(headers, rows, (n, n + 2, n + 5))


def sweep_page(spec, points: list[GridPoint]) -> str:
    name = spec.name or "spec"
    stable = [p.max_stable_lr for p in points if p.max_stable_lr is not None]
    ok = bool(stable)
    verdict = (
        f"✓ largest stable learning rate: {fmt(max(stable))}"
        if ok
        else "✗ no learning rate tried stayed finite"
    )
    rates = len({r.learning_rate for p in points for r in p.runs})
    body = [
        f"<h1>nandoctor sweep: {e(name)}</h1>",
        f"<p class='sub'>{e(spec.path)}: {rates} learning rates × {len(points)} grid point(s), "
        f"{e(spec.train.steps)} steps each</p>",
        f"<div class='verdict {'healthy' if ok else 'nonfinite'}'>{e(verdict)}</div>",
        "<ul>" + "".join(point_summary(p) for p in points) + "</ul>",
        "<h2>Charts</h2>",
        charts(sweep_charts(points)),
        "<h2>Every rate</h2>",
        runs_table(points),
    ]
    if any(r.probe for p in points for r in p.runs):
        body.append("<p class='sub'>* tried by the --edge bisection</p>")
    return document(f"nandoctor sweep: {name}", body)
