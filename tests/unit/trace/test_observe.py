"""Saturation read from a finite program's final arrays: a squashing output, not data in [0, 1]."""

from __future__ import annotations

import numpy as np

from nandoctor.trace.observe import saturation_warnings


def _warned(**arrays) -> tuple[list[str], list[str]]:
    warnings, notes = saturation_warnings([(None, arrays)])
    return [w.summary for w in warnings], notes


def test_a_saturated_sigmoid_output_is_a_warning():
    rng = np.random.default_rng(0)
    p = 1 / (1 + np.exp(-40 * rng.standard_normal((500, 8))))  # most |z| far past 7
    warnings, _ = _warned(p=p)
    assert len(warnings) == 1 and warnings[0].startswith("`p` ends with")


def test_pixels_scaled_to_one_are_data_not_saturation():
    """Mostly-background images / 255: 80% exact zeros, the rest on a grid of 255 levels."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (500, 64)) * (rng.random((500, 64)) < 0.2) / 255.0
    warnings, notes = _warned(X=pixels)
    assert warnings == []
    assert any("`X`" in n and "distinct values" in n for n in notes), notes


def test_a_few_continuous_values_between_the_limits_are_not_called_a_grid():
    """Below the size where repeats mean anything, a saturated output is still read."""
    p = np.r_[np.full(450, 1.0), np.linspace(0.2, 0.8, 50)]
    warnings, _ = _warned(p=p)
    assert len(warnings) == 1


def test_a_collapsed_output_repeating_its_rows_is_not_called_data():
    """Dead hidden units give every row the same logits: the softmax repeats, but at no common
    step, so it is still read for saturation (here: pinned rows, warned)."""
    logits = np.array([[0.3, -1.2, 2.0], [-9.0, -8.5, 9.0], [0.1, 0.0, 0.2]])
    rows = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p = np.repeat(rows, [100, 150, 50], axis=0)  # 300 rows, 3 distinct
    warnings, notes = _warned(p=p)
    assert not any("grid" in n for n in notes), notes
    assert len(warnings) == 1 and warnings[0].startswith("`p` ends with")
