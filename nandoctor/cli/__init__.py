"""The command line: one small module per command, wired here into one ``click`` group.

Exit codes: 0 every value finite (check: every spec passed), 1 a non-finite value appeared
(check: a spec failed), 2 usage error or invalid spec, with a message and no traceback.
"""

from __future__ import annotations

import click

from nandoctor import __version__
from nandoctor.cli.check import check
from nandoctor.cli.common import CONTEXT
from nandoctor.cli.fix import fix
from nandoctor.cli.run import run
from nandoctor.cli.schema import schema
from nandoctor.cli.sweep import sweep
from nandoctor.cli.trace import trace
from nandoctor.errors import UsageProblem


class Commands(click.Group):
    """The group that turns a :class:`UsageProblem` raised anywhere into its message and exit 2."""

    def invoke(self, ctx: click.Context):
        from nandoctor.interrupt import Interrupted, ignore_signals
        from nandoctor.parallel import WorkerLost

        try:
            return super().invoke(ctx)
        except UsageProblem as problem:
            click.echo(problem.message, err=True)
            ctx.exit(problem.exit_code)
        except WorkerLost as lost:
            click.echo(f"nandoctor: a worker process died: {lost}", err=True)
            ctx.exit(2)
        except Interrupted as stop:
            ignore_signals()  # a second Ctrl-C must not interrupt the way out
            click.echo(f"nandoctor: {stop}; stopped, nothing half-written", err=True)
            ctx.exit(stop.exit_code)


@click.group(cls=Commands, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="nandoctor")
def main() -> None:
    """nandoctor: find where, when and why a NumPy network's training went NaN.

    \b
    Examples:
      nandoctor run configs/relu_high_lr.yaml
      nandoctor run spec.yaml --set train.learning_rate=0.01 --format json
      nandoctor schema > spec.schema.json
    """
    ctx = click.get_current_context()
    if ctx.invoked_subcommand == "trace":
        return  # the user's own program runs as python would, with its own BLAS threads and signals
    from nandoctor.interrupt import signals_interrupt

    ctx.with_resource(signals_interrupt())  # Ctrl-C / SIGTERM: exit 130 / 143, workers reaped
    from nandoctor.parallel import single_threaded_blas

    # One BLAS thread everywhere, so run, sweep, check and fix compute the same bits.
    ctx.with_resource(single_threaded_blas())


for command in (run, sweep, check, fix, schema, trace):
    main.add_command(command)
