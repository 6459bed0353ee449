"""Every kind of HTML page opened in a real headless Chromium: it loads with no console error and
no network request, and its charts are drawn (SVG elements holding data, pixels on screen).

Needs the ``playwright`` package (the ``test`` extra) and a Chromium: ``$NANDOCTOR_CHROMIUM``,
else ``chromium`` on the PATH (Debian's package). Without them the test skips and says why;
under CI (``CI=true``) a missing browser is a failure, so the check cannot vanish silently.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from nandoctor.cli import main
from nandoctor.report.html import trace_page
from nandoctor.report.html.browser import HOW_TO_GET_CHROMIUM, chromium_path, launch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "report"))
from test_html import trace_doc  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable(
            "no browser test: the playwright package is not installed (pip install -e '.[test]')"
        )
    exe = chromium_path()
    if exe is None:
        unavailable(f"no browser test: no Chromium found ({HOW_TO_GET_CHROMIUM})")
    with sync_playwright() as p:
        b = launch(p, exe)
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """One page of every kind, made by the CLI as a user would (the trace page from its JSON)."""
    out = tmp_path_factory.mktemp("pages")
    runner = CliRunner()
    commands = {
        "run": ["run", CONFIGS / "deep_sigmoid_saturated.yaml", "--steps", "40"],
        "run-nonfinite": ["run", CONFIGS / "relu_high_lr.yaml", "--no-verify"],
        "sweep": ["sweep", CONFIGS / "relu_high_lr.yaml", "--lr", "1e-3:3:6", "--steps", "30"],
        "sweep-grid": [
            "sweep",
            CONFIGS / "relu_high_lr.yaml",
            "--lr",
            "0.01,0.3,3",
            "--steps",
            "20",
            "--set",
            "train.optimizer=sgd,adam",
        ],
        "check": [
            "check",
            CONFIGS / "healthy.yaml",
            CONFIGS / "relu_high_lr.yaml",
            "--steps",
            "20",
            "--jobs",
            "1",
        ],
    }
    made = {}
    for name, args in commands.items():
        path = out / f"{name}.html"
        r = runner.invoke(main, [str(a) for a in args] + ["--html", str(path)])
        assert r.exit_code in (0, 1), r.output
        made[name] = path
    made["trace"] = out / "trace.html"
    script = EXAMPLES / "softmax_raw_pixels.py"
    cmd = [sys.executable, "-m", "nandoctor", "trace", "--html", made["trace"], script]
    assert subprocess.run(cmd, capture_output=True).returncode == 1
    script = out / "fit.py"
    script.write_text("import numpy as np\n" * 20)
    made["trace-json"] = out / "trace-json.html"  # drawn from a trace JSON document alone
    made["trace-json"].write_text(trace_page(trace_doc(script)))
    return made


def blank(img) -> bool:
    """True when an image holds hardly more than one colour (nothing was drawn)."""
    colours = img.getcolors(maxcolors=1 << 20)
    most = max(n for n, _ in colours)
    return len(colours) < 20 or most > 0.97 * img.width * img.height


EXPECTED_CHARTS = {
    "run": 6,
    "run-nonfinite": 6,
    "sweep": 2,
    "sweep-grid": 3,
    "check": 2,
    "trace": 1,
}


@pytest.mark.parametrize("kind", list(EXPECTED_CHARTS))
def test_page_loads_offline_with_its_charts_drawn(browser, pages, kind):
    from PIL import Image

    page = browser.new_page(viewport={"width": 1360, "height": 900})
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda req: requests.append(req.url))
    url = pages[kind].as_uri()
    page.goto(url, wait_until="load")
    assert errors == []
    assert requests == [url]  # the page itself, nothing else

    charts = page.locator("svg.chart")
    assert charts.count() >= EXPECTED_CHARTS[kind]
    shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB")
    for i in range(charts.count()):
        chart = charts.nth(i)
        assert int(chart.get_attribute("data-points")) > 0
        marks = chart.evaluate("svg => svg.querySelectorAll('path, circle, rect').length")
        assert marks > 2  # more than the background and the plot frame
        box = chart.bounding_box()  # at scroll 0: the full-page screenshot's coordinates
        assert box["width"] > 300 and box["height"] > 60
        img = shot.crop((box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]))
        assert not blank(img)
    page.close()
