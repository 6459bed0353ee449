"""The page of a ``trace`` (its JSON is in docs/output.md): the failing source line in its
context, the user's stack, and the floating-point events counted per line. Drawn from the trace
result's JSON dict only, so any producer of that document gets the page."""

from __future__ import annotations

from pathlib import Path

from nandoctor.report.charts.model import Bars
from nandoctor.report.html.page import bullets, charts, document, e, table

CONTEXT_LINES = 6  # lines shown either side of the failing one
KIND_TONE = {"overflow": "bad", "invalid": "bad", "divide_by_zero": "warn", "silent": "neutral"}
MOST_LINES = 20  # event rows drawn; the rest are summed in the note


def source_lines(path: str, base: Path | None = None) -> list[str] | None:
    """The lines of ``path`` (relative to ``base`` when given), or None when it cannot be read."""
    p = Path(path)
    if base is not None and not p.is_absolute():
        p = base / p
    try:
        return p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None


def source_context(first: dict, base: Path | None = None) -> str:
    """The failing line highlighted among its neighbours; the line alone when the file is gone."""
    line = int(first.get("line") or 0)
    lines = source_lines(first.get("file", ""), base) if line else None
    if not lines or line > len(lines):
        return f"<pre><span class='line hit'><span class='ln'>{e(line)}</span>{e(first.get('source', ''))}</span></pre>"
    lo, hi = max(1, line - CONTEXT_LINES), min(len(lines), line + CONTEXT_LINES)
    rows = [
        f"<span class='line{' hit' if k == line else ''}'><span class='ln'>{k}</span>{e(lines[k - 1])}</span>"
        for k in range(lo, hi + 1)
    ]
    return "<pre>" + "".join(rows) + "</pre>"


def headline(doc: dict) -> str:
    status = doc.get("status")
    f = doc.get("first_nonfinite")
    if status == "nonfinite" and f:
        cause = (doc.get("cause") or {}).get("id")
        why = f": {cause.replace('_', ' ')}" if cause else ""
        return f"✗ {str(f.get('value', 'nan')).upper()} at {f.get('file')}:{f.get('line')}{why}"
    if status == "failed":
        code = (doc.get("program") or {}).get("exit_code")
        return f"✗ the program failed (exit code {code}), with no NaN or Inf before it failed"
    if status == "warning":
        return "! finite, with warnings: " + ", ".join(
            w.get("id", "") for w in doc.get("warnings", [])
        )
    return "✓ no non-finite value was created"


def first_section(doc: dict, base: Path | None) -> list[str]:
    f = doc.get("first_nonfinite")
    if not f:
        return []
    it = f.get("iteration")
    loop = f.get("loop") or {}
    when = (
        f"iteration {it} of the loop at {loop.get('file')}:{loop.get('line')}"
        if it
        else "iteration unknown or outside a loop"
    )
    keys = ("file", "line", "function", "op", "kind", "value")
    return [
        "<h2>First non-finite value</h2>",
        table(list(keys), [[e(f.get(k)) for k in keys]]),
        f"<p class='sub'>{e(when)}</p>",
        source_context(f, base),
    ]


def stack_section(doc: dict) -> list[str]:
    stack = (doc.get("first_nonfinite") or {}).get("stack") or []
    if not stack:
        return []
    rows = [
        [
            e(s.get("file")),
            e(s.get("line")),
            e(s.get("function")),
            f"<code>{e(s.get('source'))}</code>",
        ]
        for s in stack
    ]
    return [
        "<h2>Stack (your frames, innermost first)</h2>",
        table(["file", "line", "function", "source"], rows, (1,)),
    ]


def events_chart(doc: dict) -> Bars | None:
    events = sorted(doc.get("events") or [], key=lambda ev: -int(ev.get("count", 0)))
    if not events:
        return None
    shown, rest = events[:MOST_LINES], events[MOST_LINES:]
    note = (
        f"{len(rest)} more lines with {sum(int(ev.get('count', 0)) for ev in rest)} events"
        if rest
        else ""
    )
    return Bars(
        title="Floating-point events per line",
        labels=[
            f"{Path(str(ev.get('file'))).name}:{ev.get('line')} {ev.get('kind')}" for ev in shown
        ],
        values=[float(ev.get("count", 0)) for ev in shown],
        tones=[KIND_TONE.get(ev.get("kind"), "neutral") for ev in shown],
        value_label="events (red: overflow/invalid, amber: divide by zero)",
        note=note,
    )


def trace_page(doc: dict, base: Path | None = None) -> str:
    """The whole page for one trace result (``base``: where the traced program ran)."""
    status = doc.get("status", "healthy")
    cause = doc.get("cause")
    program = doc.get("program") or {}
    body = [
        f"<h1>nandoctor trace: {e(doc.get('script'))}</h1>",
        f"<p class='sub'>exit code {e(program.get('exit_code'))}"
        + (f", raised {e(program.get('exception'))}" if program.get("exception") else "")
        + "</p>",
        f"<div class='verdict {e(status)}'>{e(headline(doc))}</div>",
        *first_section(doc, base),
    ]
    if cause:
        body += [
            f"<h2>Cause: {e(cause.get('id'))}</h2><p>{e(cause.get('summary'))}</p>",
            bullets(e(x) for x in cause.get("evidence", [])),
        ]
    body += stack_section(doc)
    if doc.get("warnings"):
        body += [
            "<h2>Warnings</h2>",
            bullets(
                f"<b>{e(w.get('id'))}</b>: {e(w.get('summary'))}"
                + (f" ({e(w.get('file'))}:{e(w.get('line'))})" if w.get("file") else "")
                for w in doc["warnings"]
            ),
        ]
    chart = events_chart(doc)
    if chart:
        body += ["<h2>Events</h2>", charts([chart])]
    if doc.get("advice"):
        body += ["<h2>Advice</h2>", bullets(e(a) for a in doc["advice"])]
    return document(f"nandoctor trace: {doc.get('script')}", body)
