"""The HTML pages: self-contained (no script, nothing fetched), holding the findings and charts."""

import re
from pathlib import Path

import numpy as np
import pytest

from nandoctor.check import check_one
from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.report.html import check_page, run_page, sweep_page, trace_page
from nandoctor.spec.models import load_spec
from nandoctor.sweep import sweep

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def assert_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page.lower()
    # the only URL is the SVG namespace, which is a name, never fetched
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+[^\s'\"<>]*", page))
    assert urls <= {"http://www.w3.org/2000/svg", "//www.w3.org/2000/svg"}, urls
    assert not re.search(r"\b(src|href)=['\"](?!#)", page)  # only in-page links
    assert "@import" not in page and "url(" not in page


def trace_doc(script: Path) -> dict:
    """A trace result as `trace --format json` prints it (docs/output.md)."""
    return {
        "script": str(script),
        "status": "nonfinite",
        "first_nonfinite": {
            "file": str(script),
            "line": 4,
            "function": "step",
            "source": "p -= lr * g / np.sqrt(sq)",
            "op": "divide",
            "kind": "invalid",
            "value": "nan",
            "iteration": 3,
            "loop": {"file": str(script), "line": 7},
            "stack": [
                {"file": str(script), "line": 4, "function": "step", "source": "p -= ..."},
                {"file": str(script), "line": 8, "function": "<module>", "source": "step(p)"},
            ],
        },
        "cause": {"id": "division_by_zero", "summary": "0/0 in rmsprop", "evidence": ["sq == 0"]},
        "warnings": [{"id": "saturation", "summary": "pinned", "file": str(script), "line": 2}],
        "events": [
            {"file": str(script), "line": 4, "kind": "invalid", "count": 3},
            {"file": str(script), "line": 4, "kind": "divide_by_zero", "count": 1},
        ],
        "advice": ["add eps to the denominator"],
        "program": {"exit_code": 0, "exception": None},
    }


def test_run_page_holds_the_diagnosis_and_the_charts():
    spec = load_spec(CONFIGS / "relu_high_lr.yaml")
    d = diagnose(train(spec)[0])
    page = run_page(d, spec.numerics.dtype)
    assert_self_contained(page)
    assert f"INF at step {d.first_nonfinite.step}" in page
    assert d.cause.id in page and d.cause.evidence[1][:30] in page.replace("&#x27;", "'")
    for r in d.recommendations:
        assert r.id in page
    assert page.count("<svg class='chart'") == 6
    assert "untried" in page  # not verified here: the mark says so
    first, second = d.recommendations[:2]
    first.verified, first.learns = True, False  # finite by not learning: the mark says so too
    second.verified, second.learns = True, True
    page = run_page(d, spec.numerics.dtype)
    assert page.count("✓ verified, does not learn") == 1 and page.count("✓ verified<") == 1


def test_sweep_page_for_a_grid_has_a_stability_map():
    spec = load_spec(CONFIGS / "relu_high_lr.yaml").capped(20)
    points = sweep(
        spec, [0.01, 0.1, 1.5], [{"train.optimizer": "sgd"}, {"train.optimizer": "adam"}]
    )
    page = sweep_page(spec, points)
    assert_self_contained(page)
    assert "data-kind='statusmap'" in page and "train.optimizer=adam" in page
    assert page.count("<svg class='chart'") == 3


def test_check_page_links_rows_to_sections(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {layers: []}\n")
    results = [
        check_one((str(CONFIGS / "relu_high_lr.yaml"), 20, None)),
        check_one((str(bad), None, None)),
    ]
    page = check_page(results)
    assert_self_contained(page)
    assert "href='#spec-1'" in page and "id='spec-1'" in page and "id='spec-2'" in page
    assert "<svg class='spark' data-points='" in page
    assert "0 passed, 2 failed (1 invalid)" in page


def test_trace_page_highlights_the_failing_line_in_its_file(tmp_path):
    script = tmp_path / "fit.py"
    script.write_text("\n".join(f"line_{k} = {k}" for k in range(1, 21)) + "\n")
    page = trace_page(trace_doc(script))
    assert_self_contained(page)
    assert "<span class='line hit'><span class='ln'>4</span>line_4 = 4</span>" in page
    assert "line_10 = 10" in page and "line_11 = 11" not in page  # 6 lines of context
    assert "data-kind='bars'" in page and "division_by_zero" in page
    assert "iteration 3" in page


def test_trace_page_without_the_file_shows_the_line_alone(tmp_path):
    doc = trace_doc(tmp_path / "gone.py")
    page = trace_page(doc)
    assert "class='line hit'" in page and "np.sqrt(sq)" in page


@pytest.mark.parametrize("status", ["healthy", "warning"])
def test_trace_page_for_a_finite_program(status):
    page = trace_page(
        {
            "script": "ok.py",
            "status": status,
            "first_nonfinite": None,
            "cause": None,
            "warnings": [],
            "events": [],
            "advice": [],
            "program": {"exit_code": 0},
        }
    )
    assert_self_contained(page)
    assert f"verdict {status}" in page


def test_a_million_step_run_makes_a_small_page_that_keeps_its_spike():
    from nandoctor.report.charts.run import run_charts
    from nandoctor.report.charts.synthetic import long_run

    d = long_run(1_000_000)
    page = run_page(d)
    assert_self_contained(page)
    assert len(page.encode()) < 1_000_000  # the full-resolution SVG would be ~100x larger
    grad = next(c for c in run_charts(d) if c.title == "Gradient norm")
    assert np.nanmax(grad.series[0].hi) == 1e6 and len(grad.series[0].x) == 400
