"""What a finite program's final arrays in [0, 1] show near their limits: notes, not warnings.

From its numbers alone such an array may be a hidden sigmoid (saturated), a confident output
trained with cross-entropy, or data (clipped, rates, pixels): none of these is claimed as a
warning; the note says what each would mean. Data on a grid is named as data."""

from __future__ import annotations

import numpy as np

from nandoctor.trace.observe import saturation_notes


def _noted(**arrays) -> list[str]:
    return saturation_notes([(None, arrays)])


def test_an_array_pinned_at_its_limits_is_a_note_that_says_what_it_would_mean():
    rng = np.random.default_rng(0)
    p = 1 / (1 + np.exp(-40 * rng.standard_normal((500, 8))))  # most |z| far past 7
    (note,) = _noted(p=p)
    assert note.startswith("`p` (values in [0, 1], 4000 entries) ends with")
    assert "hidden layer's sigmoid" in note and "confident output" in note


def test_data_clipped_to_zero_and_one_is_no_warning():
    """Augmented images clipped back to [0, 1]: 40% at exactly 0 or 1, no grid (noise added)."""
    rng = np.random.default_rng(6)
    x = np.clip(rng.normal(0.0, 0.05, (64, 784)) + (rng.random((64, 784)) < 0.2), 0.0, 1.0)
    notes = _noted(x_aug=x)
    assert len(notes) == 1 and "expected if it is" in notes[0]


def test_pixels_scaled_to_one_are_data_on_a_grid():
    """Mostly-background images / 255: 80% exact zeros, the rest on a grid of 255 levels."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (500, 64)) * (rng.random((500, 64)) < 0.2) / 255.0
    (note,) = _noted(X=pixels)
    assert note.startswith("`X`") and "data on a grid" in note


def test_a_collapsed_output_repeating_its_rows_is_not_called_data():
    """Dead hidden units give every row the same logits: the softmax repeats, but at no common
    step, so it is not named data (here its pinned rows are noted)."""
    logits = np.array([[0.3, -1.2, 2.0], [-9.0, -8.5, 9.0], [0.1, 0.0, 0.2]])
    rows = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p = np.repeat(rows, [100, 150, 50], axis=0)  # 300 rows, 3 distinct
    (note,) = _noted(p=p)
    assert "grid" not in note and "ends with 50%" in note


def test_a_few_continuous_values_between_the_limits_are_not_called_a_grid():
    p = np.r_[np.full(450, 1.0), np.linspace(0.2, 0.8, 50)]
    (note,) = _noted(p=p)
    assert "grid" not in note and "ends with 90%" in note
