"""Rendering a :class:`~nandoctor.diagnosis.diagnose.Diagnosis`: a one-screen rich report, or JSON.

Findings are data (``nandoctor.diagnosis.diagnose``); this module only draws them. Pass a ``Console`` in.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.diagnosis.diagnose import Diagnosis, fmt
from nandoctor.interrupt import StoppedTraining

if TYPE_CHECKING:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

# rich is imported by the text renderers as they run: a JSON report never loads it (80 ms).

BARS = "▁▂▃▄▅▆▇█"
STYLE = {"nonfinite": "bold red", "warning": "bold yellow", "healthy": "bold green"}
MARK = {"nonfinite": "✗", "warning": "!", "healthy": "✓"}
NAME_SHOWN = 60  # characters of a run's name in the text report (the JSON keeps all of it)


def sparkline(values: np.ndarray, width: int = 12, log: bool = False) -> str:
    """A run of block characters for ``values`` (NaN drawn as a space), resampled to ``width``."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return ""
    if v.size > width:
        v = np.array(
            [np.nanmax(c) if np.isfinite(c).any() else np.nan for c in np.array_split(v, width)]
        )
    with np.errstate(all="ignore"):
        if log:
            v = np.log10(np.where(v > 0, v, np.nan))
        ok = np.isfinite(v)
        if not ok.any():
            return " " * len(v)
        lo, hi = np.nanmin(v[ok]), np.nanmax(v[ok])
        span = hi - lo if hi > lo else 1.0
        idx = np.clip(((v - lo) / span * (len(BARS) - 1)).round(), 0, len(BARS) - 1)
    return "".join(BARS[int(i)] if f else " " for i, f in zip(idx, ok, strict=True))


def verdict(d: Diagnosis) -> Text:
    from rich.text import Text

    mark = MARK[d.status]
    if d.status == "nonfinite":
        f = d.first_nonfinite
        where = f"step {f.step}" if f.step else f"the {f.phase} phase"
        msg = f"{mark} {f.value.upper()} at {where}"
        if d.cause:
            msg += f": {d.cause.id.replace('_', ' ')}"
    elif d.status == "warning":
        msg = f"{mark} finite, with warnings: {', '.join(dict.fromkeys(w.id for w in d.warnings))}"
    else:
        msg = f"{mark} healthy: every value finite"
    loss = ""
    if d.loss_initial is not None:
        last = "non-finite" if d.loss_final is None else fmt(d.loss_final)
        if d.status == "nonfinite" and d.loss_final is not None:
            last += f" (then {d.first_nonfinite.value})"  # the failure came after the loss
        loss = f"  loss {fmt(d.loss_initial)} → {last}"
    return Text.assemble(
        (msg, STYLE[d.status]),
        f"   {shown_name(d.name)}: {d.steps_run}/{d.steps_budget} steps, lr {fmt(d.learning_rate)}{loss}",
    )


def shown_name(name: str) -> str:
    """A run's name as the text report shows it: at most ``NAME_SHOWN`` characters on one line,
    so a name of a megabyte is not wrapped into thousands of lines."""
    name = " ".join(str(name).split())
    return name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 1] + "…"


def first_table(d: Diagnosis) -> Table:
    from rich import box
    from rich.table import Table

    f = d.first_nonfinite
    t = Table(
        box=box.SIMPLE, show_header=True, title="First non-finite value", title_justify="left"
    )
    for col in ("step", "phase", "layer", "tensor", "op", "value"):
        t.add_column(col)
    t.add_row(
        *(
            str(v) if v is not None else "-"
            for v in (f.step, f.phase, f.layer, f.tensor, f.op, f.value)
        )
    )
    return t


def layer_table(d: Diagnosis) -> Table | None:
    from rich import box
    from rich.table import Table

    h = d.history
    if not h or not len(h.get("loss", [])):
        return None
    k = len(h["loss"]) - 1
    # The failing step's stats are partial; show the last complete step.
    if d.status == "nonfinite" and k > 0:
        k -= 1
    step = getattr(d, "history_start", 1) + k  # the window may start after step 1
    title = f"Layers at step {step}"
    if d.status == "nonfinite":
        title += (
            " (the last step before the failure)" if step < d.steps_run else " (the failing step)"
        )
    # the failing step's row holds the weights after its update, made from the failure: show
    # those it ran with, and no update ratio (its update came after the first non-finite value)
    failing = d.status == "nonfinite" and step == d.steps_run and d.weights_ran_with is not None
    if failing:
        title = title.removesuffix(")") + "; weight norms: the weights it ran with)"
    t = Table(box=box.SIMPLE, title=title, title_justify="left")
    for col in ("layer", "act", "max|z|", "saturated", "dead", "grad norm", "weight norm", "upd/w"):
        t.add_column(col, justify="right" if col not in ("act",) else "left")
    t.add_column("grad norm ▁▅█", no_wrap=True, min_width=12)
    t.add_column("saturated ▁▅█", no_wrap=True, min_width=12)
    for i, act in enumerate(d.layers):
        t.add_row(
            str(i + 1),
            act,
            fmt(h["max_abs_z"][k, i]),
            f"{fmt(100 * h['saturated'][k, i])}%",
            f"{fmt(100 * h['dead'][k, i])}%",
            fmt(h["grad_norm"][k, i]),
            fmt(d.weights_ran_with[i] if failing else h["weight_norm"][k, i]),
            "-" if failing else fmt(h["update_ratio"][k, i]),
            sparkline(h["grad_norm"][:, i], log=True),
            sparkline(h["saturated"][:, i]),
        )
    return t


