"""``--tensorboard DIR``: a run's per-step history as TensorBoard event files.

Made with tensorboardX's protobufs (the optional extra ``tensorboard``: pure Python over protobuf,
no TensorFlow or PyTorch): one scalar tag per statistic and layer (``grad_norm/layer_1``), the
loss, and the diagnosis as text, so a user who lives in TensorBoard sees nandoctor's numbers there.

DIR is a folder, made when missing (with its missing parents). The run adds one new event file to
it and touches nothing else there: the file gets a name nothing in DIR has yet (claimed with
``O_EXCL``, so not even a symlink of that name is followed) and is written whole by
:func:`nandoctor.report.output.open_output`, so a failure or a Ctrl-C leaves no half file, and
folders made for it are removed again. :func:`check_logdir` refuses, before training, a DIR that
is not a folder or cannot be written.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import numpy as np

from nandoctor.diagnosis.findings import Diagnosis
from nandoctor.errors import UsageProblem
from nandoctor.report.charts.history import diagnosis_history
from nandoctor.report.html.run import headline
from nandoctor.report.output import open_output

MAX_STEPS_WRITTEN = 10_000  # longer runs are written as this many bucket means (TensorBoard
# samples scalars down to 1000 per tag when it loads them anyway)


def require_tensorboard(option: str = "--tensorboard") -> None:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise UsageProblem(
            f"{option} needs tensorboardX: pip install 'nandoctor[tensorboard]'"
        ) from None


def logdir_problem(logdir: str | Path) -> str | None:
    """Why event files cannot go into ``logdir`` (a short reason), or None when they can: it must
    be a writable folder, or missing with a writable folder as its nearest existing parent."""
    if not str(logdir).strip():
        return "an empty name; name a folder for the event files"
    target = Path(os.path.realpath(logdir))
    if target.exists():
        if not target.is_dir():
            return "it is not a folder; name a new or existing folder for the event files"
        if not os.access(target, os.W_OK | os.X_OK):
            return "permission denied"
        return None
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"its folder {parent} is not writable"
    return None


def check_logdir(logdir: str | Path, option: str = "--tensorboard") -> None:
    """Refuse, before any work, a ``logdir`` the event file cannot be written into."""
    require_tensorboard(option)
    reason = logdir_problem(logdir)
    if reason:
        raise UsageProblem(f"{option} {logdir}: cannot write there ({reason})")


def diagnosis_text(d: Diagnosis) -> str:
    """The verdict, the first non-finite value and the cause, as TensorBoard markdown."""
    lines = [f"**{headline(d)}**", ""]
    if d.first_nonfinite is not None:
        f = d.first_nonfinite
        lines.append(
            f"first non-finite: step {f.step}, phase {f.phase}, layer {f.layer}, "
            f"tensor {f.tensor}, op {f.op}, value {f.value}"
        )
    if d.cause:
        lines += ["", f"cause **{d.cause.id}**: {d.cause.summary}"]
        lines += [f"- {x}" for x in d.cause.evidence]
    for r in d.recommendations:
        mark = {True: "verified", False: "still fails", None: "untried"}[r.verified]
        mark = "diverging" if r.diverging else mark
        lines.append(f"- [{mark}] {r.id}: {r.summary}")
    return "\n".join(lines)


def _record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C (little-endian)."""
    from tensorboardX.record_writer import masked_crc32c

    head = struct.pack("<Q", len(data))
    return b"".join(
        (head, struct.pack("<I", masked_crc32c(head)), data, struct.pack("<I", masked_crc32c(data)))
    )


def _events(d: Diagnosis) -> Iterator[bytes]:
    """The event file's records: its version, the scalars (finite values only), the diagnosis."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary
    from tensorboardX.summary import text

    now = time.time()
    yield _record(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
    h = diagnosis_history(d)
    if h is not None:
        for name in h.values:
            b = h.envelope(name, MAX_STEPS_WRITTEN)
            mean = b.mean[:, None] if name == "loss" else b.mean
            for j in range(mean.shape[1]):
                tag = name if name == "loss" else f"{name}/layer_{j + 1}"
                for step, v in zip(b.x, mean[:, j], strict=True):
                    if np.isfinite(v):
                        value = Summary.Value(tag=tag, simple_value=float(v))
                        event = Event(wall_time=now, step=int(step), summary=Summary(value=[value]))
                        yield _record(event.SerializeToString())
    summary = text("nandoctor/diagnosis", diagnosis_text(d))
    yield _record(Event(wall_time=now, step=d.steps_run or 0, summary=summary).SerializeToString())


def _make_folder(target: Path, made: list[Path]) -> None:
    """Make ``target`` and its missing parents, adding each folder made to ``made`` (outermost
    first) as it is made, so a failure half-way still knows what to remove."""
    missing = []
    while not target.exists():
        missing.append(target)
        target = target.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise
            continue
        made.append(folder)


def _claim_new_file(folder: Path) -> Path:
    """An empty file in ``folder`` with TensorBoard's event-file name, made by this call: a name
    already there (a file, a folder, a symlink) gets a counter instead of being overwritten."""
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
    for n in range(10_000):
        path = folder / (name if n == 0 else f"{name}.{n}")
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"10000 event files named {name}.* already there (name another folder)")


def write_run(d: Diagnosis, logdir: str | Path) -> Path:
    """Write the run's scalars and its diagnosis as a new event file in ``logdir``; its path."""
    require_tensorboard()
    target = Path(os.path.realpath(logdir))
    made: list[Path] = []
    path = None
    try:
        _make_folder(target, made)
        path = _claim_new_file(target)
        with open_output(path, binary=True) as f:
            for record in _events(d):
                f.write(record)
        return path
    except BaseException as e:
        if path is not None:
            with suppress(OSError):
                path.unlink()
        for folder in reversed(made):
            with suppress(OSError):
                folder.rmdir()
        if isinstance(e, OSError):
            raise UsageProblem(f"--tensorboard {logdir}: {e.strerror or e}") from None
        raise
