"""Where a rendering goes: stdout, or a file written whole (never half-written)."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console


def as_text(rendering, width: int = 120) -> str:
    """A rendering as plain text: a string as it is, a rich renderable drawn without colour."""
    if isinstance(rendering, str):
        return rendering
    buf = Console(file=io.StringIO(), width=width, no_color=True, highlight=False)
    buf.print(rendering)
    return buf.file.getvalue()


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside the target, then a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
