"""Headless Chromium for looking at the HTML pages: where it is and how it is started.

nandoctor itself never starts a browser. The browser test, the script that makes the README's
pictures and the HTML benchmark do, through playwright driving a system Chromium (Debian's
``chromium``, or ``$NANDOCTOR_CHROMIUM``), and they start it the same way from here.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

HOW_TO_GET_CHROMIUM = "apt-get install chromium, or set NANDOCTOR_CHROMIUM to a Chromium binary"

# Offline and quiet: no sandbox (containers, root), no GPU, nothing fetched or synced at start-up,
# so a page's own requests are the only ones the browser makes.
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str | None:
    """``$NANDOCTOR_CHROMIUM``, else ``chromium`` or ``chromium-browser`` on the PATH; None when
    there is none (say :data:`HOW_TO_GET_CHROMIUM`)."""
    return (
        os.environ.get("NANDOCTOR_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


def launch(playwright: Any, executable: str) -> Any:
    """A headless Chromium browser started by ``playwright`` (a ``sync_playwright()`` object)."""
    return playwright.chromium.launch(executable_path=executable, args=list(LAUNCH_ARGS))
