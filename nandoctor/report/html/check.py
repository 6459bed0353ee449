"""The page of a ``check``: one row per spec with its verdict and a loss sparkline, linking to a
section per spec."""

from __future__ import annotations

import numpy as np

from nandoctor.check import SpecResult
from nandoctor.diagnosis.findings import fmt
from nandoctor.report.charts import svg
from nandoctor.report.charts.model import LineChart, Marker, Series
from nandoctor.report.check import location, summary
from nandoctor.report.html.page import bullets, charts, document, e, table


def anchor(i: int) -> str:
    return f"spec-{i + 1}"


def curve(r: SpecResult) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in r.loss_curve], dtype=float)


def result_tag(r: SpecResult) -> str:
    return "<span class='tag yes'>pass</span>" if r.passed else "<span class='tag no'>FAIL</span>"


def overview(results: list[SpecResult]) -> str:
    rows = [
        [
            f"<a href='#{anchor(i)}'>{e(r.path)}</a>",
            result_tag(r),
            e(r.status),
            svg.sparkline(curve(r), failed=r.status == "nonfinite"),
            e(r.verdict),
        ]
        for i, r in enumerate(results)
    ]
    return table(["spec", "result", "status", "loss", "verdict"], rows)


def loss_chart(r: SpecResult) -> LineChart | None:
    y = curve(r)
    if not np.isfinite(y).any():
        return None
    x = np.linspace(1, max(r.steps_run, 1), len(y))
    markers = []
    if r.first_nonfinite and r.first_nonfinite.get("step"):
        step = r.first_nonfinite["step"]
        markers.append(
            Marker("x", step, f"{r.first_nonfinite['value'].upper()} at step {step}", "bad")
        )
    ok = y[np.isfinite(y)]
    return LineChart(
        title="Loss",
        x_label="step",
        y_label="loss",
        series=[Series("loss", x, y, color="accent")],
        markers=markers,
        y_log=bool((ok > 0).all() and ok.max() / ok.min() > 100),
    )


def spec_section(i: int, r: SpecResult) -> str:
    status = "pass" if r.passed else "fail"
    parts = [
        f"<h2 id='{anchor(i)}'>{e(r.path)}</h2>",
        f"<div class='verdict {status}'>{'pass' if r.passed else 'FAIL'}: {e(r.verdict)}</div>",
    ]
    facts = [f"status {e(r.status)}", f"{e(r.steps_run)} steps", f"{e(r.seconds)} s"]
    if r.reasons:
        facts.append("fails on " + e(", ".join(r.reasons)))
    if r.cause:
        facts.append(f"cause {e(r.cause)}")
    if r.final_loss is not None:
        facts.append(f"final loss {e(fmt(r.final_loss))}")
    if not r.passed:
        facts.append(f"points at <code>{e(location(r))}</code>")
    parts.append("<p class='sub'>" + ", ".join(facts) + "</p>")
    f = r.first_nonfinite
    if f:
        keys = ("step", "phase", "layer", "tensor", "op", "value")
        parts.append(table(list(keys), [[e(f.get(k)) for k in keys]]))
    if r.problems:
        parts.append(
            bullets(
                f"<code>{e(r.path)}:{p['line']}:{p['col']}</code>: {e(p['message'])}"
                for p in r.problems
            )
        )
    chart = loss_chart(r)
    if chart:
        parts.append(charts([chart]))
    return "\n".join(parts)


def check_page(results: list[SpecResult]) -> str:
    ok = all(r.passed for r in results)
    body = [
        "<h1>nandoctor check</h1>",
        f"<div class='verdict {'pass' if ok else 'fail'}'>{e(summary(results))}</div>",
        overview(results),
        *(spec_section(i, r) for i, r in enumerate(results)),
    ]
    return document("nandoctor check", body)
