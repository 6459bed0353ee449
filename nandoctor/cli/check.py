"""``nandoctor check``: a CI gate that runs many specs and judges each by its policy."""

from __future__ import annotations

import sys

import click

from nandoctor.cli.common import (
    CONTEXT,
    cluster_option,
    count_progress,
    emit,
    format_option,
    html_option,
    jobs_option,
    steps_option,
    threads_option,
)
from nandoctor.interrupt import Interrupted
from nandoctor.report.check import RENDERERS


def _list_causes(ctx: click.Context, _param, value: bool) -> None:
    if value:
        from nandoctor.report.check import list_causes

        click.echo(list_causes())
        ctx.exit(0)


@click.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True)
@format_option(RENDERERS)
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
    help="Warning ids to fail on, added to every spec's check.fail_on (nonfinite always"
    " counts), e.g. dead_relu,saturation.",
)
@click.option(
    "--allow-nonfinite",
    is_flag=True,
    help="Let a run that goes NaN/Inf pass (nonfinite is otherwise always a failure).",
)
@jobs_option("Worker processes (default: all cores).")
@cluster_option
@click.option(
    "--list-causes",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_causes,
    help="Print the cause and warning ids with their meanings, and exit.",
)
@threads_option
@html_option
def check(paths, fmt, output, steps, fail_on, allow_nonfinite, jobs, cluster, html):
    """Run every spec in PATHS and judge it by its check: policy (a CI gate).

    PATHS are spec files, folders (every *.yaml / *.yml below) or globs. A spec fails when a NaN
    or Inf appears, when a warning listed in check.fail_on fires, when its final loss exceeds
    check.max_final_loss, or when it is invalid (which does not stop the others).

    Exit codes: 0 every spec passed; 1 any spec failed (an invalid one included); 2 usage error
    (a path that does not exist included).

    \b
    Examples:
      nandoctor check configs/
      nandoctor check configs/ --steps 50 --format junit -o report.xml
      nandoctor check 'specs/**/*.yaml' --format github --fail-on dead_relu
      nandoctor check configs/ --html check.html
      nandoctor check specs/ --cluster tcp://scheduler:8786
    """
    from nandoctor.check import collect_specs, parse_fail_on, run_checks
    from nandoctor.cluster import cluster_backend

    files = collect_specs(paths)
    if output or html:
        from nandoctor.report.output import check_outputs

        check_outputs({"-o": output, "--html": html}, files)
    policy = parse_fail_on(fail_on, allow_nonfinite)
    finished: list = []
    try:
        with (
            cluster_backend(cluster, jobs),
            count_progress(len(files), "checking specs", True) as done,
        ):

            def record(result) -> None:
                finished.append(result)
                done()

            results = run_checks(files, steps=steps, fail_on=policy, jobs=jobs, on_done=record)
    except Interrupted:
        show_partial(finished, len(files))
        raise
    # The table always goes to the terminal unless another format was asked for on stdout.
    if fmt == "text" or output:
        emit(RENDERERS["text"](results))
    if fmt != "text" or output:
        emit(RENDERERS[fmt](results), output)
    if html:
        from nandoctor.report.html import check_page

        emit(check_page(results), html, option="--html")
    sys.exit(0 if all(r.passed for r in results) else 1)


def show_partial(finished: list, total: int) -> None:
    """On an interrupt: the table of the specs finished so far, on stderr (stdout may be a
    report format; no report file is written)."""
    from nandoctor.cli.common import stderr_console

    console = stderr_console()
    if finished:
        console.print(RENDERERS["text"](finished))
    console.print(f"interrupted: {len(finished)} of {total} specs finished; no report written")
