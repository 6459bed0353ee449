"""nandoctor.watch(): the same result object for a block or a function, and NonFiniteError."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nandoctor

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _overflowing_loop(n: int = 6) -> np.ndarray:
    x = np.array([1.0, 200.0])
    y = x
    for i in range(n):
        y = np.exp(x * (i + 1))  # x * 4 = 800 overflows at the 4th iteration
    return y


def test_watch_as_a_context_manager_reports_line_iteration_and_cause():
    with nandoctor.watch() as w:
        _overflowing_loop()
    first = w.result.first
    assert w.result.status == "nonfinite" and w.result.exit_code == 1
    assert first.function == "_overflowing_loop" and first.source.startswith(
        "y = np.exp(x * (i + 1))"
    )
    assert (first.op, first.kind, first.value, first.iteration) == ("exp", "overflow", "inf", 4)
    assert w.result.cause.id == "overflow"
    assert w.result.to_json()["first_nonfinite"]["line"] == first.line


def test_watch_as_a_decorator():
    w = nandoctor.watch()

    @w
    def fit():
        return np.log(np.zeros(3))

    fit()
    assert w.result.first.op == "log" and w.result.first.kind == "divide_by_zero"
    assert w.result.first.loop is None and w.result.first.iteration is None


def test_raise_on_nonfinite_stops_at_the_first_event_with_the_report():
    reached = []
    with pytest.raises(nandoctor.NonFiniteError) as info, nandoctor.watch(raise_on_nonfinite=True):
        _overflowing_loop()
        reached.append(True)
    assert not reached
    assert info.value.first.iteration == 4 and "iteration 4" in str(info.value)
    assert info.value.result.cause.id == "overflow"


def test_a_finite_block_is_healthy_and_the_error_state_is_restored():
    before = np.geterr()
    with nandoctor.watch() as w:
        np.tanh(np.linspace(-3, 3, 7))
    assert w.result.status == "healthy" and w.result.first is None
    assert np.geterr() == before and np.errstate is not None


def test_import_nandoctor_stays_light():
    code = "import sys, nandoctor; print(sorted(m for m in ('numpy', 'click', 'rich') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_underflow_counting_stops_at_its_cap_and_says_so(monkeypatch):
    from nandoctor.trace import events

    monkeypatch.setattr(events, "UNDERFLOW_CAP", 50)
    tiny = np.full(2, -800.0)
    with nandoctor.watch() as w:
        for _ in range(80):
            np.exp(tiny)
    assert [e.count for e in w.result.events if e.kind == "underflow"] == [51]  # 1 + 50 quick
    assert "counting stopped" in w.result.notes[0] and w.result.warnings[0].id == "saturation"
    assert np.geterr()["under"] == "ignore"  # the program's own state is back as it was
