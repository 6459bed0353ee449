"""Tests for nandoctor.engine.data: synthetic tasks, loaders, fault injection, preprocessing."""

from __future__ import annotations

import numpy as np
import pytest

from nandoctor.engine.data import (
    DataError,
    Dataset,
    load_csv,
    load_npz,
    preprocess,
    scale_and_corrupt,
    synthetic,
)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def write(tmp_path, text: str, name: str = "d.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- synthetic
@pytest.mark.parametrize("task", ["regression", "classification", "binary", "random"])
def test_synthetic_is_deterministic(task):
    a = synthetic(task, 50, 4, 3, 0.1, rng(7))
    b = synthetic(task, 50, 4, 3, 0.1, rng(7))
    c = synthetic(task, 50, 4, 3, 0.1, rng(8))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    if task != "random":
        np.testing.assert_array_equal(a.y, b.y)


def test_synthetic_regression_shapes():
    d = synthetic("regression", 64, 5, 3, 0.1, rng())
    assert d.x.shape == (64, 5) and d.x.dtype == np.float64
    assert d.y.shape == (64, 3) and d.y.dtype == np.float64
    assert d.n_classes is None


def test_synthetic_regression_follows_documented_recipe():
    d = synthetic("regression", 20, 4, 2, 0.5, rng(3))
    g = rng(3)
    x = g.standard_normal((20, 4))
    w = g.standard_normal((4, 2)) / 2.0
    np.testing.assert_allclose(d.y, x @ w + 0.5 * g.standard_normal((20, 2)))


def test_synthetic_classification_labels():
    d = synthetic("classification", 300, 6, 4, 0.1, rng())
    assert d.y.shape == (300,) and d.y.dtype == np.int64
    assert d.n_classes == 4
    assert d.y.min() >= 0 and d.y.max() < 4
    assert len(np.unique(d.y)) > 1


def test_synthetic_binary_targets():
    d = synthetic("binary", 100, 3, 2, 0.1, rng())
    assert d.y.shape == (100, 2) and d.y.dtype == np.float64
    assert set(np.unique(d.y)) == {0.0, 1.0}


def test_synthetic_random_has_no_targets():
    d = synthetic("random", 10, 3, 2, 0.1, rng())
    assert d.y is None and d.x.shape == (10, 3)


def test_synthetic_rejects_unknown_task():
    with pytest.raises(DataError, match="regression") as e:
        synthetic("regresion", 10, 3, 2, 0.1, rng())
    assert e.value.key == "data.task"


# ---------------------------------------------------------------- csv
def test_csv_round_trip_one_target(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n4,5,6\n")
    d = load_csv(path, "y")
    np.testing.assert_array_equal(d.x, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(d.y, [[3], [6]])
    assert d.x.dtype == np.float64 and d.y.dtype == np.float64
    assert d.feature_names == ("a", "b")


def test_csv_round_trip_two_targets(tmp_path):
    path = write(tmp_path, "t1,a,t2,b\n1,2,3,4\n5,6,7,8\n9,10,11,12\n")
    d = load_csv(path, ["t1", "t2"], task="regression")
    np.testing.assert_array_equal(d.x, [[2, 4], [6, 8], [10, 12]])
    np.testing.assert_array_equal(d.y, [[1, 3], [5, 7], [9, 11]])


def test_csv_empty_cell_and_nan_are_data(tmp_path):
    path = write(tmp_path, "a,b,y\n,nan,1\n2,3,4\n")
    d = load_csv(path, "y")
    assert np.isnan(d.x[0]).all() and np.isfinite(d.x[1]).all()


def test_csv_all_empty_row_is_missing_data(tmp_path):
    d = load_csv(write(tmp_path, "a,b,y\n1,2,3\n,,\n"), "y")
    assert d.x.shape == (2, 2) and np.isnan(d.x[1]).all() and np.isnan(d.y[1, 0])


def test_csv_classification_labels(tmp_path):
    path = write(tmp_path, "a,label\n0.5,0\n1.5,2\n2.5,1.0\n")
    d = load_csv(path, "label", task="classification")
    assert d.y.dtype == np.int64 and d.y.tolist() == [0, 2, 1]
    assert d.n_classes == 3


@pytest.mark.parametrize("bad", ["0.5", "-1", "nan"])
def test_csv_classification_needs_integer_labels(tmp_path, bad):
    path = write(tmp_path, f"a,label\n0.5,0\n1.5,{bad}\n")
    with pytest.raises(DataError, match="whole numbers") as e:
        load_csv(path, "label", task="classification")
    assert e.value.key == "data.target"


def test_csv_classification_needs_one_target(tmp_path):
    path = write(tmp_path, "a,b,c\n1,0,1\n")
    with pytest.raises(DataError, match="one target") as e:
        load_csv(path, ["b", "c"], task="classification")
    assert e.value.key == "data.target"


def test_csv_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="does not exist") as e:
        load_csv(path, "y")
    assert str(path) in str(e.value) and e.value.key == "data.path"


def test_csv_not_a_file(tmp_path):
    with pytest.raises(DataError, match="not a file") as e:
        load_csv(tmp_path, "y")
    assert e.value.key == "data.path"


def test_csv_empty(tmp_path):
    with pytest.raises(DataError, match="empty") as e:
        load_csv(write(tmp_path, "\n\n"), "y")
    assert e.value.key == "data.path"


def test_csv_unreadable(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataError, match="cannot read") as e:
        load_csv(path, "y")
    assert e.value.key == "data.path"


def test_csv_missing_header(tmp_path):
    with pytest.raises(DataError, match="no header") as e:
        load_csv(write(tmp_path, "1,2,3\n4,5,6\n"), "y")
    assert e.value.key == "data.path"


def test_csv_target_not_found_suggests(tmp_path):
    path = write(tmp_path, "age,height,price\n1,2,3\n")
    with pytest.raises(DataError) as e:
        load_csv(path, "prise")
    msg = str(e.value)
    assert e.value.key == "data.target"
    assert "age, height, price" in msg and "did you mean 'price'" in msg


def test_csv_all_columns_targets(tmp_path):
    with pytest.raises(DataError, match="input column") as e:
        load_csv(write(tmp_path, "y\n1\n"), "y")
    assert e.value.key == "data.target"


def test_csv_non_numeric_cell_names_line_and_column(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n4,abc,6\n")
    with pytest.raises(DataError) as e:
        load_csv(path, "y")
    msg = str(e.value)
    assert "line 3" in msg and "'b'" in msg and "'abc'" in msg
    assert e.value.key == "data.path"


def test_csv_line_numbers_count_blank_lines(tmp_path):
    path = write(tmp_path, "a,y\n1,2\n\n3,x\n")
    with pytest.raises(DataError, match="line 4"):
        load_csv(path, "y")


def test_csv_ragged_rows(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,3\n4,5\n")
    with pytest.raises(DataError) as e:
        load_csv(path, "y")
    assert "line 3" in str(e.value) and "2 fields" in str(e.value)
    assert e.value.key == "data.path"


def test_csv_zero_rows(tmp_path):
    with pytest.raises(DataError, match="zero data rows") as e:
        load_csv(write(tmp_path, "a,y\n"), "y")
    assert e.value.key == "data.path"


# ---------------------------------------------------------------- npz
def save(tmp_path, name: str = "d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def test_npz_round_trip_regression(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    d = load_npz(save(tmp_path, x=x, y=np.arange(4.0)))
    np.testing.assert_array_equal(d.x, x)
    assert d.y.shape == (4, 1) and d.y.dtype == np.float64
    d2 = load_npz(save(tmp_path, "e.npz", x=x, y=np.ones((4, 2), dtype=np.float32)))
    assert d2.y.shape == (4, 2) and d2.y.dtype == np.float64


def test_npz_classification(tmp_path):
    x = np.zeros((4, 2), dtype=np.float32)
    d = load_npz(save(tmp_path, x=x, y=np.array([0, 1, 3, 1])), task="classification")
    assert d.x.dtype == np.float64
    assert d.y.dtype == np.int64 and d.y.tolist() == [0, 1, 3, 1] and d.n_classes == 4


def test_npz_classification_rejects_fractional_labels(tmp_path):
    path = save(tmp_path, x=np.zeros((2, 2)), y=np.array([0.0, 0.5]))
    with pytest.raises(DataError, match="whole numbers") as e:
        load_npz(path, task="classification")
    assert e.value.key == "data.target"


def test_npz_missing_arrays_lists_what_it_has(tmp_path):
    path = save(tmp_path, inputs=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(DataError) as e:
        load_npz(path)
    assert "'x'" in str(e.value) and "inputs" in str(e.value)
    assert e.value.key == "data.path"
    with pytest.raises(DataError, match="'y'"):
        load_npz(save(tmp_path, "e.npz", x=np.zeros((2, 2))))


def test_npz_random_task_needs_no_y(tmp_path):
    d = load_npz(save(tmp_path, x=np.zeros((2, 2))), task="random")
    assert d.y is None and d.x.shape == (2, 2)


def test_npz_x_must_be_2d(tmp_path):
    with pytest.raises(DataError, match="2-D") as e:
        load_npz(save(tmp_path, x=np.zeros(5), y=np.zeros(5)))
    assert "(5,)" in str(e.value) and e.value.key == "data.path"


def test_npz_row_mismatch(tmp_path):
    with pytest.raises(DataError) as e:
        load_npz(save(tmp_path, x=np.zeros((5, 2)), y=np.zeros(4)))
    assert "5 rows" in str(e.value) and "4" in str(e.value)


def test_npz_zero_rows(tmp_path):
    with pytest.raises(DataError, match="no data"):
        load_npz(save(tmp_path, x=np.zeros((0, 2)), y=np.zeros(0)))


def test_npz_missing_and_corrupt_file(tmp_path):
    with pytest.raises(DataError, match="does not exist") as e:
        load_npz(tmp_path / "nope.npz")
    assert e.value.key == "data.path"
    with pytest.raises(DataError, match="is not an npz archive"):
        load_npz(write(tmp_path, "not an archive", "bad.npz"))


def test_npz_non_numeric(tmp_path):
    with pytest.raises(DataError, match="numeric"):
        load_npz(save(tmp_path, x=np.array([["a", "b"]]), y=np.zeros(1)))


# ---------------------------------------------------------------- fault injection
@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.333, 1.0])
def test_nan_fraction_count_is_exact(fraction):
    x = rng().standard_normal((37, 11))
    out = scale_and_corrupt(x, 1.0, fraction, rng(1))
    assert np.isnan(out).sum() == round(fraction * x.size)


def test_scale_and_corrupt_scales_and_does_not_mutate():
    x = rng().standard_normal((10, 3))
    before = x.copy()
    out = scale_and_corrupt(x, 1000.0, 0.0, rng())
    np.testing.assert_array_equal(out, before * 1000.0)
    np.testing.assert_array_equal(x, before)
    assert out is not x
    corrupted = scale_and_corrupt(x, 2.0, 0.5, rng())
    np.testing.assert_array_equal(x, before)
    ok = ~np.isnan(corrupted)
    np.testing.assert_array_equal(corrupted[ok], 2.0 * before[ok])


def test_scale_and_corrupt_is_seeded():
    x = np.ones((8, 8))
    a = np.isnan(scale_and_corrupt(x, 1.0, 0.25, rng(5)))
    b = np.isnan(scale_and_corrupt(x, 1.0, 0.25, rng(5)))
    np.testing.assert_array_equal(a, b)


def test_nan_fraction_out_of_range():
    with pytest.raises(DataError) as e:
        scale_and_corrupt(np.ones((2, 2)), 1.0, 1.5, rng())
    assert e.value.key == "data.nan_fraction"


# ---------------------------------------------------------------- preprocessing
def with_constant_column() -> np.ndarray:
    x = rng().standard_normal((20, 3))
    x[:, 1] = 5.0
    return x


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_naive_zero_variance_gives_nan(method):
    with pytest.warns(RuntimeWarning, match="invalid value"):
        out = preprocess(with_constant_column(), method, "naive")
    assert np.isnan(out[:, 1]).all()
    assert np.isfinite(out[:, [0, 2]]).all()


def test_naive_leaves_error_state_to_the_caller():
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        preprocess(with_constant_column(), "standardize", "naive")


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_stable_zero_variance_gives_zeros(method):
    out = preprocess(with_constant_column(), method, "stable")
    assert np.isfinite(out).all()
    assert (out[:, 1] == 0.0).all()


def test_stable_catches_inexact_constant_column():
    x = np.full((256, 2), 0.1)
    x[:, 0] = np.arange(256.0)
    out = preprocess(x, "standardize", "stable")
    assert (out[:, 1] == 0.0).all()


def test_standardize_moments():
    x = rng().standard_normal((500, 4)) * 3 + 7
    for mode in ("naive", "stable"):
        out = preprocess(x, "standardize", mode)
        np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-12)
        np.testing.assert_allclose(out.std(0), 1.0)


def test_minmax_range():
    x = rng().standard_normal((50, 4)) * 10
    for mode in ("naive", "stable"):
        out = preprocess(x, "minmax", mode)
        assert out.min() == 0.0 and out.max() == 1.0
        np.testing.assert_array_equal(out.min(0), 0.0)
        np.testing.assert_array_equal(out.max(0), 1.0)


@pytest.mark.parametrize("method", ["standardize", "minmax"])
def test_nan_input_stays_visible_in_stable_mode(method):
    x = rng().standard_normal((10, 2))
    x[3, 0] = np.nan
    out = preprocess(x, method, "stable")
    assert np.isnan(out[:, 0]).all() and np.isfinite(out[:, 1]).all()


@pytest.mark.parametrize("method", ["none", "standardize", "minmax"])
@pytest.mark.parametrize("mode", ["naive", "stable"])
def test_preprocess_returns_new_float64_array(method, mode):
    x = rng().standard_normal((10, 3)).astype(np.float32)
    before = x.copy()
    out = preprocess(x, method, mode)
    np.testing.assert_array_equal(x, before)
    assert out.dtype == np.float64 and out is not x and not np.shares_memory(out, x)


def test_preprocess_rejects_unknown_names():
    with pytest.raises(DataError) as e:
        preprocess(np.ones((2, 2)), "normalize", "stable")
    assert e.value.key == "data.preprocess"
    with pytest.raises(DataError) as e:
        preprocess(np.ones((2, 2)), "none", "fast")
    assert e.value.key == "numerics.mode"


def test_dataset_is_plain_data():
    d = Dataset(np.zeros((1, 1)), None)
    assert d.n_classes is None and d.feature_names is None