def bullets(title: str, lines: list[str], style: str = "") -> Group:
    from rich.console import Group
    from rich.text import Text

    items = [Text(title, style="bold")]
    items += [Text(f"  • {line}", style=style) for line in lines]
    return Group(*items)


def render(d: Diagnosis):
    """The report as one rich renderable."""
    from rich.console import Group
    from rich.text import Text

    parts = [verdict(d)]
    if d.first_nonfinite is not None:
        parts.append(first_table(d))
        if d.first_nonfinite.inputs:
            ins = ", ".join(
                f"{k}: max|·| {fmt(v['max_abs'])}"
                + (f", {v['exact_zeros']} zeros" if v["exact_zeros"] else "")
                for k, v in d.first_nonfinite.inputs.items()
            )
            parts.append(Text(f"  inputs to the failing op: {ins}"))
    if d.cause:
        parts.append(
            bullets(
                f"Cause: {d.cause.id} - {d.cause.summary}", d.cause.evidence[1:] or d.cause.evidence
            )
        )
    if d.contributing:
        parts.append(
            bullets(
                "Contributing",
                [
                    f"{c.id}: {c.summary}" + (f" ({'; '.join(c.evidence)})" if c.evidence else "")
                    for c in d.contributing
                ],
            )
        )
    table = layer_table(d)
    if table is not None:
        parts.append(table)
    if d.warnings:
        parts.append(bullets("Warnings", [f"{w.id}: {w.summary}" for w in d.warnings], "yellow"))
    if d.notes:
        parts.append(bullets("What the run saw", d.notes))
    if d.recommendations:
        lines = []
        for r in d.recommendations:
            tag = {True: "✓ verified", False: "✗ still fails", None: "untried"}[r.verified]
            if r.verified and r.frozen_layers:
                layers = ", ".join(str(i) for i in r.frozen_layers)
                tag += f", layer {layers} does not learn"
            elif r.verified and r.learns is False:
                tag += ", does not learn"
            elif r.verified and r.learns is None:  # a fall within the noise, or too few steps
                tag += ", not shown to learn"
            if r.diverging:
                tag = "✗ diverging"
            change = ", ".join(f"{k}={v}" for k, v in r.changes.items())
            lines.append(
                f"[{tag}] {r.id}: {r.summary}"
                + (f"  ({change})" if change else "")
                + (f" - {r.evidence}" if r.evidence else "")
            )
        tried = any(r.verified is not None for r in d.recommendations)
        title = (
            f"Recommendations (each re-run to verify; {d.seconds:.1f}s in all)"
            if tried
            else "Recommendations"
        )
        parts.append(bullets(title, lines))
    return Group(*parts)


# What ``run`` or ``fix`` was doing when a signal stopped it.
TRAINING, VERIFYING, WRITING = "training", "verifying", "writing"


def render_interrupted(
    d: Diagnosis | None, stage: str, training: StoppedTraining | None = None, written: str = ""
):
    """An interrupted ``run`` (text, for stderr): the diagnosis once it is known (with each
    recommendation verified, failed or untried so far), then one line saying where it stopped
    and that the report is partial (:func:`interrupted_line`)."""
    from rich.console import Group
    from rich.text import Text

    line = Text(interrupted_line(d, stage, training, written), style="bold")
    return Group(render(d), line) if d is not None else line


def interrupted_line(
    d: Diagnosis | None,
    stage: str,
    training: StoppedTraining | None = None,
    written: str = "no report written",
) -> str:
    """``interrupted at step 4,512 of 1,000,000 (loss 0.0123) of the training — partial: ...``.

    Training is judged from the whole run, so a run stopped before its last step has no
    diagnosis; a recommendation counts as re-run once its verifying run from step 1 has ended
    (verified or not)."""
    written = written or "no report written"
    if d is None:
        if training is None:
            return f"interrupted before the training began — partial: nothing finished; {written}"
        return (
            f"interrupted at {training.describe()} of the training — partial: no diagnosis,"
            f" which needs the finished run; {written}"
        )
    if stage == VERIFYING:
        recs = d.recommendations
        tried = sum(r.verified is not None or bool(r.evidence) for r in recs)
        where = f"{training.describe()} of a verifying re-run" if training else "the verification"
        runs = (
            f"{tried} of {len(recs)} recommendations re-run, the others untried"
            if tried < len(recs)
            else "every recommendation re-run"
        )
        return f"interrupted at {where} — partial: the diagnosis is complete; {runs}; {written}"
    return (
        f"interrupted at the writing of the outputs — partial: the diagnosis is complete; {written}"
    )


def to_json(d: Diagnosis) -> str:
    return json.dumps(d.to_json(), indent=2, allow_nan=False)


# format name -> renderer(diagnosis): a string, or a rich renderable for the terminal.
RENDERERS = {"text": render, "json": to_json}
