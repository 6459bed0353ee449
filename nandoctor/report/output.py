"""Where a rendering goes: stdout, or a file written whole (never half-written, never destroyed).

Every output of every command goes through :func:`open_output`:

- a regular file (or a new one) is written to a temporary file beside it and renamed over it,
  so a crash or a Ctrl-C never leaves half a file; an existing file keeps its permission bits;
- a symlink is followed: the file it points at is replaced, the link stays a link;
- anything else that exists - a character device (``/dev/null``, ``/dev/full``), a FIFO,
  ``/dev/stdout`` - is written through: renaming a file over a device would replace the device.

:func:`check_outputs` runs before any work: an output that is one of the command's inputs, that
is another of its outputs (a file written beside one counts: a trace's resolved spec), or that
cannot be written, is a usage problem found in a second, not after a long run.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nandoctor.errors import UsageProblem


def as_text(rendering, width: int = 120) -> str:
    """A rendering as plain text: a string as it is, a rich renderable drawn without colour."""
    if isinstance(rendering, str):
        return rendering
    from rich.console import Console  # on use: a JSON report never loads rich

    buf = Console(file=io.StringIO(), width=width, no_color=True, highlight=False)
    buf.print(rendering)
    return buf.file.getvalue()


def _is_regular_or_new(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True


def _written_through(path: str | Path) -> bool:
    """True for a device, a FIFO or a socket, and for any name under /dev or /proc (/dev/stdout
    redirected to a file must write into the shell's open file, not rename a new one over it)."""
    absolute = os.path.abspath(path)
    return absolute.startswith(("/dev/", "/proc/")) or not _is_regular_or_new(Path(absolute))


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def open_output(path: str | Path, binary: bool = False) -> Iterator[IO]:
    """A file object for ``path``, committed when the block ends without an exception.

    A regular (or new) file is written atomically with its mode kept; a symlink's target is
    written; a device or FIFO is written through (see the module docstring).
    """
    mode = "wb" if binary else "w"
    text_args = {} if binary else {"encoding": "utf-8", "newline": ""}
    if _written_through(path):
        with open(path, mode, **text_args) as f:
            yield f
        return
    target = Path(os.path.realpath(path))
    try:
        keep = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        keep = _new_file_mode()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **text_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, keep)
        os.replace(tmp, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`open_output`."""
    with open_output(path) as f:
        f.write(text)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def writable_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be written (a short reason), or None when it can."""
    if os.path.isdir(path):
        return "is a directory"
    if _written_through(path):
        return None if os.access(path, os.W_OK) else "permission denied"
    target = Path(os.path.realpath(path))
    if target.exists():
        if not os.access(target, os.W_OK):
            return "permission denied"
        if not os.access(target.parent, os.W_OK | os.X_OK):
            return f"its folder {target.parent} is not writable"
        return None
    if not target.parent.is_dir():
        return f"no such folder: {target.parent}"
    if not os.access(target.parent, os.W_OK | os.X_OK):
        return f"its folder {target.parent} is not writable"
    return None


@dataclass(frozen=True)
class _Written:
    """One file a command will write: given to ``option``, or written beside that option's file
    (``what``: a trace's resolved spec)."""

    option: str
    path: str | Path  # as given, for messages
    given: str | Path | None = None  # the option's own path, for a file written beside it
    what: str = ""

    def __str__(self) -> str:
        if self.given is None:
            return f"{self.option} {self.path}"
        return f"the {self.what} {self.option} {self.given} writes beside it ({self.path})"


def check_outputs(
    outputs: dict[str, str | Path | None],
    inputs: Iterable[str | Path],
    beside: dict[str, dict[str, str | Path]] | None = None,
    folders: dict[str, str | Path | None] | None = None,
) -> None:
    """Refuse, before any work, an output that is an input, that is another output of the same
    command, or that cannot be written.

    ``outputs`` maps the option that names each output (``-o``, ``--trace``) to its path (None:
    not asked for). ``beside`` maps an option to the other files its output brings, by what
    they are (``{"--trace": {"resolved spec": "t.spec.yaml"}}``). ``folders`` maps an option to
    a folder the command writes a new file into (``--tensorboard``): no file may be that folder.
    Two names are the same file when they resolve to it (symlinks, ``..``, hard links); devices
    and FIFOs are written through, not replaced, so several outputs may share one.
    """
    written = [_Written(option, path) for option, path in outputs.items() if path is not None]
    for option, files in (beside or {}).items():
        given = outputs.get(option)
        written += [_Written(option, p, given or p, what) for what, p in files.items()]
    inputs = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    for out in written:
        for src in inputs:
            if _same(Path(out.path), src):
                raise UsageProblem(
                    f"{out}: that is the input {src}; refusing to overwrite it"
                    " (choose another output file)"
                )
    _refuse_shared(written, {o: Path(p) for o, p in (folders or {}).items() if p is not None})
    for out in written:
        reason = writable_problem(out.path)
        if reason:
            raise UsageProblem(f"{out}: cannot write there ({reason})")


def _refuse_shared(written: list[_Written], folders: dict[str, Path]) -> None:
    """Two outputs on one file: the second would overwrite the first, after all the work."""
    kept: list[_Written] = []
    for out in written:
        if _written_through(out.path):
            continue
        for earlier in kept:
            if _same(Path(out.path), Path(earlier.path)):
                first, second = (out, earlier) if out.given is None else (earlier, out)
                raise UsageProblem(
                    f"{first}: the same file as {second}; one would overwrite the other"
                    " (give each output its own file)"
                )
        for option, folder in folders.items():
            if _same(Path(out.path), folder):
                raise UsageProblem(
                    f"{out}: the same path as the folder {option} {folder} (give the file"
                    " another name, or the events another folder)"
                )
        kept.append(out)
