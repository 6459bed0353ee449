"""Second runs of the user's program, each in a fresh process, stopped as soon as they know.

``python -m nandoctor.trace.rerun PLAN.json OUT.json`` runs the program of the plan with its
output discarded, and writes what it found to OUT.json:

- ``loop``: the iteration of the loop enclosing the first non-finite value, the failing op's
  operand magnitudes per iteration, and the failing frame's fingerprint (to tell whether the
  program repeated itself);
- ``silent``: the first line whose assignment put a NaN or Inf into a user variable (and the op
  that made it there from finite numbers without a flag, if one did), the placeholders the
  program wrote itself, and the values computed from them only (:mod:`.silent`).

A fresh process keeps the first run's module state out, and lets the line events (which slow
the program down) stay out of the first run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile

from nandoctor.trace.runner import Program


def launch(plan: dict, timeout: float, stdin: list[str] | None = None) -> dict | None:
    """Run a second pass of ``plan`` in a subprocess, its stdin the text ``stdin`` (what the
    first run read; else empty); its findings, ``{"timed_out": seconds}`` if it did not finish
    in time (it and any process it started are killed), or None."""
    import signal

    with tempfile.TemporaryDirectory(prefix="nandoctor-trace-") as tmp:
        plan_path, out_path = os.path.join(tmp, "plan.json"), os.path.join(tmp, "out.json")
        in_path = os.path.join(tmp, "stdin.txt")
        with open(plan_path, "w") as f:
            json.dump(plan, f)
        with open(in_path, "w", encoding=sys.stdin.encoding if sys.stdin else "utf-8") as f:
            f.writelines(stdin or [])
        with open(in_path, "rb") as given:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nandoctor.trace.rerun", plan_path, out_path],
                stdin=given,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # its own group: a pool it starts goes with it
            )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # in time, late or interrupted: the group goes (what it left: pool workers)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if timed_out:
            return {"timed_out": round(timeout, 1)}
        try:
            with open(out_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


_MAIN_PID = [os.getpid()]  # the second run's own process, set again by main()


def _finish(out_path: str, found: dict) -> None:
    """Write what was found and end. In a process the program started (a pool worker, which
    inherits the line tracer), say so and end the second run's own process too: it would wait
    for that worker forever."""
    child = os.getpid() != _MAIN_PID[0]
    if child:
        found["in_child"] = True
    with open(out_path, "w") as f:
        json.dump(found, f)
    if child:
        import signal

        os.kill(_MAIN_PID[0], signal.SIGKILL)
    os._exit(0)


def _loop_pass(program: Program, plan: dict, out_path: str) -> None:
    from nandoctor.trace.events import Recorder
    from nandoctor.trace.loops import LoopCounter, find_node, in_place, per_iteration

    node = find_node(plan.get("op_file", ""), plan["op_line"], plan.get("op_pos"))
    counter = LoopCounter(
        tuple(plan["loop_code"]),
        plan["loop_line"],
        plan["loop_end"],
        tuple(plan["op_code"]),
        plan["op_line"],
        node,
        every_pass=in_place(plan.get("op_file", ""), plan.get("op_pos")),
    )

    def stop(first, frame) -> None:
        sys.settrace(None)
        counter.measure_at_failure(frame)
        _finish(
            out_path,
            {
                "found": True,
                "place": [first.file, first.line, first.kind],
                "fingerprint": first.fingerprint,
                "iteration": counter.iteration_at(frame),
                "growth": per_iteration(counter.history),
                "entries": counter.entry_growth(),
            },
        )

    recorder = Recorder(on_first=stop, on_stopped=stop)
    _run(program, recorder.armed(), counter)


def _silent_pass(program: Program, out_path: str) -> None:
    from nandoctor.trace.events import first_silent
    from nandoctor.trace.silent import FirstNaNFinder

    def found(frame, line, name, numbers, made) -> None:
        sys.settrace(None)
        first = first_silent(frame, line, name, numbers, finder.pass_of, made)
        growth = finder.growth_at(frame, line) if made else []
        _finish(out_path, {"found": True, "first": first.to_json(), "growth": growth, **seen()})

    def spread(first, where: dict) -> None:  # an Inf parsed from text, then spread
        sys.settrace(None)
        first.spread = where
        _finish(out_path, {"found": True, "first": first.to_json(), "growth": [], **seen()})

    def seen() -> dict:
        return {"placeholders": finder.seen, "derived": finder.derived}

    finder = FirstNaNFinder(found, spread)
    _run(program, None, finder)
    _finish(out_path, {"found": False, **seen()})


def _run(program: Program, armed, tracer) -> None:
    import contextlib

    from nandoctor.trace.runner import output_silenced, run_program

    with output_silenced(), armed or contextlib.nullcontext():
        sys.settrace(tracer)
        try:
            run_program(program)
        finally:
            sys.settrace(None)


def main(plan_path: str, out_path: str) -> None:
    _MAIN_PID[0] = os.getpid()
    with open(plan_path) as f:
        plan = json.load(f)
    program = Program.from_json(plan["program"])
    if plan["mode"] == "loop":
        _loop_pass(program, plan, out_path)
    else:
        _silent_pass(program, out_path)
    _finish(out_path, {"found": False})


if __name__ == "__main__":
    main(*sys.argv[1:3])
