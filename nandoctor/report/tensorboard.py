"""``--tensorboard DIR``: a run's per-step history as TensorBoard event files.

Written with tensorboardX (the optional extra ``tensorboard``: pure Python over protobuf, no
TensorFlow or PyTorch): one scalar tag per statistic and layer (``grad_norm/layer_1``), the loss,
and the diagnosis as text, so a user who lives in TensorBoard sees nandoctor's numbers there.
"""

from __future__ import annotations

import numpy as np

from nandoctor.diagnosis.findings import Diagnosis
from nandoctor.errors import UsageProblem
from nandoctor.report.charts.history import diagnosis_history
from nandoctor.report.html.run import headline

MAX_STEPS_WRITTEN = 10_000  # longer runs are written as this many bucket means (TensorBoard
# samples scalars down to 1000 per tag when it loads them anyway)


def require_tensorboard(option: str = "--tensorboard") -> None:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        raise UsageProblem(
            f"{option} needs tensorboardX: pip install 'nandoctor[tensorboard]'"
        ) from None


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
        lines.append(f"- [{mark}] {r.id}: {r.summary}")
    return "\n".join(lines)


def write_run(d: Diagnosis, logdir: str) -> None:
    """Write the run's scalars and its diagnosis into ``logdir`` (created when missing)."""
    require_tensorboard()
    from tensorboardX import SummaryWriter

    h = diagnosis_history(d)
    try:
        writer = SummaryWriter(logdir=logdir, flush_secs=3600)
    except OSError as e:
        raise UsageProblem(f"--tensorboard {logdir}: {e.strerror}") from None
    with writer:
        if h is not None:
            for name in h.values:
                b = h.envelope(name, MAX_STEPS_WRITTEN)
                mean = b.mean[:, None] if name == "loss" else b.mean
                for j in range(mean.shape[1]):
                    tag = name if name == "loss" else f"{name}/layer_{j + 1}"
                    for step, v in zip(b.x, mean[:, j], strict=True):
                        if np.isfinite(v):
                            writer.add_scalar(tag, float(v), int(step))
        writer.add_text("nandoctor/diagnosis", diagnosis_text(d), d.steps_run or 0)
