"""Renderers for a trace result: plain text for a terminal, JSON (docs/output.md)."""

from __future__ import annotations

import json

from nandoctor.trace.events import IN_CHILD, PRINTED
from nandoctor.trace.result import TraceResult


def _when(first) -> str:
    if first.loop is None:
        return "outside any loop"
    loop = f"the loop at {first.loop['file']}:{first.loop['line']}"
    if first.iteration is None:
        return f"iteration unknown of {loop}" + (
            f" ({first.iteration_note})" if first.iteration_note else ""
        )
    return f"iteration {first.iteration} of {loop}" + "".join(
        f", in {'iteration ' + str(o['iteration']) + ' of ' if o['iteration'] else ''}the loop "
        f"at {o['file']}:{o['line']}"
        for o in first.loop.get("outer", [])
    )


def text(result: TraceResult) -> str:
    lines = []
    first = result.first
    stop = result.stopped_by
    stopped = _signal_name(result.program.interrupted)
    if first is None and stopped:  # a partial report (on stderr): the run did not end
        lines.append(f"… no NaN or Inf so far: {result.script} was stopped by {stopped}")
    elif first is None and result.program.failed:
        lines.append(
            f"✗ the program failed: {result.script} exited with code {result.program.exit_code}, "
            "with no NaN or Inf before it failed"
        )
        if stop is not None:
            lines += [
                "",
                f"  stopped at {stop.file}:{stop.line} in {stop.function}: the program's own error "
                f"handling raised where {stop.op} would have made {stop.value} ({stop.kind})",
                f"         {stop.source}",
                f"  when   {_when(stop)}",
            ]
            lines += _operands(stop)
    elif first is None:
        mark = "⚠ warnings" if result.warnings else "✓ healthy"
        lines.append(f"{mark}: {result.script} kept no NaN or Inf")
    else:
        what = (
            "came in (no operation created it)"
            if first.kind == "silent"
            else f"created by {first.op} ({first.kind})"
        )
        if first.kind == "silent" and first.no_flag:
            what = f"made by {first.op} from finite inputs (no NumPy flag)"
        if first.computed_from:
            what = "computed from the program's own placeholder (no operation created it)"
        if first.found_by == PRINTED:
            what = "printed, not located"
        elif first.line is None:
            what = "held at the end, not located"
        elif first.found_by == IN_CHILD:
            what = "held in a process the program started (events there are not watched)"
        lines.append(f"✗ non-finite: {result.script} — first {first.value} {what}")
        lines.append("")
        if first.found_by == PRINTED:
            lines.append(f"  where  not located: the program printed `{first.source}`")
        elif first.line is None:
            n = first.operands[0][1] if first.operands else {}
            lines.append(
                f"  where  not located: `{first.variable}` held {n.get('nonfinite')} "
                f"{first.value} of {n.get('size')} at the end of the run"
            )
        else:
            lines.append(f"  where  {first.file}:{first.line} in {first.function}")
            lines.append(f"         {first.source}")
            for frame in first.stack[1:]:
                lines.append(
                    f"    from {frame.file}:{frame.line} in {frame.function}: {frame.source}"
                )
            lines.append(f"  when   {_when(first)}")
        lines += _operands(first)
    if result.cause is not None:
        lines += ["", f"Cause: {result.cause.id} — {result.cause.summary}"]
        lines += [f"  • {e}" for e in result.cause.evidence]
    if result.advice:
        lines += ["", "Advice (the standard fix for this pattern; not verified by a re-run)"]
        lines += [f"  • {a}" for a in result.advice]
    if result.warnings:
        lines += ["", "Warnings"]
        lines += [f"  • [{w.id}] {w.summary}" for w in result.warnings]
    if result.notes:
        lines += ["", "What the trace saw"]
        lines += [f"  • {n}" for n in result.notes]
    if stopped:
        lines += [
            "",
            f"The program was stopped by {stopped} (exit code {result.program.exit_code})",
        ]
    elif result.program.failed:
        lines += [
            "",
            f"The program itself failed: exit code {result.program.exit_code}"
            + (f" ({result.program.to_json()['exception']})" if result.program.exception else ""),
        ]
    return "\n".join(lines) + "\n"


def _signal_name(signum: int | None) -> str | None:
    if signum is None:
        return None
    import signal

    return signal.Signals(signum).name


def _operands(first) -> list[str]:
    return [
        f"  operand `{expr}`: max |x| {_num(n.get('max_abs'))}, min |x| "
        f"{_num(n.get('min_abs'))}, {n.get('exact_zeros', 0)} exact zeros"
        + (f", {n['nonfinite']} non-finite" if n.get("nonfinite") else "")
        + f" of {n.get('size')}"
        for expr, n in first.operands
        if n.get("max_abs") is not None or n.get("exact_zeros") or n.get("nonfinite")
    ]


def _num(x) -> str:
    from nandoctor.trace.cause import fmt

    return fmt(x)


def as_json(result: TraceResult) -> str:
    return json.dumps(result.to_json(), indent=2, allow_nan=False, default=str) + "\n"


RENDERERS = {"text": text, "json": as_json}
