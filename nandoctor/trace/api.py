"""``nandoctor.watch()``: the trace of a block of code or a function, for notebooks and tests.

    with nandoctor.watch() as w:
        train()
    print(w.result.first, w.result.cause)

    @nandoctor.watch(raise_on_nonfinite=True)   # NonFiniteError at the first NaN/Inf,
    def train(): ...                             # with the user's line, iteration and cause

No second run is possible here, so the iteration is known only when the loop says it (``for i
in range(...)`` / ``enumerate``), and overflow is not told apart from a growth over iterations.
"""

from __future__ import annotations

import contextlib
import sys
import time

from nandoctor.trace.events import NonFiniteError, Recorder
from nandoctor.trace.result import TraceResult


class watch(contextlib.ContextDecorator):  # noqa: N801 - reads as a verb: nandoctor.watch()
    """Record NumPy's floating-point events of the code inside; ``.result`` afterwards."""

    def __init__(self, raise_on_nonfinite: bool = False):
        self.raise_on_nonfinite = raise_on_nonfinite
        self.result: TraceResult | None = None
        self._stack: list = []

    def __enter__(self) -> watch:
        caller = sys._getframe(1)
        label = f"{caller.f_code.co_filename}:{caller.f_lineno}"
        recorder = Recorder(on_first=self._stop if self.raise_on_nonfinite else None)
        armed = recorder.armed()
        armed.__enter__()
        self._stack.append((recorder, armed, time.perf_counter(), label))
        self.result = None
        return self

    def __exit__(self, *exc) -> bool:
        recorder, armed, start, label = self._stack.pop()
        armed.__exit__(*exc)
        if self.result is None:
            self.result = _result(recorder, label, time.perf_counter() - start)
        return False

    def _stop(self, first, frame) -> None:
        recorder, _, start, label = self._stack[-1]
        self.result = _result(recorder, label, time.perf_counter() - start)
        raise NonFiniteError(first, self.result)


def _result(recorder: Recorder, label: str, seconds: float) -> TraceResult:
    from nandoctor.trace.cause import decide
    from nandoctor.trace.observe import event_warnings, finite_summary

    result = TraceResult(script=label, seconds=seconds)
    result.events = recorder.events()
    result.warnings, result.notes = event_warnings(recorder)
    if recorder.first is None:
        result.notes.insert(0, finite_summary(recorder))
        return result
    result.first = recorder.first
    result.cause, result.advice = decide(recorder.first, [])
    return result
