"""Trace one program end to end: run it armed, then find when and why, and what else was seen.

Only what runs the program armed is imported before it starts (:mod:`.events`, :mod:`.runner`):
the rest, the diagnosis catalogue included, waits until it has ended, so that a short program's
start-up under ``nandoctor trace`` stays close to ``python``'s own.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import TYPE_CHECKING

from nandoctor.trace.events import IN_CHILD, PRINTED, FirstNonFinite, Recorder
from nandoctor.trace.runner import Outcome, Program, RecordedStdin, output_to_stderr, run_program

if TYPE_CHECKING:
    from nandoctor.trace.result import TraceResult

RERUN_FACTOR = 20  # a second run may take this many times the first run's time (line events)
RERUN_MIN_SECONDS = 10.0  # and at least this long (start-up, imports)
MAX_DERIVED_NOTES = 5  # values computed from placeholders alone, named in the notes


def trace_program(program: Program, *, output_to_stderr_: bool = False) -> TraceResult:
    """Run ``program`` as python would, under the error callbacks; the full answer, whose
    ``seconds`` is the wall time of it all (the program, any second run, the diagnosis).

    A SIGINT or SIGTERM that reached the program, or came during a second run, raises
    :class:`~nandoctor.interrupt.Interrupted` with ``so_far``: the result of the first run alone
    (:func:`so_far`), for a partial report."""
    from nandoctor.interrupt import Interrupted

    program.check()
    recorder = Recorder()
    redirect = output_to_stderr() if output_to_stderr_ else contextlib.nullcontext()
    start = time.perf_counter()
    with redirect, recorder.armed():  # its traceback and atexit handlers too, as python ends it
        outcome = run_program(program, watch=True)
    seconds = time.perf_counter() - start
    if outcome.interrupted is not None or isinstance(outcome.exception, KeyboardInterrupt):
        import signal

        outcome.interrupted = outcome.interrupted or signal.SIGINT  # or its own KeyboardInterrupt
        stop = Interrupted(outcome.interrupted)
        stop.so_far = so_far(program, recorder, outcome, time.perf_counter() - start)
        stop.stage = "while the program ran"
        raise stop
    try:
        result = _diagnose(program, recorder, outcome, seconds)
    except Interrupted as stop:
        stop.so_far = so_far(program, recorder, outcome, time.perf_counter() - start)
        stop.stage = "after the program ran, during the second run or the diagnosis"
        raise
    result.seconds = time.perf_counter() - start
    return result


def so_far(program: Program, recorder: Recorder, outcome: Outcome, seconds: float) -> TraceResult:
    """What the first run showed, without a second run or the checks of what the program kept:
    the first flagged op (and the cause its operands show), the warnings and events."""
    from nandoctor.trace.cause import decide
    from nandoctor.trace.observe import event_warnings
    from nandoctor.trace.result import TraceResult

    result = TraceResult(script=program.label, program=outcome, seconds=seconds)
    result.events = recorder.events()
    result.warnings, result.notes = event_warnings(recorder)
    if recorder.first is not None:
        result.first = recorder.first
        result.cause, result.advice = decide(recorder.first, [])
    return result


def _diagnose(program: Program, recorder: Recorder, outcome: Outcome, seconds: float):
    """The answer from the first run (``seconds`` long) and any second run it needs."""
    from nandoctor.trace.observe import (
        event_warnings,
        finite_summary,
        leftover_nan,
        saturation_notes,
    )
    from nandoctor.trace.result import TraceResult

    result = TraceResult(script=program.label, program=outcome, seconds=seconds)
    result.events = recorder.events()
    result.warnings, result.notes = event_warnings(recorder)
    if recorder.own_errors:  # kept out of the program; said, so it can be reported
        result.notes.append(
            "nandoctor failed while examining an event (please report it): "
            + "; ".join(dict.fromkeys(recorder.own_errors))
        )
    timeout = max(RERUN_MIN_SECONDS, RERUN_FACTOR * seconds)
    if outcome.stdin_read is None:
        result.notes.append(
            f"the program read more than {RecordedStdin.LIMIT >> 20} MB from stdin: a second run, "
            "if one is needed, reads an empty stdin instead"
        )
    if outcome.ended_by is not None:
        result.notes.append(
            f"the program ended its process with {outcome.ended_by} (exit code "
            f"{outcome.exit_code}): the trace stopped it there instead, and reports what it saw "
            "(its atexit handlers did not run, as under python; `finally` blocks around the "
            "call, if any, did)"
        )
    if outcome.started_processes:
        result.notes.append(
            "the program started other processes (multiprocessing, subprocess): their "
            "floating-point events are not watched, only the values that came back to this one"
        )
    if outcome.printed_echo is not None:
        line, given = outcome.printed_echo
        result.notes.append(
            f"the program printed `{line.strip()}`: its non-finite value there is the one given "
            f"on its command line (`{given}`), echoed, not one it computed: not reported"
        )
    # the variables still holding NaN at the end: read once, when first needed (every array)
    leftovers = functools.cache(lambda: leftover_nan(_namespaces(outcome)))
    first = recorder.first
    growth: list = []
    if first is not None and _from_placeholders_not_kept(first, leftovers):
        result.notes.append(
            f"`{first.op}` at {first.file}:{first.line} made {first.value} from the program's "
            "own placeholder (a NaN/Inf it wrote itself), and no variable held a NaN at the end: "
            "it did not last, so it is not reported (a value computed from placeholders is "
            "reported when the program keeps it)"
        )
        first = None
    if first is not None and _carried_in(first):  # where did what it met first appear?
        earlier = _silent(program, outcome, timeout, result, leftovers, met=first)
        if earlier is not None:
            result.notes.append(
                f"`{first.op}` at {first.file}:{first.line} then met it ({first.kind}, "
                f"{first.value}): reported where it first appeared"
            )
            first = earlier
    if first is recorder.first and first is not None and first.loop is not None:
        growth = _when(program, recorder, first, timeout, result.notes, outcome.stdin_read)
    if first is None:
        first = _silent(program, outcome, timeout, result, leftovers)
    if first is None:
        placeholders = bool(leftovers())  # a NaN left, judged one
        result.notes.insert(0, finite_summary(recorder, placeholders))
        result.notes += saturation_notes(_namespaces(outcome, returned=False))
        stop = recorder.stopped_by
        if outcome.failed and stop is not None and _raised_by_numpy(outcome):
            from nandoctor.trace.cause import decide

            result.stopped_by = stop
            if stop.loop is not None and recorder.stop_plan is not None:  # how it grew there
                stdin = outcome.stdin_read
                growth = _when(
                    program, recorder, stop, timeout, result.notes, stdin, recorder.stop_plan
                )
            result.cause, result.advice = decide(stop, growth)
        return result
    from nandoctor.trace.cause import decide

    result.first = first
    if first is recorder.first and recorder.first_silenced:
        result.notes.append(
            f"the program silenced {first.kind.replace('_', ' ')} errors here itself "
            f"(np.errstate/np.seterr 'ignore'), so it expected them; its statement kept the "
            f"{first.value}, so it is reported (a value replaced before any use need not arise: "
            "np.divide(a, b, out=np.zeros_like(a), where=b != 0), np.where)"
        )
    if first.kind == "silent" and first.no_flag:  # made by a call not re-run: no cause read
        result.notes.insert(
            0,
            f"`{first.variable}` first held {first.value} after `{first.op}` ran at "
            f"{first.file}:{first.line} on inputs that were all finite numbers: that call made "
            "it (it raised no NumPy flag); nandoctor does not re-run it, so which op and why are "
            "unknown, and no cause is given",
        )
    elif first.line is not None and first.found_by != IN_CHILD:
        # a NaN not located, or met in a process whose events were not watched: no cause shown
        result.cause, result.advice = decide(first, growth or first.growth)
    return result


def _raised_by_numpy(outcome: Outcome) -> bool:
    """The program failed with the error NumPy raises for a flag (np.seterr 'raise') or with a
    RuntimeWarning turned into an error (a warnings filter 'error')."""
    return isinstance(outcome.exception, FloatingPointError | RuntimeWarning)


def _namespaces(outcome: Outcome, returned: bool = True) -> list[tuple[str | None, dict]]:
    """(function or None for the globals, variables) of every namespace left at the end;
    ``returned``: with the kept frames of returned functions (a repeated function's may be an
    earlier call's: good enough to look for NaN, not to describe the final state)."""
    raising = [(None, d) for d in outcome.frames_locals]
    return [(None, outcome.globals), *raising, *(outcome.returned_locals if returned else [])]


def _when(
    program,
    recorder: Recorder,
    first: FirstNonFinite,
    timeout: float,
    notes: list,
    stdin=None,
    plan: dict | None = None,
) -> list:
    """The iteration (if the loop variable did not tell) and the operands' growth, by a re-run
    (given ``stdin``, what the first run read), at the recorder's first event, or at ``plan``'s
    (the op the program's own error handling stopped)."""
    from nandoctor.trace.rerun import launch

    if first.iteration is not None and first.kind != "overflow":
        return []
    plan = {"mode": "loop", "program": program.to_json(), **(plan or recorder.plan)}
    loop = f"{first.loop['file']}:{first.loop['line']}"
    _ran_again(notes, f"to count the passes of the loop at {loop} and measure its operands")
    found = launch(plan, timeout, stdin)
    cut_short = _timed_out(found, notes)
    if not found or not found.get("found"):
        if first.iteration is None and cut_short:  # not a sign of randomness; noted already
            first.iteration_note = (
                f"the second run was stopped after {found['timed_out']:g} s, its time "
                "limit, before it reached the event"
            )
        elif first.iteration is None:
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
    first.entry_growth = [tuple(g) for g in found.get("entries", [])]
    return [tuple(g) for g in found["growth"]]


def _from_placeholders_not_kept(first: FirstNonFinite, leftovers) -> bool:
    """The flagged op met only the program's own placeholders (``rel = (best - val) / best``
    while ``best`` is still ``np.inf``) and the run ended with no variable holding NaN: a
    transient value of the program's own sentinels, as when no flag is raised (np.float64
    raises one where a Python float does not), not a failure. ``leftovers()``: the variables
    holding NaN at the end."""
    carried = [(e, n) for e, n in first.operands if n.get("nonfinite")]
    if first.found_by != "callback" or not carried:
        return False
    placed = {e for e, n in first.operands if n.get("placeholder")}
    for expr, numbers in carried:
        if numbers.get("placeholder"):
            continue
        # an expression (``best - val``) whose non-finite names are all placeholders
        held = [v for v in _names_in(expr) if first.variables.get(v, {}).get("nonfinite")]
        if not held or not set(held) <= placed:
            return False
    return not leftovers()


def _names_in(expr: str) -> list[str]:
    import ast

    try:
        return [n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)]
    except SyntaxError:
        return []


