"""Make the README's pictures from the example specs: a run report and a sweep chart.

    python scripts/screenshots.py            # writes docs/img/run-report.png, docs/img/sweep-chart.png

Runs nandoctor as a user would (``run --html``, ``sweep --html``), opens the pages in headless
Chromium (the ``playwright`` package of the ``test`` extra, driving Debian's ``chromium`` or
``$NANDOCTOR_CHROMIUM``) and keeps the PNGs small (a 128-colour palette).
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nandoctor.report.html.browser import HOW_TO_GET_CHROMIUM, chromium_path, launch  # noqa: E402

OUT = ROOT / "docs" / "img"
RUN = ["run", "configs/bce_saturated_naive.yaml"]
SWEEP = ["sweep", "configs/relu_high_lr.yaml", "--lr", "1e-3:3:16", "--edge"]


def html_of(args: list[str], path: Path) -> Path:
    cmd = [sys.executable, "-m", "nandoctor", *args, "--html", str(path)]
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    if done.returncode not in (0, 1):
        sys.exit(f"failed: {' '.join(cmd)}")
    return path


def small_png(png: bytes, path: Path) -> None:
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=128)
    img.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {img.width}x{img.height}, {path.stat().st_size // 1024} KB")


def main() -> None:
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if not exe:
        sys.exit(f"no Chromium: {HOW_TO_GET_CHROMIUM}")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        run_page = html_of(RUN, Path(tmp) / "run.html")
        sweep_page = html_of(SWEEP, Path(tmp) / "sweep.html")
        browser = launch(p, exe)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        page.goto(run_page.as_uri())
        small_png(page.screenshot(full_page=True), OUT / "run-report.png")
        page.goto(sweep_page.as_uri())
        small_png(page.locator(".charts").screenshot(), OUT / "sweep-chart.png")
        browser.close()


if __name__ == "__main__":
    main()
