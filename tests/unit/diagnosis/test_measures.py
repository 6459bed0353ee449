"""The diagnosis's own medians agree with NumPy's, NaN and infinities included."""

import subprocess
import sys
import warnings

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nandoctor.diagnosis.measures import column_median, median

VALUES = st.one_of(st.floats(-1e6, 1e6), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0]))


@settings(max_examples=300, deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=7), elements=VALUES)
)
def test_column_median_is_nanmedian(g):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column of NaN only
        expected = np.nanmedian(g, axis=0)
    assert np.array_equal(column_median(g), expected, equal_nan=True)


@settings(max_examples=300, deadline=None)
@given(hnp.arrays(np.float64, st.integers(1, 9), elements=VALUES))
def test_median_is_np_median(v):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf between the middle two
        expected = np.median(v)
    assert np.array_equal(median(v), expected, equal_nan=True)


def test_infinities_of_both_signs_in_the_middle_give_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(median(np.array([np.inf, -np.inf])))
        assert np.isnan(column_median(np.array([[np.inf], [-np.inf]]))).all()


def test_empty_columns_have_no_median():
    assert np.isnan(column_median(np.zeros((0, 3)))).all()
    assert np.isnan(median(np.array([])))


def test_medians_do_not_import_numpy_ma():
    """``np.median`` and ``np.nanmedian`` import ``numpy.ma`` (about 20 ms) on first use."""
    code = (
        "import sys, numpy as np\n"
        "from nandoctor.diagnosis.measures import column_median, median\n"
        "g = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 5.0]])\n"
        "column_median(g); median(g[:, 0]); median(np.arange(4.0))\n"
        "print('numpy.ma' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
