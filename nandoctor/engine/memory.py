"""How much memory a new allocation can still get, so that work too big is refused before it is
allocated, with a message, rather than killed by the OOM killer (exit 137, no message).

Total physical memory is the wrong yardstick: other processes hold part of it, and a container's
cgroup limit can be far lower. What is left is the kernel's own estimate, ``MemAvailable`` in
``/proc/meminfo``, or the cgroup's limit less its usage when that is smaller (cgroup v2
``memory.max``/``memory.current``, v1 ``memory.limit_in_bytes``/``memory.usage_in_bytes``).
``NANDOCTOR_MEMORY_LIMIT`` (bytes, or with a unit: ``2GB``, ``512MB``) caps it further: on a
machine shared with others, or to test a refusal without a big allocation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FALLBACK_MEMORY = 16 * 2**30  # when the OS does not say how much memory there is
LIMIT_ENV = "NANDOCTOR_MEMORY_LIMIT"
_UNITS = {"": 1, "B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}
_CGROUP_FILES = (  # (limit, usage) of the cgroup this process is in: v2, then v1
    ("memory.max", "memory.current"),
    ("memory.limit_in_bytes", "memory.usage_in_bytes"),
)


def available_memory() -> int:
    """Bytes a new allocation can still get: the least of MemAvailable, the cgroup's room and
    ``$NANDOCTOR_MEMORY_LIMIT`` (physical memory, or ``FALLBACK_MEMORY``, where none is told)."""
    known = [n for n in (_meminfo_available(), _cgroup_room(), _env_limit()) if n is not None]
    if known:
        return max(0, min(known))
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return FALLBACK_MEMORY


def parse_size(text: str) -> int:
    """``'2GB'`` -> 2147483648 (binary units; a bare number is bytes). Raises ValueError."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?)\s*([KMGT]?B?)\s*", text.upper())
    if not m:
        raise ValueError(f"not a size: {text!r}")
    unit = m.group(2) if m.group(2).endswith("B") or not m.group(2) else m.group(2) + "B"
    return int(float(m.group(1)) * _UNITS[unit])


def show_bytes(n: float) -> str:
    """A size for a message: ``3.2 GB``."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024:
            return f"{size:.3g} {unit}"
        size /= 1024
    return f"{size:.3g} PB"


def _env_limit() -> int | None:
    text = os.environ.get(LIMIT_ENV)
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError:
        return None


def _meminfo_available() -> int | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    m = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) * 1024 if m else None


def _cgroup_room() -> int | None:
    """The cgroup's limit less its usage, or None when there is no limit (or no cgroup)."""
    rooms = []
    for folder in _cgroup_folders():
        for limit_name, usage_name in _CGROUP_FILES:
            try:
                limit = (folder / limit_name).read_text().strip()
                usage = int((folder / usage_name).read_text().strip())
            except (OSError, ValueError):
                continue
            if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
                rooms.append(int(limit) - usage)
    return min(rooms) if rooms else None


def _cgroup_folders() -> list[Path]:
    """The folders of this process's memory cgroup (v2 unified, v1 memory controller)."""
    root = Path("/sys/fs/cgroup")
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "":
            out += [root / rel, root]
        elif "memory" in controllers.split(","):
            out += [root / "memory" / rel, root / "memory"]
    return [f for f in dict.fromkeys(out) if f.is_dir()]  # v2's root is listed once
