"""The one writer: atomic for regular files, written through for devices and FIFOs, symlinks
followed, modes kept; outputs that are inputs or unwritable refused before any work."""

import os
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.errors import UsageProblem
from nandoctor.report.output import check_outputs, open_output, write_text

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_regular_file_is_replaced_whole_and_keeps_its_mode(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("old")
    out.chmod(0o640)
    write_text(out, "new\n")
    assert out.read_text() == "new\n"
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left behind


def test_new_file_gets_the_umask_mode_not_the_temp_files(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o644


def test_a_failure_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("precious")
    with pytest.raises(RuntimeError), open_output(out) as f:
        f.write("half")
        raise RuntimeError("interrupted")
    assert out.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_symlink_is_followed_not_replaced(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_text(fifo, "through the pipe\n")
    reader.join(5)
    assert got == ["through the pipe\n"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a character device needs root")
def test_a_character_device_is_written_through_not_replaced(tmp_path):
    node = tmp_path / "null"
    os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the null device, made here
    write_text(node, "discarded")
    assert stat.S_ISCHR(node.lstat().st_mode)


def test_an_output_that_is_an_input_is_refused(tmp_path):
    spec = tmp_path / "a.yaml"
    spec.write_text("x")
    alias = tmp_path / "alias.yaml"
    alias.symlink_to(spec)
    for name in (spec, alias, tmp_path / "." / "a.yaml"):
        with pytest.raises(UsageProblem, match="that is the input"):
            check_outputs({"-o": name}, [spec])


def test_an_output_in_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(UsageProblem, match="-o .*no such folder"):
        check_outputs({"-o": tmp_path / "nope" / "out.yaml"}, [])
    with pytest.raises(UsageProblem, match="is a directory"):
        check_outputs({"-o": tmp_path}, [])


def _spec(tmp_path, name="a.spec.yaml"):
    path = tmp_path / name
    path.write_text((CONFIGS / "relu_high_lr.yaml").read_text())
    return path


def test_run_trace_whose_resolved_spec_would_overwrite_the_spec_is_refused(tmp_path):
    spec = _spec(tmp_path)
    before = spec.read_text()
    r = CliRunner().invoke(main, ["run", str(spec), "--trace", str(tmp_path / "a.npz")])
    assert r.exit_code == 2, r.output
    assert "that is the input" in r.output
    assert spec.read_text() == before and not (tmp_path / "a.npz").exists()


def test_fix_and_check_refuse_to_write_over_their_spec(tmp_path):
    spec = _spec(tmp_path, "s.yaml")
    before = spec.read_text()
    for args in (["fix", str(spec), "-o", str(spec)], ["check", str(spec), "-o", str(spec)]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "that is the input" in r.output, r.output
        assert spec.read_text() == before


def test_an_unwritable_output_is_found_before_training(tmp_path, monkeypatch):
    import nandoctor.examine

    def no_work(*_a, **_k):
        raise AssertionError("trained before checking the output")

    monkeypatch.setattr(nandoctor.examine, "examine", no_work)
    spec = _spec(tmp_path, "s.yaml")
    r = CliRunner().invoke(main, ["fix", str(spec), "-o", str(tmp_path / "no" / "x.yaml")])
    assert r.exit_code == 2 and "no such folder" in r.output, r.output
    r = CliRunner().invoke(main, ["run", str(spec), "--trace", str(tmp_path / "no" / "t.npz")])
    assert r.exit_code == 2 and "no such folder" in r.output, r.output


def test_two_outputs_on_one_file_are_refused_however_it_is_named(tmp_path):
    (tmp_path / "real.svg").write_text("x")
    (tmp_path / "link.svg").symlink_to(tmp_path / "real.svg")
    os.link(tmp_path / "real.svg", tmp_path / "hard.svg")
    (tmp_path / "sub").mkdir()
    for other in ("real.svg", "link.svg", "hard.svg", "sub/../real.svg"):
        with pytest.raises(UsageProblem, match=r"the same file as --html .*real\.svg"):
            check_outputs({"--html": tmp_path / "real.svg", "--plot": tmp_path / other}, [])
    with pytest.raises(UsageProblem, match="--html new.html: the same file as -o ./new.html"):
        check_outputs({"-o": "./new.html", "--html": "new.html"}, [])  # neither exists yet
    check_outputs({"--html": tmp_path / "a.html", "--plot": tmp_path / "a.svg"}, [])


def test_a_file_written_beside_an_output_is_an_output_too(tmp_path):
    trace = tmp_path / "t.csv"
    beside = {"--trace": {"run summary": tmp_path / "t.summary.csv"}}
    with pytest.raises(UsageProblem) as refused:
        check_outputs({"--trace": trace, "--html": tmp_path / "t.summary.csv"}, [], beside)
    assert str(refused.value) == (
        f"--html {tmp_path}/t.summary.csv: the same file as the run summary --trace {trace}"
        f" writes beside it ({tmp_path}/t.summary.csv); one would overwrite the other"
        " (give each output its own file)"
    )
    folders = {"--tensorboard": tmp_path / "events"}
    with pytest.raises(UsageProblem, match="the same path as the folder --tensorboard"):
        check_outputs({"--html": tmp_path / "events"}, [], None, folders)


def test_outputs_written_through_a_device_may_share_it(tmp_path):
    check_outputs({"--html": "/dev/null", "-o": "/dev/null"}, [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--trace", "same.csv", "--html", "same.csv"],
            "--html same.csv: the same file as --trace",
        ),
        (["--trace", "t.csv", "--html", "t.summary.csv"], "the run summary --trace t.csv"),
        (["--trace", "t.npz", "--html", "t.spec.yaml"], "the resolved spec --trace t.npz"),
        (["--plot", "same.svg", "--html", "same.svg"], "--plot same.svg: the same file as --html"),
    ],
)
def test_run_refuses_two_outputs_on_one_file_before_training(tmp_path, monkeypatch, args, message):
    import nandoctor.examine

    def no_work(*_a, **_k):
        raise AssertionError("trained before checking the outputs")

    monkeypatch.setattr(nandoctor.examine, "examine", no_work)
    monkeypatch.chdir(tmp_path)
    _spec(tmp_path, "s.yaml")
    r = CliRunner().invoke(main, ["run", "s.yaml", "--no-verify", *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "give each output its own file" in r.output
    assert sorted(os.listdir(tmp_path)) == ["s.yaml"]


def test_sweep_and_check_refuse_two_outputs_on_one_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _spec(tmp_path, "s.yaml")
    for args in (
        ["sweep", "s.yaml", "--lr", "0.1", "--html", "a.svg", "--plot", "a.svg"],
        ["check", "s.yaml", "-o", "r.xml", "--format", "junit", "--html", "r.xml"],
    ):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "the same file as" in r.output, r.output
        assert sorted(os.listdir(tmp_path)) == ["s.yaml"]
