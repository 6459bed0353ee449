"""HTML run reports of long runs: downsampled (400 points a line, min/max envelopes kept) against
drawing every step, side by side in one run.

    python benchmarks/html_report.py [STEPS]     # default 100000

Prints, for a made-up run of STEPS steps (nandoctor.report.charts.synthetic), the page's size and
the time to build it both ways, and - when Chromium and playwright are there - the time the
browser takes to open and draw it. A 10^6-step page is also built and measured on its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nandoctor.report.charts.synthetic import long_run  # noqa: E402
from nandoctor.report.html import run_page  # noqa: E402

FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def build(d, max_points: int) -> tuple[str, float]:
    start = time.perf_counter()
    page = run_page(d, max_points=max_points)
    return page, time.perf_counter() - start


def open_times(pages: dict[str, str]) -> dict[str, float]:
    """Seconds from navigation to the page drawn (load, then a screenshot), per page."""
    exe = os.environ.get("NANDOCTOR_CHROMIUM") or shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {}
    if not exe:
        return {}
    out = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=FLAGS)
        for name, html in pages.items():
            path = Path(tmp) / f"{name}.html"
            path.write_text(html)
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load", timeout=600_000)
            page.screenshot(full_page=True, timeout=600_000)
            out[name] = time.perf_counter() - start
            page.close()
        browser.close()
    return out


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    d = long_run(steps)
    small, t_small = build(d, 400)
    full, t_full = build(d, steps)
    mb = 1 / 2**20
    print(f"{steps} steps, 2 layers, 6 charts")
    print(f"  downsampled: {len(small) * mb:8.2f} MB, built in {t_small:6.2f} s")
    print(f"  every step:  {len(full) * mb:8.2f} MB, built in {t_full:6.2f} s")
    print(f"  size ratio {len(full) / len(small):.0f}x, build ratio {t_full / t_small:.1f}x")
    opened = open_times({"downsampled": small, "every step": full})
    if opened:
        print(
            f"  opened and drawn in Chromium: {opened['downsampled']:.2f} s vs "
            f"{opened['every step']:.2f} s ({opened['every step'] / opened['downsampled']:.1f}x)"
        )
    else:
        print("  (no Chromium/playwright: browser times not measured)")
    million, t_million = build(long_run(1_000_000), 400)
    print(f"10^6 steps, downsampled: {len(million) * mb:.2f} MB, built in {t_million:.2f} s")


if __name__ == "__main__":
    main()
