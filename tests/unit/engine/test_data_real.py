"""Real tables (docs/spec.md): categorical CSV columns, missing values dropped by row,
regression targets preprocessed."""

from __future__ import annotations

import numpy as np
import pytest

from nandoctor.engine.data import DataError, drop_nonfinite_rows, load_csv
from nandoctor.engine.setup import prepare
from nandoctor.spec.models import spec_from_dict


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_categorical_columns_are_one_hot_in_sorted_order(tmp_path):
    path = write(tmp_path, "size,color,y\n1,red,0.5\n2,blue,1.5\n3,,2.5\n4,red,3.5\n")
    ds = load_csv(path, "y", categorical=["color"])
    assert ds.feature_names == ("size", "color=blue", "color=red")
    np.testing.assert_array_equal(ds.x[[0, 1, 3]], [[1, 0, 1], [2, 1, 0], [4, 0, 1]])
    assert np.isnan(ds.x[2, 1:]).all()  # an empty category is missing, not a category


def test_categorical_numbers_sort_by_value(tmp_path):
    path = write(tmp_path, "zone,y\n10,1\n2,2\n10,3\n")
    ds = load_csv(path, "y", categorical=["zone"])
    assert ds.feature_names == ("zone=2", "zone=10")


def test_an_unlisted_text_column_is_named_with_the_fix(tmp_path):
    path = write(tmp_path, "size,color,y\n1,red,0.5\n")
    with pytest.raises(DataError) as e:
        load_csv(path, "y")
    assert "'color'" in str(e.value) and "data.categorical" in str(e.value)


def test_a_categorical_column_that_does_not_exist_is_named(tmp_path):
    path = write(tmp_path, "size,color,y\n1,red,0.5\n")
    with pytest.raises(DataError) as e:
        load_csv(path, "y", categorical=["colour"])
    assert e.value.key == "data.categorical" and "did you mean 'color'" in str(e.value)


def test_a_categorical_target_becomes_class_indices(tmp_path):
    path = write(tmp_path, "a,kind\n1,dog\n2,cat\n3,dog\n")
    ds = load_csv(path, "kind", task="classification", categorical=["kind"])
    assert ds.y.tolist() == [1, 0, 1] and ds.n_classes == 2


def test_drop_rows_removes_rows_with_a_nonfinite_input_or_target():
    x = np.array([[1.0, 2.0], [np.nan, 0.0], [3.0, 4.0], [5.0, 6.0]])
    y = np.array([[1.0], [2.0], [np.inf], [4.0]])
    kx, ky, dropped = drop_nonfinite_rows(x, y)
    assert dropped == 2
    np.testing.assert_array_equal(kx, [[1, 2], [5, 6]])
    np.testing.assert_array_equal(ky, [[1], [4]])
    with pytest.raises(DataError, match="left nothing"):
        drop_nonfinite_rows(np.full((2, 2), np.nan), None)


def spec(**data):
    return spec_from_dict(
        {
            "data": {"samples": 200, "features": 5, "outputs": 2, **data},
            "model": {"layers": [{"units": 4, "activation": "relu"}, {"units": 2}]},
            "train": {"steps": 5},
        }
    )


def test_missing_keep_is_bad_input_and_drop_rows_trains_on_the_rest():
    kept = prepare(spec(nan_fraction=0.02))
    assert kept.first_nonfinite is not None and kept.first_nonfinite.phase == "data"
    dropped = prepare(spec(nan_fraction=0.02, missing="drop_rows"))
    assert dropped.first_nonfinite is None
    rows_with_nan = 200 - len(dropped.x)
    assert dropped.dropped_rows == rows_with_nan and 0 < rows_with_nan <= 20  # 20 NaN entries


def test_target_standardize_gives_zero_mean_unit_std_targets():
    p = prepare(spec(target_preprocess="standardize"))
    np.testing.assert_allclose(p.y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(p.y.std(axis=0), 1, rtol=1e-12)
    raw = prepare(spec())
    np.testing.assert_array_equal(p.x, raw.x)  # the inputs are left alone
