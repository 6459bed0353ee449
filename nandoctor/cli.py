"""The command line: a thin layer from options to library calls, and from errors to exit codes.

Exit codes (CONTRACT §2): 0 every value finite (check: every spec passed), 1 a non-finite value
appeared (check: a spec failed), 2 usage error or invalid spec, with a message and no traceback.
"""

from __future__ import annotations

import io
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console

from nandoctor import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _width() -> int | None:
    """Rich's own width on a terminal; elsewhere $COLUMNS or 120 (not the 80 of a dumb pipe)."""
    if sys.stdout.isatty():
        return None
    try:
        return max(int(os.environ.get("COLUMNS", 120)), 60)
    except ValueError:
        return 120


def stdout_console() -> Console:
    return Console(highlight=False, width=_width(), no_color="NO_COLOR" in os.environ or None)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, no_color="NO_COLOR" in os.environ or None)


def fail_usage(message: str) -> None:
    """Print ``message`` to stderr and exit 2 (invalid spec or data, bad usage)."""
    click.echo(message.rstrip(), err=True)
    sys.exit(2)


def load(path: str, overrides=(), steps: int | None = None):
    """Load a spec for a command, turning every spec problem into exit 2."""
    from nandoctor.spec import SpecError, load_spec

    try:
        spec = load_spec(path, overrides).capped(steps)
    except SpecError as e:
        fail_usage(str(e))
    return spec


def data_error_message(spec, err) -> str:
    line = spec.line_of(err.key) if spec.path else None
    where = f"{spec.path}:{line}:1: " if line else (f"{spec.path}: " if spec.path else "")
    return f"{where}{err.key}: {err}"


def _interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def step_progress(total: int, label: str, enabled: bool):
    """A transient progress bar on stderr (a TTY only); yields an ``advance(step)`` callback."""
    if not enabled or not _interactive():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda step: bar.update(task, completed=step)


steps_option = click.option(
    "--steps", type=click.IntRange(min=1), help="Cap the spec's step budget."
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec key (dotted, typed by the schema), e.g. train.learning_rate=0.05.",
)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="nandoctor")
def main() -> None:
    """nandoctor: find where, when and why a NumPy network's training went NaN.

    \b
    Examples:
      nandoctor run configs/relu_high_lr.yaml
      nandoctor run spec.yaml --set train.learning_rate=0.01 --format json
      nandoctor schema > spec.schema.json
    """
    from nandoctor.parallel import single_threaded_blas

    # One BLAS thread everywhere, so run, sweep, check and fix compute the same bits.
    click.get_current_context().with_resource(single_threaded_blas())


@main.command(context_settings=CONTEXT)
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@steps_option
@set_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--trace", type=click.Path(dir_okay=False), help="Write the per-step history (.npz or .csv)."
)
@click.option("--no-verify", is_flag=True, help="Do not re-run the recommendations to verify them.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes for the re-runs.")
def run(spec_path, steps, overrides, fmt, trace, no_verify, jobs):
    """Train SPEC with every step instrumented and print the diagnosis.

    Exit 0 when every value stayed finite, 1 when a NaN or Inf appeared, 2 for a bad spec.

    \b
    Examples:
      nandoctor run configs/healthy.yaml
      nandoctor run configs/relu_high_lr.yaml --format json
      nandoctor run spec.yaml --steps 100 --set numerics.dtype=float32 --trace run.npz
    """
    from nandoctor.data import DataError
    from nandoctor.diagnose import diagnose
    from nandoctor.report import print_report, to_json
    from nandoctor.run import train

    spec = load(spec_path, overrides, steps)
    started = time.perf_counter()
    try:
        with step_progress(spec.train.steps, f"training {spec.name}", fmt == "text") as advance:
            outcome = train(spec, on_step=advance)[0]
    except DataError as e:
        fail_usage(data_error_message(spec, e))
    diagnosis = diagnose(outcome)
    if diagnosis.status == "nonfinite" and not no_verify:
        diagnosis.recommendations = verify_with_progress(diagnosis, outcome, jobs, fmt == "text")
    diagnosis.seconds = time.perf_counter() - started
    if trace:
        _write_trace(outcome, trace)
    if fmt == "json":
        click.echo(to_json(diagnosis))
    else:
        print_report(diagnosis, stdout_console())
    sys.exit(1 if diagnosis.status == "nonfinite" else 0)


