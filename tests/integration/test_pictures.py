"""--html, --plot and --tensorboard through the CLI: files written whole, bad targets refused
before any work with exit 2, a missing optional library named in one line."""

import errno
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.cli import main

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_run_writes_html_plot_and_tensorboard(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboardX")
    html, png, tb = tmp_path / "run.html", tmp_path / "run.png", tmp_path / "tb"
    r = invoke(
        "run",
        CONFIGS / "relu_high_lr.yaml",
        "--no-verify",
        "--html",
        html,
        "--plot",
        png,
        "--tensorboard",
        tb,
    )
    assert r.exit_code == 1, r.output
    assert "exploding_gradient" in html.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no leftovers
    (events,) = tb.glob("events.out.tfevents.*")
    scalars, texts = read_events(events)
    assert len(scalars["loss"]) == 8  # steps 1..8 finite; step 9's loss is inf and left out
    assert scalars["grad_norm/layer_2"][0][0] == 1
    assert any("exploding_gradient" in t for t in texts)


def read_events(path: Path) -> tuple[dict, list[str]]:
    """TFRecord framing (length, crc, data, crc) around tensorboardX's Event protos."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list] = {}
    texts = []
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos : pos + 8])
        ev = Event.FromString(data[pos + 12 : pos + 12 + n])
        pos += 12 + n + 4
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                scalars.setdefault(v.tag, []).append((ev.step, v.simple_value))
            elif v.tensor.string_val:
                texts += [s.decode() for s in v.tensor.string_val]
    return scalars, texts


def test_sweep_writes_html_and_svg_plot(tmp_path):
    pytest.importorskip("matplotlib")
    html, plot = tmp_path / "s.html", tmp_path / "s.svg"
    r = invoke(
        "sweep",
        CONFIGS / "relu_high_lr.yaml",
        "--lr",
        "0.01,0.1,2",
        "--steps",
        "30",
        "--html",
        html,
        "--plot",
        plot,
    )
    assert r.exit_code == 0, r.output
    assert "Final loss against learning rate" in html.read_text()
    assert plot.read_text().lstrip().startswith("<?xml")


def test_check_writes_html(tmp_path):
    html = tmp_path / "c.html"
    r = invoke(
        "check",
        CONFIGS / "healthy.yaml",
        CONFIGS / "nan_in_data.yaml",
        "--steps",
        "20",
        "--jobs",
        "1",
        "--html",
        html,
    )
    assert r.exit_code == 1
    page = html.read_text()
    assert "healthy.yaml" in page and "nan_in_data.yaml" in page and "id='spec-2'" in page


@pytest.mark.parametrize(
    "args, message",
    [
        (["--html", "{tmp}/missing/r.html"], "--html {tmp}/missing/r.html: cannot write there"),
        (["--html", "{spec}"], "--html {spec}: that is the input"),
        (["--plot", "{tmp}/r.gif"], "--plot {tmp}/r.gif: the file must end in .png or .svg"),
    ],
)
def test_bad_picture_targets_are_refused_before_training(tmp_path, args, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text((CONFIGS / "healthy.yaml").read_text())
    before = spec.read_text()
    args = [a.format(tmp=tmp_path, spec=spec) for a in args]
    r = invoke("run", spec, *args)
    assert r.exit_code == 2
    assert r.output.strip().startswith(message.format(tmp=tmp_path, spec=spec))
    assert "Traceback" not in r.output and list(tmp_path.iterdir()) == [spec]
    assert spec.read_text() == before


@pytest.mark.parametrize(
    "option, module, extra",
    [("--plot", "matplotlib", "plot"), ("--tensorboard", "tensorboardX", "tensorboard")],
)
def test_a_missing_extra_is_one_line_and_exit_2(tmp_path, monkeypatch, option, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    target = tmp_path / ("p.png" if option == "--plot" else "tb")
    r = invoke("run", CONFIGS / "healthy.yaml", option, target)
    assert r.exit_code == 2
    assert r.output.strip() == f"{option} needs {module}: pip install 'nandoctor[{extra}]'"
    assert not target.exists()


def test_trace_writes_html_with_the_failing_line_highlighted(tmp_path):
    html = tmp_path / "t.html"
    script = Path(__file__).resolve().parents[2] / "examples" / "softmax_raw_pixels.py"
    cmd = [sys.executable, "-m", "nandoctor", "trace", "--format", "json", "--html", html, script]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)  # stdout stays one JSON document
    line = doc["first_nonfinite"]["line"]
    page = html.read_text()
    assert f"<span class='line hit'><span class='ln'>{line}</span>" in page
    assert doc["first_nonfinite"]["source"].strip() in page


def test_trace_refuses_an_html_target_before_running_the_program(tmp_path):
    script = tmp_path / "touch.py"
    script.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    cmd = [sys.executable, "-m", "nandoctor", "trace", "--html", tmp_path / "no" / "t.html", script]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 2 and "--html" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ran").exists()


def refused_before_training(monkeypatch, *args):
    """Invoke ``run`` with training replaced by a tripwire; the result of the refusal."""
    import nandoctor.examine

    def trained(*_):
        raise AssertionError("trained although the target should have been refused first")

    monkeypatch.setattr(nandoctor.examine, "examine", trained)
    return invoke("run", *args)


def tensorboard_targets(tmp_path: Path, spec: Path) -> dict[str, Path]:
    """Names --tensorboard must refuse: inputs, non-folders, a folder under a file."""
    link = tmp_path / "link-to-spec"
    link.symlink_to(spec)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    weights = tmp_path / "w.npz"
    weights.write_bytes(b"PK weights")
    return {
        "the spec": spec,
        "a symlink to the spec": link,
        "a FIFO": fifo,
        "a data or weights file": weights,
        "a folder inside a file": weights / "tb",
        "/dev/null": Path("/dev/null"),
    }


def snapshot(folder: Path) -> dict:
    return {p.name: (p.lstat().st_mode, p.is_file() and p.read_bytes()) for p in folder.iterdir()}


NOT_FOLDERS = [
    "the spec",
    "a symlink to the spec",
    "a FIFO",
    "a data or weights file",
    "a folder inside a file",
    "/dev/null",
]


@pytest.mark.parametrize("which", NOT_FOLDERS)
def test_tensorboard_refuses_a_non_folder_before_training_and_touches_nothing(
    tmp_path, monkeypatch, which
):
    pytest.importorskip("tensorboardX")
    spec = tmp_path / "spec.yaml"
    spec.write_text((CONFIGS / "healthy.yaml").read_text())
    target = tensorboard_targets(tmp_path, spec)[which]
    before = snapshot(tmp_path)
    r = refused_before_training(monkeypatch, spec, "--tensorboard", target)
    assert r.exit_code == 2, r.output
    first = r.output.strip().splitlines()[0]
    assert first.startswith(f"--tensorboard {target}: cannot write there (")
    assert "not a folder" in first and "Traceback" not in r.output
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_tensorboard_refuses_an_unwritable_folder_before_training(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    for target in (locked, locked / "new" / "tb"):
        r = refused_before_training(monkeypatch, CONFIGS / "healthy.yaml", "--tensorboard", target)
        assert r.exit_code == 2
        assert r.output.startswith(f"--tensorboard {target}: cannot write there (")
    assert list(locked.iterdir()) == []


def test_tensorboard_never_overwrites_what_is_in_its_folder(tmp_path):
    """An event file's name is its second and host: a second run in the same second, or a file or
    symlink that happens to bear the name, gets a new name instead of being overwritten."""
    pytest.importorskip("tensorboardX")
    spec = tmp_path / "spec.yaml"
    spec.write_text((CONFIGS / "healthy.yaml").read_text())
    tb = tmp_path / "tb"
    tb.mkdir()
    now = int(time.time())
    taken = [
        tb / f"events.out.tfevents.{t:010d}.{socket.gethostname()}" for t in range(now, now + 60)
    ]
    for i, path in enumerate(taken):
        if i % 2:
            path.symlink_to(spec)  # written through, this would destroy the spec
        else:
            path.write_bytes(b"an earlier run's events")
    r = invoke("run", spec, "--steps", "20", "--no-verify", "--tensorboard", tb)
    assert r.exit_code == 0, r.output
    assert spec.read_text() == (CONFIGS / "healthy.yaml").read_text()
    for i, path in enumerate(taken):
        assert path.is_symlink() if i % 2 else path.read_bytes() == b"an earlier run's events"
    (new,) = set(tb.iterdir()) - set(taken)
    assert new.name.startswith(taken[0].name) or new.name.startswith(taken[1].name)
    scalars, texts = read_events(new)
    assert len(scalars["loss"]) == 20 and any("healthy" in t for t in texts)


def test_tensorboard_makes_missing_folders_and_removes_them_again_when_writing_fails(
    tmp_path, monkeypatch
):
    pytest.importorskip("tensorboardX")
    import nandoctor.report.tensorboard as tensorboard

    tb = tmp_path / "runs" / "exp1"
    r = invoke("run", CONFIGS / "healthy.yaml", "--steps", "5", "--no-verify", "--tensorboard", tb)
    assert r.exit_code == 0, r.output
    assert [p.name.startswith("events.out.tfevents.") for p in tb.iterdir()] == [True]

    def disk_full(_diagnosis):
        yield b"half an event"
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tensorboard, "_events", disk_full)
    tb = tmp_path / "more" / "exp2"
    r = invoke("run", CONFIGS / "healthy.yaml", "--steps", "5", "--no-verify", "--tensorboard", tb)
    assert r.exit_code == 2
    assert r.output.strip().endswith(f"--tensorboard {tb}: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # more/exp2 made, then removed
