"""Bad input files end in a ``file:line:col: key: message`` line and exit 2, never a traceback,
a hang or an out-of-memory kill: damaged or oversized npz and CSV files, a spec that is not a
regular file or is too big to be one, and specs or data too big for the memory available.

Nothing here allocates much: huge arrays are npz members whose header alone claims the size,
and the memory available is a small fake limit (``NANDOCTOR_MEMORY_LIMIT``).
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from nandoctor.cli import main


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def header_only(shape, descr="<f8") -> bytes:
    """An .npy member that claims ``shape`` and holds no data."""
    out = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_2_0(out, header)
    return out.getvalue()


def zip_members(path, **members: bytes):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(f"{name}.npy", data)
    return path


def spec_file(tmp_path, text: str, name: str = "s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


NPZ_SPEC = "data: {source: npz, path: d.npz}\nmodel: {layers: [{units: 1}]}\ntrain: {steps: 3}\n"


def assert_usage_error(r, where: str, key: str, *words: str):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert f"{where}: {key}: " in r.output if key else f"{where}: " in r.output, r.output
    for word in words:
        assert word in r.output, r.output


# ---------------------------------------------------------------- npz members (defect 4)
@pytest.mark.parametrize("command", ["run", "fix"])
def test_an_npz_member_that_is_not_an_array_is_a_data_path_error(tmp_path, command):
    zip_members(tmp_path / "d.npz", x=b"garbage", y=b"garbage")
    spec = spec_file(tmp_path, NPZ_SPEC)
    args = ["-o", tmp_path / "out.yaml"] if command == "fix" else ["--no-verify"]
    r = invoke(command, spec, *args)
    assert_usage_error(r, f"{spec}:1:27", "data.path", "'x.npy' is not a NumPy array", "np.savez")
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize("command", ["run", "fix"])
def test_an_npz_whose_header_claims_terabytes_is_refused_before_reading(tmp_path, command):
    zip_members(tmp_path / "d.npz", x=header_only((10**9, 1000)), y=header_only((10**9,)))
    spec = spec_file(tmp_path, NPZ_SPEC)
    args = ["-o", tmp_path / "out.yaml"] if command == "fix" else ["--no-verify"]
    r = invoke(command, spec, *args)
    assert_usage_error(
        r, f"{spec}:1:27", "data.path", "1,000,000,000 samples x (1,000 features", "TB", "available"
    )


def test_a_weights_file_whose_header_claims_terabytes_is_refused_before_reading(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((8, 4)), y=np.ones(8))
    zip_members(tmp_path / "w.npz", W1=header_only((10**6, 10**6)), b1=header_only((1,)))
    spec = spec_file(tmp_path, WEIGHTS_SPEC)
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(r, f"{spec}:2:40", "model.weights", "W1 (1000000, 1000000) float64", "TB")


def test_check_reports_a_damaged_npz_as_invalid_data_not_an_internal_error(tmp_path):
    zip_members(tmp_path / "d.npz", x=b"garbage", y=b"garbage")
    spec = spec_file(tmp_path, NPZ_SPEC)
    r = invoke("check", spec)
    assert r.exit_code == 1, r.output
    assert "invalid data" in r.output and "internal error" not in r.output


def test_an_npz_cut_short_is_a_data_path_error(tmp_path):
    whole = header_only((100, 3)) + np.zeros(300).tobytes()
    zip_members(tmp_path / "d.npz", x=whole[:-800], y=header_only((100,)) + bytes(800))
    r = invoke("run", spec_file(tmp_path, NPZ_SPEC), "--no-verify")
    assert_usage_error(r, "s.yaml:1:27", "data.path", "damaged or cut short")


WEIGHTS_SPEC = (
    "data: {source: npz, path: d.npz}\n"
    "model: {layers: [{units: 1}], weights: w.npz}\n"
    "train: {steps: 3}\n"
)


@pytest.mark.parametrize(
    ("members", "words"),
    [
        ({"W1": np.array([["a"] * 1] * 4)}, ["array W1 has dtype <U1", "numeric"]),
        ({"W1": b"garbage"}, ["'W1.npy' is not a NumPy array"]),
        ({"W1": np.array([[1.0], [2.0]], dtype=object)}, ["Python objects"]),
    ],
    ids=["strings", "garbage", "objects"],
)
def test_a_weights_file_with_a_non_numeric_member_is_a_model_weights_error(
    tmp_path, members, words
):
    np.savez(tmp_path / "d.npz", x=np.ones((8, 4)), y=np.ones(8))
    with zipfile.ZipFile(tmp_path / "w.npz", "w") as z:
        for name, value in members.items():
            if isinstance(value, bytes):
                z.writestr(f"{name}.npy", value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, value, allow_pickle=True)
                z.writestr(f"{name}.npy", buf.getvalue())
    spec = spec_file(tmp_path, WEIGHTS_SPEC)
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(r, f"{spec}:2:40", "model.weights", *words)


# ---------------------------------------------------------------- the spec file itself (defect 3)
@pytest.mark.parametrize("command", ["run", "fix", "sweep"])
def test_a_character_device_as_the_spec_is_refused_without_reading_it(command, tmp_path):
    extra = {"fix": ["-o", tmp_path / "o.yaml"], "sweep": ["--lr", "0.1,0.2"]}.get(command, [])
    r = invoke(command, "/dev/zero", *extra)
    assert_usage_error(r, "/dev/zero:1:1", "", "not a regular file (a character device)")


def test_check_calls_a_character_device_an_invalid_spec():
    r = invoke("check", "/dev/zero")
    assert r.exit_code == 1, r.output
    assert "not a regular file" in r.output


def test_trace_refuses_a_character_device_as_the_script():
    r = invoke("trace", "/dev/zero")
    assert r.exit_code == 2, r.output
    assert "SCRIPT /dev/zero: is not a regular file" in r.output


def test_a_spec_of_megabytes_is_refused_before_it_is_parsed(tmp_path):
    spec = spec_file(tmp_path, "name: " + "a" * 3 * 2**20 + "\nmodel: {layers: [{units: 1}]}\n")
    r = invoke("run", spec)
    assert_usage_error(r, f"{spec}:1:1", "", "is 3 MB, too big for a spec (at most 1 MB")


def test_a_long_name_takes_one_line_of_the_text_report(tmp_path):
    spec = spec_file(tmp_path, "name: " + "n" * 5000 + "\nmodel: {layers: [{units: 1}]}\n")
    r = invoke("run", spec, "--steps", "3")
    assert r.exit_code == 0, r.output
    (line,) = [ln for ln in r.output.splitlines() if "nnnn" in ln]
    assert "n" * 59 + "…: 3/3 steps" in line
    r = invoke("run", spec, "--steps", "3", "--format", "json")
    assert '"name": "' + "n" * 5000 + '"' in r.output  # the JSON keeps it whole


def test_a_spec_with_windows_line_ends_reads_as_before(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_bytes(b"model:\r\n  layers:\r\n    - units: x\r\n")
    r = invoke("run", spec)
    assert_usage_error(r, f"{spec}:3:14", "model.layers.0.units", "whole number")


# ---------------------------------------------------------------- memory (defects 1 and 2)
@pytest.fixture
def memory_limit(monkeypatch):
    """Pretend only ``limit`` is available (the budget is measured once per process)."""
    from nandoctor.spec.limits import memory_budget

    def set_limit(limit: str) -> None:
        monkeypatch.setenv("NANDOCTOR_MEMORY_LIMIT", limit)
        memory_budget.cache_clear()

    yield set_limit
    memory_budget.cache_clear()


def layers(units: int, depth: int = 2) -> str:
    hidden = ", ".join([f"{{units: {units}, activation: relu}}"] * depth)
    return f"model: {{layers: [{hidden}, {{units: 1}}]}}\n"


def test_a_spec_that_fits_the_machine_but_not_the_memory_available_is_refused(
    tmp_path, memory_limit
):
    """3,000 units peak at 697 MB (measured): with 500 MB available, refused up front with the
    key and the numbers, not killed half-way through training."""
    memory_limit("500MB")
    spec = spec_file(tmp_path, "train: {steps: 3}\n" + layers(3000))
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(
        r, f"{spec}:2:59", "model.layers.1.units", "9,039,001 parameters x 9", "500 MB available"
    )


@pytest.mark.parametrize("shape", [(200_000_000, 10), (10**9, 1000)])
def test_a_zip_bomb_npz_is_refused_from_its_header(tmp_path, shape):
    """The tester's 17 MB npz of deflated zeros claiming (200000000, 10) trained for 90 s before
    the OOM killer; its header alone says it cannot fit."""
    zip_members(tmp_path / "d.npz", x=header_only(shape), y=header_only(shape[:1]))
    spec = spec_file(tmp_path, NPZ_SPEC)
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(r, f"{spec}:1:27", "data.path", f"{shape[0]:,} samples", "available")


def test_a_csv_too_big_to_load_is_refused_before_it_is_read(tmp_path, memory_limit):
    """The CSV loader holds ~100 bytes a cell: 20,000 rows x 20 two-digit cells (1.2 MB) need
    about 50 MB; with 120 MB available (100 MB are nandoctor's own), refused by size alone."""
    memory_limit("120MB")
    header = ",".join(f"f{i}" for i in range(19)) + ",y\n"
    (tmp_path / "d.csv").write_text(header + ("10," * 19 + "10\n") * 20_000)
    spec = spec_file(tmp_path, "data: {source: csv, path: d.csv, target: y}\n" + layers(4, 1))
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(
        r, f"{spec}:1:27", "data.path", "20,000 samples x (19 features", "while the file is read"
    )
    memory_limit("1GB")
    assert invoke("run", spec, "--no-verify", "--steps", "2").exit_code == 0


# ---------------------------------------------------------------- headers and names (defect 5)
CSV_SPEC = "data: {source: csv, path: d.csv, target: y}\nmodel: {layers: [{units: 1}]}\n"


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("a,a,y", ["columns 1 and 2 are both named 'a'"]),
        ("a,b,y\x00", ["column 3: the name 'y\\x00' holds the control character U+0000"]),
    ],
    ids=["duplicate", "nul"],
)
def test_a_csv_header_with_a_duplicate_or_a_control_character_is_refused(tmp_path, header, words):
    (tmp_path / "d.csv").write_text(header + "\n1,2,3\n4,5,6\n")
    spec = spec_file(tmp_path, CSV_SPEC)
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(r, f"{spec}:1:27", "data.path", *words)
    assert "did you mean" not in r.output


def test_a_weights_file_with_arrays_no_layer_uses_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((8, 4)), y=np.ones(8))
    np.savez(tmp_path / "w.npz", W1=np.ones((4, 1)), b1=np.zeros(1), W3=np.ones((1, 1)))
    spec = spec_file(tmp_path, WEIGHTS_SPEC)
    r = invoke("run", spec, "--no-verify")
    assert_usage_error(r, f"{spec}:2:40", "model.weights", "holds W3, which no layer")


def test_a_single_npy_array_as_the_data_is_named_as_such(tmp_path):
    """A ``.npy`` file where an npz archive belongs: one message, at data.path, exit 2."""
    np.save(tmp_path / "d.npy", np.zeros((4, 2)))
    spec = tmp_path / "s.yaml"
    spec.write_text("data: {source: npz, path: d.npy}\nmodel: {layers: [{units: 1}]}\n")
    r = CliRunner().invoke(main, ["run", str(spec)])
    assert r.exit_code == 2
    assert "data.path: " in r.output
    assert "d.npy' is a single .npy array, not an .npz archive" in r.output