def verify_with_progress(diagnosis, outcome, jobs, show: bool):
    """Re-run each recommendation (nandoctor.verify) behind a progress bar."""
    from nandoctor.verify import verify

    with step_progress(len(diagnosis.recommendations), "verifying fixes", show) as advance:
        count = [0]

        def done(_rid):
            count[0] += 1
            if advance:
                advance(count[0])

        return verify(diagnosis, outcome, jobs=jobs, on_done=done)


def _write_trace(outcome, path: str) -> None:
    import yaml

    from nandoctor.history import save

    resolved = yaml.safe_dump(outcome.spec.resolved(), sort_keys=False)
    try:
        save(outcome.history, path, resolved)
    except OSError as e:
        fail_usage(f"--trace {path}: {e.strerror}")


@main.command(context_settings=CONTEXT)
def schema():
    """Print the JSON Schema of the network spec.

    \b
    Example:
      nandoctor schema > nandoctor.schema.json
    """
    import json

    from nandoctor.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command(context_settings=CONTEXT)
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "--lr",
    "lr_text",
    required=True,
    metavar="LIST|START:STOP:NUM",
    help="Rates: 0.001,0.01,0.1 or START:STOP:NUM (log-spaced).",
)
@click.option("--edge", is_flag=True, help="Refine the stability edge by bisection (to 5%).")
@click.option(
    "--set",
    "grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Also sweep a key (repeatable: makes a grid), e.g. train.optimizer=sgd,adam.",
)
@steps_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True
)
def sweep(spec_path, lr_text, edge, grid, steps, fmt):
    """Run SPEC at many learning rates; show where training stays finite.

    All rates of a grid point train together as one batched computation. The largest stable
    rate is the largest one tried that stayed finite with no failing rate below it. Exit 0 when
    some rate stayed finite, 1 when none did, 2 for a bad spec or option.

    \b
    Examples:
      nandoctor sweep configs/relu_high_lr.yaml --lr 1e-3:3:16 --edge
      nandoctor sweep spec.yaml --lr 0.01,0.1,1 --set train.optimizer=sgd,adam --format json
    """
    from nandoctor import sweepfmt
    from nandoctor.data import DataError
    from nandoctor.spec import SpecError
    from nandoctor.sweep import SweepError, parse_grid, parse_rates
    from nandoctor.sweep import sweep as do_sweep

    spec = load(spec_path, (), steps)
    try:
        rates = parse_rates(lr_text)
        combos = parse_grid(grid)
        for combo in combos:
            spec.with_changes(combo)
    except (SweepError, SpecError) as e:
        fail_usage(str(e))
    total = sum(spec.with_changes(c).train.steps if c else spec.train.steps for c in combos)
    try:
        with step_progress(total, f"sweeping {len(rates)} rates", fmt == "text") as advance:
            done = [0]

            def tick(step):
                if advance and step == 1:
                    done[0] += 1
                if advance:
                    advance((done[0] - 1) * spec.train.steps + step)

            points = do_sweep(spec, rates, combos, edge=edge, on_step=tick)
    except DataError as e:
        fail_usage(data_error_message(spec, e))
    if fmt == "json":
        click.echo(sweepfmt.to_json(spec, points))
    elif fmt == "csv":
        click.echo(sweepfmt.to_csv(points), nl=False)
    else:
        stdout_console().print(sweepfmt.render(spec, points))
    sys.exit(0 if any(r.status != "nonfinite" for p in points for r in p.runs) else 1)


