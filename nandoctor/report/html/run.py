"""The page of one run: the verdict, the first non-finite value, the cause with its evidence, the
recommendations with their verified marks, and the run's charts."""

from __future__ import annotations

from nandoctor.diagnosis.findings import Diagnosis, fmt
from nandoctor.report.charts.downsample import MAX_POINTS
from nandoctor.report.charts.run import run_charts
from nandoctor.report.html.page import bullets, charts, document, e, table, verified_tag


def headline(d: Diagnosis) -> str:
    if d.status == "nonfinite":
        f = d.first_nonfinite
        where = f"step {f.step}" if f.step else f"the {f.phase} phase"
        why = f": {d.cause.id.replace('_', ' ')}" if d.cause else ""
        return f"✗ {f.value.upper()} at {where}{why}"
    if d.status == "warning":
        return "! finite, with warnings: " + ", ".join(dict.fromkeys(w.id for w in d.warnings))
    return "✓ healthy: every value finite"


def facts(d: Diagnosis) -> str:
    final = fmt(d.loss_final) if d.loss_final is not None else "non-finite"
    loss = f", loss {fmt(d.loss_initial)} → {final}" if d.loss_initial is not None else ""
    return (
        f"<p class='sub'>{e(d.spec)}: {d.steps_run}/{d.steps_budget} steps, "
        f"learning rate {e(fmt(d.learning_rate))}{e(loss)}</p>"
    )


def first_section(d: Diagnosis) -> list[str]:
    f = d.first_nonfinite
    if f is None:
        return []
    cells = [e(v) for v in (f.step, f.phase, f.layer, f.tensor, f.op, f.value)]
    out = [
        "<h2>First non-finite value</h2>",
        table(["step", "phase", "layer", "tensor", "op", "value"], [cells]),
    ]
    if f.inputs:
        rows = [
            [e(k), e(fmt(v["max_abs"])), e(v.get("exact_zeros", 0))] for k, v in f.inputs.items()
        ]
        out.append(table(["input to the failing op", "max |·|", "exact zeros"], rows, (1, 2)))
    return out


def cause_section(d: Diagnosis) -> list[str]:
    out = []
    if d.cause:
        out.append(f"<h2>Cause: {e(d.cause.id)}</h2><p>{e(d.cause.summary)}</p>")
        out.append(bullets(e(x) for x in d.cause.evidence))
    if d.contributing:
        out.append("<h3>Contributing</h3>")
        out.append(
            bullets(
                f"<b>{e(c.id)}</b>: {e(c.summary)}"
                + (f" ({e('; '.join(c.evidence))})" if c.evidence else "")
                for c in d.contributing
            )
        )
    if d.warnings:
        out.append("<h2>Warnings</h2>")
        out.append(bullets(f"<b>{e(w.id)}</b>: {e(w.summary)}" for w in d.warnings))
    if d.notes:
        out.append("<h3>What the run saw</h3>" + bullets(e(n) for n in d.notes))
    return out


def recommendations_section(d: Diagnosis) -> list[str]:
    if not d.recommendations:
        return []
    rows = [
        [
            verified_tag(r.verified, r.learns, r.diverging, r.frozen_layers),
            f"<b>{e(r.id)}</b>",
            e(r.summary),
            "<code>" + e(", ".join(f"{k}={v}" for k, v in r.changes.items())) + "</code>",
            e(r.evidence),
        ]
        for r in d.recommendations
    ]
    return [
        "<h2>Recommendations</h2>",
        table(["verified", "id", "what", "changes", "evidence"], rows),
    ]


def run_page(d: Diagnosis, dtype: str = "float64", max_points: int = MAX_POINTS) -> str:
    """The whole page as one HTML string (``dtype``: the spec's, for the overflow limit; each
    line downsampled to ``max_points``)."""
    body = [
        f"<h1>nandoctor run: {e(d.name)}</h1>",
        facts(d),
        f"<div class='verdict {d.status}'>{e(headline(d))}</div>",
        *first_section(d),
        *cause_section(d),
        *recommendations_section(d),
    ]
    pictures = run_charts(d, dtype, max_points)
    if pictures:
        body += ["<h2>The run, step by step</h2>", charts(pictures)]
    return document(f"nandoctor: {d.name}", body)
