"""Trace one program end to end: run it armed, then find when and why, and what else was seen.

Only what runs the program armed is imported before it starts (:mod:`.events`, :mod:`.runner`):
the rest, the diagnosis catalogue included, waits until it has ended, so that a short program's
start-up under ``nandoctor trace`` stays close to ``python``'s own.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TYPE_CHECKING

from nandoctor.trace.events import FirstNonFinite, Recorder
from nandoctor.trace.runner import Outcome, Program, output_to_stderr, run_program

if TYPE_CHECKING:
    from nandoctor.trace.result import TraceResult

RERUN_FACTOR = 10  # a second run may take this many times the first run's time (line events)
RERUN_MIN_SECONDS = 60.0


def trace_program(program: Program, *, output_to_stderr_: bool = False) -> TraceResult:
    """Run ``program`` as python would, under the error callbacks; the full answer."""
    program.check()
    recorder = Recorder()
    redirect = output_to_stderr() if output_to_stderr_ else contextlib.nullcontext()
    start = time.perf_counter()
    with redirect, recorder.armed():
        outcome = run_program(program)
    seconds = time.perf_counter() - start
    if outcome.traceback_text:
        sys.stderr.write(outcome.traceback_text)
    from nandoctor.trace.observe import event_warnings, finite_summary, saturation_warnings
    from nandoctor.trace.result import TraceResult

    result = TraceResult(script=program.label, program=outcome, seconds=seconds)
    result.events = recorder.events()
    result.warnings, result.notes = event_warnings(recorder)
    timeout = max(RERUN_MIN_SECONDS, RERUN_FACTOR * seconds)
    first = recorder.first
    growth: list = []
    if first is not None and first.loop is not None:
        growth = _when(program, recorder, first, timeout, result.notes)
    if first is None:
        first = _silent(program, outcome, timeout, result.notes)
    if first is None:
        more, notes = saturation_warnings(_namespaces(outcome))
        result.warnings += more
        result.notes.insert(0, finite_summary(recorder))
        result.notes += notes
        return result
    from nandoctor.trace.cause import decide

    result.first = first
    result.cause, result.advice = decide(first, growth)
    return result


def _namespaces(outcome: Outcome) -> list[dict]:
    return [outcome.globals, *outcome.frames_locals]


def _when(program, recorder: Recorder, first: FirstNonFinite, timeout: float, notes: list) -> list:
    """The iteration (if the loop variable did not tell) and the operands' growth, by a re-run."""
    from nandoctor.trace.rerun import launch

    if first.iteration is not None and first.kind != "overflow":
        return []
    found = launch({"mode": "loop", "program": program.to_json(), **recorder.plan}, timeout)
    loop = f"{first.loop['file']}:{first.loop['line']}"
    if not found or not found.get("found"):
        if first.iteration is None:
            first.iteration_note = "a second run did not reach the same event"
            notes.append(f"iteration unknown: {first.iteration_note}")
        return []
    if found["fingerprint"] != first.fingerprint:
        why = "the program did not repeat itself on a second run (unseeded randomness?)"
        if first.iteration is None:  # read from the loop variable, it stands; only growth is lost
            first.iteration_note = why
            notes.append(f"iteration unknown: {why}")
        else:
            notes.append(f"growth over the iterations unknown: {why}")
        return []
    if first.iteration is None:
        first.iteration = found["iteration"]
        notes.append(f"iteration counted by a second run with line events on the loop at {loop}")
    return [tuple(g) for g in found["growth"]]


def _silent(program, outcome: Outcome, timeout: float, notes: list) -> FirstNonFinite | None:
    """A NaN left in the variables that no event explains: find its line with a second pass."""
    from nandoctor.trace.observe import leftover_nan

    leftovers = leftover_nan(_namespaces(outcome))
    if not leftovers:
        return None
    from nandoctor.trace.rerun import launch

    name, count, size = leftovers[0]
    notes.append(
        f"no operation raised a flag, yet `{name}` ended holding {count} NaN of {size}: "
        "located by a second, line-traced run (slower)"
    )
    found = launch({"mode": "silent", "program": program.to_json()}, timeout)
    if found and found.get("found"):
        return FirstNonFinite.from_json(found["first"])
    notes.append("the second run did not find the line (the program did not repeat itself?)")
    return FirstNonFinite(
        file=program.target,
        line=None,
        function="?",
        source="",
        op="?",
        kind="silent",
        value="nan",
        stack=[],
        operands=[(name, {"nonfinite": count, "size": size})],
        variable=name,
        found_by="end of run",
    )
