"""--html, --plot and --tensorboard through the CLI: files written whole, bad targets refused
before any work with exit 2, a missing optional library named in one line."""

import json
import struct
import subprocess
import sys
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
