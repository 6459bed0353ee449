"""``nandoctor sweep``: one spec at many learning rates (and grids of other keys)."""

from __future__ import annotations

import sys

import click

from nandoctor.cli.common import (
    CONTEXT,
    cluster_option,
    emit,
    format_option,
    html_option,
    load,
    plot_option,
    step_progress,
    steps_option,
    threads_option,
)
from nandoctor.interrupt import Interrupted
from nandoctor.report.sweep import RENDERERS


@click.command(context_settings=CONTEXT)
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
@format_option(RENDERERS)
@threads_option
@html_option
@plot_option
@cluster_option
def sweep(spec_path, lr_text, edge, grid, steps, fmt, html, plot, cluster):
    """Run SPEC at many learning rates; show where training stays finite.

    All rates of a grid point train together as one batched computation. The largest stable
    rate is the largest one tried that stayed finite with no failing rate below it. Exit 0 when
    some rate stayed finite, 1 when none did, 2 for a bad spec or option.

    \b
    Examples:
      nandoctor sweep configs/relu_high_lr.yaml --lr 1e-3:3:16 --edge
      nandoctor sweep spec.yaml --lr 0.01,0.1,1 --set train.optimizer=sgd,adam --format json
      nandoctor sweep configs/relu_high_lr.yaml --lr 1e-3:3:16 --html sweep.html --plot sweep.png
      nandoctor sweep spec.yaml --lr 1e-4:1:64 --set train.optimizer=sgd,adam --cluster local
    """
    from nandoctor.cluster import cluster_backend
    from nandoctor.sweep import SweepSoFar, plan, sweep_points

    spec = load(spec_path, (), steps)
    if html or plot:
        from nandoctor.report.output import check_outputs

        check_outputs({"--html": html, "--plot": plot}, spec.input_files())
    rates, combos, total_steps = plan(spec, lr_text, grid)
    so_far = SweepSoFar(rates, combos)
    try:
        with (
            cluster_backend(cluster),
            step_progress(total_steps, f"sweeping {len(rates)} rates", fmt == "text") as advance,
        ):
            points = sweep_points(spec, rates, combos, edge, advance, so_far)
        write_pictures(spec, points, html, plot)
    except Interrupted as stop:
        show_partial(spec, so_far, stop)
        raise
    emit(RENDERERS[fmt](spec, points))
    sys.exit(0 if any(r.status != "nonfinite" for p in points for r in p.runs) else 1)


def show_partial(spec, so_far, stop: Interrupted) -> None:
    """On an interrupt: what finished, as a text table marked partial, on stderr whatever the
    format (stdout gets no report, so anything there is a whole document)."""
    from nandoctor.cli.common import stderr_console
    from nandoctor.report.sweep import render_interrupted

    stderr_console().print(render_interrupted(spec, so_far, stop.training))


def write_pictures(spec, points, html, plot) -> None:
    if html:
        from nandoctor.report.html import sweep_page

        emit(sweep_page(spec, points), html, option="--html")
    if plot:
        from nandoctor.report.charts.sweep import sweep_charts
        from nandoctor.report.plot import save_plot

        save_plot(sweep_charts(points), plot, f"{spec.name}: learning-rate sweep")