def _carried_in(first: FirstNonFinite) -> bool:
    """Operands of the flagged op already held NaN/Inf, none of it the program's own placeholder
    (``scores - scores.max()`` of a -inf mask is explained by the mask): no flag said where it
    appeared."""
    carried = [n for _, n in first.operands if n.get("nonfinite")]
    return bool(carried) and not any(n.get("placeholder") for n in carried)


def _silent(
    program, outcome: Outcome, timeout: float, result, held, met: FirstNonFinite | None = None
) -> FirstNonFinite | None:
    """A NaN no event explains, left in the variables (``held()``: those holding NaN at the end)
    or printed, or carried into the flagged op ``met``: find its line with a second pass. None
    when there is none, or when it is only the program's own placeholders (and values computed
    from them alone, not kept to the end)."""
    notes = result.notes
    leftovers = [] if met else held()
    printed = None if met else outcome.printed_nonfinite
    if met is not None:
        seen = f"`{met.op}` at {met.file}:{met.line} met operands already holding NaN/Inf"
    elif leftovers:
        name, count, size = leftovers[0]
        seen = f"`{name}` ended holding {count} NaN of {size}"
    elif printed is not None:
        seen = f"the program printed `{printed.strip()}`"
    else:
        return None
    from nandoctor.trace.rerun import launch

    flag = "no earlier operation" if met else "no operation"
    notes.append(
        f"{flag}{' in this process' if outcome.started_processes else ''} raised a flag, "
        f"yet {seen}: searched by a second, line-traced run (slower)"
    )
    _ran_again(notes, "line-traced, to find the line that first held it")
    found = launch({"mode": "silent", "program": program.to_json()}, timeout, outcome.stdin_read)
    found = found or {}
    _timed_out(found, notes)
    placeholders = found.get("placeholders", [])
    if found.get("found"):
        first = FirstNonFinite.from_json(found["first"])
        first.placeholders = placeholders
        first.growth = [tuple(g) for g in found.get("growth", [])]
        if found.get("in_child"):  # its events were not watched: no claim it came in as data
            first.found_by = IN_CHILD
        return first
    derived = found.get("derived", [])
    held = {name.split(" (in ")[0] for name, _, _ in leftovers}
    kept = [d for d in derived if d["variable"] in held]
    if kept:  # computed from a placeholder, and kept to the end: reported where it was made
        first = FirstNonFinite.from_json(kept[0])
        first.placeholders = placeholders
        return first
    if met is not None:
        return None
    for p in placeholders:
        if p.get("parsed"):
            notes.append(
                f"`{p['variable']}` was given {p['value']} parsed from text at {p['file']}:"
                f'{p["line"]} (`{p["source"]}`): a setting of the program\'s input ("inf" as no '
                "limit), only compared or printed, never taken into arithmetic that made a "
                "non-finite value: not reported"
            )
            continue
        notes.append(
            f"`{p['variable']}` was given {p['value']} the program wrote itself from a constant at "
            f"{p['file']}:{p['line']} (`{p['source']}`): a placeholder, not data, not reported"
        )
    for d in derived[:MAX_DERIVED_NOTES]:
        sources = ", ".join(f"`{n}`" for n in d["from"])
        notes.append(
            f"`{d['variable']}` held {d['value']} after {d['file']}:{d['line']} "
            f"(`{d['source']}`), computed only from the program's own constants ({sources}): carried from them, "
            "not data nor made from finite numbers, and not kept to the end: not reported"
        )
    if (placeholders or derived) and (found or not leftovers):
        return None  # every NaN the second run met was a placeholder or computed from one
    second = "the line-traced second run"
    if "timed_out" in found:
        second += " (stopped: out of time)"
    if not leftovers:  # printed: one was made, though no run saw where
        from nandoctor.trace.frames import display_path, source_line
        from nandoctor.trace.runner import printed_value
        from nandoctor.trace.silent import constant_written

        value = printed_value(printed)
        script = outcome.globals.get("__file__")
        own = constant_written(script, value) if isinstance(script, str) else None
        if own is not None:  # argparse's default=float("inf"), printed in a Namespace
            notes.append(
                f"the program printed `{printed.strip()}`, and writes {value} itself as a "
                f"constant at {display_path(script)}:{own.lineno} "
                f"(`{source_line(script, own.lineno)}`): taken as that placeholder, not reported"
            )
            return None
        notes.insert(
            0,
            f"the program printed `{printed.strip()}`, but neither the first run (no flag, no NaN "
            f"left in the variables it could read) nor {second} found one: where it came from is "
            "unknown",
        )
        return FirstNonFinite(
            file=program.target,
            line=None,
            function="?",
            source=printed.strip(),
            op="?",
            kind="silent",
            value=value,
            stack=[],
            found_by=PRINTED,
        )
    if "timed_out" not in found:
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


def _ran_again(notes: list, purpose: str) -> None:
    """Say that the program is run once more: what it writes is written twice."""
    notes.append(
        f"the program was run a second time ({purpose}), its output discarded: what it writes "
        "(files, logs, checkpoints) was written again, and one that resumes from its own "
        "checkpoint started from it then"
    )


def _timed_out(found: dict | None, notes: list) -> bool:
    """Whether the second run was stopped at its time limit (then noted)."""
    if found and "timed_out" in found:
        notes.append(
            f"the line-traced second run was stopped after {found['timed_out']:g} s "
            f"({RERUN_FACTOR}x the first run, at least {RERUN_MIN_SECONDS:g} s): what it was to "
            "find is unknown"
        )
        return True
    return False