@main.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "github", "sarif"]),
    default="text",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False),
    help="Write the report to FILE; the text table still goes to the terminal.",
)
@steps_option
@click.option(
    "--fail-on",
    "fail_on",
    metavar="IDS",
    help="Override every spec's check.fail_on, e.g. nonfinite,dead_relu.",
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), help="Worker processes (default: all cores)."
)
@click.option(
    "--list-causes",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, _p, v: _list_causes(ctx) if v else None,
    help="Print the cause and warning ids with their meanings, and exit.",
)
def check(paths, fmt, output, steps, fail_on, jobs):
    """Run every spec in PATHS and judge it by its check: policy (a CI gate).

    PATHS are spec files, folders (every *.yaml / *.yml below) or globs. A spec fails when a NaN
    or Inf appears, when a warning listed in check.fail_on fires, when its final loss exceeds
    check.max_final_loss, or when it is invalid (which does not stop the others).

    Exit codes: 0 every spec passed; 1 any spec failed (an invalid one included); 2 usage error.

    \b
    Examples:
      nandoctor check configs/
      nandoctor check configs/ --steps 50 --format junit -o report.xml
      nandoctor check 'specs/**/*.yaml' --format github --fail-on nonfinite,dead_relu
    """
    from nandoctor import checkfmt
    from nandoctor.check import WARNING_IDS, collect, run_checks

    files = collect(paths)
    if not files:
        fail_usage(f"no specs found in {' '.join(paths)} (folders are searched for *.yaml / *.yml)")
    policy = None
    if fail_on is not None:
        policy = [p.strip() for p in fail_on.split(",") if p.strip()]
        unknown = [p for p in policy if p != "nonfinite" and p not in WARNING_IDS]
        if unknown:
            valid = ", ".join(["nonfinite", *WARNING_IDS])
            fail_usage(f"--fail-on: unknown id(s) {', '.join(unknown)}; valid: {valid}")
    with step_progress(len(files), "checking specs", True) as advance:
        count = [0]

        def done(_result):
            count[0] += 1
            if advance:
                advance(count[0])

        results = run_checks(files, steps=steps, fail_on=policy, jobs=jobs, on_done=done)
    # The table always goes to the terminal unless another format was asked for on stdout.
    if fmt == "text" or output:
        stdout_console().print(checkfmt.text(results))
    if fmt != "text" and not output:
        click.echo(checkfmt.RENDERERS[fmt](results))
    if output:
        from nandoctor.fixer import write

        if fmt == "text":  # the same table, plain, for a file
            buf = Console(file=io.StringIO(), width=120, no_color=True, highlight=False)
            buf.print(checkfmt.text(results))
            report = buf.file.getvalue()
        else:
            report = checkfmt.RENDERERS[fmt](results) + "\n"
        try:
            write(Path(output), report)
        except OSError as e:
            fail_usage(f"--output {output}: {e.strerror}")
    sys.exit(0 if all(r.passed for r in results) else 1)


def _list_causes(ctx) -> None:
    from nandoctor.checkfmt import list_causes

    click.echo(list_causes())
    ctx.exit(0)


@main.command(context_settings=CONTEXT)
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Where to write the fixed spec."
)
@click.option("--dry-run", is_flag=True, help="Print a diff of the fix instead of writing it.")
@set_option
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes for the re-runs.")
def fix(spec_path, output, dry_run, overrides, jobs):
    """Diagnose SPEC, verify candidate fixes by re-running, and write the best one to OUT.

    The written spec keeps your comments, key order and formatting; each changed line gets a
    comment saying why. Exit 0 when a verified fix was written (or there is nothing to fix),
    1 when no candidate kept every value finite (nothing is written), 2 for a bad spec.

    \b
    Examples:
      nandoctor fix configs/relu_high_lr.yaml -o fixed.yaml
      nandoctor fix configs/adam_eps_zero.yaml --dry-run
    """
    from nandoctor import fixer
    from nandoctor.data import DataError
    from nandoctor.diagnose import diagnose
    from nandoctor.run import train

    if not output and not dry_run:
        fail_usage("fix needs -o OUT (where to write the fixed spec) or --dry-run")
    spec = load(spec_path, overrides)
    started = time.perf_counter()
    try:
        outcome = train(spec)[0]
    except DataError as e:
        fail_usage(data_error_message(spec, e))
    d = diagnose(outcome)
    err = stderr_console()
    if d.status != "nonfinite":
        click.echo(
            f"{spec_path}: nothing to fix: every value stayed finite over {d.steps_run} steps"
        )
        sys.exit(0)
    recs = verify_with_progress(d, outcome, jobs, True)
    seconds = time.perf_counter() - started
    best = next((r for r in recs if r.verified), None)
    if best is None:
        tried = (
            "; ".join(f"{r.id} ({r.evidence or 'not tried'})" for r in recs) or "nothing applicable"
        )
        err.print(
            f"{spec_path}: no verified fix for {d.cause.id} after {seconds:.1f}s. Tried: {tried}"
        )
        sys.exit(1)
    text = Path(spec_path).read_text()
    why = f"{best.id}, verified: {best.evidence}"
    new = fixer.apply_changes(text, best.changes, why)
    change = ", ".join(f"{k}={v}" for k, v in best.changes.items())
    if dry_run:
        click.echo(fixer.diff(text, new, spec_path), nl=False)
    else:
        try:
            fixer.write(Path(output), new)
        except OSError as e:
            fail_usage(f"-o {output}: {e.strerror}")
    dest = "(dry run)" if dry_run else f"-> {output}"
    click.echo(
        f"{spec_path}: {d.cause.id} fixed by {change} {dest}; {best.evidence} [{seconds:.1f}s]"
    )
    sys.exit(0)
