"""The page every HTML report shares: one document, its style inline, and small HTML helpers.

There is no ``<script>``, no external stylesheet, font or image: the page needs no network and
shows the same thing in any browser, offline, or as a bug report's attachment.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from nandoctor import __version__
from nandoctor.report.charts import svg
from nandoctor.report.charts.model import Chart

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#f4f5f7}
main{max-width:1360px;margin:0 auto;padding:18px 24px 40px}
h1{font-size:22px;margin:4px 0 2px} h2{font-size:17px;margin:26px 0 8px} h3{font-size:15px;margin:16px 0 6px}
.sub{color:#666;margin:0 0 12px}
.verdict{padding:10px 14px;border-radius:6px;font-size:16px;font-weight:600;margin:10px 0}
.nonfinite,.fail,.failed{background:#fde8e8;color:#a31515} .warning{background:#fff5d6;color:#7a5600}
.healthy,.pass{background:#e5f6e5;color:#1d6b1d} .invalid,.error{background:#eee;color:#555}
table{border-collapse:collapse;background:white;margin:6px 0 10px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f1f3;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.chart-box{background:white;border:1px solid #ddd;border-radius:6px;padding:6px}
.chart-box p{margin:2px 6px 4px;color:#555;font-size:12px;max-width:610px}
.chart-box svg{max-width:100%;height:auto;display:block}
ul{margin:4px 0 10px;padding-left:22px}
.tag{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;font-weight:600;white-space:nowrap}
.yes{background:#e5f6e5;color:#1d6b1d} .no{background:#fde8e8;color:#a31515} .untried{background:#eee;color:#555}
pre{background:white;border:1px solid #ddd;padding:8px 0;overflow-x:auto;font-size:13px}
pre .line{display:block;padding:0 10px} pre .hit{background:#fde8e8;font-weight:600}
pre .ln{color:#999;display:inline-block;width:4em;user-select:none}
code{font-size:13px}
footer{color:#888;font-size:12px;margin-top:30px}
"""


def e(value) -> str:
    """Escape any value for HTML text (None as a dash)."""
    return "–" if value is None else escape(str(value))


def document(title: str, body: Iterable[str]) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body><main>"
        + "\n".join(body)
        + f"<footer>made by nandoctor {e(__version__)}; this page needs no network</footer>"
        "</main></body></html>\n"
    )


def table(headers: list[str], rows: Iterable[list[str]], numeric: Iterable[int] = ()) -> str:
    """A table of already-escaped cells; columns in ``numeric`` are right-aligned."""
    numeric = set(numeric)
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='num'>{c}</td>" if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bullets(items: Iterable[str]) -> str:
    items = list(items)
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def charts(items: list[Chart]) -> str:
    """The charts side by side, each with its note under it."""
    boxes = []
    for c in items:
        note = f"<p>{e(c.note)}</p>" if c.note else ""
        boxes.append(f"<div class='chart-box'>{svg.render(c)}{note}</div>")
    return "<div class='charts'>" + "".join(boxes) + "</div>"


def verified_tag(
    verified: bool | None,
    learns: bool | None = None,
    diverging: bool | None = None,
    frozen: list[int] | None = None,
) -> str:
    if diverging:  # finite, with a loss heading for overflow
        return "<span class='tag no'>✗ diverging</span>"
    if verified is True and frozen:  # finite, with a layer that stopped moving
        layers = ", ".join(str(i) for i in frozen)
        return f"<span class='tag untried'>✓ verified, layer {layers} does not learn</span>"
    if verified is True and learns is False:  # finite, by not learning
        return "<span class='tag untried'>✓ verified, does not learn</span>"
    if verified is True and learns is None:  # a fall within the noise, or too few steps
        return "<span class='tag untried'>✓ verified, not shown to learn</span>"
    if verified is True:
        return "<span class='tag yes'>✓ verified</span>"
    if verified is False:
        return "<span class='tag no'>✗ still fails</span>"
    return "<span class='tag untried'>untried</span>"
