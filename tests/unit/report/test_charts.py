"""Charts as data and their SVG: downsampling keeps every spike, charts come from the run's own
numbers, the SVG draws them."""

import re
from pathlib import Path

import numpy as np
import pytest

from nandoctor.diagnosis.diagnose import diagnose
from nandoctor.engine.runs import train
from nandoctor.report.charts import svg
from nandoctor.report.charts.downsample import MAX_POINTS, envelope
from nandoctor.report.charts.history import run_history
from nandoctor.report.charts.model import LineChart, Series
from nandoctor.report.charts.run import run_charts
from nandoctor.spec.models import load_spec

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def diagnosis_of(name: str, *overrides: str):
    spec = load_spec(CONFIGS / name, list(overrides))
    return diagnose(train(spec)[0]), spec


def test_a_million_steps_become_few_points_and_keep_their_extremes():
    n = 1_000_000
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.random(n), rng.random(n)])
    values[123_456, 0] = 1e6  # one spike
    values[654_321, 1] = -5.0  # one dip
    values[999_999, 0] = np.inf  # the failing step
    b = envelope(np.arange(1, n + 1), values)
    assert len(b.x) == MAX_POINTS and b.end == n
    assert np.nanmax(b.hi[:, 0]) == 1e6 and np.nanmin(b.lo[:, 1]) == -5.0
    assert np.isfinite(b.mean).all()  # the non-finite value is left out, not averaged in
    assert (b.lo <= b.mean).all() and (b.mean <= b.hi).all()


def test_a_short_run_is_drawn_whole():
    b = envelope(np.arange(1, 6), np.array([1.0, 2.0, np.nan, 4.0, 5.0]))
    assert list(b.x) == [1, 2, 3, 4, 5] and np.isnan(b.mean[2])


def test_sums_near_the_dtype_limit_do_not_overflow_the_mean():
    v = np.full(2000, 1e308)
    b = envelope(np.arange(1, 2001), v, max_points=10)
    assert (b.mean == 1e308).all()


def test_run_history_adapter_numbers_the_window_from_its_start():
    h = run_history({"loss": np.ones(3), "grad_norm": np.ones((3, 2))}, history_start=10)
    assert list(h.steps) == [10, 11, 12] and h.layers == 2 and h.end == 12
    assert run_history(None) is None and run_history({"loss": np.empty(0)}) is None


def test_run_charts_mark_the_failure_where_the_run_failed():
    d, spec = diagnosis_of("relu_high_lr.yaml")
    charts = run_charts(d, spec.numerics.dtype)
    titles = [c.title for c in charts]
    assert titles[:4] == ["Loss", "Gradient norm", "Weight norm", "max |pre-activation|"]
    loss = charts[0]
    (fail,) = [m for m in loss.markers if m.axis == "x"]
    assert fail.at == d.first_nonfinite.step and d.cause.id.replace("_", " ") in fail.label
    grad = charts[1]
    assert grad.y_log and len(grad.series) == len(spec.model.layers)
    # the gradient norms drawn are the run's own
    np.testing.assert_array_equal(
        grad.series[0].y,
        np.where(np.isfinite(d.history["grad_norm"][:, 0]), d.history["grad_norm"][:, 0], np.nan),
    )


def test_float16_limit_is_drawn_beside_max_z():
    d, spec = diagnosis_of("float16_overflow.yaml")
    (mz,) = [c for c in run_charts(d, spec.numerics.dtype) if c.title.startswith("max")]
    assert any(m.axis == "y" and m.at == 65504.0 for m in mz.markers)


def test_float64_headroom_is_said_in_words():
    d, spec = diagnosis_of("healthy.yaml", "train.steps=20")
    (mz,) = [c for c in run_charts(d, spec.numerics.dtype) if c.title.startswith("max")]
    assert "decades above" in mz.note and not [m for m in mz.markers if m.axis == "y"]


def test_saturation_heat_map_for_squashing_layers():
    d, spec = diagnosis_of("deep_sigmoid_saturated.yaml", "train.steps=30")
    (heat,) = [c for c in run_charts(d, spec.numerics.dtype) if c.kind == "heatmap"]
    assert all("saturated" in r for r in heat.rows)
    assert heat.values.shape == (len(heat.rows), len(heat.x))
    squashing = [i for i, a in enumerate(d.layers) if a in ("sigmoid", "tanh", "softmax")]
    np.testing.assert_array_equal(heat.values, d.history["saturated"][:, squashing].T)
    assert np.nanmax(heat.values) > 0.1  # this spec saturates


def test_svg_line_chart_draws_the_data():
    chart = LineChart(
        "t",
        "step",
        "v",
        [Series("a", np.arange(1.0, 6), np.array([1, 10, 100, np.nan, 1e4]))],
        y_log=True,
    )
    out = svg.render(chart)
    assert out.startswith("<svg") and "data-points='4'" in out
    paths = re.findall(r"<path d='([^']+)' fill='none'", out)
    assert len(paths) == 1  # a NaN breaks the line: 3 points joined, 1 alone
    assert out.count("<circle") == 1
    assert "1e4" in out or "10000" in out  # a log tick


@pytest.mark.parametrize("log", [False, True])
def test_ticks_fall_inside_the_axis(log):
    s = svg.Scale(0.003, 700.0, log, 0, 100)
    ticks = s.ticks()
    assert 2 <= len(ticks) <= 7
    assert all(0 <= s(t) <= 100 for t in ticks)


def test_svg_escapes_labels():
    chart = LineChart("<b>", "x", "y", [Series("<script>", np.arange(3.0), np.ones(3))])
    out = svg.render(chart)
    assert "<script>" not in out and "&lt;b&gt;" in out


@pytest.mark.parametrize(
    "value, label",
    [
        (1e-7, "1e-7"),
        (2.5e6, "2.5e6"),
        (20000.0, "2e4"),
        (0.05, "0.05"),
        (250.0, "250"),
        (0.00096, "9.6e-4"),
        (0.0, "0"),
    ],
)
def test_tick_labels_are_short_and_true(value, label):
    assert svg._tick_label(value) == label


def test_a_run_that_outgrew_its_window_is_drawn_whole(monkeypatch):
    """The summary's buckets cover the steps before the window: the chart starts at step 1 and
    its envelope holds the same extremes as a run whose window kept every step."""
    import nandoctor.instrument.history as history

    spec = load_spec(CONFIGS / "healthy.yaml", ["train.steps=1500"])
    whole = diagnose(train(spec)[0])
    monkeypatch.setattr(history, "WINDOW", 256)
    monkeypatch.setattr(history, "CHUNK", 64)
    monkeypatch.setattr(history, "BUCKETS", 32)
    small = diagnose(train(spec)[0])
    assert small.history_start > 1 and len(small.history["loss"]) == 256  # outgrew its window

    def loss_series(d):
        return run_charts(d)[0].series[0]

    a, b = loss_series(whole), loss_series(small)
    assert b.x[0] == 1 and whole.steps_run == small.steps_run == 1500
    assert np.nanmax(b.hi) == np.nanmax(a.hi) and np.nanmin(b.lo) == np.nanmin(a.lo)
    # the last steps are drawn at full resolution, as the window holds them
    assert list(b.x[-256:]) == list(range(1245, 1501))
    np.testing.assert_array_equal(b.y[-256:], small.history["loss"])
