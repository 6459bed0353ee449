"""``nandoctor fix``: write a corrected spec whose change was verified by re-running."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nandoctor.cli.common import (
    CONTEXT,
    count_progress,
    emit,
    fail_usage,
    jobs_option,
    load,
    set_option,
    stderr_console,
    threads_option,
    verify_full_option,
)
from nandoctor.interrupt import Interrupted


@click.command(context_settings=CONTEXT)
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Where to write the fixed spec."
)
@click.option("--dry-run", is_flag=True, help="Print a diff of the fix instead of writing it.")
@set_option
@jobs_option()
@threads_option
@verify_full_option
def fix(spec_path, output, dry_run, overrides, jobs, verify_full):
    """Diagnose SPEC, verify candidate fixes by re-running, and write the best one to OUT.

    The written spec keeps your comments, key order and formatting; each changed line gets a
    comment saying why. A fix is a change whose re-run stays finite and learns (its loss falls
    beyond its noise, or over the whole training set when one-row batches are too noisy to
    tell; no layer stops training, no blow-up on the way, below a constant prediction's loss). Exit 0 when a verified fix was written (or there is nothing to fix), 1
    when no candidate both kept every value finite and learned (nothing is written), 2 for a
    bad spec.

    \b
    Examples:
      nandoctor fix configs/relu_high_lr.yaml -o fixed.yaml
      nandoctor fix configs/adam_eps_zero.yaml --dry-run
    """
    from contextlib import ExitStack

    from nandoctor.fix import diff, fix_spec

    if not output and not dry_run:
        fail_usage("fix needs -o OUT (where to write the fixed spec) or --dry-run")
    spec = load(spec_path, overrides)
    if output and not dry_run:
        from nandoctor.report.output import check_outputs

        check_outputs({"-o": output}, spec.input_files())
    seen = []  # the diagnosis, once known (its recommendations are verified in place)

    def before_verify(diagnosis):
        seen.append(diagnosis)
        n = len(diagnosis.recommendations)
        return stack.enter_context(count_progress(n, "verifying fixes", True))

    try:
        with ExitStack() as stack:
            dest = Path(output) if output and not dry_run and output != "-" else None
            result = fix_spec(spec, jobs, before_verify, full=verify_full, dest=dest)
    except Interrupted as stop:
        show_partial(spec_path, seen[0] if seen else None, stop)
        raise
    d = result.diagnosis
    if d.status != "nonfinite":
        from nandoctor.diagnosis.symptoms import diverging_loss

        said = f"{spec_path}: nothing to fix: every value stayed finite over {d.steps_run} steps"
        diverging = diverging_loss(d.warnings)
        if diverging:  # finite only because the steps ran out: say so, do not call it fine
            said += (
                f", but its loss is {diverging.summary}: it is heading for overflow (`run` "
                "shows the warnings; more steps would go non-finite)"
            )
        click.echo(said)
        sys.exit(0)
    if result.best is None:
        kept = result.kept
        finite = (  # finite, but no evidence it trains: not a fix, and not written
            f" {kept.id} ({', '.join(f'{k}={v}' for k, v in kept.changes.items())}) kept "
            "the values finite, not fixed: its re-run gave no evidence of learning."
            if kept
            else ""
        )
        stderr_console().print(
            f"{spec_path}: no verified fix for {d.cause.id} after {result.seconds:.1f}s.{finite}"
            f" Tried: {result.tried()}",
            markup=False,
        )
        sys.exit(1)
    if dry_run:
        click.echo(diff(result.old_text, result.new_text, spec_path), nl=False)
    else:
        emit(result.new_text, output)
    dest = "(dry run)" if dry_run else f"-> {output}"
    click.echo(
        f"{spec_path}: {d.cause.id} fixed by {result.change} {dest};"
        f" {result.best.evidence} [{result.seconds:.1f}s]"
    )
    sys.exit(0)


def show_partial(spec_path: str, diagnosis, stop: Interrupted) -> None:
    """On an interrupt: each recommendation's verdict so far, and where it stopped (stderr)."""
    from nandoctor.report.diagnosis import TRAINING, VERIFYING, interrupted_line

    console = stderr_console()
    if diagnosis is not None and diagnosis.cause is not None:
        console.print(f"{spec_path}: {diagnosis.cause.id}; the fixes re-run so far:", markup=False)
        for r in diagnosis.recommendations:
            change = ", ".join(f"{k}={v}" for k, v in r.changes.items())
            tag = {True: "verified", False: "still fails", None: "untried"}[r.verified]
            tag = "diverging" if r.diverging else tag
            line = f"  [{tag}] {r.id} ({change})" + (f": {r.evidence}" if r.evidence else "")
            console.print(line, markup=False)
    stage = VERIFYING if diagnosis is not None else TRAINING
    console.print(
        interrupted_line(diagnosis, stage, stop.training, "nothing written"), markup=False
    )
