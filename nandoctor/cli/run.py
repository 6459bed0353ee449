"""``nandoctor run``: train one spec with every step watched, and print the diagnosis."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nandoctor.cli.common import (
    CONTEXT,
    count_progress,
    emit,
    fail_usage,
    format_option,
    html_option,
    jobs_option,
    load,
    plot_option,
    set_option,
    stderr_console,
    step_progress,
    steps_option,
    tensorboard_option,
    threads_option,
    verify_full_option,
)
from nandoctor.interrupt import Interrupted
from nandoctor.report.diagnosis import (
    RENDERERS,
    TRAINING,
    VERIFYING,
    WRITING,
    render_interrupted,
)


@click.command(context_settings=CONTEXT)
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@steps_option
@set_option
@format_option(RENDERERS)
@click.option(
    "--trace", type=click.Path(dir_okay=False), help="Write the per-step history (.npz or .csv)."
)
@click.option("--no-verify", is_flag=True, help="Do not re-run the recommendations to verify them.")
@jobs_option()
@threads_option
@html_option
@plot_option
@tensorboard_option
@verify_full_option
def run(
    spec_path, steps, overrides, fmt, trace, no_verify, jobs, html, plot, tensorboard, verify_full
):
    """Train SPEC with every step instrumented and print the diagnosis.

    Exit 0 when every value stayed finite, 1 when a NaN or Inf appeared, 2 for a bad spec.

    \b
    Examples:
      nandoctor run configs/healthy.yaml
      nandoctor run configs/relu_high_lr.yaml --format json
      nandoctor run spec.yaml --steps 100 --set numerics.dtype=float32 --trace run.npz
      nandoctor run configs/relu_high_lr.yaml --html report.html --plot run.png
    """
    from nandoctor.examine import examine, verify_fixes

    spec = load(spec_path, overrides, steps)
    if trace or html or plot or tensorboard:
        from nandoctor.report.output import check_outputs

        outputs = {"--trace": trace, "--html": html, "--plot": plot}
        check_outputs(
            outputs,
            spec.input_files(),
            {"--trace": trace_beside(trace)},
            {"--tensorboard": tensorboard},
        )
    show = fmt == "text"
    diagnosis, stage = None, TRAINING
    try:
        with step_progress(spec.train.steps, f"training {spec.name}", show) as on_step:
            diagnosis, outcome = examine(spec, on_step)
        if not no_verify:
            stage = VERIFYING
            with count_progress(len(diagnosis.recommendations), "verifying fixes", show) as done:
                verify_fixes(diagnosis, outcome, jobs, done, verify_full)
        stage = WRITING
        if trace:
            write_trace(outcome, trace)
        write_pictures(diagnosis, spec.numerics.dtype, html, plot, tensorboard)
    except Interrupted as stop:
        # what was finished, on stderr whatever the format: stdout gets whole reports only
        stderr_console().print(render_interrupted(diagnosis, stage, stop.training))
        raise
    emit(RENDERERS[fmt](diagnosis))
    sys.exit(1 if diagnosis.status == "nonfinite" else 0)


def trace_beside(trace: str | None) -> dict:
    """The files :func:`write_trace` writes beside ``trace``, by what they are."""
    if not trace:
        return {}
    from nandoctor.instrument.history import spec_beside, summary_beside

    files = {"resolved spec": spec_beside(trace)}
    if Path(trace).suffix == ".csv":
        files["run summary"] = summary_beside(trace)
    return files


def write_trace(outcome, path: str) -> None:
    import yaml

    from nandoctor.instrument.history import save, spec_beside

    spec, data = outcome.spec, outcome.spec.resolved()
    for dotted, moved in (spec.paths_from(spec_beside(path).parent) if spec.path else {}).items():
        section, key = dotted.split(".")
        data[section][key] = moved  # the same file, named from where the spec is written
    resolved = (
        f"# trained with {outcome.threads} BLAS thread(s): --threads {outcome.threads} reproduces"
        " it bit for bit\n" + yaml.safe_dump(data, sort_keys=False)
    )
    try:
        save(
            outcome.history,
            path,
            resolved,
            outcome.summary,
            outcome.history_start,
            threads=outcome.threads,
        )
    except OSError as e:
        fail_usage(f"--trace {path}: {e.strerror}")


def write_pictures(diagnosis, dtype: str, html, plot, tensorboard) -> None:
    """The report as an HTML page, an image and TensorBoard events, as asked."""
    if html:
        from nandoctor.report.html import run_page

        emit(run_page(diagnosis, dtype), html, option="--html")
    if plot:
        from nandoctor.report.charts.run import run_charts
        from nandoctor.report.html.run import headline
        from nandoctor.report.plot import save_plot

        save_plot(run_charts(diagnosis, dtype), plot, f"{diagnosis.name}: {headline(diagnosis)}")
    if tensorboard:
        from nandoctor.report.tensorboard import write_run

        write_run(diagnosis, tensorboard)
