"""What an HTML run report of a long run costs: the page's size, the time to build it, and the time
headless Chromium takes to open and draw it. Absolute numbers; no target.

Nothing a user would otherwise run makes this page (a NumPy loop has no report to compare
with), so there is no reference to take a ratio against: the numbers show that a page stays
small and quick however long the run (each line downsampled to a few hundred points with its
min/max envelope kept), and would show it if that stopped being so.

    python benchmarks/html_report.py [--steps 100000,1000000]

The runs are made up (``nandoctor.report.charts.synthetic.long_run``: 2 layers, 6 charts). The
browser times need the ``playwright`` package and a Chromium (see
``nandoctor.report.html.browser``); without them they are left out and the reason printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nandoctor.report.charts.synthetic import long_run  # noqa: E402
from nandoctor.report.html import run_page  # noqa: E402
from nandoctor.report.html.browser import HOW_TO_GET_CHROMIUM, chromium_path, launch  # noqa: E402


def built(steps: int) -> tuple[str, float]:
    """The page of a made-up run of ``steps`` steps, and the seconds it took to build."""
    d = long_run(steps)
    start = time.perf_counter()
    page = run_page(d)
    return page, time.perf_counter() - start


def drawing_seconds(pages: dict[int, str]) -> dict[int, float] | str:
    """Seconds from navigation to the page drawn (loaded, then a full-page screenshot), per page;
    or why they cannot be measured here."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return "no playwright package (pip install -e '.[test]')"
    exe = chromium_path()
    if not exe:
        return f"no Chromium ({HOW_TO_GET_CHROMIUM})"
    out = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch(p, exe)
        for steps, html in pages.items():
            path = Path(tmp) / f"run-{steps}.html"
            path.write_text(html, encoding="utf-8")
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load", timeout=600_000)
            page.screenshot(full_page=True, timeout=600_000)
            out[steps] = time.perf_counter() - start
            page.close()
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="100000,1000000", help="run lengths, comma-separated")
    a = ap.parse_args()
    pages, build = {}, {}
    for steps in (int(s) for s in a.steps.split(",")):
        pages[steps], build[steps] = built(steps)
    drawn = drawing_seconds(pages)
    for steps, html in pages.items():
        opened = (
            f", opened and drawn in Chromium in {drawn[steps]:.2f} s"
            if isinstance(drawn, dict)
            else ""
        )
        print(
            f"{steps:>9} steps: page {len(html.encode()) / 2**20:.2f} MB, built in"
            f" {build[steps]:.2f} s{opened} (no target)"
        )
    if isinstance(drawn, str):
        print(f"browser times not measured: {drawn}")


if __name__ == "__main__":
    main()
