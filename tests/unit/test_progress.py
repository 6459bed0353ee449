"""The progress bar draws a few hundred times per bar, whatever the steps."""

from rich.progress import Progress

from nandoctor.cli import common


def test_a_long_run_updates_its_bar_a_few_hundred_times(monkeypatch):
    monkeypatch.setattr(common, "interactive", lambda: True)
    calls = []
    real = Progress.update
    monkeypatch.setattr(
        Progress, "update", lambda self, task, **kw: calls.append(kw) or real(self, task, **kw)
    )
    with common.step_progress(100_000, "training", True) as advance:
        for done in range(1, 100_001):
            advance(done)
    assert 400 <= len(calls) <= 510
    assert calls[-1]["completed"] == 100_000  # the end is always drawn
    with common.step_progress(3, "training", True) as advance:
        for done in (1, 2, 3):
            advance(done)
    assert [c["completed"] for c in calls[-3:]] == [1, 2, 3]  # short bars: every step
