"""Messages that say the right thing (issue: reliability, item 11)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.diagnosis.symptoms import _vanishing_summary
from nandoctor.engine.data import DataError, load_npz
from nandoctor.spec.models import SpecError, spec_from_dict

LAYERS = {"layers": [{"units": 5}]}


def run_json(path, *args):
    r = CliRunner().invoke(main, ["run", str(path), "--format", "json", "--no-verify", *args])
    return r, json.loads(r.stdout) if r.stdout.strip() else None


def test_float16_data_that_overflows_when_cast_is_overflow_not_bad_data(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "data: {source: synthetic, scale: 100000}\nmodel: {layers: [{units: 5}]}\n"
        "numerics: {dtype: float16}\ntrain: {steps: 5}\n"
    )
    _, doc = run_json(path)
    assert doc["cause"]["id"] == "overflow"
    assert "float16" in doc["cause"]["summary"] and "held" not in doc["cause"]["summary"]


def test_nan_in_the_initial_weights_names_the_weights_file(tmp_path):
    np.savez(tmp_path / "w.npz", W1=np.full((10, 5), np.nan), b1=np.zeros(5))
    path = tmp_path / "s.yaml"
    path.write_text("model:\n  layers: [{units: 5}]\n  weights: w.npz\ntrain: {steps: 5}\n")
    _, doc = run_json(path)
    assert doc["cause"]["id"] == "bad_input"
    assert "weights file w.npz" in doc["cause"]["summary"]
    assert "the data held" not in doc["cause"]["summary"]


def test_a_text_file_named_npz_is_not_an_npz_archive(tmp_path):
    (tmp_path / "d.npz").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="is not an npz archive") as info:
        load_npz(tmp_path / "d.npz")
    assert "pickle" not in str(info.value)
    (tmp_path / "w.npz").write_text("not weights\n")
    path = tmp_path / "s.yaml"
    path.write_text("model:\n  layers: [{units: 5}]\n  weights: w.npz\n")
    r, _ = run_json(path)
    assert r.exit_code == 2 and "model.weights" in r.output and "not an npz archive" in r.output


@pytest.mark.parametrize("momentum", [1.0, 1.5, -0.1])
def test_momentum_outside_0_1_is_rejected(momentum):
    with pytest.raises(SpecError, match="train.momentum"):
        spec_from_dict({"model": LAYERS, "train": {"optimizer": "momentum", "momentum": momentum}})


def test_a_set_error_points_at_the_set_not_at_a_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: {layers: [{units: 5}]}\ntrain:\n  momentum: 0.9\n")
    r = CliRunner().invoke(main, ["run", str(path), "--set", "train.momentum=2"])
    assert r.exit_code == 2 and r.output.startswith("--set train.momentum=2: ")


def test_no_infinite_ratio_in_a_vanishing_gradient_summary():
    assert "inf" not in _vanishing_summary(0.0, 3.0, 4)
    assert "inf" not in _vanishing_summary(1e-320, 1e300, 4)
    assert "1e+03x" in _vanishing_summary(1e-3, 1.0, 2) or "1.00e+03x" in _vanishing_summary(
        1e-3, 1.0, 2
    )


def test_no_runtime_warning_reaches_stderr(tmp_path):
    # a deep sigmoid net whose first layer's gradient underflows to exactly 0
    path = tmp_path / "s.yaml"
    layers = ", ".join(["{units: 20, activation: sigmoid, init: normal, init_scale: 8}"] * 8)
    path.write_text(f"model: {{layers: [{layers}, {{units: 5}}]}}\ntrain: {{steps: 30}}\n")
    r = subprocess.run(
        [sys.executable, "-m", "nandoctor", "run", str(path), "--no-verify"],
        capture_output=True,
        text=True,
    )
    assert r.returncode in (0, 1), r.stderr
    assert "Warning" not in r.stderr
